//go:build !sluice_lean

package pipelines

// The components of the complete build that a lean edge build leaves out:
// the ONNX/tree-model inference step (tensor and linear-algebra libraries)
// and the publishers to Kafka, Redis, RabbitMQ and PostgreSQL. See
// builtin_lean.go.
import (
	_ "github.com/sluice-edge/sluice/connectors/amqp"
	_ "github.com/sluice-edge/sluice/connectors/kafka"
	_ "github.com/sluice-edge/sluice/connectors/postgres"
	_ "github.com/sluice-edge/sluice/connectors/redis"

	"github.com/sluice-edge/sluice/engine/spec"
	"github.com/sluice-edge/sluice/operators/infer"
)

// lean is false: the complete build.
const lean = false

// leftOut is empty: the complete build has every component.
var leftOut = map[spec.Kind][]string{}

// loadReleaseModel loads and checks a model of a release (see
// CheckReleaseModels).
func loadReleaseModel(dir, pdir, name, runtime string) error {
	_, err := infer.LoadReleaseModel(dir, pdir, name, runtime)
	return err
}
