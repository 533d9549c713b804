package window

import (
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/eventtime"
	"github.com/sluice-edge/sluice/engine/spec"
)

// Window kinds.
const (
	Tumbling = "tumbling"
	Hopping  = "hopping"
	Session  = "session"
)

// GlobalKey is the value of the key field that puts every row in one group.
const GlobalKey = "none"

// LatePort is the index of the "late" output port.
const LatePort = 1

// maxPanes bounds the panes (gcd(size, step) slices) per hopping window.
const maxPanes = 1024

// Spec declares the "window" step.
var Spec = spec.Spec{
	Name:    "window",
	Summary: "Event-time window statistics per key: tumbling, hopping or session windows with incremental aggregates.",
	Description: `Groups rows by key and event time and emits one row per key and window when the watermark passes
the window's end. The watermark of each source follows its keys: it is the event time that the
` + "`watermark_keys`" + `-th most advanced key of the source has reached (by default the second, so that one device
whose clock runs ahead cannot make every other device's rows late), counting only keys seen among the source's
last ` + "`watermark_idle_rows`" + ` rows (so that a device that went silent holds no window open). The step's
watermark is the smallest of the sources' minus ` + "`lateness`" + `. Rows whose windows have all closed, rows without
an event time and rows whose event time is outside years 0001-9999 go to the ` + "`late`" + ` port (counted as
late_rows, null_time_rows and out_of_range_rows), as do rows of keys beyond ` + "`max_keys`" + ` or longer than
` + "`max_key_bytes`" + ` (key_limit_rows, long_key_rows); no row is dropped silently.

Output columns: window_start (the output's time field), window_end, the key column (omitted when key is none),
count (rows of the key in the window), then <field>_<function> for every aggregate: int64 for count, float64
otherwise. Nulls are skipped; an aggregate over no values is null, stddev over fewer than two values is null.

sum, avg and stddev are computed from exactly rounded sums, so results are bit-identical for any batch size and
any arrival order within the allowed lateness. first and last are the values at the smallest and largest event
time; rows sharing that time are ordered by value (IEEE 754 total order), so arrival order never matters.
pNN is the nearest-rank quantile estimated by a log-linear sketch with 128 buckets per power of two: the result
is within a relative error of 2^-8 (0.39%) of the exact quantile for normal values, and within [min, max].

Windows closed by one watermark advance are emitted sorted by (window_end, window_start, key); for tumbling and
hopping windows, whose sizes are equal, that is (window_start, key).`,
	Fields: []spec.Field{
		{Name: "kind", Type: spec.String, Default: Tumbling, Enum: []string{Tumbling, Hopping, Session},
			Description: "Window kind: tumbling (fixed, non-overlapping), hopping (size, advancing by step) or session (per key, closed after gap without rows).",
			Example:     Tumbling},
		{Name: "size", Type: spec.Duration, Optional: true,
			Description: "Window length (tumbling and hopping; required for them). Whole milliseconds.",
			Example:     "1m"},
		{Name: "step", Type: spec.Duration, Optional: true,
			Description: "Hop between window starts (hopping; required). 0 < step <= size; a step that divides size is cheapest.",
			Example:     "10s"},
		{Name: "gap", Type: spec.Duration, Optional: true,
			Description: "Session gap (session; required): rows of a key closer than gap belong to one session; a session closes when the watermark reaches its last row plus gap.",
			Example:     "30s"},
		{Name: "offset", Type: spec.Duration, Default: "0s",
			Description: "Alignment of tumbling and hopping windows: window starts are offset + k*step from the Unix epoch (k*size for tumbling).",
			Example:     "15s"},
		{Name: "key", Type: spec.String, Optional: true,
			Description: "String field to group by. Defaults to the input stream's key field; \"none\" (or no key field) gives one global group.",
			Example:     "asset"},
		{Name: "lateness", Type: spec.Duration, Default: "0s",
			Description: "Allowed lateness: the watermark trails the smallest per-source maximum event time by this much, so rows up to lateness out of order still count.",
			Example:     "5s"},
		{Name: "watermark_keys", Type: spec.Int, Default: eventtime.DefaultWatermarkKeys, Advanced: true,
			Description: "The watermark of a source follows its k-th most advanced key (1 to 16): with 2, one key whose event times run ahead of the others closes no window of another key. 1 follows the largest event time of any key.",
			Example:     3},
		{Name: "watermark_idle_rows", Type: spec.Int, Default: eventtime.DefaultWatermarkIdleRows, Advanced: true,
			Description: "A key counts for the watermark while it had a row among the last this many rows of its source; then the next most advanced keys decide, so that a key that went silent holds no window open.",
			Example:     10000},
		{Name: "max_keys", Type: spec.Int, Default: 100000, Advanced: true,
			Description: "Most keys the step keeps state for. Rows of a new key beyond it go to the late port (counted as key_limit_rows) until keys that went idle are forgotten, which happens once the watermark has passed two window lengths (gaps) plus lateness beyond their last window.",
			Example:     1000000},
		{Name: "max_key_bytes", Type: spec.Int, Default: 256, Advanced: true,
			Description: "Longest key in bytes. Rows with a longer key go to the late port (counted as long_key_rows).",
			Example:     1024},
		{Name: "late_alert", Type: spec.Float, Default: 0.1, Advanced: true,
			Description: "Raise an engine alert (rule late_rows, to the sinks that carry alerts, and a WARN line) when at least this share of a block of 1,000 rows arrives after its windows closed; it clears when the share falls below half of it. 0 turns it off.",
			Example:     0.05},
		{Name: "aggregates", Type: spec.Map, Elem: spec.Any, Optional: true,
			Description: "Map from input field name to a list of functions: count, sum, avg, min, max, stddev (sample), first, last, and quantiles p1..p99 or p999 (nearest rank, relative error <= 2^-8 = 0.39%). Numeric functions accept int64 and float64 fields and compute in float64; count accepts any field.",
			Example:     map[string]any{"power": []string{"avg", "min", "max", "stddev", "p95"}, "wind_speed": []string{"avg"}}},
	},
	Example: `stats:
  type: window
  input: turbines
  kind: tumbling
  size: 1m
  lateness: 5s
  aggregates:
    power: [avg, min, max, stddev, p95]
    wind_speed: [avg]`,
}

