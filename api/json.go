package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/keyledger/keyledger/commands"
)

// HeaderPosition carries the global position of a command's last event. A query given it
// as its minimum position (HeaderMinPosition) reads the caller's own write.
const HeaderPosition = "Keyledger-Position"

// decode reads a JSON request body strictly: one object, no unknown fields, within the
// body limit, with a JSON content type.
func decode(c echo.Context, v any) error {
	if ct := c.Request().Header.Get(echo.HeaderContentType); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != echo.MIMEApplicationJSON {
			return &Problem{Status: http.StatusUnsupportedMediaType, Code: CodeUnsupportedMedia,
				Title: "Unsupported media type", Detail: "send application/json"}
		}
	}

	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return &Problem{Status: http.StatusRequestEntityTooLarge, Code: CodeBodyTooLarge, Title: "Body too large", Detail: err.Error()}
		}
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &Problem{Status: http.StatusBadRequest, Code: CodeInvalidJSON, Title: "Invalid JSON", Detail: jsonDetail(err)}
	}
	if dec.More() {
		return &Problem{Status: http.StatusBadRequest, Code: CodeInvalidJSON, Title: "Invalid JSON", Detail: "the body must hold exactly one JSON object"}
	}
	return nil
}

func jsonDetail(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return "the body is empty; send a JSON object"
	case errors.As(err, &se):
		return fmt.Sprintf("malformed JSON at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q must be %s", te.Field, te.Type.String())
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	}
	return err.Error()
}

// ifMatch reads an If-Match header carrying a stream version as ETag ("3" or W/"3").
func ifMatch(c echo.Context) (*uint64, error) {
	h := strings.TrimSpace(c.Request().Header.Get("If-Match"))
	if h == "" || h == "*" {
		return nil, nil
	}
	h = strings.Trim(strings.TrimPrefix(h, "W/"), `"`)
	v, err := strconv.ParseUint(h, 10, 64)
	if err != nil {
		return nil, &Problem{Status: http.StatusBadRequest, Code: "invalid_if_match", Title: "Invalid If-Match",
			Detail: "If-Match must be an ETag returned by this API"}
	}
	return &v, nil
}

// commandMeta is meta plus the request's If-Match.
func commandMeta(c echo.Context) (commands.Meta, error) {
	m := meta(c)
	v, err := ifMatch(c)
	if err != nil {
		return m, err
	}
	m.IfMatch = v
	return m, nil
}

// answer writes a command's answer: headers for position and version, then the body
// (201 with Location for a creation, 200 with a body, 204 without).
func answer(c echo.Context, res commands.Result, status int, location string, body any) error {
	h := c.Response().Header()
	if !res.Position.IsZero() {
		h.Set(HeaderPosition, res.Position.String())
	}
	h.Set("ETag", etag(res.Version))
	if location != "" {
		h.Set(echo.HeaderLocation, location)
	}
	if body == nil {
		return c.NoContent(http.StatusNoContent)
	}
	return c.JSON(status, body)
}

func etag(v uint64) string { return `"` + strconv.FormatUint(v, 10) + `"` }
