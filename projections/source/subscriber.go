package source

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/keyledger/keyledger/eventstore"
)

// CheckpointFunc returns the position of the last event a read model has applied for
// topic (eventstore.Start when it has applied none). The subscription starts after it.
type CheckpointFunc func(ctx context.Context, topic string) (eventstore.Position, error)

// FromStart is a CheckpointFunc for read models that are rebuilt on every start (the
// in-process ones): every topic starts at the beginning of the log.
func FromStart(context.Context, string) (eventstore.Position, error) {
	return eventstore.Start, nil
}

// Observer is told what the subscriber does, for metrics: a Prometheus adapter counts
// Acked (events applied, by topic and type), sets a position gauge from it, and a
// "halted" gauge from StateChanged. Methods are called from the topic's delivery
// goroutine and must not block; they are never called with a lock held.
type Observer interface {
	// Acked is called after the topic's handler acked e.
	Acked(topic string, e eventstore.RecordedEvent)
	// Nacked is called for every nack of e; attempt counts deliveries of e, from 1.
	Nacked(topic string, e eventstore.RecordedEvent, attempt int)
	// StateChanged is called whenever a topic's State or Failure changes.
	StateChanged(st Status)
}

// ObserverFuncs is an Observer made of optional functions.
type ObserverFuncs struct {
	OnAcked        func(topic string, e eventstore.RecordedEvent)
	OnNacked       func(topic string, e eventstore.RecordedEvent, attempt int)
	OnStateChanged func(st Status)
}

// Acked implements Observer.
func (o ObserverFuncs) Acked(topic string, e eventstore.RecordedEvent) {
	if o.OnAcked != nil {
		o.OnAcked(topic, e)
	}
}

// Nacked implements Observer.
func (o ObserverFuncs) Nacked(topic string, e eventstore.RecordedEvent, attempt int) {
	if o.OnNacked != nil {
		o.OnNacked(topic, e, attempt)
	}
}

// StateChanged implements Observer.
func (o ObserverFuncs) StateChanged(st Status) {
	if o.OnStateChanged != nil {
		o.OnStateChanged(st)
	}
}

// State is the state of one topic.
type State string

const (
	// StateStarting: subscribed, the checkpoint not read yet.
	StateStarting State = "starting"
	// StateRunning: events are being delivered (or the topic waits for new ones).
	StateRunning State = "running"
	// StateUnavailable: the checkpoint could not be read or the store failed; the
	// subscriber tries again with backoff (reading the checkpoint, or resubscribing
	// after the last acked event) and returns to StateRunning once it reads again.
	StateUnavailable State = "unavailable"
	// StateHalted: an event was nacked (its handler failed after the router's retries);
	// the topic delivers nothing more until it is subscribed again. Failure says which
	// event and why. The state stays halted after the subscription ends.
	StateHalted State = "halted"
	// StateStopped: the subscription ended (Close, its context, or the store closed:
	// then Failure says so).
	StateStopped State = "stopped"
)

// Status describes one topic.
type Status struct {
	Topic string
	State State
	// Position is that of the last acked event; at start, the checkpoint.
	Position eventstore.Position
	// Acked counts the events acked since the subscription started.
	Acked uint64
	// Failure is set in StateHalted and StateUnavailable, and in StateStopped when the
	// store was closed; nil otherwise.
	Failure *Failure
}

// Failure says why a topic does not progress.
type Failure struct {
	// The event the topic is stuck at; zero when the failure is not an event's.
	Position  eventstore.Position
	EventID   string
	EventType string
	Stream    string
	Version   uint64
	// Attempts counts deliveries of the event.
	Attempts int
	// Err is the handler's last error (as recorded by CaptureError) or the store's.
	Err   error
	Since time.Time
}

func (f *Failure) Error() string {
	reason := f.Err.Error()
	// Recoverer's error carries the whole stack trace; the reason is the panic.
	var p middleware.RecoveredPanicError
	if errors.As(f.Err, &p) {
		reason = fmt.Sprintf("panic: %v", p.V)
	}
	if f.EventID == "" {
		return reason
	}
	return fmt.Sprintf("event %s (%s) at position %s, stream %s version %d, not applied after %d deliveries: %s",
		f.EventType, f.EventID, f.Position, f.Stream, f.Version, f.Attempts, reason)
}

