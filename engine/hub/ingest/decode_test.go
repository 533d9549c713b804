package ingest_test

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/hub/ingest"
	"github.com/sluice-edge/sluice/engine/hub/store"
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

var encodings = []outbound.Encoding{outbound.JSON, outbound.JSONBatch, outbound.Arrow}

func headers(m *message.Message) ingest.Headers {
	h := ingest.Headers{}
	for k, v := range m.Metadata {
		h[k] = []string{v}
	}
	return h
}

// encode encodes rows with the outbound encoder.
func encode(t testing.TB, enc outbound.Encoding, edge string, first uint64, backfill bool, s *engine.Schema, rows ...enginetest.Row) []*message.Message {
	t.Helper()
	rec := enginetest.Record(memory.DefaultAllocator, s, rows...)
	defer rec.Release()
	e := outbound.Encoder{Encoding: enc, Edge: edge, Stream: "stats", BatchRows: 100}
	msgs, err := e.Encode(outbound.Entry{Rec: rec, First: first, Schema: s, Backfill: backfill})
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// normal renders values as the json encodings carry them: NaN and ±Inf
// left out, numbers by their JSON text.
func normal(t *testing.T, v map[string]any) string {
	t.Helper()
	c := map[string]any{}
	for k, x := range v {
		if f, ok := x.(float64); ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
			continue
		}
		c[k] = x
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDecodeRoundTrip(t *testing.T) {
	t0 := time.Date(2024, 1, 2, 3, 4, 5, 678e6, time.UTC)
	cases := []struct {
		name     string
		backfill bool
		first    uint64
		rows     []enginetest.Row
		want     []string // normalised values
		times    []time.Time
	}{
		{"live", false, 1, []enginetest.Row{
			{t0, "T1", 1.5, "run", int64(7), true},
			{t0.Add(time.Second), "T2", nil, `a"b\`, int64(-1), false},
		}, []string{`{"count":7,"ok":true,"power":1.5,"status":"run"}`, `{"count":-1,"ok":false,"status":"a\"b\\"}`},
			[]time.Time{t0, t0.Add(time.Second)}},
		{"backfill", true, 1 << 40, []enginetest.Row{
			{t0, "T1", 2.25, nil, int64(math.MaxInt64), nil},
		}, []string{`{"count":9223372036854775807,"power":2.25}`}, []time.Time{t0}},
		{"extreme times", false, 7, []enginetest.Row{
			{time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), "A", nil, nil, nil, nil},
			{time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC), "A", nil, nil, nil, nil},
			{time.UnixMilli(-1).UTC(), "A", nil, nil, nil, nil},
		}, []string{`{}`, `{}`, `{}`}, []time.Time{time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
			time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC), time.UnixMilli(-1).UTC()}},
		{"nan and inf", false, 3, []enginetest.Row{
			{t0, "T1", math.NaN(), "x", nil, nil},
			{t0, nil, math.Inf(-1), nil, nil, nil},
		}, []string{`{"status":"x"}`, `{}`}, []time.Time{t0, t0}},
	}
	for _, enc := range encodings {
		for _, c := range cases {
			t.Run(string(enc)+"/"+c.name, func(t *testing.T) {
				msgs := encode(t, enc, "e1", c.first, c.backfill, testSchema, c.rows...)
				var got []store.Row
				for _, m := range msgs {
					d, err := ingest.Decode(headers(m), m.Payload, ingest.Limits{})
					if err != nil {
						t.Fatalf("decode %s: %v", m.UUID, err)
					}
					if len(d.Alerts) != 0 || d.MsgID != m.UUID {
						t.Fatalf("decode %s: id %q, %d alerts", m.UUID, d.MsgID, len(d.Alerts))
					}
					got = append(got, d.Rows...)
				}
				if len(got) != len(c.rows) {
					t.Fatalf("%d rows, want %d", len(got), len(c.rows))
				}
				for i, r := range got {
					wantAsset, _ := c.rows[i][1].(string)
					if r.Edge != "e1" || r.Stream != "stats" || r.Seq != c.first+uint64(i) || r.Asset != wantAsset ||
						r.Backfill != c.backfill || !r.Time.Equal(c.times[i]) {
						t.Errorf("row %d: %+v", i, r)
					}
					if n := normal(t, r.Values); n != c.want[i] {
						t.Errorf("row %d values %s, want %s", i, n, c.want[i])
					}
					if enc == outbound.Arrow {
						if p, ok := c.rows[i][2].(float64); ok && math.IsNaN(p) {
							if v, ok := r.Values["power"].(float64); !ok || !math.IsNaN(v) {
								t.Errorf("row %d: arrow NaN became %v", i, r.Values["power"])
							}
						}
					}
				}
			})
		}
	}
}

func TestDecodeAlerts(t *testing.T) {
	occur := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	recov := occur.Add(time.Minute)
	for _, enc := range encodings {
		t.Run(string(enc), func(t *testing.T) {
			msgs := encode(t, enc, "e1", 10, true, engine.AlertSchema,
				enginetest.Row{occur, "a1", "T1", "hot", "major", "temp", "too hot", 91.5, occur, nil, "raised"},
				enginetest.Row{recov, "a1", "T1", "hot", "major", "temp", "ok", math.NaN(), occur, recov, "cleared"},
			)
			var got []ingest.Alert
			for _, m := range msgs {
				d, err := ingest.Decode(headers(m), m.Payload, ingest.Limits{})
				if err != nil {
					t.Fatal(err)
				}
				if len(d.Rows) != 0 {
					t.Fatalf("alert stream gave %d rows", len(d.Rows))
				}
				got = append(got, d.Alerts...)
			}
			if len(got) != 2 {
				t.Fatalf("%d alerts", len(got))
			}
			r, c := got[0], got[1]
			if r.MsgID != "e1/stats/10" || c.MsgID != "e1/stats/11" {
				t.Errorf("ids %s %s", r.MsgID, c.MsgID)
			}
			want := store.AlertRecord{ID: "a1", Edge: "e1", Asset: "T1", Rule: "hot", Severity: "major", Type: "temp",
				Content: "too hot", Value: 91.5, Occur: occur, State: store.AlertRaised}
			if r.Record != want {
				t.Errorf("raise %+v, want %+v", r.Record, want)
			}
			if c.Record.State != store.AlertCleared || !c.Record.Recover.Equal(recov) || !math.IsNaN(c.Record.Value) {
				t.Errorf("clear %+v", c.Record)
			}
		})
	}
}

func TestDecodePoison(t *testing.T) {
	t0 := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	good := func(enc outbound.Encoding) *message.Message {
		return encode(t, enc, "e1", 5, false, testSchema,
			enginetest.Row{t0, "T1", 1.0, "a", int64(1), true},
			enginetest.Row{t0, "T1", 2.0, "b", int64(2), false})[0]
	}
	cases := []struct {
		name string
		enc  outbound.Encoding
		edit func(h ingest.Headers, p []byte) []byte
		lim  ingest.Limits
	}{
		{"no id", outbound.JSON, func(h ingest.Headers, p []byte) []byte { delete(h, "id"); return p }, ingest.Limits{}},
		{"unknown encoding", outbound.JSON, func(h ingest.Headers, p []byte) []byte { h["encoding"] = []string{"xml"}; return p }, ingest.Limits{}},
		{"edge header differs", outbound.JSONBatch, func(h ingest.Headers, p []byte) []byte { h["edge"] = []string{"e2"}; return p }, ingest.Limits{}},
		{"last seq header differs", outbound.Arrow, func(h ingest.Headers, p []byte) []byte { h["last_seq"] = []string{"9"}; return p }, ingest.Limits{}},
		{"id range wider than rows", outbound.JSONBatch, func(h ingest.Headers, p []byte) []byte {
			h["id"], h["last_seq"] = []string{"e1/stats/5-7"}, []string{"7"}
			return p
		}, ingest.Limits{}},
		{"arrow id range wider", outbound.Arrow, func(h ingest.Headers, p []byte) []byte {
			h["id"], h["last_seq"] = []string{"e1/stats/5-7"}, []string{"7"}
			return p
		}, ingest.Limits{}},
		{"backfill differs", outbound.JSON, func(h ingest.Headers, p []byte) []byte { h["backfill"] = []string{"true"}; return p }, ingest.Limits{}},
		{"payload seq differs", outbound.JSON, func(h ingest.Headers, p []byte) []byte {
			return []byte(strings.Replace(string(p), `"seq":5`, `"seq":6`, 1))
		}, ingest.Limits{}},
		{"trailing data", outbound.JSONBatch, func(h ingest.Headers, p []byte) []byte { return append(p, " {}"...) }, ingest.Limits{}},
		{"unknown field", outbound.JSON, func(h ingest.Headers, p []byte) []byte {
			return []byte(strings.Replace(string(p), `{"id"`, `{"x":1,"id"`, 1))
		}, ingest.Limits{}},
		{"truncated arrow", outbound.Arrow, func(h ingest.Headers, p []byte) []byte { return p[:len(p)/2] }, ingest.Limits{}},
		{"too many bytes", outbound.JSONBatch, func(h ingest.Headers, p []byte) []byte { return p }, ingest.Limits{MaxMessageBytes: 10}},
		{"too many rows", outbound.Arrow, func(h ingest.Headers, p []byte) []byte { return p }, ingest.Limits{MaxRows: 1}},
		{"time out of range", outbound.JSON, func(h ingest.Headers, p []byte) []byte {
			return []byte(strings.Replace(string(p), `"time":1704164645000`, `"time":9223372036854775807`, 1))
		}, ingest.Limits{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := good(c.enc)
			h := headers(m)
			p := c.edit(h, append([]byte(nil), m.Payload...))
			if _, err := ingest.Decode(h, p, c.lim); !errors.Is(err, ingest.ErrPoison) {
				t.Fatalf("err %v, want poison", err)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	t0 := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, enc := range encodings {
		for _, m := range encode(f, enc, "e1", 5, false, testSchema,
			enginetest.Row{t0, "T1", 1.0, "a", int64(1), true},
			enginetest.Row{t0, "T1", math.NaN(), nil, int64(2), false}) {
			f.Add(m.Metadata.Get("id"), m.Metadata.Get("first_seq"), m.Metadata.Get("last_seq"), string(enc), []byte(m.Payload))
		}
		for _, m := range encode(f, enc, "e1", 1, true, engine.AlertSchema,
			enginetest.Row{t0, "a1", "T1", "hot", "major", "temp", "x", 1.0, t0, nil, "raised"}) {
			f.Add(m.Metadata.Get("id"), m.Metadata.Get("first_seq"), m.Metadata.Get("last_seq"), string(enc), []byte(m.Payload))
		}
	}
	f.Fuzz(func(t *testing.T, id, first, last, enc string, data []byte) {
		edge, stream, _, _, _, _ := outbound.ParseID(id)
		for _, bf := range []string{"false", "true"} {
			h := ingest.Headers{"id": {id}, "edge": {edge}, "stream": {stream}, "first_seq": {first},
				"last_seq": {last}, "backfill": {bf}, "encoding": {enc}}
			d, err := ingest.Decode(h, data, ingest.Limits{MaxRows: 1000, MaxMessageBytes: 1 << 20})
			if err != nil {
				if !errors.Is(err, ingest.ErrPoison) {
					t.Fatalf("error %v does not wrap ErrPoison", err)
				}
				continue
			}
			_, _, lo, hi, _, _ := outbound.ParseID(id)
			if n := uint64(len(d.Rows) + len(d.Alerts)); n != hi-lo+1 {
				t.Fatalf("%d rows and alerts for range %d-%d", n, lo, hi)
			}
			for i, r := range d.Rows {
				if r.Seq != lo+uint64(i) || r.Edge != edge || r.Stream != stream || r.MsgID != id {
					t.Fatalf("row %d: %+v", i, r)
				}
			}
		}
	})
}
