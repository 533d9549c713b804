package pipelines_test

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/bundle"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
	"github.com/sluice-edge/sluice/pipelines"
)

// needMosquitto skips the test when the machine's Mosquitto
// (127.0.0.1:1883) is unreachable, and fails it on CI.
func needMosquitto(t *testing.T) {
	t.Helper()
	c, err := net.DialTimeout("tcp", "127.0.0.1:1883", time.Second)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Mosquitto on 127.0.0.1:1883: %v", err)
		}
		t.Skipf("needs Mosquitto on 127.0.0.1:1883: %v", err)
	}
	c.Close()
}

// buildBundle signs the release in dir with key as bundle file out, of
// release name and version.
func buildBundle(t *testing.T, out, dir, name string, version uint64, key ed25519.PrivateKey) {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bundle.Build(f, dir, bundle.BuildOptions{Name: name, Version: version, Key: key}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// startAgent starts a runtime on dir/data and an edge agent that applies
// to it the bundles signed by the key pub; the agent is closed when the
// test ends.
func startAgent(t *testing.T, dir, edge string, pub ed25519.PublicKey) (*pipelines.Runtime, *agent.Agent) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	rt := pipelines.NewRuntime(pipelines.Options{DataDir: filepath.Join(dir, "data"), Edge: edge, Log: log})
	a, err := agent.Open(agent.Options{Dir: filepath.Join(dir, "data", "agent"), Edge: edge, Trust: bundle.NewTrust(pub), Log: log},
		pipelines.NewAgentRunner(rt, os.LookupEnv, nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if _, err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return rt, a
}

// waitFeedsSubscribed waits until n MQTT sources named feed of rt's
// pipelines have connected, failing the test after 20 seconds.
func waitFeedsSubscribed(t *testing.T, rt *pipelines.Runtime, n int) {
	t.Helper()
	outboundtest.Eventually(t, 20*time.Second, "the MQTT sources to subscribe", func() bool {
		subscribed := 0
		for _, p := range rt.Pipelines() {
			for _, b := range p.Components {
				if b.Def.Name == "feed" && b.Def.Type == "mqtt" && b.Counters.Counter("connects").Load() > 0 {
					subscribed++
				}
			}
		}
		return subscribed >= n
	})
}
