package infer

import (
	"bytes"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/operators/infer/infertest"
)

// seqFeatures are the features of one sequence step in these tests.
var seqFeatures = []string{"f0", "f1", "n"}

// seqRows returns rows of assets assets interleaved irregularly (asset a
// gets a row with a probability that grows with a), with random features,
// the integer feature n included.
func seqRows(seed uint64, rows, assets int) []enginetest.Row {
	r := rand.New(rand.NewPCG(seed, 11))
	out := make([]enginetest.Row, 0, rows)
	for len(out) < rows {
		a := r.IntN(assets)
		if r.IntN(assets) > a+assets/4 {
			continue
		}
		row := enginetest.Row{t0 + int64(len(out))*1000, fmt.Sprintf("wt-%03d", a)}
		for range 9 {
			row = append(row, r.NormFloat64())
		}
		out = append(out, append(row, int64(r.IntN(21)-10), "run"))
	}
	return out
}

// seqRef computes what the step gives for every row with the plain-Go
// reference of model m: the row's asset's last k rows (transformed: f1 is
// scaled by 0.5 and offset by 1), or NaN before the asset has k rows.
func seqRef(m *infertest.Seq, rows []enginetest.Row) []float64 {
	hist := map[string][]float64{}
	out := make([]float64, len(rows))
	for i, r := range rows {
		key := r[1].(string)
		step := []float64{r[2].(float64), r[3].(float64)*0.5 + 1, float64(r[11].(int64))}
		hist[key] = append(hist[key], step...)
		h := hist[key]
		if len(h) < m.K*m.F {
			out[i] = math.NaN()
			continue
		}
		out[i] = m.Ref(h[len(h)-m.K*m.F:])
	}
	return out
}

func seqConfig(extra string) string {
	return fmt.Sprintf("model: m.onnx\nversion: v1\nfeatures: [%s]\ntransform: {f1: {scale: 0.5, offset: 1}}\n", strings.Join(seqFeatures, ", ")) + extra
}

// seqModels are the sequence models of the golden tests: 6 steps of 3
// features, 8 units.
func seqModels() []*infertest.Seq {
	return []*infertest.Seq{infertest.NewSeqLSTM(81, 6, 3, 8), infertest.NewSeqGRU(82, 6, 3, 8)}
}

// TestSequenceGolden: with the sequence option, each row is scored with
// the last K rows of its asset, as the plain-Go LSTM and GRU compute it,
// to 1e-6 relative; the rows before an asset has K rows go to the errors
// port with the reason; the 4,096 rows scored as one batch (one model
// call, [rows x K x features]), in calls of 100 rows (batch_rows) and as
// 4,096 batches of one row give identical values.
func TestSequenceGolden(t *testing.T) {
	const rows, assets = 4096, 60
	input := seqRows(83, rows, assets)
	for _, m := range seqModels() {
		t.Run(m.Cell, func(t *testing.T) {
			dir := t.TempDir()
			writeModel(t, dir, "m.onnx", m.ONNX())
			cfg := seqConfig("sequence: {length: 6}\n")
			want := seqRef(m, input)
			whole, cnt := runStep(t, dir, cfg, input)
			if cnt["model_calls"] != 1 {
				t.Errorf("%d model calls for one batch", cnt["model_calls"])
			}
			pi := len(in.Fields)
			var scored, warm int
			for _, w := range want {
				if math.IsNaN(w) {
					warm++
				} else {
					scored++
				}
			}
			if len(whole[0]) != scored || len(whole[1]) != warm || warm == 0 || int(cnt["sequence_warming_rows"]) != warm {
				t.Fatalf("%d rows scored, %d to errors (counter %d); want %d and %d", len(whole[0]), len(whole[1]), cnt["sequence_warming_rows"], scored, warm)
			}
			k := 0
			for i, w := range want {
				if math.IsNaN(w) {
					continue
				}
				got := whole[0][k]
				if got[0] != input[i][0] || !relClose(got[pi].(float64), w, 1e-6) || got[pi+1] != "v1" {
					t.Fatalf("row %d (%s): %v, reference %v", i, input[i][1], got[pi:], w)
				}
				k++
			}
			for _, r := range whole[1] {
				if r[len(r)-1] != "sequence: the asset has fewer than 6 rows yet" {
					t.Fatalf("error row %v", r)
				}
			}
			chunked, cntc := runStep(t, dir, cfg+"batch_rows: 100\n", input)
			if want := int64((scored + 99) / 100); cntc["model_calls"] != want {
				t.Errorf("%d model calls of at most 100 rows for %d rows, want %d", cntc["model_calls"], scored, want)
			}
			for i := range whole[0] {
				if chunked[0][i][pi] != whole[0][i][pi] {
					t.Fatalf("row %d: %v in calls of 100 rows, %v in one call", i, chunked[0][i][pi], whole[0][i][pi])
				}
			}
			single, cnt1 := runStep(t, dir, cfg, split(input, 1)...)
			if int(cnt1["model_calls"]) != scored {
				t.Errorf("%d model calls for %d scored rows in batches of one", cnt1["model_calls"], scored)
			}
			if len(single[0]) != len(whole[0]) {
				t.Fatalf("batches of one: %d rows, one batch: %d", len(single[0]), len(whole[0]))
			}
			for i := range whole[0] {
				if single[0][i][pi] != whole[0][i][pi] {
					t.Fatalf("row %d: %v in a batch of one, %v in one batch of 4,096", i, single[0][i][pi], whole[0][i][pi])
				}
			}
		})
	}
}

