package logquery

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestRequestRoundTrip(t *testing.T) {
	q := Query{Level: slog.LevelWarn, Since: t0, Until: t0.Add(time.Hour), Pipeline: "p1", Component: "c2", Grep: regexp.MustCompile(`refused|timeout`), Limit: 50}
	data, err := json.Marshal(RequestOf(q, 64<<10))
	if err != nil {
		t.Fatal(err)
	}
	r, err := DecodeRequest(data)
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Query()
	if err != nil {
		t.Fatal(err)
	}
	if got.Level != q.Level || !got.Since.Equal(q.Since) || !got.Until.Equal(q.Until) || got.Pipeline != q.Pipeline ||
		got.Component != q.Component || got.Grep.String() != q.Grep.String() || got.Limit != 50 || got.MaxBytes != 64<<10 {
		t.Errorf("round trip: %+v, want %+v", got, q)
	}
}

func TestDecodeRequestRefuses(t *testing.T) {
	tests := []struct{ name, data string }{
		{"unknown field", `{"level":"warn","cmd":"rm"}`},
		{"trailing data", `{"level":"warn"} {}`},
		{"not json", `level=warn`},
		{"bad level", `{"level":"loud"}`},
		{"bad regexp", `{"grep":"(("}`},
		{"long regexp", `{"grep":"` + strings.Repeat("a", MaxGrepBytes+1) + `"}`},
		{"long pipeline", `{"pipeline":"` + strings.Repeat("a", MaxNameBytes+1) + `"}`},
		{"limit too big", `{"limit":1000000}`},
		{"negative limit", `{"limit":-1}`},
		{"answer too small", `{"max_bytes":10}`},
		{"answer too big", `{"max_bytes":1000000000}`},
		{"until before since", `{"since":"2026-01-02T00:00:00Z","until":"2026-01-01T00:00:00Z"}`},
		{"huge", `{"grep":"` + strings.Repeat("a", MaxRequestBytes) + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeRequest([]byte(tt.data)); err == nil {
				t.Errorf("%.60s accepted", tt.data)
			}
		})
	}
}

func TestAnswerCap(t *testing.T) {
	dir := t.TempDir()
	genLog(t, dir, 5000, time.Second, 64<<10, 100, 100)
	r := Request{Level: "debug", Limit: MaxLimit, MaxBytes: 32 << 10}
	q, err := r.Query()
	if err != nil {
		t.Fatal(err)
	}
	res, err := Search(context.Background(), dir, q)
	if err != nil {
		t.Fatal(err)
	}
	data := EncodeAnswer(r, res)
	if len(data) > 32<<10 {
		t.Fatalf("answer of %d bytes, over the cap", len(data))
	}
	a, err := DecodeAnswer(data, 32<<10)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Truncated || len(a.Records) == 0 {
		t.Fatalf("truncated %v, %d records", a.Truncated, len(a.Records))
	}
	last := res.Entries[len(res.Entries)-1].Line
	if !bytes.Equal(a.Records[len(a.Records)-1], last) {
		t.Errorf("the newest record is not last")
	}
	if _, err := DecodeAnswer(data, 1000); err == nil {
		t.Errorf("an answer over the caller's cap accepted")
	}
}

func TestDecodeAnswerHostile(t *testing.T) {
	data := `{"records":[{"time":"2026-01-01T00:00:00Z","level":"INFO","msg":"ok"},{"msg":"no head"},"text",42],"truncated":false,"stats":{}}`
	a, err := DecodeAnswer([]byte(data), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Records) != 1 || a.Stats.BadLines != 3 {
		t.Errorf("%d records, %d bad", len(a.Records), a.Stats.BadLines)
	}
	for _, bad := range []string{`{"records":`, `[]`, `{"records":[1,2,`} {
		if _, err := DecodeAnswer([]byte(bad), 1<<20); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestFormat(t *testing.T) {
	tests := []struct{ line, want string }{
		{`{"time":"2026-03-01T12:00:00.123456+01:00","level":"WARN","msg":"link slow","pipeline":"p1","n":3,"g":{"a":1}}`,
			`2026-03-01T11:00:00.123Z WARN  link slow pipeline=p1 n=3 g={"a":1}`},
		{`{"time":"2026-03-01T12:00:00Z","level":"ERROR","msg":"bad\u001b[2Jthing","err":"x y"}`,
			`2026-03-01T12:00:00.000Z ERROR "bad\x1b[2Jthing" err="x y"`},
		{`{"time":"2026-03-01T12:00:00Z","level":"INFO","msg":"fake\nline"}`,
			`2026-03-01T12:00:00.000Z INFO  "fake\nline"`},
		{"not json \x1b[2J", `"not json \x1b[2J"`},
	}
	for _, tt := range tests {
		var b strings.Builder
		if err := Format(&b, []byte(tt.line)); err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSuffix(b.String(), "\n"); got != tt.want {
			t.Errorf("Format(%q)\n got %s\nwant %s", tt.line, got, tt.want)
		}
	}
}

func BenchmarkFormat(b *testing.B) {
	line := []byte(`{"time":"2026-03-01T12:00:00.123456Z","level":"WARN","msg":"link slow","pipeline":"p1","component":"cloud","n":3}`)
	var buf bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		_ = Format(&buf, line)
	}
}
