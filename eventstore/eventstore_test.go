package eventstore

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestPositionStringParseCompare(t *testing.T) {
	cases := []struct {
		p Position
		s string
	}{
		{Start, "0"},
		{Position{42, 42}, "42"},
		{Position{100, 90}, "100/90"},
	}
	for _, c := range cases {
		if got := c.p.String(); got != c.s {
			t.Errorf("%#v renders %q, want %q", c.p, got, c.s)
		}
		back, err := ParsePosition(c.s)
		if err != nil || back != c.p {
			t.Errorf("ParsePosition(%q) = %#v, %v", c.s, back, err)
		}
	}
	for _, bad := range []string{"", "x", "1/", "/1", "-1", "1/2/3"} {
		if _, err := ParsePosition(bad); err == nil {
			t.Errorf("ParsePosition(%q) accepted", bad)
		}
	}
	ordered := []Position{Start, {1, 1}, {5, 3}, {5, 4}, {6, 0}}
	for i := range ordered {
		for j := range ordered {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := ordered[i].Compare(ordered[j]); got != want {
				t.Errorf("%s compared to %s = %d, want %d", ordered[i], ordered[j], got, want)
			}
		}
	}
}

func TestExpectedVersionCheck(t *testing.T) {
	cases := []struct {
		e       ExpectedVersion
		exists  bool
		current uint64
		ok      bool
	}{
		{Any, false, 0, true}, {Any, true, 7, true},
		{NoStream, false, 0, true}, {NoStream, true, 0, false},
		{StreamExists, false, 0, false}, {StreamExists, true, 3, true},
		{Exact(3), true, 3, true}, {Exact(3), true, 4, false}, {Exact(0), false, 0, false},
		{ExpectedVersion{}, false, 0, false}, {ExpectedVersion{}, true, 0, false},
	}
	for _, c := range cases {
		if got := c.e.Check(c.exists, c.current); got != c.ok {
			t.Errorf("%s on (exists %v, at %d) = %v, want %v", c.e, c.exists, c.current, got, c.ok)
		}
	}
}

func TestValidateAppendLeavesCallerSliceAlone(t *testing.T) {
	in := []EventData{{Type: "t.v1", Data: json.RawMessage(`{}`)}}
	out, err := ValidateAppend("s-1", NoStream, in)
	if err != nil {
		t.Fatal(err)
	}
	if in[0].ID != "" {
		t.Fatalf("caller's event got id %q", in[0].ID)
	}
	if out[0].ID == "" {
		t.Fatal("returned event has no id")
	}
	if _, err := ValidateAppend("s-1", NoStream, []EventData{{Type: "t.v1", Data: json.RawMessage(`nope`)}}); !errors.Is(err, ErrInvalidAppend) {
		t.Fatalf("invalid JSON: %v", err)
	}
}

func TestConcurrencyErrorIs(t *testing.T) {
	var err error = &ConcurrencyError{Stream: "s", Expected: Exact(1), Actual: 3, ActualKnown: true}
	if !errors.Is(err, ErrConcurrency) || errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("errors.Is on %v", err)
	}
	if err.Error() != "append to s: expected version 1, stream is at version 3: eventstore: wrong expected version" {
		t.Fatalf("message %q", err.Error())
	}
}
