package runner

import (
	"context"
	"fmt"
	"testing"

	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/eventstore/embedded"
)

// readCounter counts the events ReadAll returns.
type readCounter struct {
	eventstore.Store
	read int
}

func (c *readCounter) ReadAll(ctx context.Context, after eventstore.Position, max int) ([]eventstore.RecordedEvent, error) {
	evs, err := c.Store.ReadAll(ctx, after, max)
	c.read += len(evs)
	return evs, err
}

// logHead finds the log's last event reading only what follows the position it is given
// (a rebuilt generation's checkpoint), not the whole log.
func TestLogHeadReadsFromTheGivenPosition(t *testing.T) {
	ctx := context.Background()
	es, err := embedded.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer es.Close()
	var positions []eventstore.Position
	for i := range 50 {
		res, err := es.Append(ctx, fmt.Sprintf("s-%d", i), eventstore.NoStream,
			eventstore.EventData{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Type: "t", Data: []byte(`{}`)})
		if err != nil {
			t.Fatal(err)
		}
		positions = append(positions, res.Position)
	}
	c := &readCounter{Store: es}
	head, err := logHead(ctx, c, positions[39])
	if err != nil || head != positions[49] {
		t.Fatalf("logHead from event 40 = %s, %v; want %s", head, err, positions[49])
	}
	if c.read != 10 {
		t.Fatalf("logHead read %d events, want the 10 after its starting point", c.read)
	}
	c.read = 0
	if head, err := logHead(ctx, c, positions[49]); err != nil || head != positions[49] || c.read != 0 {
		t.Fatalf("logHead from the last event = %s, %v after reading %d events", head, err, c.read)
	}
	if head, err := logHead(ctx, c, eventstore.Start); err != nil || head != positions[49] {
		t.Fatalf("logHead from the start = %s, %v", head, err)
	}
}
