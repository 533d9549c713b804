package pipelines

// The built-in components register themselves when imported; importing
// pipelines makes all of them available.
import (
	_ "github.com/sluice-edge/sluice/connectors/discard"
	_ "github.com/sluice-edge/sluice/connectors/file"
	_ "github.com/sluice-edge/sluice/connectors/mqtt"
	_ "github.com/sluice-edge/sluice/connectors/sim"
	_ "github.com/sluice-edge/sluice/connectors/stdout"
	_ "github.com/sluice-edge/sluice/operators/alert"
	_ "github.com/sluice-edge/sluice/operators/transform"
	_ "github.com/sluice-edge/sluice/operators/window"
)
