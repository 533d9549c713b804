package alert

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/sluice-edge/sluice/engine"
)

// Release switches (engine.Retirer, engine.Reconciler). A switch that
// rebuilds an alert step from another configuration — its rules, a rule
// set it includes or the release around it changed — gives the old step's
// state to the new one when the new one is an alert step of the same
// input schema and key (Continues). The old step first ends, once its
// input has drained, every raised alert the new step will not continue
// (Retire): a cleared row with the alert's id. The new step then takes the
// states of the rules it has unchanged (RestoreChanged). A step that goes
// away, or whose successor cannot continue its state, ends all of its
// raised alerts. So every alert raised downstream either goes on under its
// id or is seen to clear.

// ruleIdentity identifies what decides when a rule raises and clears: its
// name, its condition and clear condition (their text), its hold, its max_gap
// and the model it targets. Two rules of the same identity raise and clear on the
// same rows, so a release switch continues the states of one in the other.
// Severity, type, content, value and the rule set version decide what an
// alert says, not when: a rule that changes only those continues (its
// raised alerts keep the version that raised them; their clear rows say
// what the new rule says). Per-asset thresholds are read from the assets'
// attributes when a row is evaluated: a rule reading attr.max_temp keeps
// its identity when an asset's max_temp changes, and its raised alerts
// clear by the new threshold.
func ruleIdentity(r *rule) uint64 {
	h := sha256.New()
	field := func(s string) {
		h.Write([]byte(strconv.Itoa(len(s))))
		h.Write([]byte{':'})
		h.Write([]byte(s))
	}
	src := func(e interface{ Source() string }, set bool) string {
		if !set {
			return "\x00none"
		}
		return e.Source()
	}
	model := "\x00none"
	if r.model != nil {
		model = r.model.ID
	}
	field(r.name)
	field(src(r.cond, r.cond != nil))
	field(src(r.clear, r.clear != nil))
	field(strconv.FormatInt(r.hold, 10))
	field(model)
	if r.maxGap > 0 {
		// Only rules with max_gap hash it, so that the identities of the
		// others stay those of the states written before it existed.
		field("max_gap")
		field(strconv.FormatInt(r.maxGap, 10))
	}
	return binary.LittleEndian.Uint64(h.Sum(nil)[:8])
}

// Continues reports whether the step can continue the state of prev, an
// alert step built from another configuration: it needs the same input
// schema and key column. It reads only the configuration of both.
func (o *Operator) Continues(prev engine.Operator) bool {
	p, ok := prev.(*Operator)
	return ok && p.in.Equal(o.in) && p.keyName() == o.keyName() && (p.p.keyCol >= 0) == (o.p.keyCol >= 0)
}

// Reasons of the cleared rows Retire emits, in their content.
const (
	retiredRuleChanged = "the rule changed"
	retiredRuleRemoved = "the rule was removed"
	retiredStepGone    = "the step was removed or replaced"
	retiredNoRoom      = "its successor keeps fewer assets"
	retiredLongKey     = "the asset key is longer than its successor's max_key_bytes"
)

// Retire ends, once the step's input has drained in a graph stopped by a
// release switch, every raised alert that next (the step that continues
// its state, nil for none) will not continue: those of rules next does not
// have with the same identity, all of them when next is nil, and those
// of assets next could not keep (more assets than its max_keys, a key
// longer than its max_key_bytes). Each gets a cleared row with its id,
// occur time and rule set version; its time and recover_time are the
// step's newest event time and its content says the release ended it. The
// alerts ended are forgotten, and so are the assets next could not keep;
// pending conditions stay (RestoreChanged drops those of rules next does
// not continue). It returns how many alerts it cleared.
func (o *Operator) Retire(next engine.Operator, emit engine.PortEmit) (int, error) {
	if o.closed {
		return 0, fmt.Errorf("alert: Retire after Close")
	}
	nx, _ := next.(*Operator)
	if nx != nil && !nx.Continues(o) {
		nx = nil
	}
	if nx == nil {
		// No step takes the rows held back for the watermark: they are
		// evaluated now, in order, before their alerts end.
		for len(o.buf) > 0 {
			r := o.buf.pop()
			o.wm = max(o.wm, r.t)
			o.evalBuffered(r)
		}
	}
	// keep[ri]: next continues rule ri; why[ri] says why not.
	keep := make([]bool, len(o.p.rules))
	why := make([]string, len(o.p.rules))
	for ri, r := range o.p.rules {
		switch {
		case nx == nil:
			why[ri] = retiredStepGone
		case slices.ContainsFunc(nx.p.rules, func(n *rule) bool { return n.ident == r.ident }):
			keep[ri] = true
		case slices.ContainsFunc(nx.p.rules, func(n *rule) bool { return n.name == r.name }):
			why[ri] = retiredRuleChanged
		default:
			why[ri] = retiredRuleRemoved
		}
	}
	room := nx == nil || len(o.states) <= nx.p.maxKeys
	all := make([]*assetState, 0, len(o.states))
	for _, as := range o.states {
		all = append(all, as)
	}
	slices.SortFunc(all, func(a, b *assetState) int { return strings.Compare(a.key, b.key) })
	ended := 0
	for _, as := range all {
		reason := ""
		switch {
		case nx == nil:
		case !room:
			reason = retiredNoRoom
		case len(as.key) > nx.p.maxKeyBytes:
			reason = retiredLongKey
		}
		for ri := range as.rules {
			st := &as.rules[ri]
			if !st.active || keep[ri] && reason == "" {
				continue
			}
			why := why[ri]
			if reason != "" {
				why = reason
			}
			o.appendRetired(o.p.rules[ri], st, as, why)
			st.active, st.id, st.version = false, "", 0
			o.cCleared.Add(1)
			ended++
		}
		if reason != "" {
			o.forget(as.key, as)
		}
	}
	if err := o.emitOut(0, emit); err != nil {
		return ended, fmt.Errorf("alert: retire: %w", err)
	}
	return ended, nil
}

// appendRetired appends the cleared row of a raised alert that a release
// switch ends (see Retire).
func (o *Operator) appendRetired(r *rule, st *state, as *assetState, why string) {
	content := RetiredContent(r.name, as.key, why)
	if len(content) > r.content.limit {
		content = truncate([]byte(content), r.content.limit)
	}
	o.appendRow(r, st, as, max(o.now, st.start), content, 0, false, engine.AlertCleared)
}

// RetiredPrefix starts the content of every cleared row that a release
// switch, not the data, caused (see Operator.Retire).
const RetiredPrefix = "cleared by a release switch: "

// RetiredContent is the content of the cleared row of an alert of rule on
// asset that a release switch ended, for the reason why.
func RetiredContent(rule, asset, why string) string {
	return RetiredPrefix + why + " (" + rule + " on " + asset + ")"
}