// TestSequencePass: with on_invalid: pass, the rows before an asset has K
// rows pass with null outputs.
func TestSequencePass(t *testing.T) {
	m := seqModels()[0]
	dir := t.TempDir()
	writeModel(t, dir, "m.onnx", m.ONNX())
	input := seqRows(84, 300, 10)
	want := seqRef(m, input)
	out, cnt := runStep(t, dir, seqConfig("on_invalid: pass\nsequence: {length: 6, key: asset}\n"), input)
	if len(out[0]) != len(input) || len(out[1]) != 0 {
		t.Fatalf("%d rows out, %d errors", len(out[0]), len(out[1]))
	}
	pi := len(in.Fields)
	for i, w := range want {
		got := out[0][i][pi]
		if math.IsNaN(w) != (got == nil) || got != nil && !relClose(got.(float64), w, 1e-6) {
			t.Fatalf("row %d: %v, reference %v", i, got, w)
		}
	}
	if cnt["null_output_rows"] != cnt["sequence_warming_rows"] || cnt["null_output_rows"] == 0 {
		t.Errorf("counters %v", cnt)
	}
}

// seqStep builds a sequence step (registered form) for the model in dir.
func seqStep(t testing.TB, dir, cfg string, mem memory.Allocator, counters *engine.Counters, log *slog.Logger) *SequenceStep {
	t.Helper()
	s, err := New(parse(t, cfg), in, engine.BuildContext{Dir: dir, Mem: mem, Counters: counters, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	op, ok := s.Operator().(*SequenceStep)
	if !ok {
		t.Fatalf("operator %T", s.Operator())
	}
	return op
}

// feed runs batches through op and returns the output column of the
// prediction on the main port, as float64 (NaN for null), and the number
// of error rows.
func feed(t *testing.T, op engine.Operator, mem memory.Allocator, batches [][]enginetest.Row) ([]any, int) {
	t.Helper()
	col := enginetest.NewCollector()
	for _, rows := range batches {
		if err := op.Process(engine.Batch{Rec: enginetest.Record(mem, in, rows...)}, col.Emit); err != nil {
			t.Fatal(err)
		}
	}
	var preds []any
	for _, r := range col.Port(0) {
		preds = append(preds, r[len(in.Fields)])
	}
	return preds, len(col.Port(1))
}

// TestSequenceSnapshotRestore: a step whose histories are handed to a
// fresh step mid-stream (Snapshot, Restore) gives exactly the outputs of
// an uninterrupted run, at every cut; a corrupt or foreign state is
// refused and leaves the step as it was.
func TestSequenceSnapshotRestore(t *testing.T) {
	m := seqModels()[1]
	dir := t.TempDir()
	writeModel(t, dir, "m.onnx", m.ONNX())
	cfg := seqConfig("sequence: {length: 6}\n")
	input := split(seqRows(85, 1200, 40), 100)
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)

	ref := seqStep(t, dir, cfg, mem, nil, nil)
	want, wantErrs := feed(t, ref, mem, input)
	ref.Close()

	for _, cut := range []int{1, 3, 7} {
		op := seqStep(t, dir, cfg, mem, nil, nil)
		got, errs := feed(t, op, mem, input[:cut])
		op = enginetest.Restart(t, op, func() *SequenceStep { return seqStep(t, dir, cfg, mem, nil, nil) }, cut)
		more, errs2 := feed(t, op, mem, input[cut:])
		op.Close()
		got = append(got, more...)
		if errs+errs2 != wantErrs || len(got) != len(want) {
			t.Fatalf("cut %d: %d rows and %d errors, want %d and %d", cut, len(got), errs+errs2, len(want), wantErrs)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("cut %d: row %d: %v, uninterrupted %v", cut, i, got[i], want[i])
			}
		}
	}

	// Hostile states: every truncation and some flipped bytes are refused
	// (or read as another valid state), never a panic; a refused state
	// leaves the step's histories as they were.
	op := seqStep(t, dir, cfg, mem, nil, nil)
	defer op.Close()
	feed(t, op, mem, input[:2])
	st, err := op.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	for n := range len(st.Data) {
		if err := op.Restore(&engine.State{Kind: StateKind, Version: StateVersion, Data: st.Data[:n]}); err == nil {
			t.Fatalf("a state truncated to %d of %d bytes was accepted", n, len(st.Data))
		}
	}
	r := rand.New(rand.NewPCG(86, 1))
	for range 2000 {
		bad := bytes.Clone(st.Data)
		bad[r.IntN(len(bad))] ^= byte(1 + r.IntN(255))
		_ = op.Restore(&engine.State{Kind: StateKind, Version: StateVersion, Data: bad})
		if err := op.Restore(st); err != nil {
			t.Fatal(err)
		}
	}
	if again, _ := op.Snapshot(); !bytes.Equal(again.Data, st.Data) {
		t.Fatal("the step's state changed")
	}
	for _, bad := range []*engine.State{{Kind: "alert", Version: StateVersion, Data: st.Data}, {Kind: StateKind, Version: 9, Data: st.Data}} {
		if err := op.Restore(bad); err == nil {
			t.Errorf("state %s v%d accepted", bad.Kind, bad.Version)
		}
	}
	other := seqStep(t, dir, seqConfig("sequence: {length: 6, max_assets: 5}\n"), mem, nil, nil)
	defer other.Close()
	if err := other.Restore(st); err != nil {
		t.Fatal(err)
	}
	if len(other.seq.assets) != 5 {
		t.Errorf("a step of max_assets 5 restored %d histories", len(other.seq.assets))
	}
	m2 := infertest.NewSeqGRU(87, 3, 3, 4)
	writeModel(t, dir, "short.onnx", m2.ONNX())
	short := seqStep(t, dir, strings.Replace(seqConfig("sequence: {length: 3}\n"), "m.onnx", "short.onnx", 1), mem, nil, nil)
	defer short.Close()
	if err := short.Restore(st); err == nil || !strings.Contains(err.Error(), "sequences of 6 rows") {
		t.Errorf("a state of length 6 restored into a step of length 3: %v", err)
	}
}

