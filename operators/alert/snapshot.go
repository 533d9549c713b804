package alert

import (
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/statecodec"
)

// State hand-over (engine.Stateful, engine.Reconciler). Snapshot writes
// the rule states of every asset the step keeps; Restore reads them into a
// step built from the same configuration, which then raises and clears
// exactly as the step that wrote them would have: a pending condition
// raises after its full hold with the occur time it started at, a raised
// alert clears with its id and the rule set version that raised it (a
// release switch that changes a rule set's version does not rename the
// alerts already raised). RestoreChanged reads them into a step built from
// another configuration: the states of the rules it has unchanged (same
// identity, see ruleIdentity) continue, the others are dropped (see
// reconcile.go).
//
// Format, version 4 (varints are unsigned LEB128 or zigzag signed):
//
//	shape    8 bytes: FNV-64a of the key column and the rule names in order
//	key      bool: the step has a key; string: its column ("" for none)
//	rules    uvarint n; per rule, in order, 8 bytes: its identity
//	clock    varint now, lastSweep; uvarint rows since the sweep, raised
//	         alerts forgotten and logged one by one
//	assets   uvarint n; per asset, by key: string key, varint seen, then per
//	         rule a byte: 0 inactive, 1 pending (varint start follows),
//	         2 raised (varint start, the 16 bytes of the id and the string
//	         rule set version, "" for none, follow)
//	order    the event-time order: varint watermark; uvarint n sources, per
//	         source varint index, varint mark, uvarint rows, uvarint hit,
//	         uvarint n key marks, per key mark varint key hash, varint
//	         event time, uvarint row; uvarint n rows held back, in
//	         evaluation order, per row per input column a byte (0 null, 1
//	         a value follows: float64 8 bytes, int64 and timestamp varint,
//	         string, bool)
//
// Version 3 is version 4 without order (no row held back); version 2 is
// version 3 without key and rules; version 1 is version 2 without the rule
// set versions. Restore still reads them all (the raised alerts of version
// 1 name no version); RestoreChanged, which needs the rules' identities,
// reads versions 3 and 4. Equal states give equal bytes.
const (
	// StateKind is the Kind of the state of an alert step.
	StateKind = "alert"
	// StateVersion is the version of the state format written and read.
	StateVersion = 4
	// stateVersion3 is the format without the event-time order.
	stateVersion3 = 3
	// stateVersion2 is the format without key and rule identities.
	stateVersion2 = 2
	// stateVersion1 is the format without rule set versions.
	stateVersion1 = 1
)

// maxStateRules bounds the rules a state may declare.
const maxStateRules = 1 << 20

var (
	_ engine.Stateful   = (*Operator)(nil)
	_ engine.Reconciler = (*Operator)(nil)
	_ engine.Retirer    = (*Operator)(nil)
)

// Rule states in a snapshot.
const (
	ruleInactive = iota
	rulePending
	ruleRaised
)

// idBytes is the length of an alert id (hex of 16 bytes, see alertID).
const idBytes = 16

// shape hashes what the meaning of a state depends on: the key column and
// the rules, by name and in order.
func (o *Operator) shape() uint64 {
	w := statecodec.NewWriter(nil)
	w.Bool(o.p.keyCol >= 0)
	w.String(o.keyName())
	w.Uvarint(uint64(len(o.p.rules)))
	for _, r := range o.p.rules {
		w.String(r.name)
	}
	h := fnv.New64a()
	h.Write(w.Bytes())
	return h.Sum64()
}

// keyName is the name of the key column, "" for none.
func (o *Operator) keyName() string {
	if o.p.keyCol < 0 {
		return ""
	}
	return o.in.Fields[o.p.keyCol].Name
}

