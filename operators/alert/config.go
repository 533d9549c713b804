package alert

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"text/template"
	"text/template/parse"
	"time"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/assets"
	"github.com/sluice-edge/sluice/engine/eventtime"
	"github.com/sluice-edge/sluice/engine/rowexpr"
	"github.com/sluice-edge/sluice/engine/spec"
)

// Spec declares the "alert" step.
var Spec = spec.Spec{
	Name:    "alert",
	Summary: "Raises and clears asset alerts from expression rules, with hold durations and hysteresis.",
	Description: `Evaluates every rule on every row, per asset (the row's key), in event-time order: rows wait until the
watermark (the newest event time less ` + "`lateness`" + `, per source as in the window step) passes them; a row behind the watermark is evaluated at once unless a
newer row of its asset was evaluated already, then it goes to the ` + "`errors`" + ` port with the reason. After a window step, and with ` + "`order: arrival`" + `, rows are evaluated as they
come. A rule's condition
starts pending at the first row where it holds; the alert is raised once it has held continuously for ` + "`for`" + ` of
event time (occur_time = when it started to hold, time = when raised). While raised it is not raised again. It
clears at the first row where ` + "`clear`" + ` is true — or, without ` + "`clear`" + `, where ` + "`expr`" + ` no longer
holds (recover_time = that row's time).

Output rows have the alert schema: time, id, asset, rule, severity, type, content, value, occur_time,
recover_time, state (raised or cleared) and, when the step includes rule sets or declares
` + "`rule_set_version`" + `, rule_set_version (the version of the rule's set, null for a rule of none). The id is a hash of edge, pipeline, step, rule, asset and occur_time,
so ids are unique across edges and a replay of the same input on the same edge yields the same ids; the clear row
carries the id of its raise row.

With ` + "`assets`" + `, rules can target one model (` + "`model`" + `) and read per-asset thresholds as ` + "`attr.<attribute>`" + `.
A row whose rule cannot be evaluated (a null in a column the rule reads, an attribute that is not set) goes to the
` + "`errors`" + ` port with the reason and leaves that rule's state unchanged. See docs/alert.md.`,
	Fields: []spec.Field{
		{Name: "assets", Type: spec.String, Optional: true,
			Description: "Models and assets file (YAML or JSON), relative to the pipeline file. Needed for model and attr.",
			Example:     "assets.yaml"},
		{Name: "key", Type: spec.String, Optional: true,
			Description: "String column naming the asset of a row. Defaults to the input's key field; without one, all rows belong to one unnamed asset.",
			Example:     "turbine"},
		{Name: "history_column", Type: spec.String, Default: "history",
			Description: "Bool column marking rows of offline history (EnOS `measurepoint/resume`, see the mqtt source). When the input has it and `alert_on_history` is false, those rows are not evaluated: history feeds the cloud but raises no alerts.",
			Example:     "history"},
		{Name: "alert_on_history", Type: spec.Bool, Default: false,
			Description: "Evaluate rules on history rows too.", Example: true},
		{Name: "order", Type: spec.String, Optional: true, Enum: []string{OrderEventTime, OrderArrival},
			Description: "Order in which rows are evaluated: `event_time` orders the rows of each asset by event time up to the watermark (see `lateness`) before evaluating them; `arrival` evaluates them as they come. Defaults to `arrival` when the input is a window step's windows (already in order per key), else `event_time`. See docs/alert.md.",
			Example:     OrderEventTime},
		{Name: "lateness", Type: spec.Duration, Default: "0s",
			Description: "Allowed lateness (event_time order): the watermark trails the smallest per-source maximum event time by this much, so rows up to lateness out of order are evaluated in order. A row older than a row of its asset already evaluated goes to the errors port with the reason.",
			Example:     "5m"},
		{Name: "watermark_keys", Type: spec.Int, Default: eventtime.DefaultWatermarkKeys, Advanced: true,
			Description: "The watermark of a source follows its k-th most advanced asset (1 to 16), as in the window step.",
			Example:     1},
		{Name: "watermark_idle_rows", Type: spec.Int, Default: eventtime.DefaultWatermarkIdleRows, Advanced: true,
			Description: "An asset counts for the watermark while it had a row among the last this many rows of its source, as in the window step.",
			Example:     10000},
		{Name: "max_buffered_rows", Type: spec.Int, Default: DefaultMaxBufferedRows, Advanced: true,
			Description: "Most rows the step holds back waiting for the watermark (1 to 10,000,000, event_time order). Beyond it the oldest are evaluated early (`evaluated_early`); a later row of the same asset older than one evaluated goes to the errors port.",
			Example:     10000},
		{Name: "max_keys", Type: spec.Int, Default: DefaultMaxKeys, Advanced: true,
			Description: "Most assets (key values) the step keeps rule states for (1 to 10,000,000). When a new asset would exceed it, the step forgets the assets seen longest ago: first those with no alert pending or raised, then pending ones (`evicted_pending`), then raised ones (`evicted_raised`, logged: that alert gets no clear row). See docs/alert.md.",
			Example:     10000},
		{Name: "key_idle", Type: spec.Duration, Default: "1h", Advanced: true,
			Description: "An asset with no alert pending or raised and no row for this long (in event time, against the newest row) is forgotten (`evicted_idle`); it starts afresh if it comes back.",
			Example:     "24h"},
		{Name: "max_key_bytes", Type: spec.Int, Default: DefaultMaxKeyBytes, Advanced: true,
			Description: "Longest asset key in bytes (at most 65,536); a row with a longer key goes to the errors port.",
			Example:     64},
		{Name: "max_content", Type: spec.Int, Default: DefaultMaxContent, Advanced: true,
			Description: "Longest rendered content in bytes (256 to 1,048,576). A longer content is cut and ends with ` …[truncated]` (`content_truncated`); the alert is raised all the same.",
			Example:     4096},
		{Name: "include", Type: spec.List, Elem: spec.String, Optional: true,
			Description: "Rule sets of the release to evaluate after the step's own rules, by name (the release's `rules/<name>.yaml`). Only pipelines of a release can include rule sets. Rule names stay unique across the step's rules and the included ones. See docs/alert.md.",
			Example:     []string{"turbine"}},
		{Name: "rules", Type: spec.List, Elem: spec.Object, Optional: true,
			Description: "Alert rules, evaluated in order. Required unless the step includes rule sets.",
			Children:    RuleFields},
		{Name: "rule_set_version", Type: spec.String, Optional: true,
			Description: "Version of the step's own `rules`, named by the alerts they raise in the `rule_set_version` column. A step with it, or one that includes rule sets, adds that column to its output; see docs/alert.md.",
			Example:     "farm-rules 2024.06"},
	},
	Example: `alerts:
  type: alert
  input: stats
  assets: assets.yaml
  rules:
    - name: gearbox_hot
      model: turbine
      expr: gearbox_temp_max > attr.max_gearbox_temp
      clear: gearbox_temp_max < attr.max_gearbox_temp - 5
      for: 5m
      severity: major
      type: temperature
      content: "{{.asset}}: gearbox at {{.gearbox_temp_max}} °C (limit {{.attr.max_gearbox_temp}})"
    - name: low_output
      expr: power_avg < 100 && wind_speed_avg > 8
      for: 10m
      severity: minor`,
}

