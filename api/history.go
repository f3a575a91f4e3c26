package api

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
)

type historyActor struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
}

type historyEvent struct {
	Version       uint64          `json:"version"`
	Position      string          `json:"position,omitempty"`
	Type          string          `json:"type"`
	Time          time.Time       `json:"time"`
	Actor         historyActor    `json:"actor"`
	CorrelationID string          `json:"correlationId,omitempty"`
	Data          json.RawMessage `json:"data"`
}

// history answers every event of a stream that belongs to the caller's tenant. Events
// hold no secrets (public keys only; access-key and password hashes never enter event
// data), so the data is shown as stored.
func (s *Server) history(c echo.Context, stream string, allowed ...func([]eventstore.RecordedEvent) bool) error {
	evs, err := s.deps.Commands.History(c.Request().Context(), stream)
	if err != nil {
		return err
	}
	tenant := actorFrom(c).Tenant
	ok := evs[0].Meta.Tenant == tenant
	for _, a := range allowed {
		ok = ok || a(evs)
	}
	if !ok {
		return domain.ErrNotFound
	}
	out := listResponse[historyEvent]{Items: make([]historyEvent, 0, len(evs))}
	for _, e := range evs {
		he := historyEvent{Version: e.Version, Type: e.Type, Time: e.RecordedAt,
			Actor: historyActor{ID: e.Meta.ActorID, Kind: e.Meta.ActorKind}, CorrelationID: e.Meta.CorrelationID, Data: e.Data}
		if !e.Position.IsZero() {
			he.Position = e.Position.String()
		}
		out.Items = append(out.Items, he)
	}
	return c.JSON(http.StatusOK, out)
}
