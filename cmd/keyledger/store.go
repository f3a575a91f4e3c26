package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/eventstore/embedded"
	"github.com/keyledger/keyledger/eventstore/esdb"
)

// openRawStore opens EventStoreDB when a URL is configured, else the embedded store in
// the data directory. verify makes the embedded store check every page of its file
// before opening (slow on a large log: for operators' checks, not for start-up).
func openRawStore(ctx context.Context, cfg *Config, log *slog.Logger, verify bool) (eventstore.Store, error) {
	if cfg.ESDBURL != "" {
		return esdb.Open(ctx, cfg.ESDBURL, esdb.WithLogger(log))
	}
	if err := cfg.prepareDataDir(); err != nil {
		return nil, err
	}
	return embedded.Open(ctx, cfg.DataDir, embedded.WithQuickCheck(verify))
}

// openRedis builds a client for the configured Redis URL (already validated).
func openRedis(rawURL string) (*redis.Client, error) {
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis-url: %w", err)
	}
	return redis.NewClient(opts), nil
}

// redisPinger adapts a Redis client to api.Pinger.
type redisPinger struct{ c *redis.Client }

func (p redisPinger) Ping(ctx context.Context) error { return p.c.Ping(ctx).Err() }
