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
	"fmt"
	"slices"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/spec"

	_ "github.com/sluice-edge/sluice/connectors/discard"
	_ "github.com/sluice-edge/sluice/connectors/file"
	_ "github.com/sluice-edge/sluice/connectors/modbus"
	_ "github.com/sluice-edge/sluice/connectors/mqtt"
	_ "github.com/sluice-edge/sluice/connectors/sim"
	_ "github.com/sluice-edge/sluice/connectors/stdout"
	_ "github.com/sluice-edge/sluice/operators/alert"
	_ "github.com/sluice-edge/sluice/operators/transform"
	_ "github.com/sluice-edge/sluice/operators/window"

	// Publishers, each a cloud-bound sink type.
	_ "github.com/sluice-edge/sluice/connectors/nats"
	_ "github.com/sluice-edge/sluice/connectors/webhook"
)

// The components a lean edge build (go build -tags sluice_lean, make
// lean) leaves out are imported by builtin_full.go; builtin_lean.go names
// them, so that a pipeline asking for one is told that this build does not
// include it rather than that the type is unknown.

// init runs after every imported package registered its components and
// publishers.
func init() {
	for kind, names := range leftOut {
		for _, n := range names {
			if _, ok := engine.Lookup(kind, n); ok {
				panic("pipelines: " + n + " is both built in and left out")
			}
		}
	}
	if err := registerCloudSinks(); err != nil {
		panic(err.Error())
	}
}

// leanLeftOut names the component types a lean edge build (-tags
// sluice_lean) does not include, sorted per kind: builtin_full.go imports
// them in the complete build.
var leanLeftOut = map[spec.Kind][]string{
	spec.KindStep: {"infer"},
	spec.KindSink: {"amqp", "kafka", "postgres", "redis"},
}

// Lean reports whether this is a lean edge build (-tags sluice_lean): one
// without the components and commands LeftOut lists.
func Lean() bool { return lean }

// LeftOut returns the type names of a kind that this build leaves out
// (none in the default build), sorted.
func LeftOut(kind spec.Kind) []string { return slices.Clone(leftOut[kind]) }

// notInThisBuild is the error for a component type this build leaves out;
// "" when the type is not one of them.
func notInThisBuild(kind spec.Kind, name string) string {
	if !slices.Contains(leftOut[kind], name) {
		return ""
	}
	return fmt.Sprintf("%s type %q is not included in this build of sluice (a lean edge build, -tags sluice_lean); use the complete build (make build)", kind, name)
}
