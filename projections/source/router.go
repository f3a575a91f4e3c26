package source

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/keyledger/keyledger/eventstore"
)

// RetryConfig bounds the router's Retry middleware. Zero fields take the defaults.
type RetryConfig struct {
	// MaxRetries is how often a failed handler is run again (default 5; negative: never).
	MaxRetries int
	// InitialInterval is the first wait (default 50ms); each next one is Multiplier
	// (default 2) times longer, up to MaxInterval (default 2s).
	InitialInterval time.Duration
	MaxInterval     time.Duration
	Multiplier      float64
}

// Retry defaults.
const (
	DefaultMaxRetries      = 5
	DefaultInitialInterval = 50 * time.Millisecond
	DefaultMaxInterval     = 2 * time.Second
	DefaultMultiplier      = 2.0
)

func (c RetryConfig) withDefaults() RetryConfig {
	switch {
	case c.MaxRetries == 0:
		c.MaxRetries = DefaultMaxRetries
	case c.MaxRetries < 0:
		c.MaxRetries = 0
	}
	if c.InitialInterval <= 0 {
		c.InitialInterval = DefaultInitialInterval
	}
	if c.MaxInterval <= 0 {
		c.MaxInterval = DefaultMaxInterval
	}
	if c.Multiplier <= 0 {
		c.Multiplier = DefaultMultiplier
	}
	return c
}

// RouterConfig configures a Router.
type RouterConfig struct {
	// Store and Checkpoint are those of the Subscriber (see Config). Required.
	Store      eventstore.Store
	Checkpoint CheckpointFunc
	// Topic maps a handler group's name to its subscriber topic (the name passed to
	// Checkpoint). Default: the group name itself.
	Topic func(group string) string
	// Retry bounds the Retry middleware.
	Retry RetryConfig
	// Redeliveries, ReconnectDelay, MaxReconnectDelay: see Config.
	Redeliveries      int
	ReconnectDelay    time.Duration
	MaxReconnectDelay time.Duration
	// Marshaler defaults to Marshaler(): events name their store type with EventType.
	Marshaler cqrs.CommandEventMarshaler
	// Observer receives metrics hooks; optional.
	Observer Observer
	// Logger defaults to watermill.NopLogger.
	Logger watermill.LoggerAdapter
	// CloseTimeout bounds how long Close waits for running handlers (Watermill's
	// default, 30s, when zero).
	CloseTimeout time.Duration
}

// Router is a Watermill router fed by a Subscriber, with one cqrs handler group per
// read model. Its middleware, outermost first: CaptureError, CorrelationID, Retry
// (bounded, exponential backoff; a Permanent error is not retried), Recoverer.
type Router struct {
	router    *message.Router
	processor *cqrs.EventGroupProcessor
	sub       *Subscriber
	marshaler cqrs.CommandEventMarshaler
	topic     func(string) string

	mu      sync.Mutex
	topics  map[string]string // topic → group
	started bool              // Run was called
	failed  bool              // Run failed to start the handlers
	closed  bool
}