// RuleFields declares the fields of one rule, in a step's `rules` and in
// a rule set's.
var RuleFields = []spec.Field{
	{Name: "name", Type: spec.String, Description: "Rule name, unique in the step.", Example: "gearbox_hot"},
	{Name: "expr", Type: spec.String,
		Description: "Condition (a bool expression over the row's columns, `asset` and `attr`).",
		Example:     "gearbox_temp_max > attr.max_gearbox_temp"},
	{Name: "clear", Type: spec.String, Optional: true,
		Description: "Clear condition for hysteresis: once raised, the alert clears only when this is true. Without it, the alert clears when expr stops holding.",
		Example:     "gearbox_temp_max < attr.max_gearbox_temp - 5"},
	{Name: "for", Type: spec.Duration, Default: "0s",
		Description: "How long (in event time) the condition must hold continuously before the alert is raised.",
		Example:     "30m"},
	{Name: "max_gap", Type: spec.Duration, Optional: true,
		Description: "Longest event-time gap between two consecutive rows of the asset that still counts as holding (needs `for`): a gap longer than this restarts the pending hold at the row after it, so that missing data does not count as held.",
		Example:     "10m"},
	{Name: "severity", Type: spec.String, Default: "warning", Enum: engine.Severities,
		Description: "Alert severity.", Example: "major"},
	{Name: "type", Type: spec.String, Optional: true,
		Description: "Alert type (defaults to the rule name).", Example: "temperature"},
	{Name: "content", Type: spec.String, Default: "{{.rule}} on {{.asset}}",
		Description: "Text/template rendered on the raising (and clearing) row: columns by name, plus .asset, .rule, .value, .attr, .severity, .type and .time.",
		Example:     "{{.asset}}: gearbox at {{.gearbox_temp_max}} °C"},
	{Name: "value", Type: spec.String, Optional: true,
		Description: "Expression for the reported value. Defaults to the first numeric column that expr reads.",
		Example:     "gearbox_temp_max"},
	{Name: "model", Type: spec.String, Optional: true,
		Description: "Apply the rule only to assets of this model (needs assets).",
		Example:     "turbine"},
}