// Snapshot returns the rule states of every asset the step keeps: pending
// conditions with the time they started to hold, raised alerts with their
// id and occur time, the latest row of each asset, the bookkeeping of
// idle assets, and the watermark with the rows held back for it.
func (o *Operator) Snapshot() (*engine.State, error) {
	if o.closed {
		return nil, fmt.Errorf("alert: Snapshot after Close")
	}
	all := make([]*assetState, 0, len(o.states))
	for _, as := range o.states {
		all = append(all, as)
	}
	slices.SortFunc(all, func(a, b *assetState) int { return strings.Compare(a.key, b.key) })
	w := statecodec.NewWriter(make([]byte, 0, 32+len(all)*(24+2*len(o.p.rules))))
	w.Uint64(o.shape())
	w.Bool(o.p.keyCol >= 0)
	w.String(o.keyName())
	w.Uvarint(uint64(len(o.p.rules)))
	for _, r := range o.p.rules {
		w.Uint64(r.ident)
	}
	w.Varint(o.now)
	w.Varint(o.lastSweep)
	w.Uvarint(uint64(o.rows))
	w.Uvarint(uint64(o.loggedEvicted))
	w.Uvarint(uint64(len(all)))
	var id [idBytes]byte
	for _, as := range all {
		w.String(as.key)
		w.Varint(as.seen)
		for ri := range as.rules {
			st := &as.rules[ri]
			switch {
			case st.active:
				if len(st.id) != 2*idBytes {
					return nil, fmt.Errorf("alert: snapshot: alert id %q of rule %s on %q is not %d hex bytes", st.id, o.p.rules[ri].name, as.key, idBytes)
				}
				if n, err := hex.Decode(id[:], []byte(st.id)); err != nil || n != idBytes {
					return nil, fmt.Errorf("alert: snapshot: alert id %q of rule %s on %q is not %d hex bytes", st.id, o.p.rules[ri].name, as.key, idBytes)
				}
				w.Byte(ruleRaised)
				w.Varint(st.start)
				w.Raw(id[:])
				w.String(o.versions[st.version])
			case st.pending:
				w.Byte(rulePending)
				w.Varint(st.start)
			default:
				w.Byte(ruleInactive)
			}
		}
	}
	o.writeOrder(w)
	return &engine.State{Kind: StateKind, Version: StateVersion, Data: w.Bytes()}, nil
}

// Restore replaces the state of the step with s, written by Snapshot of a
// step with the same configuration and input schema. The state is read as
// hostile input: a state of another kind, version or configuration, or one
// that is truncated or malformed, is refused with an error and the step
// keeps its own state.
func (o *Operator) Restore(s *engine.State) error {
	_, err := o.restore(s, false)
	return err
}

// RestoreChanged replaces the state of the step with s, written by
// Snapshot of an alert step with the same input schema and key but
// another configuration (see Continues), after its Retire for this step:
// the states of the rules this step has with the same identity (see
// ruleIdentity) continue — raised alerts keep their id, occur time and
// rule set version, pending conditions their start — and the states of
// the other rules are dropped. It says how many of the step's rules
// continue. A raised alert of a dropped rule (which Retire ends) is
// forgotten with a warning. The state is read as hostile input, as by
// Restore.
func (o *Operator) RestoreChanged(s *engine.State) (string, error) {
	res, err := o.restore(s, true)
	if err != nil {
		return "", err
	}
	kept := fmt.Sprintf("%d of %d rules", res.kept, len(o.p.rules))
	if res.forgotten > 0 {
		kept += fmt.Sprintf(", %d raised alerts forgotten", res.forgotten)
	}
	return kept, nil
}

// restored says what restore did with the rules of a state.
type restored struct {
	// kept counts the step's rules whose states continue; forgotten the
	// raised alerts and dropped the pending conditions of the others.
	kept, forgotten, dropped int
}

