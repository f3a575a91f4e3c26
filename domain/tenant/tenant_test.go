package tenant

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/domain/domaintest"
)

func TestCreate(t *testing.T) {
	at := time.Date(2026, 1, 1, 10, 0, 0, 123456789, time.FixedZone("x", 3600))
	op := domaintest.Operator("op")
	cases := []struct {
		name    string
		actor   domain.Actor
		id      string
		tname   string
		adminID string
		wantErr error
		fields  int
	}{
		{"operator creates", op, "acme", "Acme", "alice", nil, 0},
		{"a tenant admin may not", domaintest.Admin("a", "t"), "acme", "Acme", "alice", domain.ErrForbidden, 0},
		{"bad id, name and admin", op, "a/b", " ", "", domain.ErrValidation, 3},
		{"id with @", op, "a@b", "Acme", "alice", domain.ErrValidation, 1},
		{"long name", op, "acme", strings.Repeat("é", 201), "alice", domain.ErrValidation, 1},
	}
	for _, c := range cases {
		tn, err := Create(c.actor, c.id, c.tname, c.adminID, "Alice", at)
		if c.wantErr != nil {
			var ve *domain.ValidationError
			if !errors.Is(err, c.wantErr) || (c.fields > 0 && (!errors.As(err, &ve) || len(ve.Fields) != c.fields)) {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		want := Created{ID: "acme", Name: "Acme", AdminID: "alice", AdminName: "Alice", By: "op", At: domain.Time(at)}
		if p := tn.Pending(); len(p) != 1 || p[0] != want {
			t.Fatalf("%s: events %+v, want %+v", c.name, p, want)
		}
		back := Rehydrate(tn.Pending())
		if back.ID() != "acme" || back.AdminID() != "alice" || !back.CreatedAt().Equal(domain.Time(at)) {
			t.Fatalf("rehydrated %+v", back)
		}
	}
}
