package engine

import (
	"context"
	"log/slog"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine/control"
	"github.com/sluice-edge/sluice/engine/spec"
)

// BuildContext is what a constructor receives besides its configuration.
type BuildContext struct {
	// Pipeline and Name identify the component ("pipeline/name") in logs
	// and metrics.
	Pipeline string
	Name     string
	// Dir is the directory of the pipeline file; relative paths in the
	// configuration are resolved against it.
	Dir string
	// DataDir is the directory where components keep durable state (the
	// buffers of cloud-bound sinks live in DataDir/<pipeline>/<sink>).
	DataDir string
	// Edge identifies this engine instance in outgoing message IDs.
	Edge string
	// DryRun is set when the pipeline is built only to be checked (sluice
	// validate): constructors validate their configuration but open no
	// files, directories or connections.
	DryRun bool
	// Batch is the pipeline's batch policy.
	Batch BatchPolicy
	// Mem allocates Arrow memory; tests pass a checked allocator.
	Mem memory.Allocator
	// Log is the component's logger.
	Log *slog.Logger
	// Counters holds the component's counters (rows in, bad rows, late rows, ...).
	Counters *Counters
	// Shared holds what the components built together for one run share
	// (the route of engine alerts, a default disk quota). Nil gives every
	// component its own.
	Shared *Shared
	// FromStart tells sources that can resume (see Resumer) to forget
	// their recorded position and read their input from its start.
	FromStart bool
	// Resuming is set for the steps and sinks of a pipeline one of whose
	// sources resumes an interrupted run (see Resumer): a sink that would
	// replace its output continues it instead.
	Resuming bool
	// Catalog holds the thing models and assets of the release the
	// pipeline belongs to (its models/ files), or is nil outside a
	// release. Components read it with assets.FromContext.
	Catalog Catalog
	// Commands, when set, is the edge's command arbiter (engine/control):
	// a sink that commands devices submits its commands to it rather than
	// sending them itself, so that every command takes the one arbitrated
	// path. Nil outside an edge with a control section.
	Commands control.Submitter
	// RuleSets are the rule sets of the release (its rules/ files) by
	// name, or nil outside a release.
	RuleSets map[string]*RuleSet
	// InputKeyOrdered is set for a step whose input is in event-time order
	// per key: one stream, the main output of a step that says so
	// (KeyOrdered). A step that orders its rows by event time can skip it.
	InputKeyOrdered bool
	// Release names the release the pipeline belongs to as
	// "<bundle name> v<version>", or is "" (outside a release, or in one
	// being checked before it has a name).
	Release string
	// ReleaseDir is the directory of the release the pipeline belongs to
	// (where its bundle was unpacked, or the directory sluice validate
	// checks), or "" outside a release. A component that reads a file of
	// the release (an infer step's model) resolves it inside ReleaseDir
	// and refuses a path that leaves it.
	ReleaseDir string
	// Checkpoints is set for the components of a pipeline that takes
	// checkpoints (see Checkpoint): a sink that implements Committer holds
	// its output back until Commit.
	Checkpoints bool
	// FS, when not nil, is the file system (an engine/buffer/disk.FS) that
	// holds the pipeline's durable state: the buffers of cloud-bound sinks,
	// the ingest logs of live sources and the checkpoints; nil is the
	// operating system's. It is a test seam: crash tests pass an
	// engine/buffer/faultfs.FS to drop the writes a power loss takes
	// back. It is typed any because package disk builds on this one.
	FS any
}

// FileDependent is implemented by components built from files besides
// their configuration (an infer step's model file). FilesDigest identifies
// the contents of those files as they were read when the component was
// built: a release switch rebuilds a component whose digest changed even
// when its configuration did not.
type FileDependent interface {
	FilesDigest() string
}

// KeyOrdered is implemented by operators that emit the rows of some output
// ports in event-time order per key (a window step's windows).
type KeyOrdered interface {
	// KeyOrderedPort reports whether the rows of output port are in
	// event-time order per key.
	KeyOrderedPort(port int) bool
}

// Catalog is the thing models and assets a release ships. Its
// implementation is *assets.Catalog, which this package cannot name
// (engine/assets builds on it); assets.FromContext returns it.
type Catalog interface {
	// ModelIDs lists the ids of the catalog's models.
	ModelIDs() []string
}

