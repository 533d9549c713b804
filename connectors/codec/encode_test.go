package codec_test

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

func TestAppendJSONRow(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	s := engine.MustSchema([]engine.Field{
		{Name: "time", Type: engine.Timestamp},
		{Name: "asset", Type: engine.String},
		{Name: "v", Type: engine.Float64},
		{Name: "n", Type: engine.Int64},
		{Name: "ok", Type: engine.Bool},
		{Name: `we"ird`, Type: engine.String},
	}, "time", "asset")
	rec := enginetest.Record(mem, s,
		enginetest.Row{int64(1700000000123), "T1", 1523.4, int64(-7), true, "a\"b\\c\n\x01<>&\u2028é"},
		enginetest.Row{int64(-1), nil, 1e6, nil, false, nil},
		enginetest.Row{nil, "T2", math.NaN(), int64(0), nil, ""},
		enginetest.Row{int64(0), "T3", math.Inf(-1), nil, nil, "\xffx"},
		enginetest.Row{int64(0), "T4", 2.5e-05, nil, nil, nil},
	)
	defer rec.Release()
	got := string(codec.AppendJSONLines(nil, rec))
	want := `{"time":"2023-11-14T22:13:20.123Z","asset":"T1","v":1523.4,"n":-7,"ok":true,"we\"ird":"a\"b\\c\n\u0001<>&\u2028é"}
{"time":"1969-12-31T23:59:59.999Z","v":1e+06,"ok":false}
{"asset":"T2","n":0,"we\"ird":""}
{"time":"1970-01-01T00:00:00.000Z","asset":"T3","we\"ird":"\ufffdx"}
{"time":"1970-01-01T00:00:00.000Z","asset":"T4","v":2.5e-05}
`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	for i, line := range strings.Split(strings.TrimSpace(got), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("line %d is not valid JSON: %s", i, line)
		}
	}
}

func TestAppendJSONRowOtherTypes(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	sc := arrow.NewSchema([]arrow.Field{
		{Name: "u8", Type: arrow.PrimitiveTypes.Uint8},
		{Name: "i32", Type: arrow.PrimitiveTypes.Int32},
		{Name: "f32", Type: arrow.PrimitiveTypes.Float32},
		{Name: "bin", Type: arrow.BinaryTypes.Binary},
		{Name: "us", Type: &arrow.TimestampType{Unit: arrow.Microsecond}},
		{Name: "date", Type: arrow.FixedWidthTypes.Date32},
	}, nil)
	b := array.NewRecordBuilder(mem, sc)
	defer b.Release()
	b.Field(0).(*array.Uint8Builder).Append(255)
	b.Field(1).(*array.Int32Builder).Append(-5)
	b.Field(2).(*array.Float32Builder).Append(0.1)
	b.Field(3).(*array.BinaryBuilder).Append([]byte{0, 1, 2})
	b.Field(4).(*array.TimestampBuilder).Append(-1)
	b.Field(5).(*array.Date32Builder).Append(19675)
	rec := b.NewRecordBatch()
	defer rec.Release()
	got := string(codec.AppendJSONRow(nil, rec, 0))
	want := `{"u8":255,"i32":-5,"f32":0.1,"bin":"AAEC","us":"1969-12-31T23:59:59.999Z","date":"2023-11-14"}`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// TestAppendJSONStringRoundTrip checks that encoding/json reads back every
// valid string as it was.
func TestAppendJSONStringRoundTrip(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	s := engine.MustSchema([]engine.Field{{Name: "s", Type: engine.String}}, "", "")
	r := rand.New(rand.NewPCG(7, 8))
	alphabet := []rune{'a', '"', '\\', '\n', '\x00', '\x1f', '\x7f', 'é', '€', '\u2028', '\u2029', '😀', '<', '/'}
	var rows []enginetest.Row
	for range 500 {
		var sb strings.Builder
		for range r.IntN(12) {
			sb.WriteRune(alphabet[r.IntN(len(alphabet))])
		}
		rows = append(rows, enginetest.Row{sb.String()})
	}
	rec := enginetest.Record(mem, s, rows...)
	defer rec.Release()
	for i, row := range rows {
		line := codec.AppendJSONRow(nil, rec, i)
		var back struct{ S string }
		if err := json.Unmarshal(line, &back); err != nil || back.S != row[0] || !utf8.Valid(line) {
			t.Fatalf("%q -> %s -> %q, %v", row[0], line, back.S, err)
		}
	}
}