// restore reads s into the step: one of the same configuration (changed
// false: the rules must be the step's own) or of another one (changed:
// the states of the rules with the step's identities continue).
func (o *Operator) restore(s *engine.State, changed bool) (restored, error) {
	var res restored
	version := StateVersion
	switch {
	case s == nil:
	case s.Version == stateVersion3:
		version = s.Version
	case (s.Version == stateVersion1 || s.Version == stateVersion2) && !changed:
		version = s.Version
	}
	if err := engine.CheckState(s, StateKind, version); err != nil {
		return res, fmt.Errorf("alert: restore: %w", err)
	}
	if o.closed {
		return res, fmt.Errorf("alert: Restore after Close")
	}
	r := statecodec.NewReader(s.Data)
	nr := len(o.p.rules)
	// from maps the rules of the state to the step's (-1: dropped).
	from := make([]int, nr)
	for i := range from {
		from[i] = i
	}
	sh := r.Uint64()
	if r.Err() == nil && !changed && sh != o.shape() {
		return res, fmt.Errorf("alert: restore: the state is of a step with another key or other rules (shape %016x, this step %016x)", sh, o.shape())
	}
	if version >= stateVersion3 {
		hasKey, key := r.Bool(), r.String(maxMaxKeyBytes, "key column")
		if r.Err() == nil && (hasKey != (o.p.keyCol >= 0) || key != o.keyName()) {
			return res, fmt.Errorf("alert: restore: the state is of a step with another key (%q, this step %q)", key, o.keyName())
		}
		n := r.Count(maxStateRules, 8, "rules")
		idents := make([]uint64, n)
		for i := range idents {
			idents[i] = r.Uint64()
		}
		if r.Err() == nil {
			if !changed {
				if !slices.Equal(idents, o.idents()) {
					return res, fmt.Errorf("alert: restore: the state is of a step with other rules")
				}
			} else {
				idx := make(map[uint64]int, nr)
				for i, r := range o.p.rules {
					idx[r.ident] = i
				}
				from = make([]int, n)
				for i, id := range idents {
					j, ok := idx[id]
					if !ok {
						j = -1
					} else {
						res.kept++
						delete(idx, id) // a repeated identity continues once
					}
					from[i] = j
				}
			}
		}
	}
	now, lastSweep := r.Varint(), r.Varint()
	rows := r.Uint(math.MaxInt64, "rows since the sweep")
	logged := r.Uint(maxLoggedEvictions, "logged evictions")
	n := r.Count(o.p.maxKeys, 2+len(from), "assets")
	states := make(map[string]*assetState, n)
	// One block for the states and one for their rules: a block is freed
	// once the step has forgotten all of its states.
	slab := make([]assetState, n)
	rules := make([]state, n*nr)
	prev := ""
	// The versions of the restored alerts join the step's own; they are
	// committed only once the whole state reads well.
	versions, versionIdx := slices.Clone(o.versions), maps.Clone(o.versionIdx)
	intern := func(v string) uint32 {
		if i, ok := versionIdx[v]; ok {
			return i
		}
		i := uint32(len(versions))
		versions = append(versions, v)
		versionIdx[v] = i
		return i
	}
	var gone state // the state of a dropped rule, read and forgotten
	for i := range n {
		if r.Err() != nil {
			break
		}
		key := r.String(o.p.maxKeyBytes, "asset key")
		switch {
		case o.p.keyCol < 0 && key != "":
			r.Failf("asset %q in a step without key", key)
		case i > 0 && key <= prev:
			r.Failf("asset %q out of order or repeated", key)
		}
		prev = key
		as := &slab[i]
		as.key, as.rules, as.seen, as.rowSeen = key, rules[i*nr:(i+1)*nr:(i+1)*nr], r.Varint(), true
		if o.p.catalog != nil {
			if a, ok := o.p.catalog.Asset(key); ok {
				as.asset, as.attrs = a, a.Attrs
			}
		}
		for _, ri := range from {
			st := &gone
			if ri >= 0 {
				st = &as.rules[ri]
			}
			switch b := r.Byte(); b {
			case ruleInactive:
			case rulePending:
				st.pending, st.start = true, r.Varint()
			case ruleRaised:
				st.active, st.start = true, r.Varint()
				if id := r.Raw(idBytes); id != nil {
					st.id = hex.EncodeToString(id)
				}
				if version >= stateVersion2 {
					v := r.String(MaxStoredVersionBytes, "rule set version")
					if r.Err() == nil {
						if err := checkStoredVersion(v); err != nil {
							r.Failf("rule set version: %v", err)
						}
					}
					if ri >= 0 {
						st.version = intern(v)
					}
				}
			default:
				r.Failf("rule state %d", b)
			}
			if ri < 0 {
				switch {
				case gone.active:
					res.forgotten++
				case gone.pending:
					res.dropped++
				}
				gone = state{}
			}
		}
		states[key] = as
	}
	ord := orderState{wm: math.MinInt64}
	if version >= StateVersion && r.Err() == nil {
		ord = o.readOrder(r)
	}
	if err := r.Done(); err != nil {
		if ord.rec != nil {
			ord.rec.Release()
		}
		return restored{}, fmt.Errorf("alert: restore: %w", err)
	}
	o.restoreOrder(ord)
	o.states, o.last = states, nil
	o.versions, o.versionIdx = versions, versionIdx
	o.now, o.lastSweep, o.rows, o.loggedEvicted = now, lastSweep, int(rows), int(logged)
	if res.forgotten > 0 {
		o.cEvRaised.Add(int64(res.forgotten))
		o.log.Warn("forgetting raised alerts of rules that changed: they get no clear row", "alerts", res.forgotten)
	}
	return res, nil
}

// idents returns the identities of the step's rules, in order.
func (o *Operator) idents() []uint64 {
	out := make([]uint64, len(o.p.rules))
	for i, r := range o.p.rules {
		out[i] = r.ident
	}
	return out
}

// MaxStoredVersionBytes bounds a rule set version read from a state: a
// declared version (MaxVersionBytes) or one made of a release name,
// version and file.
const MaxStoredVersionBytes = 4096

// checkStoredVersion checks a rule set version read from a state: ""
// (none) or text without control characters.
func checkStoredVersion(v string) error {
	if v == "" {
		return nil
	}
	return versionText(v)
}
