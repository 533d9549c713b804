package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"regexp"
	"time"

	"github.com/sluice-edge/sluice/pipelines"
)

// Defaults of the hub demo.
const (
	defaultDemoPostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	defaultDemoSchema   = "sluice_demo"
	// demoBundle is the release line of the demo.
	demoBundle = "turbines"
)

// demoSchema matches the schemas the demo may drop and create: its own.
var demoSchema = regexp.MustCompile(`^sluice_demo(_[a-z0-9_]{1,51})?$`)

// hubDemoOptions configure runHubDemo.
type hubDemoOptions struct {
	// Postgres is the DSN of the hub's database; Schema the schema the
	// demo resets and uses.
	Postgres, Schema string
	// Outage is how long the cut edge stays cut after the second release
	// reached the other edge.
	Outage time.Duration
	// Wait bounds each wait for the hub to see a step's outcome.
	Wait time.Duration
	// Rate is the readings per second of each edge's farm.
	Rate int
}

// envKey is the context key of an environment override (withEnv).
type envKey struct{}

// withEnv returns ctx carrying env: an edge agent started with it looks
// variables up there first, then in the process's environment. The demo
// runs several edges in one process, each with its own variables.
func withEnv(ctx context.Context, env map[string]string) context.Context {
	return context.WithValue(ctx, envKey{}, env)
}

// envOf returns the variable lookup of an edge agent run with ctx.
func envOf(ctx context.Context) pipelines.LookupEnv {
	if ctx == nil {
		return os.LookupEnv
	}
	env, _ := ctx.Value(envKey{}).(map[string]string)
	if env == nil {
		return os.LookupEnv
	}
	return func(k string) (string, bool) {
		if v, ok := env[k]; ok {
			return v, true
		}
		return os.LookupEnv(k)
	}
}

// randomToken returns 32 random bytes in hex.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}
