package pipelines

// Cloud-bound sinks: every registered outbound publisher type becomes a
// sink type of the same name whose configuration is the publisher's fields
// plus the buffered-sink fields of engine/forward (edge, message_stream,
// buffer, forward). The sink appends to its durable buffer; a forwarder
// publishes the buffer through the publisher.
import (
	"context"
	"fmt"

	_ "github.com/sluice-edge/sluice/connectors/amqp"
	_ "github.com/sluice-edge/sluice/connectors/kafka"
	_ "github.com/sluice-edge/sluice/connectors/nats"
	_ "github.com/sluice-edge/sluice/connectors/postgres"
	_ "github.com/sluice-edge/sluice/connectors/redis"
	_ "github.com/sluice-edge/sluice/connectors/webhook"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/forward"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/spec"
)

// init runs after every imported package registered its publishers.
func init() {
	for _, ps := range outbound.PublisherSpecs() {
		engine.RegisterSink(CloudSpec(ps), cloudFactory(ps.Name))
	}
}

// CloudSpec returns the sink spec of a publisher type: its fields followed
// by the common buffered-sink fields. It panics when a publisher declares a
// field with the name of a common one.
func CloudSpec(ps spec.Spec) spec.Spec {
	s := ps
	s.Kind = spec.KindSink
	s.Fields = append([]spec.Field(nil), ps.Fields...)
	for _, f := range forward.Fields() {
		if _, dup := ps.Field(f.Name); dup {
			panic(fmt.Sprintf("pipelines: publisher %q declares %q, a buffered-sink field", ps.Name, f.Name))
		}
		s.Fields = append(s.Fields, f)
	}
	s.Description = ps.Description + "\n\nThe sink appends rows to its durable buffer and returns (the source is " +
		"acknowledged once the rows are stored under `buffer.fsync`); a forwarder publishes the buffer with stable " +
		"message IDs, live rows first, retrying outages and dead-lettering messages the broker rejects permanently. " +
		"See docs/forwarding.md."
	return s
}

func cloudFactory(name string) engine.SinkFactory {
	return func(cfg *spec.Config, in *engine.Schema, bc engine.BuildContext) (engine.Sink, error) {
		reg, ok := outbound.LookupPublisher(name)
		if !ok {
			return nil, fmt.Errorf("publisher %q is not registered", name)
		}
		opts, err := forward.FromConfig(cfg, in, bc)
		if err != nil {
			return nil, err
		}
		if err := checkTLS(cfg, bc); err != nil {
			return nil, err
		}
		// With bc.DryRun the publisher checks its whole configuration,
		// URLs parsed as when it connects, and returns nil without
		// connecting: validate and run accept the same files.
		pub, err := reg.New(cfg, bc)
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
}

// dryRunSink stands for a cloud sink in a pipeline built only to be checked.
type dryRunSink struct{}

func (dryRunSink) Write(_ context.Context, b engine.Batch) error {
	b.Release()
	return fmt.Errorf("sink built for validation only")
}

func (dryRunSink) Close(context.Context) error { return nil }

// checkTLS refuses TLS settings that would be ignored (the tls block
// applies only with enabled: true, so a ca_file or insecure_skip_verify
// without it would silently connect without them), and warns when a
// connection will not verify the server's certificate.
func checkTLS(cfg *spec.Config, bc engine.BuildContext) error {
	t := cfg.Object("tls")
	if t == nil {
		return nil
	}
	if !t.Bool("enabled") {
		for _, name := range []string{"ca_file", "cert_file", "key_file", "server_name", "insecure_skip_verify"} {
			if t.Has(name) {
				return t.Errorf(name, "tls.%s is ignored without tls.enabled: true; enable TLS or remove it", name)
			}
		}
		return nil
	}
	if t.Bool("insecure_skip_verify") && !bc.DryRun && bc.Log != nil {
		bc.Log.Warn("TLS without verifying the server's certificate (tls.insecure_skip_verify): anyone on the path can read and change the traffic")
	}
	return nil
}