// TestSequenceModelChange: a release switch that changes the model (same
// key, length and features) hands the histories over (Continues,
// RestoreChanged): the new model scores the assets' next rows at once,
// with the rows that came before the switch in their sequences.
func TestSequenceModelChange(t *testing.T) {
	m1, m2 := infertest.NewSeqLSTM(88, 6, 3, 8), infertest.NewSeqLSTM(89, 6, 3, 8)
	dir := t.TempDir()
	writeModel(t, dir, "m.onnx", m1.ONNX())
	writeModel(t, dir, "m2.onnx", m2.ONNX())
	cfg1 := seqConfig("sequence: {length: 6}\n")
	cfg2 := strings.Replace(cfg1, "m.onnx", "m2.onnx", 1)
	input := seqRows(90, 600, 20)
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	old := seqStep(t, dir, cfg1, mem, nil, nil)
	feed(t, old, mem, [][]enginetest.Row{input[:400]})
	next := seqStep(t, dir, cfg2, mem, nil, nil)
	defer next.Close()
	if !next.Continues(old) {
		t.Fatal("a step of another model does not continue the histories")
	}
	if n, _ := old.Retire(next, nil); n != 0 {
		t.Errorf("Retire emitted %d", n)
	}
	st, err := old.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	old.Close()
	kept, err := next.RestoreChanged(st)
	if err != nil || kept != "the sequences of 20 assets" {
		t.Fatalf("RestoreChanged: %q, %v", kept, err)
	}
	got, errs := feed(t, next, mem, [][]enginetest.Row{input[400:]})
	var want []float64
	for _, w := range seqRef(m2, input)[400:] {
		if !math.IsNaN(w) {
			want = append(want, w)
		}
	}
	if errs != 200-len(want) || len(got) != len(want) || len(want) < 190 {
		t.Fatalf("%d rows, %d errors after the switch; want %d scored", len(got), errs, len(want))
	}
	for i, w := range want {
		if !relClose(got[i].(float64), w, 1e-6) {
			t.Fatalf("row %d after the switch: %v, reference %v", i, got[i], w)
		}
	}
	for _, c := range []string{strings.Replace(cfg1, "length: 6", "length: 5", 1), strings.Replace(cfg1, "f0, f1, n", "f1, f0, n", 1)} {
		s, err := New(parse(t, c), in, engine.BuildContext{Dir: dir, Mem: mem})
		if err == nil {
			op := s.Operator().(*SequenceStep)
			if op.Continues(next) {
				t.Errorf("%q continues a step of length 6 over f0, f1, n", c)
			}
			op.Close()
		}
	}
}

