package pipelines

// Cloud-bound sinks: every registered outbound publisher type becomes a
// sink type of the same name whose configuration is the publisher's fields
// plus the buffered-sink fields of engine/forward (edge, message_stream,
// buffer, forward). The sink appends to its durable buffer; a forwarder
// publishes the buffer through the publisher. Replay publishes through the
// same CloudSink, so a sink type resolves to the same publisher in a
// pipeline and in replay.
import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/forward"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/spec"
)

// CloudSink is a cloud-bound sink type: the component registered with the
// engine and the publisher its forwarder (or replay) publishes through.
type CloudSink struct {
	Component *engine.Component
	Publisher *outbound.Registration
}

// cloudSinks holds the cloud-bound sink types by name. It is written only
// by registerCloudSinks at init, so reads need no lock.
var cloudSinks = map[string]*CloudSink{}

// registerCloudSinks registers a sink type for every registered publisher.
func registerCloudSinks() error {
	for _, ps := range outbound.PublisherSpecs() {
		reg, ok := outbound.LookupPublisher(ps.Name)
		if !ok {
			return fmt.Errorf("pipelines: publisher %q vanished from the registry", ps.Name)
		}
		cs := &CloudSink{Publisher: reg}
		c := &engine.Component{Spec: CloudSpec(reg.Spec), Sink: cs.factory}
		if err := engine.Register(c); err != nil {
			return fmt.Errorf("pipelines: cloud sink: %w", err)
		}
		cs.Component = c
		cloudSinks[ps.Name] = cs
	}
	return nil
}

// LookupCloudSink returns the cloud-bound sink type of that name; false
// when no registered sink type of that name publishes to a broker.
func LookupCloudSink(name string) (*CloudSink, bool) {
	cs, ok := cloudSinks[name]
	return cs, ok
}

// CloudSinkNames returns the names of the cloud-bound sink types, sorted.
func CloudSinkNames() []string {
	out := make([]string, 0, len(cloudSinks))
	for n := range cloudSinks {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// UnknownCloudSinkError describes a sink type that does not publish to a
// broker.
func UnknownCloudSinkError(name string) string {
	return fmt.Sprintf("sink type %q does not publish to a broker (known: %s)", name, strings.Join(CloudSinkNames(), ", "))
}

// CloudSpec returns the sink spec of a publisher type: its fields followed
// by the common buffered-sink fields. A publisher field with the name of a
// common one makes the spec fail spec.Check, so registration refuses it.
func CloudSpec(ps spec.Spec) spec.Spec {
	s := ps
	s.Kind = spec.KindSink
	s.Fields = append(append([]spec.Field(nil), ps.Fields...), forward.Fields()...)
	s.Description = ps.Description + "\n\nThe sink appends rows to its durable buffer and returns (the source is " +
		"acknowledged once the rows are stored under `buffer.fsync`); a forwarder publishes the buffer with stable " +
		"message IDs, live rows first, retrying outages and dead-lettering messages the broker rejects permanently. " +
		"See docs/forwarding.md."
	return s
}

// NewPublisher builds the sink's publisher from a configuration parsed
// with the sink's spec (its TLS settings are checked by
// outbound.TLSConfig). With bc.DryRun the publisher checks its whole
// configuration and returns nil without connecting.
func (cs *CloudSink) NewPublisher(cfg *spec.Config, bc engine.BuildContext) (*outbound.Publisher, error) {
	return cs.Publisher.New(cfg, bc)
}

// factory is the sink's engine factory: the buffered sink of engine/forward
// in front of the publisher.
func (cs *CloudSink) factory(cfg *spec.Config, in *engine.Schema, bc engine.BuildContext) (engine.Sink, error) {
	name := cs.Publisher.Spec.Name
	opts, err := forward.FromConfig(cfg, in, bc)
	if err != nil {
		return nil, err
	}
	// With bc.DryRun the publisher checks its whole configuration,
	// URLs parsed as when it connects, and returns nil without
	// connecting: validate and run accept the same files.
	pub, err := cs.NewPublisher(cfg, bc)
	if err != nil {
		return nil, err
	}
	if bc.DryRun {
		// Checked, but neither the buffer nor the broker is opened.
		return dryRunSink{}, nil
	}
	if pub == nil {
		return nil, fmt.Errorf("publisher %q built nothing", name)
	}
	return forward.New(pub, opts)
}

// dryRunSink stands for a cloud sink in a pipeline built only to be checked.
type dryRunSink struct{}

func (dryRunSink) Write(_ context.Context, b engine.Batch) error {
	b.Release()
	return fmt.Errorf("sink built for validation only")
}

func (dryRunSink) Close(context.Context) error { return nil }