// NewRouter builds the router, its middleware, the subscriber and the event group
// processor (AckOnUnknownEvent: an event no handler of the group wants is acked and
// skipped).
func NewRouter(cfg RouterConfig) (*Router, error) {
	if cfg.Logger == nil {
		cfg.Logger = watermill.NopLogger{}
	}
	if cfg.Marshaler == nil {
		cfg.Marshaler = Marshaler()
	}
	if cfg.Topic == nil {
		cfg.Topic = func(group string) string { return group }
	}
	sub, err := NewSubscriber(Config{
		Store:             cfg.Store,
		Checkpoint:        cfg.Checkpoint,
		Redeliveries:      cfg.Redeliveries,
		ReconnectDelay:    cfg.ReconnectDelay,
		MaxReconnectDelay: cfg.MaxReconnectDelay,
		Observer:          cfg.Observer,
		Logger:            cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	mr, err := message.NewRouter(message.RouterConfig{CloseTimeout: cfg.CloseTimeout}, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("source: router: %w", err)
	}
	retry := cfg.Retry.withDefaults()
	mr.AddMiddleware(
		CaptureError,
		middleware.CorrelationID,
		middleware.Retry{
			MaxRetries:          retry.MaxRetries,
			InitialInterval:     retry.InitialInterval,
			MaxInterval:         retry.MaxInterval,
			Multiplier:          retry.Multiplier,
			ResetContextOnRetry: true,
			ShouldRetry: func(p middleware.RetryParams) bool {
				var perm *permanentError
				return !errors.As(p.Err, &perm)
			},
			Logger: cfg.Logger,
		}.Middleware,
		middleware.Recoverer,
	)
	topic := cfg.Topic
	proc, err := cqrs.NewEventGroupProcessorWithConfig(mr, cqrs.EventGroupProcessorConfig{
		GenerateSubscribeTopic: func(p cqrs.EventGroupProcessorGenerateSubscribeTopicParams) (string, error) {
			return topic(p.EventGroupName), nil
		},
		SubscriberConstructor: func(cqrs.EventGroupProcessorSubscriberConstructorParams) (message.Subscriber, error) {
			return sub, nil
		},
		AckOnUnknownEvent: true,
		Marshaler:         cfg.Marshaler,
		Logger:            cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("source: event group processor: %w", err)
	}
	return &Router{
		router:    mr,
		processor: proc,
		sub:       sub,
		marshaler: cfg.Marshaler,
		topic:     topic,
		topics:    map[string]string{},
	}, nil
}

// AddGroup registers a read model: one handler group named group (a constant: it is
// the router handler's name and, through RouterConfig.Topic, the checkpoint's topic)
// reading the streams filter selects (the zero Filter: all), with its handlers. Every
// handler's event type must have a name under the marshaler (an EventType method with
// the default one). Add groups before Run; a group added to a running router starts
// with Message().RunHandlers.
func (r *Router) AddGroup(group string, filter eventstore.Filter, handlers ...cqrs.GroupEventHandler) error {
	if group == "" {
		return errors.New("source: empty group name")
	}
	if len(handlers) == 0 {
		return fmt.Errorf("source: group %s has no handlers", group)
	}
	for i, h := range handlers {
		if r.marshaler.Name(h.NewEvent()) == "" {
			return fmt.Errorf("source: group %s handler %d: event type %T has no name (does it implement EventType?)", group, i, h.NewEvent())
		}
	}
	topic := r.topic(group)
	r.mu.Lock()
	defer r.mu.Unlock()
	if other, ok := r.topics[topic]; ok {
		return fmt.Errorf("source: groups %s and %s share topic %s", other, group, topic)
	}
	r.sub.SetFilter(topic, filter)
	if err := r.processor.AddHandlersGroup(group, handlers...); err != nil {
		return fmt.Errorf("source: add group %s: %w", group, err)
	}
	r.topics[topic] = group
	return nil
}

// Run runs the router until Close or until ctx ends (see message.Router.Run). A group
// whose checkpoint cannot be read, or whose store subscription fails, does not fail
// Run: it is StateUnavailable (Healthy says why) and tries again with backoff.
func (r *Router) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.closed || r.started {
		r.mu.Unlock()
		return errors.New("source: router already ran or is closed")
	}
	r.started = true
	r.mu.Unlock()
	err := r.router.Run(ctx)
	if err != nil {
		r.mu.Lock()
		r.failed = true
		r.mu.Unlock()
		_ = r.sub.Close()
	}
	return err
}

// Running is closed once the router runs.
func (r *Router) Running() chan struct{} { return r.router.Running() }

// Close stops the router and the subscriber (waiting for running handlers up to
// CloseTimeout).
func (r *Router) Close() error {
	r.mu.Lock()
	r.closed = true
	started, failed := r.started, r.failed
	r.mu.Unlock()
	var err error
	// Watermill's Close waits for every added handler to finish, also for handlers
	// that never started: close only a router that started them.
	if started && !failed {
		err = r.router.Close()
	}
	return errors.Join(err, r.sub.Close())
}

// Status returns the status of group's topic; false before it was subscribed.
func (r *Router) Status(group string) (Status, bool) { return r.sub.Status(r.topic(group)) }

// Healthy is the subscriber's Healthy: nil unless a read model is halted or cut off.
func (r *Router) Healthy() error { return r.sub.Healthy() }

// Subscriber returns the router's subscriber.
func (r *Router) Subscriber() *Subscriber { return r.sub }

// Message returns the underlying Watermill router (for more middleware or plugins).
func (r *Router) Message() *message.Router { return r.router }

// Permanent marks err as not worth retrying: the Retry middleware gives up at once and
// the topic halts at the event. Use it for errors no retry can fix (an event the read
// model cannot make sense of).
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }
