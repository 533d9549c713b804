package infer

import (
	"cmp"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/spec"
	"github.com/sluice-edge/sluice/engine/statecodec"
)

// Sequence option: the step keeps the last K rows of features of every
// asset and feeds the model, for each row, the K rows of its asset that
// end with it, as a [K x features] sequence (oldest first). All the
// sequences of a batch go to the model in one call, [rows x K x features].
const (
	// MaxSequenceLength is the largest sequence length.
	MaxSequenceLength = 1024
	// DefaultMaxAssets is the default of sequence.max_assets.
	DefaultMaxAssets = 10_000
	// MaxMaxAssets is the largest sequence.max_assets.
	MaxMaxAssets = 1_000_000
	// MaxSequenceKeyBytes is the longest asset key the step keeps a
	// history for; a row with a longer key takes the on_invalid path.
	MaxSequenceKeyBytes = 256
	// MaxSequenceBytes bounds the memory of the histories: length x
	// features x 8 bytes x max_assets. It keeps the state well within a
	// checkpoint's size limit (1 GiB, shared by every step).
	MaxSequenceBytes = 256 << 20
	// MaxSequenceMatrixBytes bounds the matrix of one model call: length
	// x features x 8 bytes x batch_rows.
	MaxSequenceMatrixBytes = 64 << 20
)

// sequenceFields are the fields of the sequence option.
var sequenceFields = []spec.Field{
	{Name: "length", Type: spec.Int,
		Description: "Rows per sequence (K, 1 to 1,024): each row is scored with the last K rows of its asset, itself last.", Example: 10},
	{Name: "key", Type: spec.String, Optional: true,
		Description: "Asset column (string or int64) whose rows form a sequence. Default: the stream's key."},
	{Name: "max_assets", Type: spec.Int, Default: DefaultMaxAssets, Advanced: true,
		Description: "Most assets the step keeps a history for (1 to 1,000,000; length x features x 8 bytes x max_assets at most 256 MiB). A new asset beyond it makes the step forget the histories of the assets seen longest ago (evicted_assets, logged); they start their sequence again."},
}

// seqAsset is the history of one asset: its last n (at most K) rows of
// raw features in a ring, the oldest at (next-n) mod K.
type seqAsset struct {
	key  string
	vals []float64 // K*F
	n    int
	next int
	seen uint64 // the step's row clock at the asset's latest row
}

// push adds one row of raw features.
func (a *seqAsset) push(row []float64, k, f int) {
	copy(a.vals[a.next*f:(a.next+1)*f], row)
	a.next = (a.next + 1) % k
	if a.n < k {
		a.n++
	}
}

// seqState is the sequence option's configuration and the histories.
type seqState struct {
	k, f      int
	keyCol    int
	keyName   string
	keyInt    bool
	maxAssets int
	features  []string

	assets  map[string]*seqAsset
	clock   uint64
	scratch []*seqAsset
	keyBuf  []byte
	cur     []float64

	errWarm, errNullKey, errLongKey error
	cWarm, cEvicted, cRefused       *atomic.Int64
	log                             *slog.Logger
	lastLog                         time.Time
	unlogged                        int64
}

// newSeqState checks the sequence option o for input in, features names
// and model m.
func newSeqState(o *spec.Config, in *engine.Schema, names []string, m Model, batchRows int, bc engine.BuildContext) (*seqState, spec.Errors) {
	var errs spec.Errors
	sq := &seqState{k: int(o.Int("length")), f: len(names), features: slices.Clone(names), maxAssets: int(o.Int("max_assets"))}
	if sq.k < 1 || sq.k > MaxSequenceLength {
		errs = append(errs, o.Errorf("length", "sequence length must be 1 to %d, got %d", MaxSequenceLength, sq.k))
	}
	if sq.maxAssets < 1 || sq.maxAssets > MaxMaxAssets {
		errs = append(errs, o.Errorf("max_assets", "max_assets must be 1 to %d, got %d", MaxMaxAssets, sq.maxAssets))
	} else if sq.k >= 1 && int64(sq.k)*int64(max(sq.f, 1))*8*int64(sq.maxAssets) > MaxSequenceBytes {
		errs = append(errs, o.Errorf("max_assets", "the histories of %d assets of %d rows of %d features would take %d MiB, more than the %d MiB limit: lower max_assets",
			sq.maxAssets, sq.k, sq.f, int64(sq.k)*int64(sq.f)*8*int64(sq.maxAssets)>>20, MaxSequenceBytes>>20))
	}
	if sq.k >= 1 && sq.k <= MaxSequenceLength && int64(sq.k)*int64(sq.f)*8*int64(batchRows) > MaxSequenceMatrixBytes {
		errs = append(errs, o.Errorf("length", "one model call of %d sequences of %d rows of %d features would take %d MiB, more than the %d MiB limit: lower batch_rows to %d",
			batchRows, sq.k, sq.f, int64(sq.k)*int64(sq.f)*8*int64(batchRows)>>20, MaxSequenceMatrixBytes>>20, max(1, MaxSequenceMatrixBytes/(sq.k*sq.f*8))))
	}
	sq.keyName = in.Key
	if o.Has("key") {
		sq.keyName = o.String("key")
	}
	switch sq.keyCol = in.Index(sq.keyName); {
	case sq.keyName == "":
		errs = append(errs, o.Errorf("", "sequence: the stream has no key; name the asset column (key)"))
	case sq.keyCol < 0:
		errs = append(errs, o.Errorf("key", "sequence key %q is not a column of the input (%s)", sq.keyName, in))
	default:
		switch t := in.Fields[sq.keyCol].Type; t {
		case engine.String:
		case engine.Int64:
			sq.keyInt = true
		default:
			errs = append(errs, o.Errorf("key", "sequence key %q is %s; it must be string or int64", sq.keyName, t))
		}
	}
	if sm, ok := m.(SequenceModel); ok && sm.SequenceSteps() > 0 && sm.SequenceSteps() != sq.k {
		errs = append(errs, o.Errorf("length", "sequence length %d, the model takes sequences of %d steps", sq.k, sm.SequenceSteps()))
	} else if sq.k >= 1 && m.Features() != sq.k*sq.f {
		errs = append(errs, o.Errorf("length", "sequences of %d rows of %d features are %d values, the model takes %d", sq.k, sq.f, sq.k*sq.f, m.Features()))
	}
	if len(errs) > 0 {
		return nil, errs
	}
	sq.assets = map[string]*seqAsset{}
	sq.cur = make([]float64, sq.f)
	sq.errWarm = fmt.Errorf("sequence: the asset has fewer than %d rows yet", sq.k)
	sq.errNullKey = fmt.Errorf("sequence: key %s is null", sq.keyName)
	sq.errLongKey = fmt.Errorf("sequence: key %s is longer than %d bytes", sq.keyName, MaxSequenceKeyBytes)
	counters := bc.Counters
	if counters == nil {
		counters = engine.NewCounters()
	}
	sq.cWarm = counters.Counter("sequence_warming_rows")
	sq.cEvicted = counters.Counter("evicted_assets")
	sq.cRefused = counters.Counter("refused_key_rows")
	sq.log = bc.Log
	if sq.log == nil {
		sq.log = slog.New(slog.DiscardHandler)
	}
	return sq, nil
}

// keyCol is the asset column of the batch being processed.
type keyCol struct {
	s *array.String
	i *array.Int64
}

func (sq *seqState) column(rec arrow.RecordBatch) (keyCol, error) {
	switch a := rec.Column(sq.keyCol).(type) {
	case *array.String:
		return keyCol{s: a}, nil
	case *array.Int64:
		return keyCol{i: a}, nil
	default:
		return keyCol{}, fmt.Errorf("infer: sequence key %s is %s", sq.keyName, a.DataType())
	}
}

// add appends the raw features of row i (in sq.cur) to its asset's
// history and, when the asset has K rows, writes its sequence, transformed,
// to x. It returns the reason the row cannot be scored, or nil.
func (sq *seqState) add(kc keyCol, i int, x, scale, offset []float64) error {
	var key []byte
	switch {
	case kc.s != nil:
		if kc.s.IsNull(i) {
			sq.cRefused.Add(1)
			return sq.errNullKey
		}
		v := kc.s.Value(i)
		if len(v) > MaxSequenceKeyBytes {
			sq.cRefused.Add(1)
			return sq.errLongKey
		}
		sq.keyBuf = append(sq.keyBuf[:0], v...)
	default:
		if kc.i.IsNull(i) {
			sq.cRefused.Add(1)
			return sq.errNullKey
		}
		sq.keyBuf = strconv.AppendInt(sq.keyBuf[:0], kc.i.Value(i), 10)
	}
	key = sq.keyBuf
	a := sq.assets[string(key)]
	if a == nil {
		if len(sq.assets) >= sq.maxAssets {
			sq.makeRoom()
		}
		a = &seqAsset{key: string(key), vals: make([]float64, sq.k*sq.f)}
		sq.assets[a.key] = a
	}
	sq.clock++
	a.seen = sq.clock
	a.push(sq.cur, sq.k, sq.f)
	if a.n < sq.k {
		sq.cWarm.Add(1)
		return sq.errWarm
	}
	sq.write(a, x, scale, offset)
	return nil
}

// write writes the K rows of a full history a, oldest first, transformed,
// to x.
func (sq *seqState) write(a *seqAsset, x, scale, offset []float64) {
	f := sq.f
	for t := range sq.k {
		src := a.vals[((a.next+t)%sq.k)*f : ((a.next+t)%sq.k+1)*f]
		dst := x[t*f : (t+1)*f]
		for j, v := range src {
			dst[j] = v*scale[j] + offset[j]
		}
	}
}

// makeRoom forgets the histories of a sixteenth of max_assets assets (at
// least one), those seen longest ago, so that a flood of new keys costs a
// constant time per key and never grows the state beyond max_assets. It is
// counted (evicted_assets) and logged at most once a minute.
func (sq *seqState) makeRoom() {
	need := len(sq.assets) - sq.maxAssets + max(1, sq.maxAssets/16)
	all := sq.scratch[:0]
	for _, a := range sq.assets {
		all = append(all, a)
	}
	slices.SortFunc(all, func(a, b *seqAsset) int { return cmp.Compare(a.seen, b.seen) })
	for _, a := range all[:min(need, len(all))] {
		delete(sq.assets, a.key)
	}
	sq.cEvicted.Add(int64(min(need, len(all))))
	sq.unlogged += int64(min(need, len(all)))
	clear(all)
	sq.scratch = all[:0]
	if now := time.Now(); now.Sub(sq.lastLog) >= time.Minute {
		sq.log.Warn("infer: forgot the sequence histories of the assets seen longest ago to stay within max_assets; they start their sequences again",
			"assets", sq.unlogged, "evicted_assets", sq.cEvicted.Load(), "max_assets", sq.maxAssets)
		sq.lastLog, sq.unlogged = now, 0
	}
}

// --- state (engine.Stateful, engine.Reconciler) ---

// State of an infer step with a sequence option: the history of every
// asset, so that sequences continue across a restart from a checkpoint
// and across a release switch (also one that changes the model, as long
// as the key, the length and the features stay: see Continues).
//
// Format, version 1 (varints are unsigned LEB128):
//
//	shape    8 bytes: FNV-64a of the key column, the length and the feature names
//	length   uvarint K; uvarint F (features); string key column
//	clock    uvarint: the row clock
//	assets   uvarint n; per asset, by key: string key, uvarint seen,
//	         uvarint rows held (1 to K), then rows x F float64, oldest first
//
// Equal states give equal bytes.
const (
	// StateKind is the Kind of the state of an infer step.
	StateKind = "infer"
	// StateVersion is the version of the state format.
	StateVersion = 1
)

func (sq *seqState) shape() uint64 {
	w := statecodec.NewWriter(nil)
	w.String(sq.keyName)
	w.Uvarint(uint64(sq.k))
	for _, f := range sq.features {
		w.String(f)
	}
	h := fnv.New64a()
	h.Write(w.Bytes())
	return h.Sum64()
}

func (sq *seqState) snapshot() *engine.State {
	all := make([]*seqAsset, 0, len(sq.assets))
	for _, a := range sq.assets {
		all = append(all, a)
	}
	slices.SortFunc(all, func(a, b *seqAsset) int { return strings.Compare(a.key, b.key) })
	w := statecodec.NewWriter(make([]byte, 0, 64+len(all)*(16+sq.k*sq.f*8)))
	w.Uint64(sq.shape())
	w.Uvarint(uint64(sq.k))
	w.Uvarint(uint64(sq.f))
	w.String(sq.keyName)
	w.Uvarint(sq.clock)
	w.Uvarint(uint64(len(all)))
	for _, a := range all {
		w.String(a.key)
		w.Uvarint(a.seen)
		w.Uvarint(uint64(a.n))
		for t := sq.k - a.n; t < sq.k; t++ {
			p := (a.next + t) % sq.k
			for _, v := range a.vals[p*sq.f : (p+1)*sq.f] {
				w.Float64(v)
			}
		}
	}
	return &engine.State{Kind: StateKind, Version: StateVersion, Data: w.Bytes()}
}

