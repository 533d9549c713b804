package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	natssink "github.com/sluice-edge/sluice/connectors/nats"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/spec"
	"github.com/sluice-edge/sluice/pipelines"
)

// TestReplaySinkResolution checks that replay resolves every sink type as
// the pipeline builder does: each cloud sink type to the registered sink
// component of that name and the publisher it wraps, every other sink type
// refused.
func TestReplaySinkResolution(t *testing.T) {
	pubs := outbound.PublisherSpecs()
	if len(pubs) < 6 {
		t.Fatalf("only %d publisher types registered", len(pubs))
	}
	for _, ps := range pubs {
		t.Run(ps.Name, func(t *testing.T) {
			cs, err := replaySink("test", ps.Name)
			if err != nil {
				t.Fatalf("replay refuses cloud sink %q: %v", ps.Name, err)
			}
			c, ok := engine.Lookup(spec.KindSink, ps.Name)
			if !ok || c != cs.Component {
				t.Errorf("pipeline sink %p, replay sink %p", c, cs.Component)
			}
			reg, _ := outbound.LookupPublisher(ps.Name)
			if reg == nil || reg != cs.Publisher {
				t.Errorf("registered publisher %p, replay publisher %p", reg, cs.Publisher)
			}
			if pc, ok := pipelines.LookupCloudSink(ps.Name); !ok || pc != cs {
				t.Errorf("pipelines cloud sink %p, replay %p", pc, cs)
			}
		})
	}
	for _, name := range engine.Names(spec.KindSink) {
		if _, ok := outbound.LookupPublisher(name); ok {
			continue
		}
		if _, err := replaySink("test", name); err == nil || !strings.Contains(err.Error(), "does not publish to a broker") {
			t.Errorf("replay to sink type %q: %v, want a refusal", name, err)
		}
	}
}

// TestReplaySinkChecks checks that a sink given on the command line and one
// given in a file are parsed and checked alike, as the pipeline's sink of
// that type is.
func TestReplaySinkChecks(t *testing.T) {
	dir := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tlsNoEnable := file("tls.yaml", "type: nats\nsubject: x\ntls: {ca_file: /nonexistent/ca.pem}\n")
	stdoutSink := file("stdout.yaml", "type: stdout\n")
	tests := []struct {
		name string
		file string
		typ  string
		sets []string
		want string
	}{
		{"unknown type", "", "nosuch", nil, `unknown sink type "nosuch"`},
		{"local sink type", "", "file", []string{"path=x"}, "does not publish to a broker"},
		{"local sink file", stdoutSink, "", nil, "does not publish to a broker"},
		{"tls without enabled (flags)", "", "nats", []string{"subject=x", "tls.ca_file=/nonexistent/ca.pem"}, "ignored without tls.enabled"},
		{"tls without enabled (file)", tlsNoEnable, "", nil, "ignored without tls.enabled"},
		{"unknown field", "", "nats", []string{"subject=x", "nosuchfield=1"}, "nosuchfield"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub, err := buildPublisher("", tt.file, "", tt.typ, tt.sets)
			if pub != nil {
				_ = pub.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("buildPublisher: %v, want an error with %q", err, tt.want)
			}
		})
	}
}

// TestReplayDataDirKey: --data-dir must hold the engine's message ID key
// (nats-msgid.key), which the replayed nats messages are signed with.
func TestReplayDataDirKey(t *testing.T) {
	dir := t.TempDir()
	if _, err := replayDataDir(dir); err == nil {
		t.Fatal("a data directory without a key was accepted")
	}
	if _, err := os.Stat(filepath.Join(dir, natssink.KeyFile)); err == nil {
		t.Fatal("replay created a key")
	}
	if _, err := natssink.LoadKey(dir); err != nil {
		t.Fatal(err)
	}
	if got, err := replayDataDir(dir); err != nil || got != dir {
		t.Fatalf("replayDataDir(%s) = %q, %v", dir, got, err)
	}
}
