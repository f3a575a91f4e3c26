// Package domaintest is what every aggregate's tests share: a table runner for given
// events / when command / then events or error, the round trip of events through a
// Codec, and the actors the tests act as. It is test helper code: import it only from
// _test.go files. Like the rest of domain/ it does no I/O.
package domaintest

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/keyledger/keyledger/domain"
)

// Aggregate is what the runner needs of an aggregate: to load it from a history, and the
// events it decided since.
type Aggregate interface {
	Rehydrate(events []domain.Event)
	Pending() []domain.Event
}

// Case is one given / when / then case. With a nil Err the command must succeed and
// record exactly Then (nil: nothing); otherwise it must fail with an error that matches
// Err under errors.Is, and Then is not looked at.
type Case[A Aggregate] struct {
	Name   string
	Given  []domain.Event // the history the aggregate is rehydrated from
	When   func(A) error  // the command
	Then   []domain.Event
	Err    error
	Fields []string // with a validation Err: the invalid fields reported, in order (nil: not checked)
	New    func() A // when set, builds this case's aggregate instead of Runner.New (another id)
}

// Runner runs cases of one aggregate type, each against a fresh aggregate, one subtest a
// case.
type Runner[A Aggregate] struct {
	// New returns the empty aggregate a case starts from.
	New func() A
	// SameState, when set, is asked after each success whether the decided aggregate and
	// a fresh one rehydrated from Given followed by what was recorded agree.
	SameState func(decided, rehydrated A) bool
	// RefusalMayRecord leaves a refused command's recorded events unchecked, for an
	// aggregate whose creation records several events and may refuse half-way (the
	// command layer appends nothing then). Unset, a refusal must record nothing.
	RefusalMayRecord bool
}

// Run runs the cases.
func (r Runner[A]) Run(t *testing.T, cases []Case[A]) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			newA := r.New
			if c.New != nil {
				newA = c.New
			}
			a := newA()
			a.Rehydrate(c.Given)
			err := c.When(a)
			if c.Err != nil {
				if !errors.Is(err, c.Err) {
					t.Fatalf("error = %v, want %v", err, c.Err)
				}
				if c.Fields != nil {
					checkFields(t, err, c.Fields)
				}
				if !r.RefusalMayRecord && len(a.Pending()) != 0 {
					t.Fatalf("a refused command recorded %v", a.Pending())
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if got := a.Pending(); len(got) != 0 || len(c.Then) != 0 {
				if !reflect.DeepEqual(got, c.Then) {
					t.Fatalf("events:\n got %#v\nwant %#v", got, c.Then)
				}
			}
			if r.SameState != nil {
				again := newA()
				again.Rehydrate(With(c.Given, a.Pending()...))
				if !r.SameState(a, again) {
					t.Fatalf("rehydrated state differs from decided state")
				}
			}
		})
	}
}

func checkFields(t *testing.T, err error, want []string) {
	t.Helper()
	var ve *domain.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v is not a *domain.ValidationError", err)
	}
	var got []string
	for _, f := range ve.Fields {
		got = append(got, f.Field)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("invalid fields = %v, want %v", got, want)
	}
}

// Events lists events: a history, or what a case expects.
func Events(es ...domain.Event) []domain.Event { return es }

// With returns a new history: base followed by more, never sharing base's array.
func With(base []domain.Event, more ...domain.Event) []domain.Event {
	return append(append([]domain.Event{}, base...), more...)
}

// WireNames checks each event's EventType against the name at the same index, and that
// codec knows the name.
func WireNames(t *testing.T, codec domain.Codec, events []domain.Event, names []string) {
	t.Helper()
	if len(events) != len(names) {
		t.Fatalf("%d events, %d names", len(events), len(names))
	}
	for i, e := range events {
		if e.EventType() != names[i] {
			t.Errorf("%T.EventType() = %q, want %q", e, e.EventType(), names[i])
		}
		if !codec.Knows(names[i]) {
			t.Errorf("Codec does not know %q", names[i])
		}
	}
}

// RoundTrip checks that every event comes back unchanged from JSON through codec.Decode
// under its wire name: what the event store writes is what the aggregate reads.
func RoundTrip(t *testing.T, codec domain.Codec, events []domain.Event) {
	t.Helper()
	for _, e := range events {
		data, err := json.Marshal(e)
		if err != nil {
			t.Fatalf("marshal %T: %v", e, err)
		}
		got, err := codec.Decode(e.EventType(), data)
		if err != nil {
			t.Fatalf("decode %s: %v", e.EventType(), err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Errorf("%s round trip:\n got %#v\nwant %#v", e.EventType(), got, e)
		}
	}
}

// User is a user of tenant with roles.
func User(id, tenant string, roles ...domain.Role) domain.Actor {
	return domain.Actor{ID: id, Kind: "user", Tenant: tenant, Roles: domain.Roles(roles)}
}

// Admin is an administrator of tenant.
func Admin(id, tenant string) domain.Actor { return User(id, tenant, domain.RoleAdmin) }

// Security is a security operator of tenant.
func Security(id, tenant string) domain.Actor { return User(id, tenant, domain.RoleSecurity) }

// Operator is the platform operator: no tenant, no tenant role.
func Operator(id string) domain.Actor {
	return domain.Actor{ID: id, Kind: "operator", Operator: true}
}

// System is Keyledger acting on its own behalf (reacting to another aggregate's event).
func System(id string) domain.Actor { return domain.Actor{ID: id, Kind: "system"} }
