package runner

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyledger/keyledger/eventstore"
)

// metrics are the runner's Prometheus metrics; a nil Registerer keeps them unregistered
// (they still count, for nobody).
type metrics struct {
	applied  *prometheus.CounterVec
	lag      *prometheus.HistogramVec
	cp       *prometheus.GaugeVec
	halted   *prometheus.GaugeVec
	states   *prometheus.GaugeVec
	rebuilds *prometheus.CounterVec
	rebuildN *prometheus.CounterVec
	rebuildS *prometheus.CounterVec
}

var allStates = []State{StateStarting, StateStandby, StateRebuilding, StateCatchingUp, StateProjecting, StateHalted, StateFailed, StateStopped}

func newMetrics(reg prometheus.Registerer, r *Runner) (*metrics, error) {
	m := &metrics{
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyledger_projection_events_applied_total",
			Help: "Events applied to a read model by its live projection."}, []string{"model"}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "keyledger_projection_lag_seconds",
			Help:    "Time from an event's append to its application in a read model (live projection).",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"model"}),
		cp: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "keyledger_projection_checkpoint",
			Help: "Commit position of the last event applied to a read model."}, []string{"model"}),
		halted: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "keyledger_projection_halted",
			Help: "1 while a read model's projection is halted at an event it cannot apply (see /readyz for the event and reason)."}, []string{"model"}),
		states: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "keyledger_projection_state",
			Help: "1 for a read model's current state in this process."}, []string{"model", "state"}),
		rebuilds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyledger_projection_rebuilds_total",
			Help: "Completed rebuilds of a read model."}, []string{"model"}),
		rebuildN: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyledger_projection_rebuild_events_total",
			Help: "Events applied by completed rebuilds."}, []string{"model"}),
		rebuildS: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyledger_projection_rebuild_seconds_total",
			Help: "Time spent in completed rebuilds."}, []string{"model"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.applied, m.lag, m.cp, m.halted, m.states, m.rebuilds, m.rebuildN, m.rebuildS} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	for _, md := range r.models {
		m.state(md.st)
	}
	return m, nil
}

func (m *metrics) acked(model string, e eventstore.RecordedEvent) {
	m.applied.WithLabelValues(model).Inc()
	m.cp.WithLabelValues(model).Set(float64(e.Position.Commit))
	if !e.RecordedAt.IsZero() {
		m.lag.WithLabelValues(model).Observe(time.Since(e.RecordedAt).Seconds())
	}
}

func (m *metrics) state(st Status) {
	for _, s := range allStates {
		v := 0.0
		if s == st.State {
			v = 1
		}
		m.states.WithLabelValues(st.Model, string(s)).Set(v)
	}
	halted := 0.0
	if st.State == StateHalted {
		halted = 1
	}
	m.halted.WithLabelValues(st.Model).Set(halted)
}

func (m *metrics) rebuilt(model string, events int, took time.Duration) {
	m.rebuilds.WithLabelValues(model).Inc()
	m.rebuildN.WithLabelValues(model).Add(float64(events))
	m.rebuildS.WithLabelValues(model).Add(took.Seconds())
}