// RuleSetSpec declares a rule set file of a release (rules/<name>.yaml):
// rules that alert steps include by name.
var RuleSetSpec = spec.Spec{
	Name:    "rule set",
	Summary: "Alert rules shipped with a release, included by alert steps by name.",
	Fields: []spec.Field{
		{Name: "model", Type: spec.String, Optional: true,
			Description: "Model of the rules that do not name one.", Example: "turbine"},
		{Name: "version", Type: spec.String, Optional: true,
			Description: "Version of the rule set, named by every alert its rules raise (the `rule_set_version` column). Without it the version is the rule set's file in its release: `<bundle name> v<version> rules/<name>.yaml`.",
			Example:     "turbine 3.1"},
		{Name: "rules", Type: spec.List, Elem: spec.Object,
			Description: "Alert rules, with the fields of an alert step's rules.", Children: RuleFields},
	},
}

// MaxRuleSetRules bounds the rules of one rule set.
const MaxRuleSetRules = 4096

// ParseRuleSet reads a rule set from the YAML document n of file (see
// RuleSetSpec); its name is the file's base name without extension. The
// rules are checked against the rule fields here and compiled by each step
// that includes them, against that step's input.
func ParseRuleSet(file string, n *yaml.Node) (*engine.RuleSet, spec.Errors) {
	base := filepath.Base(file)
	rs := &engine.RuleSet{Name: strings.TrimSuffix(base, filepath.Ext(base)), File: file}
	cfg, errs := RuleSetSpec.Parse(file, n)
	rs.Model, rs.ModelPos = cfg.String("model"), cfg.Pos("model")
	if cfg.Has("model") && rs.Model == "" {
		errs = append(errs, cfg.Errorf("model", "model: name a model or leave the field out"))
	}
	rs.Version, rs.VersionPos = cfg.String("version"), cfg.Pos("version")
	if cfg.Has("version") {
		if err := CheckVersion(rs.Version); err != nil {
			errs = append(errs, cfg.Errorf("version", "version: %v", err))
		}
	}
	rs.Rules = cfg.Objects("rules")
	switch {
	case len(rs.Rules) > MaxRuleSetRules:
		errs = append(errs, cfg.Errorf("rules", "rules: %d rules, more than %d in one rule set", len(rs.Rules), MaxRuleSetRules))
	case len(rs.Rules) == 0 && cfg.Has("rules"):
		errs = append(errs, cfg.Errorf("rules", "rules: declare at least one rule"))
	}
	seen := map[string]spec.Pos{}
	for _, rc := range rs.Rules {
		name := rc.String("name")
		if prev, dup := seen[name]; dup {
			errs = append(errs, rc.Errorf("name", "rule %q declared twice (also at %s)", name, prev))
			continue
		}
		seen[name] = rc.Pos("name")
	}
	return rs, errs
}

// MaxVersionBytes bounds a declared rule set version.
const MaxVersionBytes = 256

// CheckVersion checks a declared rule set version: 1 to MaxVersionBytes
// bytes of UTF-8 text without control characters.
func CheckVersion(v string) error {
	switch {
	case v == "":
		return errors.New("name a version or leave the field out")
	case len(v) > MaxVersionBytes:
		return fmt.Errorf("%d bytes, longer than %d", len(v), MaxVersionBytes)
	}
	return versionText(v)
}

// versionText checks that a version is UTF-8 text without control
// characters.
func versionText(v string) error {
	switch {
	case !utf8.ValidString(v):
		return errors.New("not valid UTF-8")
	case strings.ContainsFunc(v, unicode.IsControl):
		return fmt.Errorf("%q holds a control character", v)
	}
	return nil
}

