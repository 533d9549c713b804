//go:build !sluice_lean

package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/hub/store"
)

// Backoff of the hub's wait for PostgreSQL: the first wait, doubling up
// to the most.
const (
	hubRetryMin = time.Second
	hubRetryMax = 30 * time.Second
)

// openHubStore opens the hub's store, waiting with backoff while
// PostgreSQL cannot be reached (or refuses, or the migrations fail) and
// logging each failure. It returns ctx's error when ctx ends first, and
// at once a DSN it cannot parse.
func openHubStore(ctx context.Context, log *slog.Logger, dsn string, opts store.Options) (*store.Store, error) {
	wait := hubRetryMin
	for attempt := 1; ; attempt++ {
		st, err := store.Open(ctx, dsn, opts)
		if err == nil {
			if attempt > 1 {
				log.Info("hub: PostgreSQL ready", "attempts", attempt)
			}
			return st, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, store.ErrBadDSN) {
			return nil, err
		}
		log.Warn("hub: waiting for PostgreSQL", "err", err, "attempt", attempt, "retry_in", wait.String())
		if !engine.Sleep(ctx, wait) {
			return nil, ctx.Err()
		}
		wait = min(2*wait, hubRetryMax)
	}
}
