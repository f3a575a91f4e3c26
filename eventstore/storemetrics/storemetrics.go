// Package storemetrics decorates an eventstore.Store with Prometheus metrics: appends and
// events written, append latency, and failures by cause. It changes no behaviour.
package storemetrics

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyledger/keyledger/eventstore"
)

// Store is an instrumented eventstore.Store.
type Store struct {
	eventstore.Store
	appends  *prometheus.CounterVec
	events   prometheus.Counter
	latency  prometheus.Histogram
	readsErr *prometheus.CounterVec
}

var _ eventstore.Store = (*Store)(nil)

// Wrap instruments s and registers its metrics on reg. Register one wrapped store per
// registry; a second registration of the same names panics in Prometheus.
func Wrap(s eventstore.Store, reg prometheus.Registerer) *Store {
	m := &Store{
		Store: s,
		appends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "keyledger", Subsystem: "eventstore", Name: "appends_total",
			Help: "Appends by outcome (ok, concurrency, invalid, full, corrupt, unavailable, closed, canceled, error).",
		}, []string{"outcome"}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "keyledger", Subsystem: "eventstore", Name: "events_appended_total",
			Help: "Events durably appended.",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "keyledger", Subsystem: "eventstore", Name: "append_seconds",
			Help:    "Latency of successful appends, including the durable sync.",
			Buckets: []float64{.0002, .0005, .001, .002, .005, .01, .025, .05, .1, .25, 1},
		}),
		readsErr: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "keyledger", Subsystem: "eventstore", Name: "read_errors_total",
			Help: "Failed reads by cause (not found excluded).",
		}, []string{"outcome"}),
	}
	reg.MustRegister(m.appends, m.events, m.latency, m.readsErr)
	return m
}

// Outcome names an error's cause for metric labels.
func Outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, eventstore.ErrConcurrency):
		return "concurrency"
	case errors.Is(err, eventstore.ErrInvalidAppend):
		return "invalid"
	case errors.Is(err, eventstore.ErrStorageFull):
		return "full"
	case errors.Is(err, eventstore.ErrCorrupt):
		return "corrupt"
	case errors.Is(err, eventstore.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, eventstore.ErrClosed):
		return "closed"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	default:
		return "error"
	}
}

// Append appends and records the outcome.
func (m *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	start := time.Now()
	res, err := m.Store.Append(ctx, stream, expected, events...)
	m.appends.WithLabelValues(Outcome(err)).Inc()
	if err == nil {
		m.events.Add(float64(len(events)))
		m.latency.Observe(time.Since(start).Seconds())
	}
	return res, err
}

// ReadStream reads and counts failures other than a missing stream.
func (m *Store) ReadStream(ctx context.Context, stream string, dir eventstore.Direction, from uint64, limit int) ([]eventstore.RecordedEvent, error) {
	evs, err := m.Store.ReadStream(ctx, stream, dir, from, limit)
	if err != nil && !errors.Is(err, eventstore.ErrStreamNotFound) {
		m.readsErr.WithLabelValues(Outcome(err)).Inc()
	}
	return evs, err
}

// ReadAll reads and counts failures.
func (m *Store) ReadAll(ctx context.Context, after eventstore.Position, limit int) ([]eventstore.RecordedEvent, error) {
	evs, err := m.Store.ReadAll(ctx, after, limit)
	if err != nil {
		m.readsErr.WithLabelValues(Outcome(err)).Inc()
	}
	return evs, err
}
