package codec

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/jsonenc"
)

func TestParseRFC3339MatchesTimeParse(t *testing.T) {
	cases := []string{
		"2023-11-14T22:13:20Z", "2023-11-14T22:13:20.1Z", "2023-11-14T22:13:20.123456789+05:30",
		"1969-12-31T23:59:59.999-00:30", "2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z", "0001-01-01T00:00:00Z",
		"9999-12-31T23:59:59.9999Z", "2023-11-14T24:00:00Z", "2023-11-14t22:13:20z", "2023-11-14T22:13:20.Z",
		"2023-11-14T22:13:20+24:00", "2023-11-14 22:13:20Z", "2023-13-01T00:00:00Z",
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		sec := r.Int64N(400*365*86400) - 200*365*86400
		tm := time.Unix(sec, r.Int64N(1e9)).In(time.FixedZone("", (r.IntN(48)-24)*1800))
		cases = append(cases, tm.Format(time.RFC3339Nano), tm.Format(time.RFC3339))
	}
	for _, s := range cases {
		ms, ok := parseRFC3339([]byte(s))
		want, err := time.Parse(time.RFC3339Nano, s)
		if ok && (err != nil || want.UnixMilli() != ms) {
			t.Errorf("%s: fast path %d, time.Parse %d, %v", s, ms, want.UnixMilli(), err)
		}
	}
}

func TestAppendJSONTimeMatchesFormat(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, ms := range []int64{0, -1, 1, 951782400000, 253402300799999, -62135596800000} {
		checkTime(t, ms)
	}
	for range 5000 {
		checkTime(t, r.Int64N(253402300799999+62135596800000)-62135596800000)
	}
}

func checkTime(t *testing.T, ms int64) {
	t.Helper()
	got := string(jsonenc.AppendTime(nil, ms))
	want := strconv.Quote(time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00"))
	if got != want {
		t.Fatalf("%d: got %s, want %s", ms, got, want)
	}
	if d := floorDiv(ms, 86_400_000); daysFromCivil(civilFromDays(d)) != d {
		t.Fatalf("day %d does not round-trip", d)
	}
}

func TestParseFloatMatchesStrconv(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	cases := []string{"0", "-0", "1", "0.1", "123456789012345", "1234567890123456", "0.000000000000001", "1.5e3", "9007199254740993", "1e400", "-1e-400", "5.", ".5"}
	for range 20000 {
		switch r.IntN(3) {
		case 0:
			cases = append(cases, strconv.FormatFloat(r.NormFloat64()*math.Pow(10, float64(r.IntN(30)-15)), 'f', r.IntN(12), 64))
		case 1:
			cases = append(cases, strconv.FormatFloat(r.Float64()*1e6, 'g', -1, 64))
		default:
			cases = append(cases, strconv.FormatInt(r.Int64N(1e16)-5e15, 10)+"."+strconv.Itoa(r.IntN(1000)))
		}
	}
	for _, s := range cases {
		got, err := parseFloat([]byte(s))
		want, werr := strconv.ParseFloat(s, 64)
		if (err == nil) != (werr == nil) || (err == nil && math.Float64bits(got) != math.Float64bits(want)) {
			t.Fatalf("%q: got %v, %v; strconv %v, %v", s, got, err, want, werr)
		}
		if end, serr := scanNumber([]byte(s), 0); serr == nil && end == len(s) {
			f, end2, err := scanFloat([]byte(s), 0)
			if end2 != end || (err == nil) != (werr == nil) || (err == nil && math.Float64bits(f) != math.Float64bits(want)) {
				t.Fatalf("scanFloat %q: got %v, %d, %v; strconv %v, %v", s, f, end2, err, want, werr)
			}
		}
	}
}

func TestUnescapeSurrogates(t *testing.T) {
	for in, want := range map[string]string{
		`a\u00e9b`:         "a\u00e9b",
		`\ud83d\ude00`:     "\U0001F600",
		`\ud83d`:           "\ufffd",
		`\ud83dx`:          "\ufffdx",
		`\ud83d\u0041`:     "\ufffdA",
		`\ude00`:           "\ufffd",
		`\"\\\/\b\f\n\r\t`: "\"\\/\b\f\n\r\t",
	} {
		if got := string(unescape(nil, []byte(in))); got != want {
			t.Errorf("%s: got %q, want %q", in, got, want)
		}
	}
}

// scanStringBySearch is scanString without its word-at-a-time fast path.
func scanStringBySearch(b []byte, i int) (int, bool, error) {
	q := bytes.IndexByte(b[i+1:], '"')
	if q < 0 {
		return len(b), false, errAt(i, "unterminated string")
	}
	body := b[i+1 : i+1+q]
	if bytes.IndexByte(body, '\\') >= 0 || hasControl(body) {
		return scanEscaped(b, i)
	}
	return i + 2 + q, false, nil
}

func TestScanStringFastPath(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	alphabet := []byte("ab9 ._-\"\\u0\n\x01\x1f\x7f\xc3\xa9\xff")
	for range 200000 {
		b := []byte{'"'}
		for range r.IntN(48) {
			b = append(b, alphabet[r.IntN(len(alphabet))])
		}
		if r.IntN(2) == 0 {
			b = append(b, '"')
		}
		for range r.IntN(12) {
			b = append(b, 'x')
		}
		end, esc, err := scanString(b, 0)
		wend, wesc, werr := scanStringBySearch(b, 0)
		if end != wend || esc != wesc || fmt.Sprint(err) != fmt.Sprint(werr) {
			t.Fatalf("%q: got %d, %v, %v; want %d, %v, %v", b, end, esc, err, wend, wesc, werr)
		}
	}
}
