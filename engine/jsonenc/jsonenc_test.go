package jsonenc_test

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluice-edge/sluice/engine/jsonenc"
)

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `quo"te`, "back\\slash", "tab\tnl\n", "\x00\x1f", "ünï €", "\u2028\u2029", "<html>&"} {
		got := jsonenc.AppendString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil || back != s {
			t.Errorf("%q -> %s (read back %q, %v)", s, got, back, err)
		}
	}
	if got := string(jsonenc.AppendString(nil, "bad\xffutf8")); got != `"bad\ufffdutf8"` {
		t.Errorf("invalid UTF-8: %s", got)
	}
}

func TestAppendFloatAndTime(t *testing.T) {
	tests := []struct {
		v    float64
		want string
		ok   bool
	}{{1523.4, "1523.4", true}, {1e6, "1e+06", true}, {0.1, "0.1", true}, {math.NaN(), "", false}, {math.Inf(-1), "", false}}
	for _, tt := range tests {
		got, ok := jsonenc.AppendFloat(nil, tt.v, 64)
		if string(got) != tt.want || ok != tt.ok {
			t.Errorf("%v -> %q %v", tt.v, got, ok)
		}
	}
	for _, ms := range []int64{0, -1, 1700000000123, 253402300799999} {
		want := `"` + time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00") + `"`
		if got := string(jsonenc.AppendTime(nil, ms)); got != want {
			t.Errorf("%d -> %s, want %s", ms, got, want)
		}
	}
	if got := string(jsonenc.AppendTime(nil, 253402300800000)); got != "253402300800000" {
		t.Errorf("year 10000 -> %s", got)
	}
}

func BenchmarkAppendTime(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 0, 64)
	for i := range b.N {
		buf = jsonenc.AppendTime(buf[:0], 1700000000000+int64(i))
	}
}

func TestToMillis(t *testing.T) {
	for _, c := range []struct {
		v    int64
		unit arrow.TimeUnit
		want int64
	}{
		{1, arrow.Second, 1000},
		{-1, arrow.Microsecond, -1},
		{1999, arrow.Microsecond, 1},
		{-1, arrow.Nanosecond, -1},
		{5, arrow.Millisecond, 5},
		{math.MaxInt64 / 10, arrow.Second, math.MaxInt64},
		{math.MinInt64 / 10, arrow.Second, math.MinInt64},
	} {
		if got := jsonenc.ToMillis(c.v, c.unit); got != c.want {
			t.Errorf("ToMillis(%d, %v) = %d, want %d", c.v, c.unit, got, c.want)
		}
	}
}
