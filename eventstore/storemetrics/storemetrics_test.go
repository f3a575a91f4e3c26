package storemetrics_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/eventstore/embedded"
	"github.com/keyledger/keyledger/eventstore/storemetrics"
)

func TestAppendOutcomesAreCounted(t *testing.T) {
	raw, err := embedded.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s := storemetrics.Wrap(raw, reg)
	defer s.Close()
	ctx := context.Background()
	ev := eventstore.EventData{Type: "t.v1", Data: json.RawMessage(`{}`)}
	if _, err := s.Append(ctx, "s-1", eventstore.NoStream, ev, ev); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "s-1", eventstore.NoStream, ev); err == nil {
		t.Fatal("second no-stream append succeeded")
	}
	if _, err := s.Append(ctx, "s-1", eventstore.Any); err == nil {
		t.Fatal("empty append succeeded")
	}
	want := `
# HELP keyledger_eventstore_appends_total Appends by outcome (ok, concurrency, invalid, full, corrupt, unavailable, closed, canceled, error).
# TYPE keyledger_eventstore_appends_total counter
keyledger_eventstore_appends_total{outcome="concurrency"} 1
keyledger_eventstore_appends_total{outcome="invalid"} 1
keyledger_eventstore_appends_total{outcome="ok"} 1
# HELP keyledger_eventstore_events_appended_total Events durably appended.
# TYPE keyledger_eventstore_events_appended_total counter
keyledger_eventstore_events_appended_total 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"keyledger_eventstore_appends_total", "keyledger_eventstore_events_appended_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(reg, "keyledger_eventstore_append_seconds"); n != 1 {
		t.Fatalf("append latency histogram series: %d", n)
	}
}
