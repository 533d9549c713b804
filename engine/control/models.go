package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/spec"
)

// ErrBadSetPoint is returned, wrapped in ErrRejected, for a set-point
// command whose value its asset's thing model refuses (an unknown point,
// a value of the wrong type or outside the point's range) or whose value
// is not a finite number. A protocol server answers it as a bad value
// (Modbus exception 0x03) rather than as a busy device.
var ErrBadSetPoint = errors.New("set-point refused")

// Point types of a thing model (PointSpec.Type).
const (
	PointFloat  = "float64"
	PointInt    = "int64"
	PointString = "string"
	PointBool   = "bool"
)

// PointSpec is what a thing model declares of one measure point: the
// values a set-point command may give it.
type PointSpec struct {
	// Type is PointFloat, PointInt, PointString or PointBool.
	Type string
	// Unit is the unit of measure, for the reasons ("kW").
	Unit string
	// Min and Max bound a number point's values, both included; -Inf and
	// +Inf when the model declares none.
	Min, Max float64
}

// ThingModel is an asset's thing model as the arbiter checks set-point
// commands against it.
type ThingModel struct {
	// ID names the model in the reasons.
	ID string
	// Points are the model's measure points by id.
	Points map[string]PointSpec
}

// Models gives the arbiter the thing model of each asset it knows
// (engine/assets.Catalog, the models of the running release).
type Models interface {
	// ThingModel returns the model of asset, or false when the asset has
	// no known model.
	ThingModel(asset string) (*ThingModel, bool)
}

// modelsRef holds the Models in force (nil Models: none).
type modelsRef struct{ m Models }

// SetModels replaces the thing models set-point commands are checked
// against from now on (the models of a release that starts running); nil
// checks none. Commands already queued are not checked again.
func (a *Arbiter) SetModels(m Models) {
	a.models.Store(&modelsRef{m: m})
}

// thingModel returns the model of asset, if any is known.
func (a *Arbiter) thingModel(asset string) (*ThingModel, bool) {
	ref := a.models.Load()
	if ref == nil || ref.m == nil {
		return nil, false
	}
	m, ok := ref.m.ThingModel(asset)
	return m, ok && m != nil
}

// nonFinite replaces the inputs of c that are not finite numbers by their
// names ("NaN", "+Inf", "-Inf": the log, JSON, cannot hold them) in a copy
// of c's inputs, and returns why c is rejected, or "".
func nonFinite(c *Command) string {
	var bad []string
	for k, v := range c.Inputs {
		if f, ok := v.(float64); ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
			bad = append(bad, k)
		}
	}
	if len(bad) == 0 {
		return ""
	}
	slices.Sort(bad)
	in := make(map[string]any, len(c.Inputs))
	for k, v := range c.Inputs {
		in[k] = v
	}
	reasons := make([]string, len(bad))
	for i, k := range bad {
		s := strconv.FormatFloat(c.Inputs[k].(float64), 'g', -1, 64)
		in[k] = s
		reasons[i] = fmt.Sprintf("%s = %s is not a finite number", k, s)
	}
	c.Inputs = in
	return strings.Join(reasons, "; ")
}

// modelNote is what the queued transition says of the thing model check.
type modelNote string

// checkModel checks a set-point command's values against its asset's
// thing model. It returns why the command is rejected ("" when it is
// not) and a note for the audit of an accepted command.
func (a *Arbiter) checkModel(c *Command) (reject string, note modelNote) {
	if c.Service != command.SetPoints {
		return "", ""
	}
	m, ok := a.thingModel(c.Asset)
	if !ok {
		if ref := a.models.Load(); ref != nil && ref.m != nil {
			return "", modelNote(fmt.Sprintf("asset %s has no thing model: values not checked", c.Asset))
		}
		return "", ""
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range c.Inputs {
			if !yield(k) {
				return
			}
		}
	})
	var bad []string
	more := 0
	for _, k := range names {
		if len(bad) == maxBadPoints {
			// Counted, not explained: a reason stays short, and a
			// command of 64 made-up names costs no search for each.
			if m.checkPoint(k, c.Inputs[k], false) != "" {
				more++
			}
			continue
		}
		if why := m.checkPoint(k, c.Inputs[k], true); why != "" {
			bad = append(bad, why)
		}
	}
	if more > 0 {
		bad = append(bad, fmt.Sprintf("and %d more points refused", more))
	}
	if len(bad) > 0 {
		return fmt.Sprintf("asset %s (thing model %s): %s", c.Asset, m.ID, strings.Join(bad, "; ")), ""
	}
	return "", modelNote("values within thing model " + m.ID)
}