// Names of the extra expression variables.
const (
	attrVar  = "attr"
	assetVar = "asset"
)

// templateNames are the names a content template may use besides columns.
var templateNames = []string{"asset", "rule", "value", "attr", "severity", "type", "time"}

// rule is one compiled rule.
type rule struct {
	name, severity, typ string
	prefix              string // of its error reasons
	cond, clear, value  *rowexpr.Expr
	// condF and clearF are the float64 columns cond and clear read: a NaN
	// or an infinity in one of them is an error, not a comparison.
	condF, clearF []int
	hold          int64 // milliseconds
	// maxGap is the longest gap between consecutive rows of an asset that
	// keeps a pending hold going (ms; 0: no bound).
	maxGap  int64
	content content
	model   *assets.Model
	// version is the version of the rule set the rule comes from, named by
	// its alerts ("" for none).
	version string
	// ident identifies what decides when the rule raises and clears (see
	// ruleIdentity): a release switch continues the rule's states in a
	// step whose rule of the same name has the same ident.
	ident uint64
}

// plan is a validated configuration.
type plan struct {
	env      *rowexpr.Env
	attrVar  int // index of the attr variable, or -1
	assetVar int // index of the asset variable, or -1
	timeCol  int
	keyCol   int // -1: all rows belong to the asset ""
	// histCol is the bool history column whose true rows are skipped, or -1.
	histCol int
	catalog *assets.Catalog
	rules   []*rule
	// Bounds: states kept, idle time (ms), key and content lengths.
	maxKeys, maxKeyBytes, maxContent int
	idle                             int64
	// floatCols are the float64 columns some rule's condition reads.
	floatCols []int
	// order is OrderEventTime or OrderArrival; lateness (ms), wmKeys,
	// wmIdle and maxBuffered its bounds.
	order       string
	lateness    int64
	wmKeys      int
	wmIdle      int64
	maxBuffered int
	// versioned is set when the output has the rule_set_version column
	// (VersionedAlertSchema): the step includes rule sets or declares
	// rule_set_version.
	versioned bool
}