// restore reads a state written by a step with the same key, length and
// features. It keeps at most max_assets histories, the most recently seen.
// On error the histories are left as they were.
func (sq *seqState) restore(st *engine.State) (int, error) {
	if err := engine.CheckState(st, StateKind, StateVersion); err != nil {
		return 0, err
	}
	r := statecodec.NewReader(st.Data)
	shape := r.Uint64()
	k := r.Uint(MaxSequenceLength, "sequence length")
	f := r.Uint(1<<16, "features")
	key := r.String(1<<16, "key column")
	if r.Err() == nil && (shape != sq.shape() || int(k) != sq.k || int(f) != sq.f || key != sq.keyName) {
		return 0, fmt.Errorf("infer: the state is of sequences of %d rows of %d features by %q; this step takes %d rows of %v by %q",
			k, f, key, sq.k, sq.features, sq.keyName)
	}
	clock := r.Uvarint()
	minBytes := 3 + sq.f*8
	n := r.Count(MaxMaxAssets, minBytes, "assets")
	assets := make(map[string]*seqAsset, min(n, sq.maxAssets))
	type rawAsset struct {
		a   *seqAsset
		raw []byte // rows x F float64, aliasing the state
	}
	all := make([]rawAsset, 0, n)
	prev := ""
	for i := range n {
		a := &seqAsset{key: r.String(MaxSequenceKeyBytes, "key")}
		a.seen = r.Uvarint()
		a.n = int(r.Uint(uint64(sq.k), "rows"))
		if r.Err() != nil {
			break
		}
		if a.n == 0 || a.seen > clock || (i > 0 && a.key <= prev) {
			r.Failf("asset %d: %d rows, seen %d of %d, keys in order: %v", i, a.n, a.seen, clock, i == 0 || a.key > prev)
			break
		}
		prev = a.key
		raw := r.Raw(a.n * sq.f * 8)
		if raw == nil {
			break
		}
		a.next = a.n % sq.k
		all = append(all, rawAsset{a, raw})
	}
	if err := r.Done(); err != nil {
		return 0, fmt.Errorf("infer: %w", err)
	}
	// Histories are allocated only for the assets kept: the most recently
	// seen max_assets.
	if len(all) > sq.maxAssets {
		slices.SortFunc(all, func(a, b rawAsset) int { return cmp.Compare(b.a.seen, a.a.seen) })
		all = all[:sq.maxAssets]
	}
	for _, ra := range all {
		a := ra.a
		a.vals = make([]float64, sq.k*sq.f)
		vr := statecodec.NewReader(ra.raw)
		for j := range a.n * sq.f {
			a.vals[j] = vr.Float64()
		}
		assets[a.key] = a
	}
	sq.assets, sq.clock = assets, clock
	return len(all), nil
}

// SequenceStep is an infer step with the sequence option: a Step that
// keeps the history of every asset and hands it over (engine.Stateful)
// to a step built from the same configuration — across a restart from a
// checkpoint — and (engine.Reconciler) to a step of the same key, length
// and features built from another configuration or model — across a
// release switch that changes the model.
type SequenceStep struct {
	*Step
}

var (
	_ engine.Reconciler = (*SequenceStep)(nil)
	_ engine.Retirer    = (*SequenceStep)(nil)
)

// Snapshot returns the histories of the assets. It does not change the
// step.
func (s *SequenceStep) Snapshot() (*engine.State, error) {
	if s.closed {
		return nil, errors.New("infer: Snapshot after Close")
	}
	return s.seq.snapshot(), nil
}

// Restore reads the histories written by a step of the same key, length
// and features; on error the step is left as it was.
func (s *SequenceStep) Restore(st *engine.State) error {
	_, err := s.seq.restore(st)
	return err
}

// Continues reports whether the step can continue the histories of prev:
// an infer step with a sequence option of the same key, length and
// features (in order), whatever its model, transform or outputs.
func (s *SequenceStep) Continues(prev engine.Operator) bool {
	p, ok := prev.(*SequenceStep)
	return ok && p.seq.keyName == s.seq.keyName && p.seq.k == s.seq.k && slices.Equal(p.seq.features, s.seq.features) &&
		p.in.Equal(s.in)
}

// RestoreChanged is Restore for the state of a step that Continues
// accepted.
func (s *SequenceStep) RestoreChanged(st *engine.State) (string, error) {
	n, err := s.seq.restore(st)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("the sequences of %d assets", n), nil
}

// Retire emits nothing: the step announces nothing that lasts. It lets a
// release switch that changes the step hand its histories over.
func (s *SequenceStep) Retire(engine.Operator, engine.PortEmit) (int, error) { return 0, nil }