// TestSequenceKeyFlood: a flood of new asset keys never holds more than
// max_assets histories: the assets seen longest ago are forgotten, counted
// and logged; null and over-long keys take the on_invalid path with the
// reason.
func TestSequenceKeyFlood(t *testing.T) {
	m := infertest.NewSeqGRU(91, 2, 3, 4)
	dir := t.TempDir()
	writeModel(t, dir, "m.onnx", m.ONNX())
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	var logs bytes.Buffer
	counters := engine.NewCounters()
	op := seqStep(t, dir, seqConfig("sequence: {length: 2, max_assets: 100}\n"), mem, counters, slog.New(slog.NewTextHandler(&logs, nil)))
	defer op.Close()
	flood := seqRows(92, 20000, 1)
	for i := range flood {
		flood[i][1] = fmt.Sprintf("hostile-%06d", i/2) // two rows per key: each is scored once
	}
	flood[10][1] = nil
	flood[11][1] = strings.Repeat("k", MaxSequenceKeyBytes+1)
	for _, b := range split(flood, 1000) {
		feed(t, op, mem, [][]enginetest.Row{b})
		if n := len(op.seq.assets); n > 100 {
			t.Fatalf("%d histories kept, max_assets 100", n)
		}
	}
	c := counters.Snapshot()
	if c["evicted_assets"] < 9800 || c["refused_key_rows"] != 2 || c["scored_rows"] < 9990 {
		t.Errorf("counters %v", c)
	}
	if !strings.Contains(logs.String(), "stay within max_assets") || strings.Count(logs.String(), "\n") > 2 {
		t.Errorf("log:\n%s", logs.String())
	}
	out, _ := runStep(t, dir, seqConfig("sequence: {length: 2}\n"), flood[:14])
	var reasons []string
	for _, r := range out[1] {
		reasons = append(reasons, r[len(r)-1].(string))
	}
	if !strings.Contains(strings.Join(reasons, "|"), "key asset is null|sequence: key asset is longer than 256 bytes") {
		t.Errorf("reasons %q", reasons)
	}
}