func parsePlan(cfg *spec.Config, in *engine.Schema, bc engine.BuildContext) (*plan, error) {
	var errs spec.Errors
	p := &plan{attrVar: -1, assetVar: -1, timeCol: in.TimeIndex(), keyCol: in.KeyIndex(), histCol: -1}
	if f, ok := in.Lookup(cfg.String("history_column")); ok && f.Type == engine.Bool && !cfg.Bool("alert_on_history") {
		p.histCol = in.Index(f.Name)
	}
	p.maxKeys, p.maxKeyBytes, p.maxContent = int(cfg.Int("max_keys")), int(cfg.Int("max_key_bytes")), int(cfg.Int("max_content"))
	p.idle = int64(cfg.Duration("key_idle") / time.Millisecond)
	switch {
	case p.maxKeys < 1:
		errs = append(errs, cfg.Errorf("max_keys", "max_keys must be at least 1, got %d", p.maxKeys))
	case p.maxKeys > maxMaxKeys:
		errs = append(errs, cfg.Errorf("max_keys", "max_keys must be at most %d, got %d", maxMaxKeys, p.maxKeys))
	}
	if p.maxKeyBytes < 1 || p.maxKeyBytes > maxMaxKeyBytes {
		errs = append(errs, cfg.Errorf("max_key_bytes", "max_key_bytes must be between 1 and %d, got %d", maxMaxKeyBytes, p.maxKeyBytes))
	}
	switch {
	case p.maxContent < minMaxContent:
		errs = append(errs, cfg.Errorf("max_content", "max_content must be at least %d, got %d", minMaxContent, p.maxContent))
	case p.maxContent > maxMaxContent:
		errs = append(errs, cfg.Errorf("max_content", "max_content must be at most %d, got %d", maxMaxContent, p.maxContent))
	}
	errs = append(errs, p.parseOrder(cfg, bc)...)
	if p.idle <= 0 {
		errs = append(errs, cfg.Errorf("key_idle", "key_idle must be positive, got %v", cfg.Duration("key_idle")))
	}
	if p.timeCol < 0 {
		errs = append(errs, cfg.Errorf("", "alert needs an input with a time field (input schema: %s)", in))
	}
	if cfg.Has("key") {
		k := cfg.String("key")
		f, ok := in.Lookup(k)
		switch {
		case !ok:
			errs = append(errs, cfg.Errorf("key", "key: no column %q in the input (%s)", k, in))
		case f.Type != engine.String:
			errs = append(errs, cfg.Errorf("key", "key: column %q is %s, not string", k, f.Type))
		default:
			p.keyCol = in.Index(k)
		}
	}
	if cfg.Has("assets") {
		path := cfg.String("assets")
		if !filepath.IsAbs(path) {
			path = filepath.Join(bc.Dir, path)
		}
		c, err := assets.Load(path)
		if err != nil {
			es := spec.Collect(cfg.Pos("assets"), err)
			if len(es) == 1 && es[0].Pos == cfg.Pos("assets") {
				es[0].Msg = "assets: " + es[0].Msg
			}
			errs = append(errs, es...)
		}
		p.catalog = c
	} else if c := assets.FromContext(bc); c != nil {
		// The release's models and assets.
		p.catalog = c
	}
	haveAssets := cfg.Has("assets") || p.catalog != nil
	var vars []rowexpr.Var
	if in.Index(attrVar) < 0 {
		p.attrVar = len(vars)
		vars = append(vars, rowexpr.Var{Name: attrVar, Type: rowexpr.MapVar})
	}
	if in.Index(assetVar) < 0 {
		p.assetVar = len(vars)
		vars = append(vars, rowexpr.Var{Name: assetVar, Type: rowexpr.StringVar})
	}
	env, err := rowexpr.NewEnv(in, vars...)
	if err != nil {
		return nil, cfg.Errorf("", "%v", err)
	}
	p.env = env
	sets, es := includedSets(cfg, bc)
	errs = append(errs, es...)
	own := cfg.String("rule_set_version")
	if cfg.Has("rule_set_version") {
		if err := CheckVersion(own); err != nil {
			errs = append(errs, cfg.Errorf("rule_set_version", "rule_set_version: %v", err))
		}
	}
	p.versioned = cfg.Has("rule_set_version") || cfg.Has("include")
	seen := map[string]spec.Pos{}
	add := func(rc *spec.Config, set *engine.RuleSet) {
		r, es := p.parseRule(rc, in, haveAssets, set)
		errs = append(errs, es...)
		if r == nil {
			return
		}
		r.version = own
		if set != nil {
			r.version = set.EffectiveVersion(bc.Release)
		}
		if prev, dup := seen[r.name]; dup {
			errs = append(errs, rc.Errorf("name", "rule %q declared twice (also at %s)", r.name, prev))
		}
		seen[r.name] = rc.Pos("name")
		p.rules = append(p.rules, r)
		for _, c := range append(r.condF, r.clearF...) {
			if !slices.Contains(p.floatCols, c) {
				p.floatCols = append(p.floatCols, c)
			}
		}
	}
	for _, rc := range cfg.Objects("rules") {
		add(rc, nil)
	}
	for _, set := range sets {
		for _, rc := range set.Rules {
			add(rc, set)
		}
	}
	if len(cfg.Objects("rules")) == 0 && len(sets) == 0 && !cfg.Has("include") {
		errs = append(errs, cfg.Errorf("rules", "rules: declare at least one rule"))
	}
	if len(errs) > 0 {
		errs.Sort()
		return nil, errs
	}
	return p, nil
}

// includedSets returns the rule sets a step includes, in the order given.
func includedSets(cfg *spec.Config, bc engine.BuildContext) ([]*engine.RuleSet, spec.Errors) {
	if !cfg.Has("include") {
		return nil, nil
	}
	names := cfg.Strings("include")
	if len(names) == 0 {
		return nil, spec.Errors{cfg.Errorf("include", "include: name at least one rule set")}
	}
	if bc.RuleSets == nil {
		return nil, spec.Errors{cfg.Errorf("include", "include: rule sets come with a release (its rules/*.yaml files); this pipeline is not part of one: write the rules in `rules`")}
	}
	var errs spec.Errors
	var out []*engine.RuleSet
	known := slices.Sorted(maps.Keys(bc.RuleSets))
	for i, name := range names {
		set, ok := bc.RuleSets[name]
		switch {
		case !ok:
			list := strings.Join(known, ", ")
			if list == "" {
				list = "none"
			}
			errs = append(errs, cfg.Errorf("include", "include: no rule set %q in the release%s (rule sets: %s)", name, suggest(name, known), list))
		case slices.Contains(names[:i], name):
			errs = append(errs, cfg.Errorf("include", "include: rule set %q is included twice", name))
		default:
			out = append(out, set)
		}
	}
	return out, errs
}

