package api

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/projections/models"
	"github.com/keyledger/keyledger/projections/readmodel"
)

// Read-your-writes. A command answers with the position of its last event
// (HeaderPosition); a query given that position as its minimum (HeaderMinPosition or the
// query parameter ParamMinPosition) answers only from a read model that has applied the
// log up to it, waiting at most Deps.ReadWait, and otherwise refuses with 503 and
// Retry-After (ErrBehind, ErrNotReady of projections/runner) rather than answer from
// older data.
const (
	HeaderMinPosition = "Keyledger-Min-Position"
	ParamMinPosition  = "minPosition"
)

// Stable codes of query refusals.
const (
	CodeInvalidMinPosition  = "invalid_min_position"
	CodeMinPositionConflict = "min_position_conflict"
	CodeUnknownQueryParam   = "unknown_query_parameter"
	CodeReadModelBehind     = "read_model_behind"
	CodeReadModelNotReady   = "read_model_not_ready"
	CodeReadModelDown       = "read_model_unavailable"
)

// retryAfterSeconds is the Retry-After of a query refused because its read model is
// behind, building or unreachable: all three are usually over within a second.
const retryAfterSeconds = 1

// query is one read-model query being served: its parameters, checked, and the read
// model's store and generation to read.
type query struct {
	c     echo.Context
	store readmodel.Store
	ns    readmodel.Namespace
}

// read starts a query on model: it refuses query parameters other than params and
// ParamMinPosition (and any given twice), then waits — bounded by Deps.ReadWait — until
// the model's active generation has reached the request's minimum position. Every
// read-model query goes through it.
func (s *Server) read(c echo.Context, model string, params ...string) (query, error) {
	for name, values := range c.QueryParams() {
		if name != ParamMinPosition && !slices.Contains(params, name) {
			allowed := append([]string{ParamMinPosition}, params...)
			return query{}, &Problem{Status: http.StatusBadRequest, Code: CodeUnknownQueryParam, Title: "Unknown query parameter",
				Detail: fmt.Sprintf("unknown query parameter %q; this route takes %s", name, strings.Join(allowed, ", "))}
		}
		if len(values) > 1 {
			return query{}, &Problem{Status: http.StatusBadRequest, Code: CodeUnknownQueryParam, Title: "Repeated query parameter",
				Detail: fmt.Sprintf("query parameter %q is given %d times", name, len(values))}
		}
	}
	pos, err := minPosition(c)
	if err != nil {
		return query{}, err
	}
	if s.deps.Reads == nil {
		return query{}, &Problem{Status: http.StatusServiceUnavailable, Code: CodeNotReady, Title: "Not ready",
			Detail: "queries are not configured"}
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), s.deps.ReadWait)
	defer cancel()
	ns, err := s.deps.Reads.At(ctx, model, pos)
	if err != nil {
		return query{}, err
	}
	return query{c: c, store: s.deps.Reads.Store(), ns: ns}, nil
}

// minPosition reads the request's minimum position: the header, the query parameter,
// both when they agree, or Start (no wait) when neither is given.
func minPosition(c echo.Context) (eventstore.Position, error) {
	h := strings.TrimSpace(c.Request().Header.Get(HeaderMinPosition))
	p := c.QueryParam(ParamMinPosition)
	if h != "" && p != "" && h != p {
		return eventstore.Start, &Problem{Status: http.StatusBadRequest, Code: CodeMinPositionConflict, Title: "Conflicting minimum positions",
			Detail: "the " + HeaderMinPosition + " header and the " + ParamMinPosition + " parameter differ; give one"}
	}
	s := h
	if s == "" {
		s = p
	}
	if s == "" {
		return eventstore.Start, nil
	}
	pos, err := eventstore.ParsePosition(s)
	if err != nil {
		return eventstore.Start, &Problem{Status: http.StatusBadRequest, Code: CodeInvalidMinPosition, Title: "Invalid minimum position",
			Detail: "a minimum position is a " + HeaderPosition + " value returned by this API", cause: err}
	}
	return pos, nil
}

// ctx is the request's context: reads are not bounded by the wait for the position.
func (q query) ctx() context.Context { return q.c.Request().Context() }

// limit reads the limit parameter (0 when absent: the default page size).
func (q query) limit() (int, error) {
	s := q.c.QueryParam("limit")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 || n > models.MaxLimit {
		return 0, &Problem{Status: http.StatusBadRequest, Code: models.CodeInvalidLimit, Title: "Invalid limit",
			Detail: fmt.Sprintf("limit must be a whole number from 1 to %d", models.MaxLimit)}
	}
	return n, nil
}

// listAnswer answers one page of a list: read gets the cursor and limit parameters.
func listAnswer[T any](q query, read func(cursor string, limit int) (models.Page[T], error)) error {
	limit, err := q.limit()
	if err != nil {
		return err
	}
	p, err := read(q.c.QueryParam("cursor"), limit)
	if err != nil {
		return err
	}
	return q.c.JSON(http.StatusOK, p)
}

// listParams are the parameters of a list: its filters, the page size and the cursor.
func listParams(filters ...string) []string { return append([]string{"limit", "cursor"}, filters...) }

// detail answers one resource read from a read model with its version as ETag.
func (q query) detail(version uint64, body any) error {
	q.c.Response().Header().Set("ETag", etag(version))
	return q.c.JSON(http.StatusOK, body)
}

// detailAnswer answers the resource get reads, or 404 when it finds none.
func detailAnswer[T any](q query, get func() (T, models.RecordMeta, bool, error)) error {
	v, meta, ok, err := get()
	if err != nil {
		return err
	}
	if !ok {
		return domain.ErrNotFound
	}
	return q.detail(meta.Version, v)
}