// Unwrap returns Err.
func (f *Failure) Unwrap() error { return f.Err }

// ErrNackedWithoutError is the Failure's Err when a handler nacked an event without
// CaptureError having seen an error (a panic the router recovered itself, or a router
// without CaptureError).
var ErrNackedWithoutError = errors.New("message nacked; the handler's error was not captured (is source.CaptureError installed?)")

// Config configures a Subscriber.
type Config struct {
	// Store is the event log. Required.
	Store eventstore.Store
	// Checkpoint gives the position each topic starts after. Required; use FromStart
	// for read models rebuilt on every start.
	Checkpoint CheckpointFunc
	// Filters restricts a topic to some streams; a topic without one gets every event.
	Filters map[string]eventstore.Filter
	// Redeliveries is how many times a nacked event is delivered again before the topic
	// halts. The default 0 halts on the first nack: the router's Retry middleware has
	// already retried the handler by then.
	Redeliveries int
	// ReconnectDelay (default 100ms) is the first wait before reading the checkpoint
	// or resubscribing again after a failure; it doubles up to MaxReconnectDelay
	// (default 5s).
	ReconnectDelay    time.Duration
	MaxReconnectDelay time.Duration
	// Observer receives metrics hooks; optional.
	Observer Observer
	// Logger defaults to watermill.NopLogger.
	Logger watermill.LoggerAdapter
}

// Subscriber is a Watermill message.Subscriber over an eventstore.Store. Each topic is
// one store subscription; see the package documentation. One Subscriber serves many
// topics, but each topic at most once at a time.
type Subscriber struct {
	store        eventstore.Store
	checkpoint   CheckpointFunc
	redeliveries int
	reconnectMin time.Duration
	reconnectMax time.Duration
	observer     Observer
	logger       watermill.LoggerAdapter

	mu      sync.Mutex
	filters map[string]eventstore.Filter
	topics  map[string]*topicState
	closed  bool
	wg      sync.WaitGroup
}

type topicState struct {
	cancel context.CancelFunc // nil when not subscribed
	status Status
}

var _ message.Subscriber = (*Subscriber)(nil)

// Reconnection backoff defaults.
const (
	DefaultReconnectDelay    = 100 * time.Millisecond
	DefaultMaxReconnectDelay = 5 * time.Second
)

// NewSubscriber returns a Subscriber.
func NewSubscriber(cfg Config) (*Subscriber, error) {
	if cfg.Store == nil {
		return nil, errors.New("source: Config.Store is required")
	}
	if cfg.Checkpoint == nil {
		return nil, errors.New("source: Config.Checkpoint is required (source.FromStart starts at the beginning)")
	}
	if cfg.Redeliveries < 0 {
		return nil, errors.New("source: Config.Redeliveries is negative")
	}
	if cfg.Observer == nil {
		cfg.Observer = ObserverFuncs{}
	}
	if cfg.Logger == nil {
		cfg.Logger = watermill.NopLogger{}
	}
	if cfg.ReconnectDelay <= 0 {
		cfg.ReconnectDelay = DefaultReconnectDelay
	}
	if cfg.MaxReconnectDelay <= 0 {
		cfg.MaxReconnectDelay = DefaultMaxReconnectDelay
	}
	cfg.MaxReconnectDelay = max(cfg.MaxReconnectDelay, cfg.ReconnectDelay)
	s := &Subscriber{
		reconnectMin: cfg.ReconnectDelay,
		reconnectMax: cfg.MaxReconnectDelay,
		store:        cfg.Store,
		checkpoint:   cfg.Checkpoint,
		redeliveries: cfg.Redeliveries,
		observer:     cfg.Observer,
		logger:       cfg.Logger,
		filters:      map[string]eventstore.Filter{},
		topics:       map[string]*topicState{},
	}
	for t, f := range cfg.Filters {
		s.filters[t] = f
	}
	return s, nil
}

// SetFilter restricts topic to some streams from its next Subscribe on.
func (s *Subscriber) SetFilter(topic string, f eventstore.Filter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.filters[topic] = f
}

