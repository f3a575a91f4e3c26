package domain

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"time"
)

// Event is a fact that happened to one aggregate. EventType is its stable, versioned wire
// name (e.g. "client.key_uploaded.v1"), also the event-store event type: never rename one.
type Event interface {
	EventType() string
}

// Changes collects the events an aggregate decided on, in order. Aggregates embed it and
// append through their own record method, which applies the event first.
type Changes struct {
	pending []Event
}

// Add queues e. Only an aggregate's record method calls it, after applying e.
func (c *Changes) Add(e Event) { c.pending = append(c.pending, e) }

// Pending returns the events decided since the aggregate was loaded.
func (c *Changes) Pending() []Event { return c.pending }

// Codec decodes stored events of one aggregate by their wire names.
type Codec struct {
	types map[string]reflect.Type
}

// NewCodec registers the given event values (zero values of each event type).
func NewCodec(events ...Event) Codec {
	c := Codec{types: map[string]reflect.Type{}}
	for _, e := range events {
		t := reflect.TypeOf(e)
		if _, dup := c.types[e.EventType()]; dup {
			panic("domain: event type registered twice: " + e.EventType())
		}
		c.types[e.EventType()] = t
	}
	return c
}

// Knows reports whether typ is one of the codec's event types.
func (c Codec) Knows(typ string) bool { _, ok := c.types[typ]; return ok }

// Decode turns stored data back into the event value.
func (c Codec) Decode(typ string, data []byte) (Event, error) {
	t, ok := c.types[typ]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownEvent, typ)
	}
	v := reflect.New(t)
	if err := json.Unmarshal(data, v.Interface()); err != nil {
		return nil, fmt.Errorf("decode %s: %w", typ, err)
	}
	return v.Elem().Interface().(Event), nil
}

// ErrUnknownEvent means a stored event has a type the code does not know: the stream was
// written by a newer version, or is not the aggregate's.
var ErrUnknownEvent = errors.New("unknown event type")

// ValidationError lists every field that is wrong in a request, so callers can fix all at
// once. It matches ErrValidation with errors.Is.
type ValidationError struct {
	Fields []FieldError
}

// FieldError is one invalid field.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// ErrValidation is the sentinel every ValidationError matches.
var ErrValidation = errors.New("validation failed")

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Message
	}
	return "validation failed: " + strings.Join(parts, "; ")
}

// Is makes errors.Is(err, ErrValidation) true.
func (e *ValidationError) Is(target error) bool { return target == ErrValidation }

// Validator accumulates field errors.
type Validator struct{ fields []FieldError }

// Check records message for field when ok is false.
func (v *Validator) Check(ok bool, field, message string) {
	if !ok {
		v.fields = append(v.fields, FieldError{Field: field, Message: message})
	}
}

// Err returns a *ValidationError when any check failed, else nil.
func (v *Validator) Err() error {
	if len(v.fields) == 0 {
		return nil
	}
	return &ValidationError{Fields: v.fields}
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$`)

// ValidID reports whether s may be an identifier chosen by a caller (tenant, user, service
// user): 1–128 characters, letters, digits and . _ @ : -, starting with a letter or digit.
// '/' is never allowed, so stream names built from ids cannot collide.
func ValidID(s string) bool { return idPattern.MatchString(s) }

// Actor is who asks for a change, with the roles Keyledger knows for them. The command
// layer fills it from the authenticated principal and the user's current roles.
type Actor struct {
	ID       string
	Kind     string // "user", "operator", "service_user", "client", "system"
	Tenant   string
	Roles    Roles
	Operator bool
}

// Role is a tenant role kept in Keyledger.
type Role string

// The tenant roles.
const (
	RoleAdmin    Role = "admin"    // tenant administrator, the credentials API's "Curator"
	RoleSecurity Role = "security" // security operator: uploads and deletes keys
	RoleMember   Role = "member"   // plain member
	RoleAuditor  Role = "auditor"  // reads history and audit views
)

// ParseRole returns the role named s.
func ParseRole(s string) (Role, bool) {
	switch r := Role(s); r {
	case RoleAdmin, RoleSecurity, RoleMember, RoleAuditor:
		return r, true
	}
	return "", false
}

// Roles is a set of roles, kept sorted and without repeats.
type Roles []Role

// Has reports whether r is in the set.
func (rs Roles) Has(r Role) bool {
	for _, x := range rs {
		if x == r {
			return true
		}
	}
	return false
}

// NormalizeRoles parses, sorts and deduplicates role names, reporting unknown ones.
func NormalizeRoles(names []string) (Roles, []string) {
	seen := map[Role]bool{}
	var bad []string
	for _, n := range names {
		r, ok := ParseRole(n)
		if !ok {
			bad = append(bad, n)
			continue
		}
		seen[r] = true
	}
	out := Roles{}
	for _, r := range []Role{RoleAdmin, RoleAuditor, RoleMember, RoleSecurity} {
		if seen[r] {
			out = append(out, r)
		}
	}
	return out, bad
}

// Time normalises a timestamp for events: UTC, microsecond precision (what survives a
// JSON round trip everywhere).
func Time(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }
