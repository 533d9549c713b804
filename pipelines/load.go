package pipelines

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/bundle"
	"github.com/sluice-edge/sluice/engine/eventtime"
	"github.com/sluice-edge/sluice/engine/spec"
)

// Def is one pipeline as written in a file, checked for structure but not
// yet built.
type Def struct {
	Name        string
	Description string
	File        string
	// Dir is the directory of File; relative paths resolve against it.
	Dir   string
	Pos   spec.Pos
	Batch engine.BatchPolicy
	// EventTime is the policy applied to the event times of its sources.
	EventTime EventTimePolicy
	// Checkpoint is the pipeline's checkpoint policy, or nil when it takes
	// no checkpoints.
	Checkpoint *CheckpointPolicy

	Sources []*ComponentDef
	Steps   []*ComponentDef
	Sinks   []*ComponentDef

	// Release is the release the pipeline belongs to (set by
	// LoadRelease), whose models and rule sets its components are built
	// with; nil for pipelines given on the command line.
	Release *Release
}

// MaxComponents bounds the sources, the steps and the sinks of one pipeline
// (each): every component costs memory and goroutines when built, so that a
// file of a few thousand tiny components would cost gigabytes.
const MaxComponents = 256

// CheckpointPolicy makes a pipeline take checkpoints (see
// engine.Checkpoint): Interval apart, with the input of its live sources
// kept in an ingest log forced to disk per IngestFsync.
type CheckpointPolicy struct {
	Interval    time.Duration
	IngestFsync buffer.FsyncPolicy
}

// Bounds of checkpoint.interval.
const (
	minCheckpointInterval = 10 * time.Millisecond
	maxCheckpointInterval = time.Hour
)

// EventTimePolicy bounds the event times of a pipeline's sources (see
// eventtime.Policy): MaxFuture and MaxPast apply to live sources, or to
// every source when All is set; zero sets no bound.
type EventTimePolicy struct {
	MaxFuture, MaxPast time.Duration
	All                bool
}

// ComponentDef is one source, step or sink of a pipeline.
type ComponentDef struct {
	Kind    spec.Kind
	Name    string
	Type    string
	Pos     spec.Pos // position of the component's mapping
	NamePos spec.Pos // position of its name
	TypePos spec.Pos
	Inputs  []InputRef
	Node    *yaml.Node
	Comp    *engine.Component
	Config  *spec.Config
	// Invalid is set when the configuration itself has errors (already
	// reported by Load); building skips the component.
	Invalid bool
	// reported are the positions of the errors Load reported.
	reported []spec.Pos
}

// InputRef is a reference to a stream: "component" or "component.port".
type InputRef struct {
	Stream string
	Pos    spec.Pos
}

// PipelineSpec declares the fields of a pipeline. Its sources, steps and
// sinks are mappings from component name to component configuration; each
// has a `type` and, for steps and sinks, `input` or `inputs`.
var PipelineSpec = spec.Spec{
	Name:    "pipeline",
	Summary: "A pipeline: named sources, steps and sinks wired by stream names.",
	Fields: []spec.Field{
		{Name: "name", Type: spec.String, Optional: true, Description: "Pipeline name, unique among the files loaded together; it names the pipeline's directory under the data directory, so it may not contain a slash nor be `agent`, `control`, `health`, `hub` or `logs`, where the engine keeps its own state. Defaults to the file name without extension.", Example: "windfarm"},
		{Name: "description", Type: spec.String, Optional: true, Description: "Free text shown in logs and docs."},
		{Name: "batch", Type: spec.Object, Optional: true, Description: "When sources flush the rows they have built into a batch.", Children: []spec.Field{
			{Name: "size", Type: spec.Int, Default: engine.DefaultBatchPolicy.Size, Description: "Rows per batch (flush when this many rows are pending).", Example: 1024},
			{Name: "linger", Type: spec.Duration, Default: engine.DefaultBatchPolicy.Linger.String(), Description: "Longest time a pending row waits before its batch is flushed.", Example: "5ms"},
		}},
		{Name: "event_time", Type: spec.Object, Optional: true, Description: "Which event times sources may produce. Rows of live sources (mqtt) further ahead of the engine's clock than max_future, or further behind than max_past, go to the source's `errors` port (`<source>.errors`) with the reason, counted as future_time_rows and past_time_rows; rows flagged as history (EnOS resume topics) are exempt from max_past. Times outside years 0001-9999 are refused from every source (out_of_range_rows).", Children: []spec.Field{
			{Name: "max_future", Type: spec.Duration, Default: eventtime.DefaultMaxFuture.String(), Description: "Furthest an event time may be ahead of the engine's clock; 0 sets no bound.", Example: "2m"},
			{Name: "max_past", Type: spec.Duration, Default: eventtime.DefaultMaxPast.String(), Description: "Furthest an event time may be behind the engine's clock (history rows exempt); 0 sets no bound.", Example: "168h"},
			{Name: "sources", Type: spec.String, Default: "live", Enum: []string{"live", "all"}, Description: "The sources the bounds apply to: `live` (sources reading devices as they report: mqtt) or `all` (file and sim sources too, for replays of recent data)."},
		}},
		{Name: "checkpoint", Type: spec.Object, Optional: true, Description: "Durable operator state: the pipeline takes a checkpoint of its open windows, alert states and source positions every `interval` and on a graceful stop, keeps the input of its live sources (mqtt) in an ingest log until a checkpoint covers it, and holds the output of its cloud sinks back until the checkpoint covering it is on disk, so that after kill -9 or a power loss it continues exactly where the last checkpoint left it: no window or alert lost, no output delivered twice. Costs up to one interval of delivery latency. See docs/guarantees.md.", Children: []spec.Field{
			{Name: "interval", Type: spec.Duration, Default: engine.DefaultCheckpointInterval.String(), Description: "Time between two checkpoints (10ms to 1h); cloud sinks deliver a row once the checkpoint after it is on disk.", Example: "5s"},
			{Name: "ingest_fsync", Type: spec.String, Default: "always", Enum: []string{"always", "interval", "none"}, Description: "When the ingest log of a live source is forced to disk. `always`: before the sender is acknowledged (survives power loss); `interval`: every 100ms (a power loss can lose up to 100ms of acknowledged input); `none`: left to the operating system."},
		}},
		{Name: "sources", Type: spec.Map, Elem: spec.Any, Optional: true, Description: "Required. Sources by name. Each has a `type` and that type's fields.", Example: map[string]any{"turbines": map[string]any{"type": "sim", "turbines": 100}}},
		{Name: "steps", Type: spec.Map, Elem: spec.Any, Optional: true, Description: "Steps by name. Each has a `type`, an `input` (or `inputs`) naming the streams it reads, and that type's fields."},
		{Name: "sinks", Type: spec.Map, Elem: spec.Any, Optional: true, Description: "Required. Sinks by name. Each has a `type`, an `input` (or `inputs`) and that type's fields."},
	},
}

// Load reads pipeline files. A directory stands for every *.yaml and *.yml
// file in it (not recursive). Variables are interpolated from env. Every
// problem found is returned; the pipelines that were read are returned too.
func Load(paths []string, env LookupEnv) ([]*Def, spec.Errors) {
	if env == nil {
		env = os.LookupEnv
	}
	var files []string
	var errs spec.Errors
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			errs = append(errs, spec.Errorf(spec.Pos{File: p}, "%v", unwrapPathErr(err)))
			continue
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			errs = append(errs, spec.Errorf(spec.Pos{File: p}, "%v", unwrapPathErr(err)))
			continue
		}
		n := len(files)
		for _, e := range entries {
			if !e.IsDir() && bundle.IsYAML(e.Name()) {
				files = append(files, filepath.Join(p, e.Name()))
			}
		}
		if len(files) == n {
			errs = append(errs, spec.Errorf(spec.Pos{File: p}, "directory holds no .yaml or .yml files"))
		}
	}
	var defs []*Def
	for _, f := range files {
		data, err := spec.ReadConfigFile(f, spec.MaxPipelineBytes)
		if err != nil {
			errs = append(errs, spec.Errorf(spec.Pos{File: f}, "%v", unwrapPathErr(err)))
			continue
		}
		ds, es := Parse(f, data, env)
		defs = append(defs, ds...)
		errs = append(errs, es...)
	}
	seen := map[string]*Def{}
	for _, d := range defs {
		if prev, dup := seen[d.Name]; dup {
			errs = append(errs, spec.Errorf(d.Pos, "pipeline %q is also defined at %s", d.Name, prev.Pos))
			continue
		}
		seen[d.Name] = d
	}
	errs.Sort()
	return defs, errs
}

// LoadFS is Load over a file system (for example embedded examples). Paths
// in the pipelines resolve against dir on disk.
func LoadFS(fsys fs.FS, name, dir string, env LookupEnv) ([]*Def, spec.Errors) {
	data, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, spec.Errors{spec.Errorf(spec.Pos{File: name}, "%v", err)}
	}
	defs, errs := Parse(name, data, env)
	for _, d := range defs {
		d.Dir = dir
	}
	return defs, errs
}

func unwrapPathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Parse reads the pipelines of one file's contents.
func Parse(file string, data []byte, env LookupEnv) ([]*Def, spec.Errors) {
	if env == nil {
		env = os.LookupEnv
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var defs []*Def
	var errs spec.Errors
	for doc := 0; ; doc++ {
		var root yaml.Node
		err := dec.Decode(&root)
		if errors.Is(err, io.EOF) {
			if doc == 0 {
				errs = append(errs, spec.Errorf(spec.Pos{File: file, Line: 1, Col: 1}, "file is empty"))
			}
			break
		}
		if err != nil {
			errs = append(errs, yamlError(file, err))
			break
		}
		if es := Interpolate(file, &root, env); len(es) > 0 {
			errs = append(errs, es...)
			continue
		}
		if es := checkKeys(file, &root); len(es) > 0 {
			errs = append(errs, es...)
			continue
		}
		n := spec.Resolve(&root)
		if n == nil {
			continue
		}
		if n.Kind != yaml.MappingNode {
			errs = append(errs, spec.Errorf(nodePos(file, n), "expected a pipeline mapping, got %s", describe(n)))
			continue
		}
		if list := mapValue(n, "pipelines"); list != nil {
			if len(n.Content) != 2 {
				errs = append(errs, spec.Errorf(nodePos(file, n), "a file with `pipelines:` holds nothing else"))
			}
			list = spec.Resolve(list)
			if list.Kind != yaml.SequenceNode {
				errs = append(errs, spec.Errorf(nodePos(file, list), "`pipelines` must be a list of pipelines"))
				continue
			}
			for i, item := range list.Content {
				d, es := parseDef(file, spec.Resolve(item), fmt.Sprintf("%s-%d", baseName(file), i+1))
				errs = append(errs, es...)
				if d != nil {
					defs = append(defs, d)
				}
			}
			continue
		}
		name := baseName(file)
		if doc > 0 {
			name = fmt.Sprintf("%s-%d", name, doc+1)
		}
		d, es := parseDef(file, n, name)
		errs = append(errs, es...)
		if d != nil {
			defs = append(defs, d)
		}
	}
	return defs, errs
}

func baseName(file string) string {
	b := filepath.Base(file)
	return strings.TrimSuffix(b, filepath.Ext(b))
}

func yamlError(file string, err error) *spec.Error {
	// yaml.v3 reports "yaml: line N: message".
	msg := err.Error()
	var line int
	if _, e := fmt.Sscanf(msg, "yaml: line %d:", &line); e == nil {
		if i := strings.Index(msg, ": "); i >= 0 {
			if j := strings.Index(msg[i+2:], ": "); j >= 0 {
				msg = msg[i+2+j+2:]
			}
		}
		return spec.Errorf(spec.Pos{File: file, Line: line, Col: 1}, "invalid YAML: %s", msg)
	}
	return spec.Errorf(spec.Pos{File: file, Line: 1, Col: 1}, "invalid YAML: %s", strings.TrimPrefix(msg, "yaml: "))
}

func nodePos(file string, n *yaml.Node) spec.Pos {
	return spec.Pos{File: file, Line: n.Line, Col: n.Column}
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

// mapValue returns the value of key in mapping n as the component
// configurations read it (see spec.MappingValue).
func mapValue(n *yaml.Node, key string) *yaml.Node { return spec.MappingValue(n, key) }

func isMerge(k *yaml.Node) bool { return spec.IsMerge(k) }

// checkKeys reports every key defined twice in one mapping of the tree (YAML
// forbids it; a decoder would silently keep one of them). Merged entries
// may repeat a key: the mapping's own entry wins.
func checkKeys(file string, n *yaml.Node) spec.Errors {
	var errs spec.Errors
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n == nil {
			return
		}
		if n.Kind == yaml.MappingNode {
			seen := map[string]*yaml.Node{}
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				if k.Kind != yaml.ScalarNode {
					continue
				}
				if prev, dup := seen[k.Value]; dup {
					what := fmt.Sprintf("key %q", k.Value)
					if isMerge(k) {
						what = "merge key <<"
					}
					errs = append(errs, spec.Errorf(nodePos(file, k), "%s is already defined in this mapping at line %d, column %d", what, prev.Line, prev.Column))
					continue
				}
				seen[k.Value] = k
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(n)
	return errs
}

// reservedNames are the directories the engine keeps directly under a data
// directory, beside the pipelines' (<data_dir>/<pipeline>): the edge
// agent's releases and reports (agent), the control arbiter's log
// (control), the health alerts' state (health), the hub uplink's buffers
// (hub) and the log files (logs).
var reservedNames = []string{"agent", "control", "health", "hub", "logs"}

// ReservedNames returns the names no pipeline may take: those of the
// directories the engine keeps beside the pipelines' in a data directory.
func ReservedNames() []string { return slices.Clone(reservedNames) }

// checkName refuses a pipeline name that is not one plain directory name
// under the data directory or that is reserved (case-insensitively, for
// file systems that ignore case).
func checkName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("pipeline name %q is not a usable directory name", name)
	case strings.ContainsAny(name, "/\\\x00"):
		return fmt.Errorf("pipeline name %q must not contain a slash, a backslash or NUL (it names the pipeline's directory under the data directory)", name)
	}
	for _, r := range reservedNames {
		if strings.EqualFold(name, r) {
			return fmt.Errorf("pipeline name %q is reserved: the engine keeps its own state in <data_dir>/%s; the reserved names are %s", name, r, strings.Join(reservedNames, ", "))
		}
	}
	return nil
}

func parseDef(file string, n *yaml.Node, defaultName string) (*Def, spec.Errors) {
	cfg, errs := PipelineSpec.Parse(file, n, "sources", "steps", "sinks")
	d := &Def{
		Name:        cfg.String("name"),
		Description: cfg.String("description"),
		File:        file,
		Dir:         filepath.Dir(file),
		Pos:         nodePos(file, n),
		Batch:       engine.DefaultBatchPolicy,
	}
	if d.Name == "" {
		d.Name = defaultName
	}
	if err := checkName(d.Name); err != nil {
		if cfg.String("name") != "" {
			errs = append(errs, cfg.Errorf("name", "%v", err))
		} else {
			errs = append(errs, spec.Errorf(d.Pos, "%v (the name comes from the file name: give the pipeline a `name`)", err))
		}
	}
	if b := cfg.Object("batch"); b != nil {
		d.Batch = engine.BatchPolicy{Size: int(b.Int("size")), Linger: b.Duration("linger")}
		if d.Batch.Size <= 0 || d.Batch.Size > 1<<20 {
			errs = append(errs, b.Errorf("size", "batch size must be between 1 and %d, got %d", 1<<20, d.Batch.Size))
		}
		if d.Batch.Linger <= 0 || d.Batch.Linger > time.Minute {
			errs = append(errs, b.Errorf("linger", "batch linger must be between 1ns and 1m, got %s", d.Batch.Linger))
		}
		d.Batch = d.Batch.Normalize()
	}
	d.EventTime = EventTimePolicy{MaxFuture: eventtime.DefaultMaxFuture, MaxPast: eventtime.DefaultMaxPast}
	if et := cfg.Object("event_time"); et != nil {
		d.EventTime = EventTimePolicy{MaxFuture: et.Duration("max_future"), MaxPast: et.Duration("max_past"), All: et.String("sources") == "all"}
		if d.EventTime.MaxFuture < 0 {
			errs = append(errs, et.Errorf("max_future", "max_future must not be negative, got %s", d.EventTime.MaxFuture))
		}
		if d.EventTime.MaxPast < 0 {
			errs = append(errs, et.Errorf("max_past", "max_past must not be negative, got %s", d.EventTime.MaxPast))
		}
	}
	if cp := cfg.Object("checkpoint"); cp != nil {
		d.Checkpoint = &CheckpointPolicy{Interval: cp.Duration("interval")}
		if d.Checkpoint.Interval < minCheckpointInterval || d.Checkpoint.Interval > maxCheckpointInterval {
			errs = append(errs, cp.Errorf("interval", "checkpoint interval must be between %s and %s, got %s", minCheckpointInterval, maxCheckpointInterval, d.Checkpoint.Interval))
		}
		var err error
		if d.Checkpoint.IngestFsync, err = buffer.ParseFsyncPolicy(cp.String("ingest_fsync")); err != nil {
			errs = append(errs, cp.Errorf("ingest_fsync", "%v", err))
		}
	}
	sections := []struct {
		key  string
		kind spec.Kind
		dst  *[]*ComponentDef
	}{
		{"sources", spec.KindSource, &d.Sources},
		{"steps", spec.KindStep, &d.Steps},
		{"sinks", spec.KindSink, &d.Sinks},
	}
	names := map[string]spec.Pos{}
	for _, s := range sections {
		m := mapValue(n, s.key)
		if m == nil {
			if s.kind != spec.KindStep {
				errs = append(errs, spec.Errorf(d.Pos, "pipeline %q has no %s", d.Name, s.key))
			}
			continue
		}
		m = spec.Resolve(m)
		if m.Kind != yaml.MappingNode {
			errs = append(errs, spec.Errorf(nodePos(file, m), "`%s` must be a mapping from name to component", s.key))
			continue
		}
		if len(m.Content) == 0 && s.kind != spec.KindStep {
			errs = append(errs, spec.Errorf(nodePos(file, m), "pipeline %q has no %s", d.Name, s.key))
		}
		if n := len(m.Content) / 2; n > MaxComponents {
			errs = append(errs, spec.Errorf(nodePos(file, m), "pipeline %q has %d %s, more than %d: split it into several pipelines", d.Name, n, s.key, MaxComponents))
			continue
		}
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, v := m.Content[i], spec.Resolve(m.Content[i+1])
			if isMerge(k) {
				errs = append(errs, spec.Errorf(nodePos(file, k), "a merge key (<<) cannot stand for %s: name each one (merge keys work inside a component's configuration)", s.key))
				continue
			}
			if prev, dup := names[k.Value]; dup {
				errs = append(errs, spec.Errorf(nodePos(file, k), "name %q is already used at %s", k.Value, prev))
				continue
			}
			names[k.Value] = nodePos(file, k)
			if strings.ContainsAny(k.Value, ". \t") || k.Value == "" {
				errs = append(errs, spec.Errorf(nodePos(file, k), "component name %q must be non-empty and contain no dots or spaces", k.Value))
				continue
			}
			if strings.EqualFold(k.Value, checkpointsDir) { // as pipeline names (checkName)
				errs = append(errs, spec.Errorf(nodePos(file, k), "component name %q is reserved: the pipeline keeps its checkpoints in the directory of that name beside its components' (<data_dir>/%s/%s)", k.Value, d.Name, checkpointsDir))
				continue
			}
			c, es := parseComponent(file, s.kind, k, v, false)
			errs = append(errs, es...)
			if c != nil {
				*s.dst = append(*s.dst, c)
			}
		}
	}
	return d, errs
}