// maxBadPoints bounds the points a rejection's reason explains.
const maxBadPoints = 8

// checkPoint returns why v may not be set to point k, or ""; explain
// suggests the closest point for an unknown one and lists the model's.
func (m *ThingModel) checkPoint(k string, v any, explain bool) string {
	p, ok := m.Points[k]
	if !ok {
		if !explain {
			return "unknown point"
		}
		return fmt.Sprintf("no measure point %q in the model%s (points: %s)", clip(k), m.DidYouMean(k), m.pointList())
	}
	if p.Type == PointString {
		if _, ok := v.(string); !ok {
			return fmt.Sprintf("%s = %s: the point takes text, not %s", k, showValue(v), typeOf(v))
		}
		return ""
	}
	if p.Type == PointBool {
		switch x := v.(type) {
		case bool:
			return ""
		case string:
		default:
			// A coil, or a device speaking 0 and 1, sets a bool as a number.
			if f, ok := number(x); ok && (f == 0 || f == 1) {
				return ""
			}
		}
		return fmt.Sprintf("%s = %s: the point takes true or false (or 1 or 0)", k, showValue(v))
	}
	f, ok := number(v)
	if !ok {
		return fmt.Sprintf("%s = %s: the point takes a number%s, not %s", k, showValue(v), unitOf(p), typeOf(v))
	}
	if p.Type == PointInt && f != math.Trunc(f) {
		return fmt.Sprintf("%s = %s: the point takes a whole number%s", k, showValue(v), unitOf(p))
	}
	if f < p.Min || f > p.Max {
		return fmt.Sprintf("%s = %s%s is outside the allowed range %s", k, showValue(v), withUnit(p.Unit), rangeOf(p))
	}
	return ""
}

// number returns v as a float64 when it is a number.
func number(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, !math.IsNaN(x) && !math.IsInf(x, 0)
	case int:
		return float64(x), true
	case int32:
		return float64(x), true
	case int64:
		return float64(x), true
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		return f, err == nil
	}
	return 0, false
}

func typeOf(v any) string {
	switch v.(type) {
	case string:
		return "text"
	case bool:
		return "true or false"
	}
	return "a number"
}

func showValue(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(clip(x))
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case json.Number:
		return clip(string(x))
	}
	return fmt.Sprint(v)
}

func withUnit(u string) string {
	if u == "" {
		return ""
	}
	return " " + u
}

func unitOf(p PointSpec) string {
	if p.Unit == "" {
		return ""
	}
	return " (" + p.Unit + ")"
}

// rangeOf says a point's range: "[0, 2000] kW", "at least 0 kW".
func rangeOf(p PointSpec) string {
	g := func(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
	switch {
	case !math.IsInf(p.Min, 0) && !math.IsInf(p.Max, 0):
		return fmt.Sprintf("[%s, %s]%s", g(p.Min), g(p.Max), withUnit(p.Unit))
	case !math.IsInf(p.Min, 0):
		return fmt.Sprintf("(at least %s%s)", g(p.Min), withUnit(p.Unit))
	default:
		return fmt.Sprintf("(at most %s%s)", g(p.Max), withUnit(p.Unit))
	}
}

// pointList names the model's points, at most 10.
func (m *ThingModel) pointList() string {
	ids := slices.Sorted(func(yield func(string) bool) {
		for k := range m.Points {
			if !yield(k) {
				return
			}
		}
	})
	switch {
	case len(ids) == 0:
		return "none"
	case len(ids) > 10:
		return strings.Join(ids[:10], ", ") + fmt.Sprintf(" and %d more", len(ids)-10)
	}
	return strings.Join(ids, ", ")
}

// DidYouMean returns ` (did you mean "x"?)` for the model's point
// closest to name (at most two edits away), or "".
func (m *ThingModel) DidYouMean(name string) string {
	if len(name) > 64 {
		return ""
	}
	best, bestD := "", 3
	for id := range m.Points {
		if n := len(id) - len(name); n > bestD || -n > bestD || len(id) > 64 {
			continue // at least that far apart
		}
		if d := spec.EditDistance(name, id); d < bestD || d == bestD && best != "" && id < best {
			best, bestD = id, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}
