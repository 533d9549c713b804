package pipelines_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/spec"
	"github.com/sluice-edge/sluice/pipelines"
)

// TestBuiltinComponents lists the registered components: every kind has
// its built-in types, and every component passes the registration check
// (spec.Check, no field named type, input or inputs, its kind's factory).
func TestBuiltinComponents(t *testing.T) {
	want := map[spec.Kind][]string{
		spec.KindSource: {"file", "mqtt", "sim"},
		spec.KindStep:   {"alert", "filter", "infer", "map", "window"},
		spec.KindSink:   {"amqp", "discard", "file", "http", "kafka", "modbus", "mqtt", "nats", "postgres", "redis", "stdout"},
	}
	for _, kind := range engine.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			names := engine.Names(kind)
			for _, n := range want[kind] {
				if !slices.Contains(names, n) {
					t.Errorf("%s type %q is not registered (have %v)", kind, n, names)
				}
			}
			for _, c := range engine.Components(kind) {
				if c.Spec.Kind != kind {
					t.Errorf("%s %q is registered as a %s", c.Spec.Kind, c.Spec.Name, kind)
				}
				if err := c.Check(); err != nil {
					t.Errorf("%s %q: %v", kind, c.Spec.Name, err)
				}
				if err := c.Spec.Check(); err != nil {
					t.Errorf("%s %q: spec: %v", kind, c.Spec.Name, err)
				}
			}
		})
	}
}

// TestCloudSinkRegistry checks that the cloud-bound sink types are exactly
// the publisher types, each the registered sink component of its name
// wrapping the registered publisher of its name.
func TestCloudSinkRegistry(t *testing.T) {
	var pubs []string
	for _, ps := range outbound.PublisherSpecs() {
		pubs = append(pubs, ps.Name)
	}
	if got := pipelines.CloudSinkNames(); !slices.Equal(got, pubs) {
		t.Fatalf("cloud sinks %v, publishers %v", got, pubs)
	}
	for _, name := range pubs {
		cs, ok := pipelines.LookupCloudSink(name)
		if !ok {
			t.Fatalf("no cloud sink %q", name)
		}
		if c, _ := engine.Lookup(spec.KindSink, name); c == nil || c != cs.Component {
			t.Errorf("%s: registered sink %p, cloud sink's component %p", name, c, cs.Component)
		}
		if reg, _ := outbound.LookupPublisher(name); reg == nil || reg != cs.Publisher {
			t.Errorf("%s: registered publisher %p, cloud sink's publisher %p", name, reg, cs.Publisher)
		}
	}
	for _, name := range []string{"file", "stdout", "discard", "mqtt", "nosuch"} {
		if _, ok := pipelines.LookupCloudSink(name); ok {
			t.Errorf("%q is a cloud sink", name)
		}
	}
}

// TestCloudSpecClash checks that a publisher declaring a buffered-sink
// field makes a spec that registration refuses.
func TestCloudSpecClash(t *testing.T) {
	s := pipelines.CloudSpec(spec.Spec{Name: "clash", Fields: []spec.Field{{Name: "buffer", Type: spec.String, Optional: true}}})
	err := engine.Register(&engine.Component{Spec: s, Sink: func(*spec.Config, *engine.Schema, engine.BuildContext) (engine.Sink, error) {
		return nil, nil
	}})
	if err == nil || !strings.Contains(err.Error(), "declared twice") {
		t.Fatalf("registering a cloud spec declaring buffer twice: %v", err)
	}
	if _, ok := engine.Lookup(spec.KindSink, "clash"); ok {
		t.Fatal("the refused sink is registered")
	}
}
