package outbound_test

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/outbound"
)

var testSchema = engine.MustSchema([]engine.Field{
	{Name: "ts", Type: engine.Timestamp},
	{Name: "asset", Type: engine.String},
	{Name: "power", Type: engine.Float64},
	{Name: "status", Type: engine.String},
	{Name: "count", Type: engine.Int64},
	{Name: "ok", Type: engine.Bool},
}, "ts", "asset")

var t0 = time.Date(2024, 1, 2, 3, 4, 5, 678e6, time.UTC)

func testRecord(mem memory.Allocator) arrow.RecordBatch {
	return enginetest.Record(mem, testSchema,
		enginetest.Row{t0, "T1", 1.5, "run", int64(7), true},
		enginetest.Row{t0.Add(time.Second), "T2", nil, `a"b\`, int64(-1), false},
		enginetest.Row{t0.Add(-time.Second), nil, math.NaN(), nil, nil, nil},
	)
}

func TestEncodeJSONRows(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	rec := testRecord(mem)
	defer rec.Release()

	msgs, err := outbound.Encode(outbound.JSON, "edge1", "stats", outbound.Entry{Rec: rec, First: 41, Schema: testSchema, Backfill: true})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`{"id":"edge1/stats/41","edge":"edge1","stream":"stats","seq":41,"assetId":"T1","time":1704164645678,"measurepoints":{"power":1.5,"status":"run","count":7,"ok":true},"backfill":true}`,
		`{"id":"edge1/stats/42","edge":"edge1","stream":"stats","seq":42,"assetId":"T2","time":1704164646678,"measurepoints":{"status":"a\"b\\","count":-1,"ok":false},"backfill":true}`,
		`{"id":"edge1/stats/43","edge":"edge1","stream":"stats","seq":43,"time":1704164644678,"measurepoints":{},"backfill":true}`,
	}
	if len(msgs) != len(want) {
		t.Fatalf("got %d messages, want %d", len(msgs), len(want))
	}
	for i, m := range msgs {
		if string(m.Payload) != want[i] {
			t.Errorf("message %d:\n got %s\nwant %s", i, m.Payload, want[i])
		}
		if !json.Valid(m.Payload) {
			t.Errorf("message %d is not valid JSON", i)
		}
		id := outbound.RowID("edge1", "stats", uint64(41+i))
		if m.UUID != id || m.Metadata.Get(outbound.MetaID) != id {
			t.Errorf("message %d: uuid %q, id %q, want %q", i, m.UUID, m.Metadata.Get(outbound.MetaID), id)
		}
	}
	wantMeta := map[string]string{
		"id": "edge1/stats/42", "edge": "edge1", "stream": "stats", "first_seq": "42", "last_seq": "42",
		"time_min": "2024-01-02T03:04:06.678Z", "time_max": "2024-01-02T03:04:06.678Z",
		"backfill": "true", "encoding": "json", "asset": "T2",
	}
	checkMeta(t, msgs[1], wantMeta)
	if _, ok := msgs[2].Metadata[outbound.MetaAsset]; ok {
		t.Errorf("null key gave an asset entry")
	}
}

// TestAssetHeaderSafe keeps asset values that would break a header
// (line breaks could inject NATS or HTTP headers) out of the metadata.
func TestAssetHeaderSafe(t *testing.T) {
	rec := enginetest.Record(memory.DefaultAllocator, testSchema,
		enginetest.Row{t0, "WT\r\nNats-Msg-Id: x", 1.0, "run", int64(1), true},
		enginetest.Row{t0, strings.Repeat("a", 300), 1.0, "run", int64(1), true},
		enginetest.Row{t0, "Windpark Süd/WT 01", 1.0, "run", int64(1), true},
	)
	defer rec.Release()
	msgs, err := outbound.Encode(outbound.JSON, "e", "s", outbound.Entry{Rec: rec, First: 1, Schema: testSchema})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{false, false, true} {
		if _, ok := msgs[i].Metadata[outbound.MetaAsset]; ok != want {
			t.Errorf("row %d: asset metadata present %v, want %v", i, ok, want)
		}
		if !strings.Contains(string(msgs[i].Payload), `"assetId":`) {
			t.Errorf("row %d: assetId missing from the payload", i)
		}
	}
}

func checkMeta(t *testing.T, m *message.Message, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got, ok := m.Metadata[k]; !ok || got != v {
			t.Errorf("metadata %s = %q (present %v), want %q", k, got, ok, v)
		}
	}
	if len(m.Metadata) != len(want) {
		t.Errorf("metadata has %d entries, want %d: %v", len(m.Metadata), len(want), m.Metadata)
	}
}

func TestEncodeJSONBatch(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	rec := testRecord(mem)
	defer rec.Release()

	msgs, err := outbound.Encode(outbound.JSONBatch, "edge1", "stats", outbound.Entry{Rec: rec, First: 41, Schema: testSchema})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("got %d messages, want 1", len(msgs))
	}
	want := `{"id":"edge1/stats/41-43","edge":"edge1","stream":"stats","first_seq":41,"last_seq":43,"backfill":false,"rows":[` +
		`{"seq":41,"assetId":"T1","time":1704164645678,"measurepoints":{"power":1.5,"status":"run","count":7,"ok":true}},` +
		`{"seq":42,"assetId":"T2","time":1704164646678,"measurepoints":{"status":"a\"b\\","count":-1,"ok":false}},` +
		`{"seq":43,"time":1704164644678,"measurepoints":{}}]}`
	if got := string(msgs[0].Payload); got != want {
		t.Errorf("payload:\n got %s\nwant %s", got, want)
	}
	checkMeta(t, msgs[0], map[string]string{
		"id": "edge1/stats/41-43", "edge": "edge1", "stream": "stats", "first_seq": "41", "last_seq": "43",
		"time_min": "2024-01-02T03:04:04.678Z", "time_max": "2024-01-02T03:04:06.678Z",
		"backfill": "false", "encoding": "json_batch",
	})
}

func TestEncodeArrow(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	rec := testRecord(mem)
	defer rec.Release()

	enc := &outbound.Encoder{Encoding: outbound.Arrow, Edge: "edge1", Stream: "stats", Mem: mem}
	msgs, err := enc.Encode(outbound.Entry{Rec: rec, First: 41, Schema: testSchema, Backfill: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("got %d messages, want 1", len(msgs))
	}
	checkMeta(t, msgs[0], map[string]string{
		"id": "edge1/stats/41-43", "edge": "edge1", "stream": "stats", "first_seq": "41", "last_seq": "43",
		"time_min": "2024-01-02T03:04:04.678Z", "time_max": "2024-01-02T03:04:06.678Z",
		"backfill": "true", "encoding": "arrow",
	})
	full := readArrow(t, mem, msgs[0].Payload)
	defer full.Release()
	// The stream's columns, then _seq: every row carries its sequence.
	n := int(rec.NumCols())
	if int(full.NumCols()) != n+1 || full.Schema().Field(n).Name != outbound.SeqColumn {
		t.Fatalf("arrow payload columns %v, want the stream's and %s", full.Schema(), outbound.SeqColumn)
	}
	seqs := full.Column(n).(*array.Int64)
	for i := range seqs.Len() {
		if seqs.Value(i) != int64(41+i) {
			t.Fatalf("row %d: _seq %d, want %d", i, seqs.Value(i), 41+i)
		}
	}
	got := array.NewRecordBatch(arrow.NewSchema(full.Schema().Fields()[:n], nil), full.Columns()[:n], full.NumRows())
	defer got.Release()
	if !recordsEqual(rec, got) {
		t.Errorf("decoded record differs:\n got %v\nwant %v", enginetest.Rows(got), enginetest.Rows(rec))
	}
	md := full.Schema().Metadata()
	for k, v := range map[string]string{
		outbound.ArrowMetaEdge: "edge1", outbound.ArrowMetaStream: "stats", outbound.ArrowMetaFirstSeq: "41",
		outbound.ArrowMetaBackfill: "true", outbound.ArrowMetaTime: "ts", outbound.ArrowMetaKey: "asset",
	} {
		if i := md.FindKey(k); i < 0 || md.Values()[i] != v {
			t.Errorf("arrow metadata %s: want %q in %v", k, v, md)
		}
	}
}

func recordsEqual(a, b arrow.RecordBatch) bool {
	if a.NumRows() != b.NumRows() || a.NumCols() != b.NumCols() {
		return false
	}
	ra, rb := enginetest.Rows(a), enginetest.Rows(b)
	for i := range ra {
		for j := range ra[i] {
			x, y := ra[i][j], rb[i][j]
			if fx, ok := x.(float64); ok && math.IsNaN(fx) {
				if fy, ok := y.(float64); !ok || !math.IsNaN(fy) {
					return false
				}
				continue
			}
			if x != y {
				return false
			}
		}
	}
	return true
}

func readArrow(t *testing.T, mem memory.Allocator, payload []byte) arrow.RecordBatch {
	t.Helper()
	r, err := ipc.NewReader(bytes.NewReader(payload), ipc.WithAllocator(mem))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release()
	if !r.Next() {
		t.Fatalf("no record in payload: %v", r.Err())
	}
	rec := r.RecordBatch()
	rec.Retain()
	if r.Next() {
		t.Errorf("more than one record in payload")
	}
	return rec
}

// runRecord returns n rows of one turbine, a second apart.
func runRecord(mem memory.Allocator, n int) arrow.RecordBatch {
	rows := make([]enginetest.Row, n)
	for i := range rows {
		rows[i] = enginetest.Row{t0.Add(time.Duration(i) * time.Second), "T1", float64(i), "run", int64(i), true}
	}
	return enginetest.Record(mem, testSchema, rows...)
}

// TestEncodeSplitAligned checks that runs longer than BatchRows are split
// at multiples of BatchRows in sequence space, so that the same rows read
// as differently cut entries give the same IDs for whole blocks.
func TestEncodeSplitAligned(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	rec := runRecord(mem, 25)
	defer rec.Release()

	for _, enc := range []outbound.Encoding{outbound.JSONBatch, outbound.Arrow} {
		t.Run(string(enc), func(t *testing.T) {
			e := &outbound.Encoder{Encoding: enc, Edge: "e", Stream: "s", BatchRows: 10, Mem: mem}
			// Rows 0..24 carry sequences 7..31: blocks of 10 counted from
			// sequence 1: 7-10, 11-20, 21-30, 31-31.
			msgs, err := e.Encode(outbound.Entry{Rec: rec, First: 7, Schema: testSchema})
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, m := range msgs {
				ids = append(ids, m.UUID)
			}
			want := []string{"e/s/7-10", "e/s/11-20", "e/s/21-30", "e/s/31-31"}
			if strings.Join(ids, " ") != strings.Join(want, " ") {
				t.Fatalf("ids %v, want %v", ids, want)
			}
			// The same rows read as two entries cut at 15 (rows 0..7 and 8..24).
			a, b := rec.NewSlice(0, 8), rec.NewSlice(8, 25)
			defer a.Release()
			defer b.Release()
			ma, err := e.Encode(outbound.Entry{Rec: a, First: 7, Schema: testSchema})
			if err != nil {
				t.Fatal(err)
			}
			mb, err := e.Encode(outbound.Entry{Rec: b, First: 15, Schema: testSchema})
			if err != nil {
				t.Fatal(err)
			}
			byID := map[string][]byte{}
			for _, m := range append(ma, mb...) {
				byID[m.UUID] = m.Payload
			}
			// Whole blocks keep their IDs and bytes.
			for _, m := range msgs {
				if p, ok := byID[m.UUID]; ok && !bytes.Equal(p, m.Payload) {
					t.Errorf("%s: same id, different payload", m.UUID)
				}
			}
			for _, id := range []string{"e/s/7-10", "e/s/21-30", "e/s/31-31"} {
				if _, ok := byID[id]; !ok {
					t.Errorf("block %s not reproduced by the re-cut entries (got %v)", id, keys(byID))
				}
			}
		})
	}
}

// TestEncodeFollowsStarts checks that entries with message boundaries are
// cut exactly there, whatever BatchRows says, and that the same rows read
// as entries cut at a boundary give the same messages.
func TestEncodeFollowsStarts(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	rec := runRecord(mem, 25)
	defer rec.Release()
	for _, enc := range []outbound.Encoding{outbound.JSONBatch, outbound.Arrow} {
		t.Run(string(enc), func(t *testing.T) {
			e := &outbound.Encoder{Encoding: enc, Edge: "e", Stream: "s", BatchRows: 4, Mem: mem}
			// Sequences 7..31, messages starting at 7, 10 and 20.
			msgs, err := e.Encode(outbound.Entry{Rec: rec, First: 7, Starts: []uint64{7, 10, 20}, Schema: testSchema})
			if err != nil {
				t.Fatal(err)
			}
			whole := map[string][]byte{}
			var ids []string
			for _, m := range msgs {
				ids = append(ids, m.UUID)
				whole[m.UUID] = m.Payload
			}
			if got, want := strings.Join(ids, " "), "e/s/7-9 e/s/10-19 e/s/20-31"; got != want {
				t.Fatalf("ids %s, want %s", got, want)
			}
			// The same rows as two entries cut at 20 (a boundary).
			a, b := rec.NewSlice(0, 13), rec.NewSlice(13, 25)
			defer a.Release()
			defer b.Release()
			ma, err := e.Encode(outbound.Entry{Rec: a, First: 7, Starts: []uint64{7, 10}, Schema: testSchema})
			if err != nil {
				t.Fatal(err)
			}
			mb, err := e.Encode(outbound.Entry{Rec: b, First: 20, Starts: []uint64{20}, Schema: testSchema})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range append(ma, mb...) {
				if p, ok := whole[m.UUID]; !ok || !bytes.Equal(p, m.Payload) {
					t.Errorf("%s: not the message of the whole entry", m.UUID)
				}
			}
		})
	}
}

// TestRowIdentityInEveryEncoding checks that every row of every encoding
// carries edge, stream and its sequence, so that a consumer can
// deduplicate rows whatever the message packing.
func TestRowIdentityInEveryEncoding(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	rec := testRecord(mem)
	defer rec.Release()
	for _, enc := range []outbound.Encoding{outbound.JSON, outbound.JSONBatch, outbound.Arrow} {
		msgs, err := outbound.Encode(enc, "edge1", "stats", outbound.Entry{Rec: rec, First: 41, Schema: testSchema})
		if err != nil {
			t.Fatal(err)
		}
		var seqs []int64
		for _, m := range msgs {
			switch enc {
			case outbound.JSON:
				var v struct {
					Edge, Stream string
					Seq          int64
				}
				if err := json.Unmarshal(m.Payload, &v); err != nil || v.Edge != "edge1" || v.Stream != "stats" {
					t.Fatalf("json: %s (%v)", m.Payload, err)
				}
				seqs = append(seqs, v.Seq)
			case outbound.JSONBatch:
				var v struct {
					Edge, Stream string
					Rows         []struct{ Seq int64 }
				}
				if err := json.Unmarshal(m.Payload, &v); err != nil || v.Edge != "edge1" || v.Stream != "stats" {
					t.Fatalf("json_batch: %s (%v)", m.Payload, err)
				}
				for _, r := range v.Rows {
					seqs = append(seqs, r.Seq)
				}
			case outbound.Arrow:
				r := readArrow(t, mem, m.Payload)
				md := r.Schema().Metadata()
				if md.Values()[md.FindKey(outbound.ArrowMetaEdge)] != "edge1" || md.Values()[md.FindKey(outbound.ArrowMetaStream)] != "stats" {
					t.Fatalf("arrow metadata %v", md)
				}
				idx := r.Schema().FieldIndices(outbound.SeqColumn)
				if len(idx) != 1 {
					t.Fatalf("arrow payload without %s", outbound.SeqColumn)
				}
				seqs = append(seqs, r.Column(idx[0]).(*array.Int64).Int64Values()...)
				r.Release()
			}
		}
		if len(seqs) != 3 || seqs[0] != 41 || seqs[1] != 42 || seqs[2] != 43 {
			t.Fatalf("%s: row sequences %v, want 41 42 43", enc, seqs)
		}
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestEncodeDeterministic(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	rec := testRecord(mem)
	defer rec.Release()
	for _, enc := range []outbound.Encoding{outbound.JSON, outbound.JSONBatch, outbound.Arrow} {
		e1 := &outbound.Encoder{Encoding: enc, Edge: "e", Stream: "s", Mem: mem}
		e2 := &outbound.Encoder{Encoding: enc, Edge: "e", Stream: "s", Mem: mem}
		en := outbound.Entry{Rec: rec, First: 1, Schema: testSchema}
		a, err := e1.Encode(en)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = e1.Encode(en) // warm scratch state must not change output
		b, err := e1.Encode(en)
		if err != nil {
			t.Fatal(err)
		}
		c, err := e2.Encode(en)
		if err != nil {
			t.Fatal(err)
		}
		for i := range a {
			if !bytes.Equal(a[i].Payload, b[i].Payload) || !bytes.Equal(a[i].Payload, c[i].Payload) {
				t.Errorf("%s: message %d differs between runs", enc, i)
			}
		}
	}
}

// TestEncodePayloadsIndependent checks that payloads sharing one buffer do
// not overlap: appending to one must not change the next.
func TestEncodePayloadsIndependent(t *testing.T) {
	rec := testRecord(memory.DefaultAllocator)
	defer rec.Release()
	msgs, err := outbound.Encode(outbound.JSON, "e", "s", outbound.Entry{Rec: rec, First: 1, Schema: testSchema})
	if err != nil {
		t.Fatal(err)
	}
	second := string(msgs[1].Payload)
	_ = append(msgs[0].Payload, "garbage"...)
	if string(msgs[1].Payload) != second {
		t.Fatal("appending to one payload changed the next")
	}
}

func TestEncodeNoSchema(t *testing.T) {
	rec := testRecord(memory.DefaultAllocator)
	defer rec.Release()
	msgs, err := outbound.Encode(outbound.JSON, "e", "s", outbound.Entry{Rec: rec, First: 1})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"e/s/1","edge":"e","stream":"s","seq":1,"time":1704164645678,"measurepoints":{"asset":"T1","power":1.5,"status":"run","count":7,"ok":true},"backfill":false}`
	if string(msgs[0].Payload) != want {
		t.Errorf("got %s\nwant %s", msgs[0].Payload, want)
	}
}

func TestEncodeErrors(t *testing.T) {
	rec := testRecord(memory.DefaultAllocator)
	defer rec.Release()
	other := engine.MustSchema([]engine.Field{{Name: "x", Type: engine.Timestamp}}, "x", "")
	cases := []struct {
		name         string
		enc          outbound.Encoding
		edge, stream string
		entry        outbound.Entry
		want         string
	}{
		{"no record", outbound.JSON, "e", "s", outbound.Entry{}, "no record"},
		{"slash in edge", outbound.JSON, "a/b", "s", outbound.Entry{Rec: rec}, "edge"},
		{"empty stream", outbound.JSON, "e", "", outbound.Entry{Rec: rec}, "stream"},
		{"space in stream", outbound.JSON, "e", "a b", outbound.Entry{Rec: rec}, "stream"},
		{"unknown encoding", "xml", "e", "s", outbound.Entry{Rec: rec}, "unknown encoding"},
		{"schema mismatch", outbound.JSON, "e", "s", outbound.Entry{Rec: rec, Schema: other}, "columns"},
		{"sequence overflow", outbound.JSON, "e", "s", outbound.Entry{Rec: rec, First: math.MaxUint64 - 1}, "overflow"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := outbound.Encode(c.enc, c.edge, c.stream, c.entry)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want it to mention %q", err, c.want)
			}
		})
	}
	empty := enginetest.Record(memory.DefaultAllocator, testSchema)
	defer empty.Release()
	msgs, err := outbound.Encode(outbound.JSONBatch, "e", "s", outbound.Entry{Rec: empty})
	if err != nil || len(msgs) != 0 {
		t.Fatalf("empty entry: %d messages, err %v", len(msgs), err)
	}
}

