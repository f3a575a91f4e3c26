package commands

import (
	"context"
	"sort"
	"strings"

	"github.com/keyledger/keyledger/domain/client"
	"github.com/keyledger/keyledger/eventstore"
)

// streamsWithPrefix lists the streams whose name starts with prefix, by scanning the
// global log. It is the interim index of list queries until they move onto read models
// (projections): correct, but it reads the whole log on every call.
func (s *Service) streamsWithPrefix(ctx context.Context, prefix string) ([]string, error) {
	seen := map[string]bool{}
	pos := eventstore.Start
	for {
		evs, err := s.store.ReadAll(ctx, pos, 5000)
		if err != nil {
			return nil, err
		}
		if len(evs) == 0 {
			break
		}
		for _, e := range evs {
			if strings.HasPrefix(e.Stream, prefix) {
				seen[e.Stream] = true
			}
			pos = e.Position
		}
	}
	out := make([]string, 0, len(seen))
	for st := range seen {
		out = append(out, st)
	}
	sort.Strings(out)
	return out, nil
}

// ListClients returns the tenant's clients, ordered by name then id, optionally only one
// kind.
func (s *Service) ListClients(ctx context.Context, tenantID string, kind client.Kind) ([]*client.Client, error) {
	owners, err := s.ListOwners(ctx, Clients, tenantID)
	if err != nil {
		return nil, err
	}
	var out []*client.Client
	for _, o := range owners {
		if c := o.(*client.Client); kind == "" || c.Kind() == kind {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name() != out[j].Name() {
			return out[i].Name() < out[j].Name()
		}
		return out[i].ID() < out[j].ID()
	})
	return out, nil
}