// RuleSet is a named list of rules shipped with a release
// (rules/<name>.yaml), which steps include by name. Each rule is a
// configuration parsed against the fields of an alert rule, located in the
// rule set's file.
type RuleSet struct {
	// Name is the file's base name without extension.
	Name string
	// File is the rule set's file, relative to the release directory.
	File string
	// Model applies to the rules that do not name one ("" for none);
	// ModelPos locates it.
	Model    string
	ModelPos spec.Pos
	// Version is the version the file declares ("" for none); VersionPos
	// locates it. See EffectiveVersion.
	Version    string
	VersionPos spec.Pos
	Rules      []*spec.Config
}

// EffectiveVersion is the version the alerts raised by the set's rules
// name: the declared Version, else the set's file in the release that
// ships it ("windfarm v7 rules/turbine.yaml"), else, in a release that has
// no name yet (one being checked), the file alone.
func (rs *RuleSet) EffectiveVersion(release string) string {
	switch {
	case rs.Version != "":
		return rs.Version
	case release != "":
		return release + " " + rs.File
	}
	return rs.File
}

// ValueRange is the range of valid values of a numeric column: a value
// below Min or above Max (or NaN) is out of range. Point names the thing
// model's point the range comes from, for error reasons.
type ValueRange struct {
	Column   string
	Point    string
	Min, Max float64
}

// RangedSource is implemented by sources whose rows must be checked
// against value ranges (a schema built from a thing model with ranges
// routed): a pipeline sends the rows with a value out of range to the
// source's errors port. Ranges returns nil when nothing is checked.
type RangedSource interface {
	Ranges() []ValueRange
}

// Resumer is implemented by sources that can go on where an earlier run
// stopped; Resuming reports whether this run does.
type Resumer interface {
	Resuming() bool
}

// Emit hands a record to the next components. It blocks while they are busy
// (backpressure) and returns an error once the pipeline is stopping, in which
// case the record has been released. ack, when not nil, completes once every
// effect of the record is durable in a sink or deliberately dropped (see
// Ack); sources that need no acknowledgement pass nil.
type Emit func(rec arrow.RecordBatch, ack *Ack) error

// Source produces record batches.
//
// Run produces batches until its input ends (returning nil) or ctx is
// cancelled (returning nil or ctx.Err()). It must flush rows it has built
// before returning so that a graceful stop loses nothing. Run is called
// once.
type Source interface {
	// Schema is the schema of every record the source emits.
	Schema() *Schema
	Run(ctx context.Context, emit Emit) error
}

// Port is a named output of an operator. Port 0 is the main output and has
// an empty name; side outputs are addressed as "step.name" in pipelines
// (for example "clean.errors" or "stats.late").
type Port struct {
	Name   string
	Schema *Schema
}

// PortEmit hands a batch to the components reading the given output port
// of an operator. Ownership of b.Rec passes to the callee.
type PortEmit func(port int, b Batch) error

// Operator transforms batches of one input schema into batches on its output
// ports. An operator is driven by one goroutine: Process, Flush and Close are
// never called concurrently.
type Operator interface {
	// Outputs lists the output ports; index 0 is the main output.
	Outputs() []Port
	// Process consumes one batch. It owns b.Rec and must release it or emit
	// it. A bad row never makes Process fail: it is counted and routed to an
	// error port. An error from Process stops the pipeline.
	Process(b Batch, emit PortEmit) error
	// Flush emits everything the operator still holds (open windows, pending
	// alerts) at end of input or on graceful shutdown.
	Flush(emit PortEmit) error
	// Close releases resources. It is idempotent.
	Close() error
}

// Sink consumes batches.
type Sink interface {
	// Write consumes one batch and owns b.Rec.
	Write(ctx context.Context, b Batch) error
	// Close flushes what the sink holds and releases it. It is idempotent.
	Close(ctx context.Context) error
}

// SourceFactory builds a source from its validated configuration.
type SourceFactory func(cfg *spec.Config, bc BuildContext) (Source, error)

// OperatorFactory builds an operator for the given input schema.
type OperatorFactory func(cfg *spec.Config, in *Schema, bc BuildContext) (Operator, error)

// SinkFactory builds a sink for the given input schema.
type SinkFactory func(cfg *spec.Config, in *Schema, bc BuildContext) (Sink, error)

// LiveSource is implemented by sources that read data as devices report it,
// as opposed to replaying files or simulating: a pipeline checks their event
// times against the engine's clock (its event_time policy). History names a
// bool column whose true rows are history sent late on purpose (exempt from
// the bound on the past), or is empty.
type LiveSource interface {
	Live() (live bool, history string)
}