// TestSequenceConfigErrors: every mistake in the sequence option, or a
// sequence model without it, is a located error.
func TestSequenceConfigErrors(t *testing.T) {
	dir := t.TempDir()
	writeModel(t, dir, "m.onnx", infertest.NewSeqLSTM(93, 6, 3, 4).ONNX())
	writeModel(t, dir, "flat.onnx", newMLP(94, "Relu", true, 12, 4, 1).ONNX())
	nokey := engine.MustSchema(in.Fields, "time", "")
	for _, c := range []struct {
		cfg    string
		schema *engine.Schema
		want   string
	}{
		{seqConfig(""), in, "p.yaml:1:8: the model takes sequences of 6 steps of 3 features ([batch, 6, 3]): set sequence: {length: 6}"},
		{seqConfig("sequence: {length: 5}\n"), in, "sequence length 5, the model takes sequences of 6 steps"},
		{seqConfig("sequence: {length: 0}\n"), in, "sequence length must be 1 to 1024, got 0"},
		{seqConfig("sequence: {length: 2000}\n"), in, "sequence length must be 1 to 1024"},
		{seqConfig("sequence: {length: 6, key: nope}\n"), in, `sequence key "nope" is not a column`},
		{seqConfig("sequence: {length: 6, key: f2}\n"), in, `sequence key "f2" is float64; it must be string or int64`},
		{seqConfig("sequence: {length: 6}\n"), nokey, "sequence: the stream has no key; name the asset column (key)"},
		{seqConfig("sequence: {length: 6, max_assets: 0}\n"), in, "max_assets must be 1 to 1000000, got 0"},
		{seqConfig("sequence: {length: 1000, max_assets: 1000000}\n"), in, "more than the 256 MiB limit: lower max_assets"},
		{"model: m.onnx\nsequence: {length: 6}\n", in, "sequence: list the features of one row (features)"},
		{seqConfig("sequence: {length: 1024, max_assets: 10}\n"), in, "one model call of 4096 sequences of 1024 rows of 3 features would take 96 MiB, more than the 64 MiB limit: lower batch_rows to 2730"},
		{strings.Replace(seqConfig("sequence: {length: 3}\n"), "m.onnx", "flat.onnx", 1), in, "sequences of 3 rows of 3 features are 9 values, the model takes 12"},
	} {
		_, err := New(parse(t, c.cfg), c.schema, engine.BuildContext{Dir: dir})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.cfg, err, c.want)
		}
	}
}

// TestSequenceFlatModelInt64Key: a model of one row of K x features
// values ([batch, 12], a dense chain) takes the sequences too, here of
// assets named by an int64 column.
func TestSequenceFlatModelInt64Key(t *testing.T) {
	dir := t.TempDir()
	m := newMLP(98, "Tanh", true, 12, 6, 1)
	writeModel(t, dir, "flat.onnx", m.ONNX())
	input := seqRows(99, 500, 1)
	for i := range input {
		input[i][11] = int64(i % 7) // n: the key, and a feature
	}
	out, cnt := runStep(t, dir, strings.Replace(seqConfig("sequence: {length: 4, key: n}\n"), "m.onnx", "flat.onnx", 1), split(input, 64)...)
	hist := map[int64][]float64{}
	k := 0
	for _, r := range input {
		key := r[11].(int64)
		hist[key] = append(hist[key], r[2].(float64), r[3].(float64)*0.5+1, float64(key))
		if h := hist[key]; len(h) >= 12 {
			want := m.Ref(h[len(h)-12:])[0]
			if got := out[0][k][len(in.Fields)].(float64); !relClose(got, want, 1e-6) {
				t.Fatalf("row %d: %v, reference %v", k, got, want)
			}
			k++
		}
	}
	if k != len(out[0]) || cnt["sequence_warming_rows"] != 7*3 {
		t.Errorf("%d rows scored, want %d; counters %v", len(out[0]), k, cnt)
	}
}