// parseRule compiles one rule: of the step's own rules (set nil) or of an
// included rule set, whose model applies when the rule names none.
func (p *plan) parseRule(rc *spec.Config, in *engine.Schema, haveAssets bool, set *engine.RuleSet) (*rule, spec.Errors) {
	var errs spec.Errors
	r := &rule{name: rc.String("name"), severity: rc.String("severity"), typ: rc.String("type")}
	r.prefix = "rule " + r.name + ": "
	if r.typ == "" {
		r.typ = r.name
	}
	if d := rc.Duration("for"); d < 0 {
		errs = append(errs, rc.Errorf("for", "for must not be negative, got %v", d))
	} else {
		r.hold = int64(d / time.Millisecond)
	}
	if rc.Has("max_gap") {
		switch d := rc.Duration("max_gap"); {
		case d <= 0:
			errs = append(errs, rc.Errorf("max_gap", "max_gap must be positive, got %v", d))
		case d < time.Millisecond:
			errs = append(errs, rc.Errorf("max_gap", "max_gap must be at least 1ms, got %v", d))
		case rc.Duration("for") <= 0:
			errs = append(errs, rc.Errorf("max_gap", "max_gap bounds the gaps within a hold: it needs a positive `for`"))
		default:
			r.maxGap = int64(d / time.Millisecond)
		}
	}
	id, modelErr := rc.String("model"), func(format string, args ...any) *spec.Error { return rc.Errorf("model", format, args...) }
	if !rc.Has("model") && set != nil && set.Model != "" {
		id = set.Model
		modelErr = func(format string, args ...any) *spec.Error {
			return spec.Errorf(set.ModelPos, "rule set %q: "+format, append([]any{set.Name}, args...)...)
		}
	}
	if id != "" || rc.Has("model") {
		switch {
		case !haveAssets:
			errs = append(errs, modelErr("rule %q: model needs assets (the assets field, or the models of a release)", r.name))
		case p.catalog != nil:
			m, ok := p.catalog.Model(id)
			if !ok {
				errs = append(errs, modelErr("rule %q: unknown model %q%s", r.name, id, suggest(id, modelIDs(p.catalog))))
			}
			r.model = m
		}
	}
	compile := func(field string, opts ...rowexpr.Option) *rowexpr.Expr {
		if !rc.Has(field) {
			return nil
		}
		e, err := p.env.Compile(rc.String(field), opts...)
		if err != nil {
			errs = append(errs, rowexpr.LocateField(rc, field, err))
			return nil
		}
		if es := p.checkAttrs(rc, field, e, r, haveAssets); len(es) > 0 {
			errs = append(errs, es...)
			return nil
		}
		return e
	}
	r.cond = compile("expr", rowexpr.Expect(engine.Bool))
	r.clear = compile("clear", rowexpr.Expect(engine.Bool))
	r.value = compile("value", rowexpr.Expect(engine.Float64))
	r.condF, r.clearF = floatColumns(r.cond, in), floatColumns(r.clear, in)
	if r.value == nil && !rc.Has("value") && r.cond != nil {
		for _, c := range r.cond.Columns() {
			if f, _ := in.Lookup(c); f.Type == engine.Float64 || f.Type == engine.Int64 {
				r.value, _ = p.env.Column(c)
				break
			}
		}
	}
	c, err := parseContent(r.name, rc.String("content"), in, min(max(p.maxContent, minMaxContent), maxMaxContent))
	if err != nil {
		errs = append(errs, rc.Errorf("content", "content: %v", err))
	}
	r.content = c
	if len(errs) > 0 {
		return nil, errs
	}
	r.ident = ruleIdentity(r)
	return r, nil
}

