package commands

import (
	"context"
	"errors"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
)

// History returns every event of one stream in order. The caller has checked that the
// stream belongs to the caller's tenant.
func (s *Service) History(ctx context.Context, stream string) ([]eventstore.RecordedEvent, error) {
	var out []eventstore.RecordedEvent
	from := uint64(0)
	for {
		evs, err := s.store.ReadStream(ctx, stream, eventstore.Forwards, from, 1000)
		if errors.Is(err, eventstore.ErrStreamNotFound) {
			if len(out) == 0 {
				return nil, domain.ErrNotFound
			}
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, evs...)
		if len(evs) < 1000 {
			return out, nil
		}
		from = evs[len(evs)-1].Version + 1
	}
}
