package logquery

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/logfile"
)

// rec is a generated record.
type rec struct {
	t                   time.Time
	level               slog.Level
	pipeline, component string
	line                string
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// genLog writes n records, one every step from t0, through a logfile
// Writer into dir; every 97th is an error, every 13th a warning, and
// record i names pipeline p<i%3> and component c<i%5>. pad lengthens each
// record.
func genLog(tb testing.TB, dir string, n int, step time.Duration, maxFile int64, maxFiles int, pad int) []rec {
	tb.Helper()
	w, err := logfile.Open(logfile.Options{Dir: dir, MaxFileBytes: maxFile, MaxFiles: maxFiles})
	if err != nil {
		tb.Fatal(err)
	}
	defer w.Close()
	filler := strings.Repeat("z", pad)
	out := make([]rec, 0, n)
	var buf []byte
	for i := 0; i < n; i++ {
		r := rec{t: t0.Add(time.Duration(i) * step), level: slog.LevelInfo, pipeline: fmt.Sprintf("p%d", i%3), component: fmt.Sprintf("c%d", i%5)}
		msg := "rows forwarded"
		switch {
		case i%97 == 0:
			r.level, msg = slog.LevelError, "publish failed: connection refused"
		case i%13 == 0:
			r.level, msg = slog.LevelWarn, "link slow"
		case i%7 == 0:
			r.level = slog.LevelDebug
		}
		buf = fmt.Appendf(buf[:0], `{"time":%q,"level":%q,"msg":%q,"pipeline":%q,"component":%q,"i":%d,"pad":%q}`+"\n",
			r.t.Format(time.RFC3339Nano), r.level.String(), msg, r.pipeline, r.component, i, filler)
		r.line = string(buf[:len(buf)-1])
		if _, err := w.Write(buf); err != nil {
			tb.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// expect returns the lines of recs that q selects, at most q.Limit newest.
func expect(recs []rec, q Query) []string {
	var out []string
	for _, r := range recs {
		if r.level < q.Level || !q.Since.IsZero() && r.t.Before(q.Since) || !q.Until.IsZero() && r.t.After(q.Until) ||
			q.Pipeline != "" && r.pipeline != q.Pipeline || q.Component != "" && r.component != q.Component ||
			q.Grep != nil && !q.Grep.MatchString(r.line) {
			continue
		}
		out = append(out, r.line)
	}
	limit := q.Limit
	if limit == 0 {
		limit = DefaultLimit
	}
	if len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out
}

func lines(es []Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = string(e.Line)
	}
	return out
}

func TestSearch(t *testing.T) {
	dir := t.TempDir()
	recs := genLog(t, dir, 20000, time.Second, 256<<10, 100, 40)
	files, _ := logfile.Files(dir)
	if len(files) < 10 {
		t.Fatalf("only %d files: rotation did not happen", len(files))
	}
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }
	tests := []struct {
		name        string
		q           Query
		truncated   bool
		maxScanned  int64 // bytes read at most (0: any)
		skippedSome bool
	}{
		{name: "newest info", q: Query{}, truncated: true},
		{name: "errors", q: Query{Level: slog.LevelError, Limit: MaxLimit}},
		{name: "warn and above, one pipeline", q: Query{Level: slog.LevelWarn, Pipeline: "p1", Limit: MaxLimit}},
		{name: "component and grep", q: Query{Level: slog.LevelDebug, Component: "c2", Grep: regexp.MustCompile(`"i":1\d*5,`), Limit: MaxLimit}},
		{name: "window", q: Query{Level: slog.LevelDebug, Since: at(5000), Until: at(5100)}, maxScanned: 512 << 10, skippedSome: true},
		{name: "error by time, level and pattern", q: Query{Level: slog.LevelError, Since: at(9000), Until: at(9800), Grep: regexp.MustCompile(`connection refused`)}, maxScanned: 512 << 10, skippedSome: true},
		{name: "since only", q: Query{Level: slog.LevelWarn, Since: at(19000)}, skippedSome: true},
		{name: "until only", q: Query{Level: slog.LevelWarn, Until: at(300)}, skippedSome: true},
		{name: "window between records", q: Query{Since: at(100).Add(time.Millisecond), Until: at(100).Add(500 * time.Millisecond)}},
		{name: "window before the log", q: Query{Since: t0.Add(-time.Hour), Until: t0.Add(-time.Minute)}, skippedSome: true},
		{name: "window after the log", q: Query{Since: at(30000)}, skippedSome: true},
		{name: "limit keeps the newest", q: Query{Level: slog.LevelError, Limit: 5}, truncated: true},
		{name: "no match", q: Query{Grep: regexp.MustCompile(`never written`), Limit: 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Search(context.Background(), dir, tt.q)
			if err != nil {
				t.Fatal(err)
			}
			want := expect(recs, tt.q)
			got := lines(res.Entries)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("%d records, want %d\nfirst got %.120q\nfirst want %.120q", len(got), len(want), first(got), first(want))
			}
			if res.Truncated != tt.truncated {
				t.Errorf("truncated %v, want %v", res.Truncated, tt.truncated)
			}
			if tt.maxScanned > 0 && res.Stats.Bytes > tt.maxScanned {
				t.Errorf("read %d bytes, want at most %d (stats %+v)", res.Stats.Bytes, tt.maxScanned, res.Stats)
			}
			if tt.skippedSome && res.Stats.Skipped == 0 {
				t.Errorf("no file skipped (stats %+v)", res.Stats)
			}
			if res.Stats.BadLines != 0 || res.Stats.LongLines != 0 {
				t.Errorf("bad lines in a clean log: %+v", res.Stats)
			}
		})
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func TestSearchBadQuery(t *testing.T) {
	for _, q := range []Query{{Limit: -1}, {Limit: MaxLimit + 1}, {MaxBytes: -5}, {Since: t0, Until: t0.Add(-time.Second)}} {
		if _, err := Search(context.Background(), t.TempDir(), q); err == nil {
			t.Errorf("%+v accepted", q)
		}
	}
	res, err := Search(context.Background(), filepath.Join(t.TempDir(), "missing"), Query{})
	if err != nil || len(res.Entries) != 0 {
		t.Errorf("missing directory: %v, %d records", err, len(res.Entries))
	}
}

func TestMaxBytesKeepsNewest(t *testing.T) {
	dir := t.TempDir()
	recs := genLog(t, dir, 3000, time.Second, 64<<10, 100, 0)
	res, err := Search(context.Background(), dir, Query{MaxBytes: 10 << 10, Limit: MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	var size int
	for _, e := range res.Entries {
		size += len(e.Line)
	}
	if size > 10<<10 || !res.Truncated || len(res.Entries) == 0 {
		t.Fatalf("%d bytes in %d records, truncated %v", size, len(res.Entries), res.Truncated)
	}
	if string(res.Entries[len(res.Entries)-1].Line) != expect(recs, Query{})[len(expect(recs, Query{}))-1] {
		t.Errorf("last record is not the newest")
	}
}

// TestHostileLines: lines too long, not JSON, with a bad head, binary,
// and a record cut short by a kill are skipped and counted; the records
// around them are found.
func TestHostileLines(t *testing.T) {
	good := func(i int, lvl string) string {
		return fmt.Sprintf(`{"time":%q,"level":%q,"msg":"ok %d","pipeline":"p"}`, t0.Add(time.Duration(i)*time.Second).Format(time.RFC3339Nano), lvl, i)
	}
	tests := []struct {
		name      string
		content   string
		wantMsgs  []string
		bad, long int64
	}{
		{"huge line", good(1, "ERROR") + "\n" + strings.Repeat("x", 200<<10) + "\n" + good(2, "ERROR") + "\n", []string{"ok 1", "ok 2"}, 0, 1},
		{"huge record with a good head", good(1, "ERROR") + "\n" + `{"time":"` + t0.Format(time.RFC3339Nano) + `","level":"ERROR","msg":"` + strings.Repeat("y", 100<<10) + "\"}\n" + good(2, "ERROR") + "\n", []string{"ok 1", "ok 2"}, 0, 1},
		{"not json", "hello world\n" + good(1, "ERROR") + "\n\x00\x01\x02\xff\n", []string{"ok 1"}, 2, 0},
		{"bad time", `{"time":"yesterday","level":"ERROR","msg":"x"}` + "\n" + good(3, "ERROR") + "\n", []string{"ok 3"}, 1, 0},
		{"bad level", `{"time":"` + t0.Format(time.RFC3339Nano) + `","level":"LOUD","msg":"x"}` + "\n" + good(3, "ERROR") + "\n", []string{"ok 3"}, 1, 0},
		{"good head, broken body", `{"time":"` + t0.Format(time.RFC3339Nano) + `","level":"ERROR","msg":"x` + "\n" + good(4, "ERROR") + "\n", []string{"ok 4"}, 1, 0},
		{"cut last record", good(5, "ERROR") + "\n" + good(6, "ERROR")[:40], []string{"ok 5"}, 1, 0},
		{"empty lines", "\n\n" + good(7, "ERROR") + "\n\n", []string{"ok 7"}, 3, 0},
		{"empty file", "", nil, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, logfile.Current), []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, q := range []Query{{Level: slog.LevelError}, {Level: slog.LevelError, Since: t0, Until: t0.Add(time.Hour), Pipeline: "p"}} {
				res, err := Search(context.Background(), dir, q)
				if err != nil {
					t.Fatal(err)
				}
				var msgs []string
				for _, e := range res.Entries {
					i := bytes.Index(e.Line, []byte(`"msg":"`))
					msgs = append(msgs, string(e.Line[i+7:bytes.IndexByte(e.Line[i+7:], '"')+i+7]))
				}
				if fmt.Sprint(msgs) != fmt.Sprint(tt.wantMsgs) {
					t.Errorf("query %+v found %q, want %q", q, msgs, tt.wantMsgs)
				}
				if res.Stats.BadLines != tt.bad || res.Stats.LongLines != tt.long {
					t.Errorf("query %+v: bad %d long %d, want %d %d", q, res.Stats.BadLines, res.Stats.LongLines, tt.bad, tt.long)
				}
			}
		})
	}
}

// TestFollow: Follow passes the matches already written, then every new
// one across rotations, in order, none twice.
func TestFollow(t *testing.T) {
	dir := t.TempDir()
	w, err := logfile.Open(logfile.Options{Dir: dir, MaxFileBytes: 64 << 10, MaxFiles: 50})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	write := func(i int) {
		line := fmt.Sprintf(`{"time":%q,"level":"WARN","msg":"n %d","pad":%q}`+"\n", t0.Add(time.Duration(i)*time.Millisecond).Format(time.RFC3339Nano), i, strings.Repeat("p", 200))
		if _, err := w.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 100; i++ {
		write(i)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var got []int
	done := make(chan error, 1)
	go func() {
		_, err := Follow(ctx, dir, Query{Level: slog.LevelWarn, Limit: MaxLimit}, 5*time.Millisecond, func(e Entry) error {
			var n int
			fmt.Sscanf(string(e.Line[bytes.Index(e.Line, []byte(`"n `))+3:]), "%d", &n)
			mu.Lock()
			got = append(got, n)
			mu.Unlock()
			return nil
		})
		done <- err
	}()
	const total = 2000 // about 8 rotations
	for i := 100; i < total; i++ {
		write(i)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= total || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(got) != total {
		var miss []int
		seen := map[int]bool{}
		for _, n := range got {
			seen[n] = true
		}
		for i := 0; i < total; i++ {
			if !seen[i] {
				miss = append(miss, i)
			}
		}
		t.Fatalf("followed %d records, want %d; missing %v", len(got), total, miss)
	}
	for i, n := range got {
		if n != i {
			t.Fatalf("record %d is n=%d: out of order or repeated", i, n)
		}
	}
}

// benchDir writes a 100 MB log (10 MiB files) for a benchmark; b.Loop
// runs the benchmark function once, so it is written once.
func benchDir(b *testing.B) string {
	dir := b.TempDir()
	// ~200-byte records, one every 100 ms: 100 MB holds about 14 hours.
	genLog(b, dir, 500_000, 100*time.Millisecond, logfile.DefaultMaxFileBytes, 12, 70)
	return dir
}

func dirBytes(b *testing.B, dir string) int64 {
	files, _ := logfile.Files(dir)
	var n int64
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			n += st.Size()
		}
	}
	return n
}

// BenchmarkFindError finds one error by time window, level and pattern in
// a 100 MB log.
func BenchmarkFindError(b *testing.B) {
	dir := benchDir(b)
	since := t0.Add(8 * time.Hour) // one error (i = 288090) in the window
	q := Query{Level: slog.LevelError, Since: since, Until: since.Add(10 * time.Second), Grep: regexp.MustCompile(`connection refused`)}
	b.ReportMetric(float64(dirBytes(b, dir))/1e6, "log_MB")
	b.ReportAllocs()
	for b.Loop() {
		res, err := Search(context.Background(), dir, q)
		if err != nil || len(res.Entries) != 1 {
			b.Fatalf("%v, %d records", err, len(res.Entries))
		}
	}
}

// BenchmarkScanAll scans the whole 100 MB log for errors matching a
// pattern, without a time window.
func BenchmarkScanAll(b *testing.B) {
	dir := benchDir(b)
	q := Query{Level: slog.LevelError, Grep: regexp.MustCompile(`"i":12319,`)}
	b.ReportMetric(float64(dirBytes(b, dir))/1e6, "log_MB")
	b.ReportAllocs()
	for b.Loop() {
		res, err := Search(context.Background(), dir, q)
		if err != nil || len(res.Entries) != 1 {
			b.Fatalf("%v, %d records", err, len(res.Entries))
		}
	}
}
