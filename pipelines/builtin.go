package pipelines

// The built-in components: this is the one list of them. Each package
// below registers its sources, steps, sinks or publishers with the engine
// registry (or the publisher registry of engine/outbound) in its init
// function; init below then registers a cloud-bound sink for every
// publisher (see cloud.go). Every command (run, validate, replay, docs,
// schema, bench) and every other program building pipelines gets exactly
// these components by importing this package, so all of them build
// pipelines through the same registry.
//
// Registration is checked once, by engine.Register (the spec passes
// spec.Check, so no field is named type, input or inputs; the name is not
// yet registered for its kind): a refused component is a programmer error
// and panics at init, before the program does anything.
import (
	_ "github.com/sluice-edge/sluice/connectors/discard"
	_ "github.com/sluice-edge/sluice/connectors/file"
	_ "github.com/sluice-edge/sluice/connectors/modbus"
	_ "github.com/sluice-edge/sluice/connectors/mqtt"
	_ "github.com/sluice-edge/sluice/connectors/sim"
	_ "github.com/sluice-edge/sluice/connectors/stdout"
	_ "github.com/sluice-edge/sluice/operators/alert"
	_ "github.com/sluice-edge/sluice/operators/infer"
	_ "github.com/sluice-edge/sluice/operators/transform"
	_ "github.com/sluice-edge/sluice/operators/window"

	// Publishers, each a cloud-bound sink type.
	_ "github.com/sluice-edge/sluice/connectors/amqp"
	_ "github.com/sluice-edge/sluice/connectors/kafka"
	_ "github.com/sluice-edge/sluice/connectors/nats"
	_ "github.com/sluice-edge/sluice/connectors/postgres"
	_ "github.com/sluice-edge/sluice/connectors/redis"
	_ "github.com/sluice-edge/sluice/connectors/webhook"
)

// init runs after every imported package registered its components and
// publishers.
func init() {
	if err := registerCloudSinks(); err != nil {
		panic(err.Error())
	}
}
