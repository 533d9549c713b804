// Package pipelines turns pipeline files into running graphs: it loads YAML
// files and directories, interpolates ${VAR} and ${VAR:-default}, checks the
// structure (component types, stream references, cycles, schemas) reporting
// every problem as file:line:col, builds the components through the engine
// registry, and runs the resulting graphs.
//
// A file holds one pipeline at its top level, or several under a
// `pipelines:` list:
//
//	name: windfarm
//	batch: {size: 1024, linger: 5ms}
//	sources:
//	  turbines: {type: sim, turbines: 100}
//	steps:
//	  stats:  {type: window, input: turbines, size: 1m, aggregates: {power: [avg, max]}}
//	  alerts: {type: alert, input: stats, rules: [...]}
//	sinks:
//	  out: {type: stdout, inputs: [alerts]}
//
// Streams are named after the component that produces them; a step's side
// outputs are named "step.port" (for example "clean.errors" or "stats.late").
package pipelines