func init() {
	engine.RegisterOperator(Spec, func(cfg *spec.Config, in *engine.Schema, bc engine.BuildContext) (engine.Operator, error) {
		return New(cfg, in, bc)
	})
}

type op uint8

const (
	opCount op = iota
	opSum
	opAvg
	opMin
	opMax
	opStddev
	opFirst
	opLast
	opQuantile
)

// aggFn is one output column of a field.
type aggFn struct {
	op       op
	num, den uint64 // quantile num/den
	col      int    // output column
}

// fieldPlan is the configuration of one aggregated input field.
type fieldPlan struct {
	col   int // input column
	name  string
	typ   engine.Type
	funcs []aggFn
}

// plan is a validated configuration.
type plan struct {
	kind                              string
	size, step, gap, offset, lateness int64 // milliseconds
	wmKeys                            int   // watermark_keys
	maxKeys, maxKeyBytes              int
	lateAlert                         float64
	wmIdle                            int64 // watermark_idle_rows
	pane                              int64 // pane width (gcd of size and step)
	keyCol, timeCol                   int
	fields                            []fieldPlan
	out                               *engine.Schema
	countCol                          int
}

func parseFunc(s string) (aggFn, bool) {
	switch s {
	case "count":
		return aggFn{op: opCount}, true
	case "sum":
		return aggFn{op: opSum}, true
	case "avg":
		return aggFn{op: opAvg}, true
	case "min":
		return aggFn{op: opMin}, true
	case "max":
		return aggFn{op: opMax}, true
	case "stddev":
		return aggFn{op: opStddev}, true
	case "first":
		return aggFn{op: opFirst}, true
	case "last":
		return aggFn{op: opLast}, true
	}
	if s == "p999" {
		return aggFn{op: opQuantile, num: 999, den: 1000}, true
	}
	if len(s) >= 2 && len(s) <= 3 && s[0] == 'p' && s[1] != '0' {
		n, err := strconv.Atoi(s[1:])
		if err == nil && n >= 1 && n <= 99 {
			return aggFn{op: opQuantile, num: uint64(n), den: 100}, true
		}
	}
	return aggFn{}, false
}

func ms(d time.Duration) int64 { return int64(d / time.Millisecond) }

