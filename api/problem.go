package api

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/keyledger/keyledger/commands"
	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/projections/models"
	"github.com/keyledger/keyledger/projections/readmodel"
	"github.com/keyledger/keyledger/projections/runner"
)

// Stable machine codes carried in problem documents. Clients switch on these; never
// rename one.
const (
	CodeNotFound           = "not_found"
	CodeMethodNotAllowed   = "method_not_allowed"
	CodeBadRequest         = "bad_request"
	CodeBodyTooLarge       = "body_too_large"
	CodeNotReady           = "not_ready"
	CodeStoreUnavailable   = "store_unavailable"
	CodeStorageFull        = "storage_full"
	CodeStorageCorrupt     = "storage_corrupt"
	CodeConcurrency        = "concurrent_modification"
	CodeInvalidAppend      = "invalid_event"
	CodeInternal           = "internal_error"
	CodeUnauthorized       = "unauthorized"
	CodeForbidden          = "forbidden"
	CodeUnsupportedMedia   = "unsupported_media_type"
	CodeTooManyRequests    = "too_many_requests"
	CodeServiceOverloaded  = "service_unavailable"
	CodeValidation         = "validation_failed"
	CodePreconditionFailed = "precondition_failed"
	CodeInvalidJSON        = "invalid_json"
)

// Problem is an RFC 9457 problem document with Keyledger's stable code.
type Problem struct {
	Type          string `json:"type,omitempty"`
	Title         string `json:"title"`
	Status        int    `json:"status"`
	Detail        string `json:"detail,omitempty"`
	Code          string `json:"code"`
	CorrelationID string `json:"correlationId,omitempty"`
	// Errors lists each invalid field of a validation failure.
	Errors []domain.FieldError `json:"errors,omitempty"`

	cause error
	// retryAfter, when positive, is sent as Retry-After (seconds).
	retryAfter int
}

func (p *Problem) Error() string { return p.Code + ": " + p.Detail }

// Unwrap exposes the cause for errors.Is in tests and logs.
func (p *Problem) Unwrap() error { return p.cause }

// errorTable maps port and domain errors to a status and a stable code. It is consulted
// with errors.Is so wrapped errors map the same as bare ones.
// domainStatus maps a domain error kind to its HTTP status.
func domainStatus(k domain.Kind) (int, string) {
	switch k {
	case domain.KindInvalid:
		return http.StatusBadRequest, "Invalid request"
	case domain.KindNotFound:
		return http.StatusNotFound, "Not found"
	case domain.KindConflict:
		return http.StatusConflict, "Conflict"
	case domain.KindForbidden:
		return http.StatusForbidden, "Forbidden"
	}
	return http.StatusInternalServerError, "Internal error"
}

var errorTable = []struct {
	err        error
	status     int
	code       string
	title      string
	retryAfter int
}{
	{runner.ErrBehind, http.StatusServiceUnavailable, CodeReadModelBehind, "Read model behind", retryAfterSeconds},
	{runner.ErrNotReady, http.StatusServiceUnavailable, CodeReadModelNotReady, "Read model not ready", retryAfterSeconds},
	{readmodel.ErrUnavailable, http.StatusServiceUnavailable, CodeReadModelDown, "Read model unavailable", retryAfterSeconds},
	{readmodel.ErrCorrupt, http.StatusInternalServerError, CodeStorageCorrupt, "Read model corrupt", 0},
	{commands.ErrPreconditionFailed, http.StatusPreconditionFailed, CodePreconditionFailed, "Precondition failed", 0},
	{commands.ErrContention, http.StatusConflict, CodeConcurrency, "Concurrent modification", 0},
	{eventstore.ErrConcurrency, http.StatusConflict, CodeConcurrency, "Concurrent modification", 0},
	{eventstore.ErrInvalidAppend, http.StatusBadRequest, CodeInvalidAppend, "Invalid event", 0},
	{eventstore.ErrStorageFull, http.StatusInsufficientStorage, CodeStorageFull, "Storage full", 0},
	{eventstore.ErrCorrupt, http.StatusInternalServerError, CodeStorageCorrupt, "Storage corrupt", 0},
	{eventstore.ErrUnavailable, http.StatusServiceUnavailable, CodeStoreUnavailable, "Event store unavailable", 0},
	{eventstore.ErrClosed, http.StatusServiceUnavailable, CodeStoreUnavailable, "Shutting down", 0},
}

var statusCodes = map[int]string{
	http.StatusNotFound:              CodeNotFound,
	http.StatusMethodNotAllowed:      CodeMethodNotAllowed,
	http.StatusBadRequest:            CodeBadRequest,
	http.StatusRequestEntityTooLarge: CodeBodyTooLarge,
	http.StatusUnauthorized:          CodeUnauthorized,
	http.StatusForbidden:             CodeForbidden,
	http.StatusUnsupportedMediaType:  CodeUnsupportedMedia,
	http.StatusTooManyRequests:       CodeTooManyRequests,
	http.StatusServiceUnavailable:    CodeServiceOverloaded,
}

// toProblem turns any handler error into a problem document.
func toProblem(err error) *Problem {
	var p *Problem
	if errors.As(err, &p) {
		return p
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		code, ok := statusCodes[he.Code]
		if !ok {
			code = CodeInternal
		}
		detail := http.StatusText(he.Code)
		if m, ok := he.Message.(string); ok {
			detail = m
		}
		return &Problem{Status: he.Code, Code: code, Title: http.StatusText(he.Code), Detail: detail, cause: err}
	}
	var ve *domain.ValidationError
	if errors.As(err, &ve) {
		return &Problem{Status: http.StatusBadRequest, Code: CodeValidation, Title: "Invalid request",
			Detail: ve.Error(), Errors: ve.Fields, cause: err}
	}
	var qe *models.QueryError
	if errors.As(err, &qe) {
		return &Problem{Status: http.StatusBadRequest, Code: qe.Code, Title: "Invalid query", Detail: qe.Error(), cause: err}
	}
	var de *domain.Error
	if errors.As(err, &de) {
		status, title := domainStatus(de.Kind)
		return &Problem{Status: status, Code: de.Code, Title: title, Detail: de.Message, cause: err}
	}
	for _, row := range errorTable {
		if errors.Is(err, row.err) {
			return &Problem{Status: row.status, Code: row.code, Title: row.title, Detail: err.Error(), cause: err, retryAfter: row.retryAfter}
		}
	}
	return &Problem{Status: http.StatusInternalServerError, Code: CodeInternal,
		Title: "Internal error", Detail: "an internal error occurred; quote the correlation id", cause: err}
}

func problemHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		p := toProblem(err)
		p.CorrelationID = CorrelationIDFrom(c.Request().Context())
		if p.Status >= 500 {
			log.ErrorContext(c.Request().Context(), "request failed",
				"status", p.Status, "code", p.Code, "error", err.Error())
		}
		c.Response().Header().Set(echo.HeaderContentType, "application/problem+json")
		if p.retryAfter > 0 {
			c.Response().Header().Set(echo.HeaderRetryAfter, strconv.Itoa(p.retryAfter))
		}
		if c.Request().Method == http.MethodHead {
			_ = c.NoContent(p.Status)
			return
		}
		_ = c.JSON(p.Status, p)
	}
}