// parseComponent reads the component named key. A lone component (a sink
// configuration outside any pipeline) needs no input.
func parseComponent(file string, kind spec.Kind, key, n *yaml.Node, lone bool) (*ComponentDef, spec.Errors) {
	c := &ComponentDef{Kind: kind, Name: key.Value, NamePos: nodePos(file, key), Node: n}
	if n == nil || n.Kind != yaml.MappingNode {
		return nil, spec.Errors{spec.Errorf(nodePos(file, key), "%s %q must be a mapping with a `type`", kind, key.Value)}
	}
	c.Pos = nodePos(file, n)
	var errs spec.Errors
	t := mapValue(n, "type")
	if t == nil {
		return nil, spec.Errors{spec.Errorf(c.Pos, "%s %q has no `type` (known: %s)", kind, c.Name, strings.Join(engine.Names(kind), ", "))}
	}
	c.Type, c.TypePos = t.Value, nodePos(file, t)
	comp, ok := engine.Lookup(kind, c.Type)
	if !ok {
		if msg := notInThisBuild(kind, c.Type); msg != "" {
			return nil, spec.Errors{spec.Errorf(c.TypePos, "%s", msg)}
		}
		return nil, spec.Errors{spec.Errorf(c.TypePos, "%s", engine.UnknownTypeError(kind, c.Type))}
	}
	c.Comp = comp
	in, ins := mapValue(n, "input"), mapValue(n, "inputs")
	switch {
	case kind == spec.KindSource:
		for _, k := range []string{"input", "inputs"} {
			if v := mapValue(n, k); v != nil {
				errs = append(errs, spec.Errorf(nodePos(file, v), "a source reads no streams: remove `%s`", k))
			}
		}
	case in != nil && ins != nil:
		errs = append(errs, spec.Errorf(nodePos(file, ins), "set `input` or `inputs`, not both"))
	case in == nil && ins == nil:
		if !lone {
			errs = append(errs, spec.Errorf(c.Pos, "%s %q has no `input` (the stream it reads)", kind, c.Name))
		}
	default:
		ref := in
		if ref == nil {
			ref = ins
		}
		ref = spec.Resolve(ref)
		switch ref.Kind {
		case yaml.ScalarNode:
			c.Inputs = append(c.Inputs, InputRef{Stream: ref.Value, Pos: nodePos(file, ref)})
		case yaml.SequenceNode:
			for _, item := range ref.Content {
				item = spec.Resolve(item)
				if item.Kind != yaml.ScalarNode || item.Value == "" {
					errs = append(errs, spec.Errorf(nodePos(file, item), "an input is a stream name"))
					continue
				}
				c.Inputs = append(c.Inputs, InputRef{Stream: item.Value, Pos: nodePos(file, item)})
			}
			if len(ref.Content) == 0 {
				errs = append(errs, spec.Errorf(nodePos(file, ref), "`inputs` is empty"))
			}
		default:
			errs = append(errs, spec.Errorf(nodePos(file, ref), "an input is a stream name or a list of stream names"))
		}
	}
	cfg, es := comp.Spec.Parse(file, n, "type", "input", "inputs")
	errs = append(errs, es...)
	c.Config = cfg
	c.Invalid = len(es) > 0
	for _, e := range es {
		c.reported = append(c.reported, e.Pos)
	}
	return c, errs
}

// Streams lists the stream names a def's components produce, sorted.
func (d *Def) Streams() []string {
	var out []string
	for _, s := range d.Sources {
		out = append(out, s.Name)
	}
	for _, s := range d.Steps {
		out = append(out, s.Name)
	}
	slices.Sort(out)
	return out
}