// parsePlan validates cfg against the input schema.
func parsePlan(cfg *spec.Config, in *engine.Schema) (*plan, error) {
	var errs spec.Errors
	p := &plan{kind: cfg.String("kind"), keyCol: -1}
	if p.kind == "" {
		p.kind = Tumbling
	}
	dur := func(name string) int64 {
		d := cfg.Duration(name)
		if d%time.Millisecond != 0 {
			errs = append(errs, cfg.Errorf(name, "%s: %v is not a whole number of milliseconds (event time has millisecond resolution)", name, d))
		}
		return ms(d)
	}
	p.size, p.step, p.gap = dur("size"), dur("step"), dur("gap")
	p.offset, p.lateness = dur("offset"), dur("lateness")
	var wmErrs spec.Errors
	p.wmKeys, p.wmIdle, wmErrs = eventtime.ParseWatermark(cfg)
	errs = append(errs, wmErrs...)
	p.maxKeys, p.maxKeyBytes = int(min(cfg.Int("max_keys"), math.MaxInt32/2)), int(min(cfg.Int("max_key_bytes"), 1<<20))
	if p.maxKeys < 1 {
		errs = append(errs, cfg.Errorf("max_keys", "max_keys must be at least 1, got %d", cfg.Int("max_keys")))
	}
	if p.maxKeyBytes < 1 {
		errs = append(errs, cfg.Errorf("max_key_bytes", "max_key_bytes must be at least 1, got %d", cfg.Int("max_key_bytes")))
	}
	p.lateAlert = cfg.Float("late_alert")
	if !(p.lateAlert >= 0 && p.lateAlert <= 1) {
		errs = append(errs, cfg.Errorf("late_alert", "late_alert is a share of rows between 0 and 1, got %v", cfg.Float("late_alert")))
	}
	if p.lateness < 0 {
		errs = append(errs, cfg.Errorf("lateness", "lateness must not be negative, got %v", cfg.Duration("lateness")))
	}
	notFor := func(name string) {
		if cfg.Has(name) {
			errs = append(errs, cfg.Errorf(name, "%s does not apply to kind %s", name, p.kind))
		}
	}
	switch p.kind {
	case Tumbling, Hopping:
		if !cfg.Has("size") {
			errs = append(errs, cfg.Errorf("", "kind %s needs size", p.kind))
		} else if p.size <= 0 {
			errs = append(errs, cfg.Errorf("size", "size must be at least 1ms, got %v", cfg.Duration("size")))
		}
		notFor("gap")
		if p.kind == Tumbling {
			notFor("step")
			p.step = p.size
		} else if !cfg.Has("step") {
			errs = append(errs, cfg.Errorf("", "kind hopping needs step"))
		} else if p.step <= 0 || (p.size > 0 && p.step > p.size) {
			errs = append(errs, cfg.Errorf("step", "step must be > 0 and <= size (%v), got %v", cfg.Duration("size"), cfg.Duration("step")))
		}
		if p.size > 0 && p.step > 0 && p.step <= p.size {
			p.pane = gcd(p.size, p.step)
			if n := p.size / p.pane; n > maxPanes {
				errs = append(errs, cfg.Errorf("step", "step %v does not divide size %v well: each window would be made of %d slices of %v (at most %d); choose a step that divides size",
					cfg.Duration("step"), cfg.Duration("size"), n, time.Duration(p.pane)*time.Millisecond, maxPanes))
			}
			p.offset = floorMod(p.offset, p.step)
		}
	case Session:
		if !cfg.Has("gap") {
			errs = append(errs, cfg.Errorf("", "kind session needs gap"))
		} else if p.gap <= 0 {
			errs = append(errs, cfg.Errorf("gap", "gap must be at least 1ms, got %v", cfg.Duration("gap")))
		}
		notFor("size")
		notFor("step")
		notFor("offset")
	}

	p.timeCol = in.TimeIndex()
	if p.timeCol < 0 {
		errs = append(errs, cfg.Errorf("", "the input stream has no time field; windows need event time"))
	}
	keyName := in.Key
	if cfg.Has("key") {
		keyName = cfg.String("key")
		if keyName == GlobalKey {
			keyName = ""
		} else if f, ok := in.Lookup(keyName); !ok {
			errs = append(errs, cfg.Errorf("key", "key field %q is not in the input (fields: %s)", keyName, strings.Join(in.Names(), ", ")))
			keyName = ""
		} else if f.Type != engine.String {
			errs = append(errs, cfg.Errorf("key", "key field %q must be a string, not %s", keyName, f.Type))
			keyName = ""
		}
	}
	if keyName != "" {
		p.keyCol = in.Index(keyName)
	}

	outFields := []engine.Field{{Name: "window_start", Type: engine.Timestamp}, {Name: "window_end", Type: engine.Timestamp}}
	if p.keyCol >= 0 {
		if keyName == "window_start" || keyName == "window_end" || keyName == "count" {
			errs = append(errs, cfg.Errorf("key", "key field %q clashes with an output column; rename it upstream", keyName))
		}
		outFields = append(outFields, engine.Field{Name: keyName, Type: engine.String})
	}
	p.countCol = len(outFields)
	outFields = append(outFields, engine.Field{Name: "count", Type: engine.Int64})
	seen := map[string]bool{}
	for _, f := range outFields {
		seen[f.Name] = true
	}
	for _, e := range cfg.Entries("aggregates") {
		f, ok := in.Lookup(e.Key)
		if !ok {
			errs = append(errs, spec.Errorf(e.KeyPos, "aggregates: field %q is not in the input (fields: %s)", e.Key, strings.Join(in.Names(), ", ")))
			continue
		}
		fp := fieldPlan{col: in.Index(e.Key), name: e.Key, typ: f.Type}
		var names []string
		switch v := e.Value.(type) {
		case string:
			names = []string{v}
		case []any:
			for i, item := range v {
				s, ok := item.(string)
				if !ok {
					errs = append(errs, spec.Errorf(aggItemPos(cfg, e, i), "aggregates.%s: expected a function name, got %v", e.Key, item))
					continue
				}
				names = append(names, s)
			}
		default:
			errs = append(errs, spec.Errorf(e.ValuePos, "aggregates.%s: expected a list of function names such as [avg, max]", e.Key))
			continue
		}
		if len(names) == 0 {
			errs = append(errs, spec.Errorf(e.ValuePos, "aggregates.%s: no functions listed", e.Key))
		}
		numeric := f.Type == engine.Float64 || f.Type == engine.Int64
		for i, name := range names {
			pos := aggItemPos(cfg, e, i)
			fn, ok := parseFunc(name)
			if !ok {
				errs = append(errs, spec.Errorf(pos, "aggregates.%s: unknown function %q (known: count, sum, avg, min, max, stddev, first, last, p1..p99, p999)", e.Key, name))
				continue
			}
			if fn.op != opCount && !numeric {
				errs = append(errs, spec.Errorf(pos, "aggregates.%s: %s needs a numeric field (int64 or float64), %q is %s; only count applies", e.Key, name, e.Key, f.Type))
				continue
			}
			col := e.Key + "_" + name
			if seen[col] {
				errs = append(errs, spec.Errorf(pos, "aggregates.%s: output column %q appears twice", e.Key, col))
				continue
			}
			seen[col] = true
			fn.col = len(outFields)
			typ := engine.Float64
			if fn.op == opCount {
				typ = engine.Int64
			}
			outFields = append(outFields, engine.Field{Name: col, Type: typ})
			fp.funcs = append(fp.funcs, fn)
		}
		if len(fp.funcs) > 0 {
			p.fields = append(p.fields, fp)
		}
	}
	if len(errs) > 0 {
		errs.Sort()
		return nil, errs
	}
	keyOut := ""
	if p.keyCol >= 0 {
		keyOut = keyName
	}
	out, err := engine.NewSchema(outFields, "window_start", keyOut)
	if err != nil {
		return nil, cfg.Errorf("aggregates", "output schema: %v", err)
	}
	p.out = out
	return p, nil
}

// aggItemPos locates the i-th function name of an aggregates entry, or the
// entry's value when it cannot be found.
func aggItemPos(cfg *spec.Config, e spec.MapEntry, i int) spec.Pos {
	root := spec.Resolve(cfg.Node())
	if root == nil || root.Kind != yaml.MappingNode {
		return e.ValuePos
	}
	for j := 0; j+1 < len(root.Content); j += 2 {
		if root.Content[j].Value != "aggregates" {
			continue
		}
		m := spec.Resolve(root.Content[j+1])
		if m == nil || m.Kind != yaml.MappingNode {
			break
		}
		for k := 0; k+1 < len(m.Content); k += 2 {
			if m.Content[k].Value != e.Key {
				continue
			}
			seq := spec.Resolve(m.Content[k+1])
			if seq != nil && seq.Kind == yaml.SequenceNode && i < len(seq.Content) {
				n := spec.Resolve(seq.Content[i])
				return spec.Pos{File: cfg.File(), Line: n.Line, Col: n.Column}
			}
			return e.ValuePos
		}
	}
	return e.ValuePos
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func floorMod(a, b int64) int64 { return a - floorDiv(a, b)*b }