// checkAttrs verifies the attributes an expression reads: they need an
// assets file, and must be declared by the rule's model (or, for a rule
// without a model, by some model).
func (p *plan) checkAttrs(rc *spec.Config, field string, e *rowexpr.Expr, r *rule, haveAssets bool) spec.Errors {
	if p.attrVar < 0 {
		return nil
	}
	keys := e.Keys(attrVar)
	usesAttr := slices.Contains(e.Vars(), attrVar)
	if !usesAttr {
		return nil
	}
	if !haveAssets {
		return spec.Errors{rc.Errorf(field, "%s: reads attr but the step has no assets file", field)}
	}
	if p.catalog == nil {
		return nil // the assets file has errors of its own
	}
	var errs spec.Errors
	for _, k := range keys {
		if r.model != nil {
			if _, ok := r.model.Attribute(k); !ok {
				errs = append(errs, rc.Errorf(field, "%s: model %q has no attribute %q%s", field, r.model.ID, k, suggest(k, attributeIDs(r.model))))
			}
			continue
		}
		found := false
		var all []string
		for _, m := range p.catalog.Models {
			if _, ok := m.Attribute(k); ok {
				found = true
			}
			all = append(all, attributeIDs(m)...)
		}
		if !found {
			errs = append(errs, rc.Errorf(field, "%s: no model has an attribute %q%s", field, k, suggest(k, all)))
		}
	}
	return errs
}

// floatColumns returns the float64 columns e reads.
func floatColumns(e *rowexpr.Expr, in *engine.Schema) []int {
	if e == nil {
		return nil
	}
	var out []int
	for _, c := range e.Columns() {
		if f, ok := in.Lookup(c); ok && f.Type == engine.Float64 {
			out = append(out, in.Index(c))
		}
	}
	return out
}

// content is a parsed content template and the columns it reads.
type content struct {
	tmpl  *template.Template
	cols  []int // input columns the template reads by name
	all   bool  // the template passes the whole row on ({{.}}, {{$}})
	b     *budget
	limit int // max_content
}

// parseContent parses a content template and checks the names it reads
// from the row and its cost (see checkTree).
func parseContent(name, text string, in *engine.Schema, limit int) (content, error) {
	b := &budget{}
	t, err := newTemplate(name, text, b)
	if err != nil {
		return content{}, err
	}
	c := content{tmpl: t, b: b, limit: limit}
	known := append(in.Names(), templateNames...)
	var bad error
	use := func(field string) {
		if i := in.Index(field); i >= 0 && !slices.Contains(c.cols, i) && !slices.Contains(templateNames, field) {
			c.cols = append(c.cols, i)
		}
	}
	// Fields are read from the row at the top level only; inside range
	// and with, dot is something else.
	walkTree(t.Tree.Root, true, func(n parse.Node, top bool) (bool, bool) {
		switch n := n.(type) {
		case *parse.DotNode:
			if top {
				c.all = true
			}
		case *parse.VariableNode:
			if n.Ident[0] == "$" {
				if len(n.Ident) == 1 {
					c.all = true
				} else {
					use(n.Ident[1])
				}
			}
		case *parse.FieldNode:
			if !top {
				return top, true
			}
			if !slices.Contains(known, n.Ident[0]) {
				bad = fmt.Errorf("unknown field .%s%s", n.Ident[0], suggest(n.Ident[0], known))
				return top, false
			}
			use(n.Ident[0])
		case *parse.RangeNode, *parse.WithNode:
			return false, true
		}
		return top, true
	})
	if bad != nil {
		return content{}, bad
	}
	return c, nil
}

func modelIDs(c *assets.Catalog) []string {
	out := make([]string, len(c.Models))
	for i, m := range c.Models {
		out[i] = m.ID
	}
	return out
}

func attributeIDs(m *assets.Model) []string {
	out := make([]string, len(m.Attributes))
	for i, a := range m.Attributes {
		out[i] = a.ID
	}
	return out
}

// suggest returns " (did you mean x?)" for the only name that extends
// name, else for the closest name, or "".
func suggest(name string, names []string) string {
	var ext []string
	for _, n := range names {
		if len(name) >= 3 && strings.HasPrefix(n, name) && n != name {
			ext = append(ext, n)
		}
	}
	if len(ext) == 1 {
		return fmt.Sprintf(" (did you mean %s?)", ext[0])
	}
	best, bestD := "", 3
	for _, n := range names {
		if d := spec.EditDistance(strings.ToLower(name), strings.ToLower(n)); d < bestD && d < len(name) {
			best, bestD = n, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}
