// Package devsimtest starts simulated devices for tests.
package devsimtest

import (
	"context"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/connectors/devsim"
)

// connectWithin bounds the devices' connection to the broker.
const connectWithin = 30 * time.Second

// Answering starts the simulated devices of cfg answering the commands
// they are sent, and returns them; they stop when t ends.
func Answering(t testing.TB, cfg devsim.Config) *devsim.Sim {
	t.Helper()
	sim, err := devsim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), connectWithin)
	defer cancel()
	stop, err := sim.Answer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return sim
}
