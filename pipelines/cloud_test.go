package pipelines_test

import (
	"testing"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/forward"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/spec"
	"github.com/sluice-edge/sluice/pipelines"
)

// TestCloudSinks checks that every publisher type is a sink type with the
// publisher's fields and the buffered-sink fields, and a valid spec.
func TestCloudSinks(t *testing.T) {
	pubs := outbound.PublisherSpecs()
	if len(pubs) < 6 {
		t.Fatalf("only %d publisher types registered", len(pubs))
	}
	for _, ps := range pubs {
		c, ok := engine.Lookup(spec.KindSink, ps.Name)
		if !ok || c.Sink == nil {
			t.Errorf("publisher %q has no sink type", ps.Name)
			continue
		}
		if err := c.Spec.Check(); err != nil {
			t.Errorf("%s: %v", ps.Name, err)
		}
		for _, f := range append(ps.Fields, forward.Fields()...) {
			if _, ok := c.Spec.Field(f.Name); !ok {
				t.Errorf("sink %s lacks field %q", ps.Name, f.Name)
			}
		}
	}
	if s := pipelines.CloudSpec(pubs[0]); s.Kind != spec.KindSink {
		t.Errorf("kind %q", s.Kind)
	}
}