// Subscribe starts delivering topic's events after its checkpoint. It fails only when
// the subscriber is closed or topic is already subscribed: the checkpoint is read, and
// the store subscribed, in the background, again and again while they fail
// (StateUnavailable). The channel is closed when ctx ends, on Close, and when the store
// is closed. A topic that halted keeps its channel open (and silent) until then.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, fmt.Errorf("source: subscribe %s: subscriber %w", topic, eventstore.ErrClosed)
	}
	t := s.topics[topic]
	if t != nil && t.cancel != nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("source: topic %s is already subscribed", topic)
	}
	if t == nil {
		t = &topicState{}
		s.topics[topic] = t
	}
	filter := s.filters[topic]
	ctx, cancel := context.WithCancel(ctx)
	t.cancel = cancel
	s.wg.Add(1)
	s.mu.Unlock()

	s.setStatus(topic, func(st *Status) { *st = Status{State: StateStarting} }, true)
	out := make(chan *message.Message)
	go s.run(ctx, topic, filter, out)
	return out, nil
}

// Close ends every subscription, waits until their channels are closed, and refuses
// further subscriptions. It is safe to call more than once and from several
// goroutines (the router closes its subscriber once per handler).
func (s *Subscriber) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		for _, t := range s.topics {
			if t.cancel != nil {
				t.cancel()
			}
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// Status returns topic's status; false when it was never subscribed.
func (s *Subscriber) Status(topic string) (Status, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.topics[topic]
	if !ok {
		return Status{}, false
	}
	return t.status, true
}

// Statuses returns every topic's status, by topic name.
func (s *Subscriber) Statuses() []Status {
	s.mu.Lock()
	out := make([]Status, 0, len(s.topics))
	for _, t := range s.topics {
		out = append(out, t.status)
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Status) int {
		switch {
		case a.Topic < b.Topic:
			return -1
		case a.Topic > b.Topic:
			return 1
		}
		return 0
	})
	return out
}

// Healthy returns nil when no topic is halted or cut off from the store, and otherwise
// an error naming each such topic, the event it is stuck at and the reason (for
// /readyz).
func (s *Subscriber) Healthy() error {
	var errs []error
	for _, st := range s.Statuses() {
		if (st.State == StateHalted || st.State == StateUnavailable) && st.Failure != nil {
			errs = append(errs, fmt.Errorf("projection %s %s: %w", st.Topic, st.State, st.Failure))
		}
	}
	return errors.Join(errs...)
}

// setStatus changes topic's status under the lock and tells the observer when notify
// is set or the state or failure changed.
func (s *Subscriber) setStatus(topic string, change func(*Status), notify bool) {
	s.mu.Lock()
	t := s.topics[topic]
	before := t.status
	change(&t.status)
	t.status.Topic = topic
	after := t.status
	s.mu.Unlock()
	if notify || before.State != after.State || before.Failure != after.Failure {
		s.observer.StateChanged(after)
	}
}

