package api

import (
	_ "embed"
	"net/http"

	"github.com/labstack/echo/v4"
)

// openAPIDocument is the OpenAPI 3.1 description of every route. The tests walk the
// route table against it and validate every component-test exchange with it, so a route
// or a field changed without changing the document fails the build's tests.
//
//go:embed openapi.yaml
var openAPIDocument []byte

// openapi serves the OpenAPI document as it was built into the binary.
func (s *Server) openapi(c echo.Context) error {
	return c.Blob(http.StatusOK, "application/yaml", openAPIDocument)
}
