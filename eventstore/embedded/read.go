package embedded

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/keyledger/keyledger/eventstore"
)

// columns is the column list every read selects, in the order scanEvents expects.
const columns = "seq, stream, version, id, type, recorded_at, data, tenant, actor_id, actor_kind, correlation_id, causation_id, aggregate_id, prev_hash"

// ReadStream reads up to limit events of one stream starting at version from
// (inclusive), forwards or backwards; from = eventstore.End starts a backwards read at
// the last event. A stream with no events gives a wrapped ErrStreamNotFound; a from past
// either end of an existing stream gives an empty slice. limit <= 0, and any limit above
// 100000, reads 100000 events. Events carry their global Position.
func (s *Store) ReadStream(ctx context.Context, stream string, dir eventstore.Direction, from uint64, limit int) ([]eventstore.RecordedEvent, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("read stream %s: %w", stream, eventstore.ErrClosed)
	}
	limit = eventstore.ReadLimit(limit)
	var (
		stmt  *sql.Stmt
		bound int64
	)
	switch dir {
	case eventstore.Forwards:
		if from > math.MaxInt64 {
			// No version can be that high: only existence decides the answer.
			return s.emptyOrNotFound(ctx, stream)
		}
		stmt, bound = s.fwdStmt, int64(from)
	case eventstore.Backwards:
		stmt, bound = s.bwdStmt, int64(min(from, math.MaxInt64))
	default:
		return nil, fmt.Errorf("read stream %s: unknown direction %d", stream, dir)
	}
	// The events query and the existence check read two snapshots: when the first misses
	// a stream's first commit and the second sees it, read again (once: the stream exists
	// in every later snapshot, so an empty answer then is the true one, e.g. a forward read
	// past its end).
	for attempt := 0; ; attempt++ {
		s.readQueries.Add(1)
		rows, err := stmt.QueryContext(ctx, stream, bound, limit)
		if err != nil {
			return nil, s.readErr(ctx, "read stream "+stream, err)
		}
		out, err := scanEvents(rows, make([]eventstore.RecordedEvent, 0, min(limit, 256)), stream)
		if err != nil {
			return nil, s.readErr(ctx, "read stream "+stream, err)
		}
		if len(out) > 0 {
			return out, nil
		}
		empty, err := s.emptyOrNotFound(ctx, stream)
		if err != nil || attempt > 0 {
			return empty, err
		}
	}
}

func (s *Store) emptyOrNotFound(ctx context.Context, stream string) ([]eventstore.RecordedEvent, error) {
	s.readQueries.Add(1)
	var one int64
	err := s.existsStmt.QueryRowContext(ctx, stream).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("read stream %s: %w", stream, eventstore.ErrStreamNotFound)
	case err != nil:
		return nil, s.readErr(ctx, "read stream "+stream, err)
	}
	return []eventstore.RecordedEvent{}, nil
}

// ReadAll reads up to limit events whose position is after the given one, in global
// order. An empty result means the end of the log at the time of the call. limit <= 0,
// and any limit above 100000, reads 100000 events. Only after.Commit is used (the
// embedded store's positions have Commit == Prepare).
func (s *Store) ReadAll(ctx context.Context, after eventstore.Position, limit int) ([]eventstore.RecordedEvent, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("read all: %w", eventstore.ErrClosed)
	}
	limit = eventstore.ReadLimit(limit)
	if after.Commit >= math.MaxInt64 {
		return []eventstore.RecordedEvent{}, nil
	}
	s.readQueries.Add(1)
	rows, err := s.readAllStmt.QueryContext(ctx, int64(after.Commit), limit)
	if err != nil {
		return nil, s.readErr(ctx, "read all after "+after.String(), err)
	}
	out, err := scanEvents(rows, make([]eventstore.RecordedEvent, 0, min(limit, 1024)), "")
	if err != nil {
		return nil, s.readErr(ctx, "read all after "+after.String(), err)
	}
	return out, nil
}

// scanEvents appends every row to out and closes rows. It returns rows.Err(), so a read
// cut short by an error is never mistaken for the end of the data. When stream is not
// empty all rows belong to it and its name is reused instead of allocating a copy per
// row.
func scanEvents(rows *sql.Rows, out []eventstore.RecordedEvent, stream string) ([]eventstore.RecordedEvent, error) {
	defer rows.Close()
	var (
		seq, version, at int64
		e                eventstore.RecordedEvent
		data             []byte
		streamCol        sql.RawBytes
	)
	for rows.Next() {
		e = eventstore.RecordedEvent{}
		streamDst := any(&e.Stream)
		if stream != "" {
			streamDst = &streamCol
		}
		if err := rows.Scan(&seq, streamDst, &version, &e.ID, &e.Type, &at, &data,
			&e.Meta.Tenant, &e.Meta.ActorID, &e.Meta.ActorKind, &e.Meta.CorrelationID,
			&e.Meta.CausationID, &e.Meta.AggregateID, &e.Meta.PrevHash); err != nil {
			return nil, err
		}
		if stream != "" {
			e.Stream = stream
		}
		e.Version = uint64(version)
		e.Position = eventstore.Position{Commit: uint64(seq), Prepare: uint64(seq)}
		e.RecordedAt = time.Unix(0, at).UTC()
		e.Data = data
		data = nil
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, rows.Close()
}