func TestIDs(t *testing.T) {
	if got := outbound.RowID("e", "s", 42); got != "e/s/42" {
		t.Errorf("RowID %q", got)
	}
	if got := outbound.BatchID("e", "s", 1, 9); got != "e/s/1-9" {
		t.Errorf("BatchID %q", got)
	}
	for _, c := range []struct {
		id           string
		edge, stream string
		first, last  uint64
		batch, ok    bool
	}{
		{"e/s/42", "e", "s", 42, 42, false, true},
		{"edge-1/stats.1m/1-9", "edge-1", "stats.1m", 1, 9, true, true},
		{"e/s/9-1", "", "", 0, 0, false, false},
		{"e/s", "", "", 0, 0, false, false},
		{"e/s/x", "", "", 0, 0, false, false},
		{"/s/1", "", "", 0, 0, false, false},
		{"e/s/1/2", "", "", 0, 0, false, false},
	} {
		edge, stream, first, last, batch, err := outbound.ParseID(c.id)
		if (err == nil) != c.ok {
			t.Errorf("ParseID(%q) err %v, want ok=%v", c.id, err, c.ok)
			continue
		}
		if c.ok && (edge != c.edge || stream != c.stream || first != c.first || last != c.last || batch != c.batch) {
			t.Errorf("ParseID(%q) = %q %q %d %d %v", c.id, edge, stream, first, last, batch)
		}
	}
}

func TestFormatTime(t *testing.T) {
	for _, ms := range []int64{0, 1704164645678, -1, 253402300799999, 951782400000} {
		want := time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
		if got := outbound.FormatTime(ms); got != want {
			t.Errorf("FormatTime(%d) = %q, want %q", ms, got, want)
		}
	}
}

func TestParseEncoding(t *testing.T) {
	for _, s := range outbound.Encodings() {
		if e, err := outbound.ParseEncoding(s); err != nil || string(e) != s {
			t.Errorf("ParseEncoding(%q) = %q, %v", s, e, err)
		}
	}
	if _, err := outbound.ParseEncoding("avro"); err == nil {
		t.Error("avro accepted")
	}
	if outbound.Arrow.ContentType() != "application/vnd.apache.arrow.stream" || outbound.JSON.ContentType() != "application/json" {
		t.Error("content types")
	}
}