// TestRecurrentLimits: what gonnx's recurrent operators cannot run is
// refused when the model is loaded, at the node: a batch-first layout, a
// reverse direction, sequence_lens, a constant initial state.
func TestRecurrentLimits(t *testing.T) {
	base := func() *onnx.ModelProto {
		mp := &onnx.ModelProto{}
		if err := protoUnmarshal(infertest.NewSeqLSTM(95, 4, 2, 3).ONNX(), mp); err != nil {
			t.Fatal(err)
		}
		return mp
	}
	for _, c := range []struct {
		name string
		edit func(n *onnx.NodeProto, g *onnx.GraphProto)
		want string
	}{
		{"layout", func(n *onnx.NodeProto, _ *onnx.GraphProto) {
			n.Attribute = append(n.Attribute, infertest.IntAttr("layout", 1))
		}, `does not support LSTM (node 1 "rnn")`},
		{"reverse", func(n *onnx.NodeProto, _ *onnx.GraphProto) {
			n.Attribute = append(n.Attribute, infertest.StringAttr("direction", "reverse"))
		}, `does not support LSTM (node 1 "rnn")`},
		{"sequence_lens", func(n *onnx.NodeProto, g *onnx.GraphProto) {
			g.Initializer = append(g.Initializer, &onnx.TensorProto{Name: "lens", Dims: []int64{1}, DataType: int32(onnx.TensorProto_INT32), Int32Data: []int32{4}})
			n.Input = append(n.Input, "lens")
		}, `does not support LSTM with sequence_lens (node 1 "rnn")`},
		{"initial_h", func(n *onnx.NodeProto, g *onnx.GraphProto) {
			g.Initializer = append(g.Initializer, infertest.FloatTensor("h0", make([]float32, 3), 1, 1, 3))
			n.Input = append(n.Input, "", "h0")
		}, `does not support LSTM with a constant initial_h (node 1 "rnn")`},
	} {
		t.Run(c.name, func(t *testing.T) {
			mp := base()
			c.edit(mp.Graph.Node[1], mp.Graph)
			_, err := LoadBytes(protoMarshal(mp), "onnx")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("%v, want %q", err, c.want)
			}
		})
	}
}

// BenchmarkSequenceStep runs the step with a 10-step GRU over 3 features
// on batches of 1,024 rows of 100 assets. allocs/op are per batch.
func BenchmarkSequenceStep(b *testing.B) {
	m := infertest.NewSeqGRU(96, 10, 3, 16)
	model, err := LoadBytes(m.ONNX(), "onnx")
	if err != nil {
		b.Fatal(err)
	}
	mem := memory.NewGoAllocator()
	rec := enginetest.Record(mem, in, seqRows(97, benchRows, 100)...)
	defer rec.Release()
	s, err := NewWithModel(parse(b, seqConfig("sequence: {length: 10}\n")), in, engine.BuildContext{Mem: mem}, model, "v1")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	sink := func(port int, bt engine.Batch) error { bt.Release(); return nil }
	b.ReportAllocs()
	for b.Loop() {
		rec.Retain()
		if err := s.Process(engine.Batch{Rec: rec}, sink); err != nil {
			b.Fatal(err)
		}
	}
	perRow := float64(b.Elapsed().Nanoseconds()) / float64(b.N*benchRows)
	b.ReportMetric(perRow, "ns/row")
	b.ReportMetric(1e9/perRow, "rows/s")
}

// TestSequenceOperatorSuite: the step with the sequence option keeps the
// operator contract, in both on_invalid modes.
func TestSequenceOperatorSuite(t *testing.T) {
	dir := t.TempDir()
	writeModel(t, dir, "m.onnx", infertest.NewSeqGRU(100, 3, 3, 4).ONNX())
	rows := seqRows(101, 40, 4)
	rows[7][2] = math.NaN()
	rows[9][1] = nil
	for _, mode := range []string{"errors", "pass"} {
		t.Run(mode, func(t *testing.T) {
			enginetest.RunOperatorSuite(t, enginetest.OperatorCase{
				New: func(t testing.TB, mem memory.Allocator) engine.Operator {
					return seqStep(t, dir, seqConfig("on_invalid: "+mode+"\nsequence: {length: 3}\n"), mem, nil, nil)
				},
				In:    in,
				Input: [][]enginetest.Row{rows[:10], rows[10:], {}},
			})
		})
	}
}