// run is the delivery loop of one topic.
func (s *Subscriber) run(ctx context.Context, topic string, filter eventstore.Filter, out chan<- *message.Message) {
	defer s.wg.Done()
	defer close(out)
	defer func() {
		s.mu.Lock()
		t := s.topics[topic]
		t.cancel()
		t.cancel = nil
		s.mu.Unlock()
	}()
	var sub eventstore.Subscription
	defer func() {
		if sub != nil {
			_ = sub.Close()
		}
	}()

	var pos eventstore.Position // of the last acked event
	started := false            // the checkpoint was read
	delay := s.reconnectMin
	// retry records err, waits and reports whether to go on.
	retry := func(err error) bool {
		if ctx.Err() != nil {
			s.stopped(topic, nil)
			return false
		}
		if errors.Is(err, eventstore.ErrClosed) {
			s.stopped(topic, fmt.Errorf("source: topic %s: %w", topic, err))
			return false
		}
		s.logger.Error("Projection source unavailable, trying again", err, watermill.LogFields{"topic": topic, "after": pos.String(), "delay": delay})
		s.setStatus(topic, func(st *Status) {
			st.State = StateUnavailable
			st.Failure = &Failure{Err: err, Since: time.Now()}
		}, false)
		if !sleep(ctx, delay) {
			s.stopped(topic, nil)
			return false
		}
		delay = min(2*delay, s.reconnectMax)
		return true
	}
	for {
		if !started {
			after, err := s.checkpoint(ctx, topic)
			if err != nil {
				if !retry(fmt.Errorf("read checkpoint: %w", err)) {
					return
				}
				continue
			}
			pos, started = after, true
			s.setStatus(topic, func(st *Status) { st.Position = after }, false)
		}
		if sub == nil {
			var err error
			if sub, err = s.store.Subscribe(ctx, pos, filter); err != nil {
				sub = nil
				if !retry(fmt.Errorf("subscribe after position %s: %w", pos, err)) {
					return
				}
				continue
			}
			// Optimistic: an adapter may connect lazily, so Next can still fail and
			// make the topic unavailable again (the backoff keeps growing until an
			// event is read).
			s.setStatus(topic, func(st *Status) { st.State, st.Failure = StateRunning, nil }, false)
			s.logger.Info("Projection source subscribed", watermill.LogFields{"topic": topic, "after": pos.String()})
		}
		e, err := sub.Next(ctx)
		if err != nil {
			_ = sub.Close()
			sub = nil
			if !retry(fmt.Errorf("read after position %s: %w", pos, err)) {
				return
			}
			continue
		}
		delay = s.reconnectMin
		if !s.deliver(ctx, topic, e, out) {
			s.stopped(topic, nil) // deliver returns false only once ctx has ended
			return
		}
		pos = e.Position
	}
}

// deliver sends e until it is acked (true). It returns false when ctx ends, or, after
// the topic halted on a nack, when ctx ends.
func (s *Subscriber) deliver(ctx context.Context, topic string, e eventstore.RecordedEvent, out chan<- *message.Message) bool {
	for attempt := 1; ; attempt++ {
		slot := &errorSlot{}
		msg := newMessage(context.WithValue(ctx, errorSlotKey{}, slot), e)
		select {
		case out <- msg:
		case <-ctx.Done():
			return false
		}
		select {
		case <-msg.Acked():
			s.setStatus(topic, func(st *Status) {
				st.Position = e.Position
				st.Acked++
			}, false)
			s.observer.Acked(topic, e)
			return true
		case <-msg.Nacked():
			if ctx.Err() != nil {
				return false // the handler gave up because we are stopping
			}
			s.observer.Nacked(topic, e, attempt)
			if attempt <= s.redeliveries {
				continue
			}
			err := slot.get()
			if err == nil {
				err = ErrNackedWithoutError
			}
			f := &Failure{
				Position:  e.Position,
				EventID:   e.ID,
				EventType: e.Type,
				Stream:    e.Stream,
				Version:   e.Version,
				Attempts:  attempt,
				Err:       err,
				Since:     time.Now(),
			}
			s.logger.Error("Projection halted: event not applied", f, watermill.LogFields{"topic": topic, "position": e.Position.String(), "event_type": e.Type})
			s.setStatus(topic, func(st *Status) { st.State, st.Failure = StateHalted, f }, false)
			<-ctx.Done()
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// stopped records the end of a subscription; a halted topic stays halted.
func (s *Subscriber) stopped(topic string, err error) {
	s.setStatus(topic, func(st *Status) {
		if st.State == StateHalted {
			return
		}
		st.State = StateStopped
		st.Failure = nil
		if err != nil {
			st.Failure = &Failure{Err: err, Since: time.Now()}
		}
	}, false)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

type errorSlotKey struct{}

// errorSlot receives the error a delivery's handler finally failed with.
type errorSlot struct {
	mu  sync.Mutex
	err error
}

func (e *errorSlot) set(err error) {
	e.mu.Lock()
	e.err = err
	e.mu.Unlock()
}

func (e *errorSlot) get() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}

// CaptureError is a router middleware that hands the error a handler finally failed
// with to the Subscriber that delivered the message, so that a halted topic's Status
// says why. Add it before (outside) Retry and Recoverer; Router does.
func CaptureError(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		slot, _ := msg.Context().Value(errorSlotKey{}).(*errorSlot)
		out, err := h(msg)
		if err != nil && slot != nil {
			slot.set(err)
		}
		return out, err
	}
}
