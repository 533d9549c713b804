package file_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/spec"
)

// buildCk builds a file source of a pipeline that takes checkpoints, with
// a data directory (which such a source must not use).
func (e *env) buildCk(t testing.TB, src, data string) *replayable {
	t.Helper()
	c, _ := engine.Lookup(spec.KindSource, "file")
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	cfg, errs := c.Spec.Parse("site.yaml", &n, "type")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	s, err := c.Source(cfg, engine.BuildContext{Pipeline: "p", Name: "src", Dir: e.dir, DataDir: data, Batch: e.batch, Mem: e.mem,
		Log: slog.New(slog.NewTextHandler(e.logs, nil)), Counters: e.counters, Checkpoints: true})
	if err != nil {
		t.Fatal(err)
	}
	r, ok := s.(engine.Replayable)
	if !ok {
		t.Fatal("the file source is not replayable")
	}
	return &replayable{Source: s, Replayable: r}
}

// replayable is a source with its engine.Replayable side.
type replayable struct {
	engine.Source
	engine.Replayable
}

// runCk runs s to its end, keeping every record and the position after
// it; fail makes the emit of that record (1-based) fail, stopping the
// run.
func runCk(t testing.TB, s *replayable, fail int) (recs []arrow.RecordBatch, pos [][]byte, err error) {
	t.Helper()
	t.Cleanup(func() {
		for _, r := range recs {
			r.Release()
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err = s.Run(ctx, func(rec arrow.RecordBatch, _ *engine.Ack) error {
		if len(recs)+1 == fail {
			rec.Release()
			cancel()
			return errors.New("stopping")
		}
		recs = append(recs, rec)
		pos = append(pos, bytes.Clone(s.Position()))
		return nil
	})
	return recs, pos, err
}

// sameRecords fails unless got equals want record by record: same
// schemas, same row counts, same values.
func sameRecords(t *testing.T, got, want []arrow.RecordBatch) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i := range got {
		if !array.RecordEqual(got[i], want[i]) {
			t.Fatalf("record %d differs:\n%v\nwant\n%v", i, got[i], want[i])
		}
	}
}

// replayFiles are inputs for TestCheckpointResume: several files, headers,
// blank, bad and CRLF lines, a last line without a line break.
func replayFiles() map[string]string {
	var a, b, c strings.Builder
	a.WriteString("time,asset,power\n")
	b.WriteString("\ufefftime,asset,power\r\n")
	for i := range 23 {
		fmt.Fprintf(&a, "%d,T1,%d\n", i*1000, i)
		fmt.Fprintf(&b, "%d,T2,%d\r\n", (50+i)*1000, 50+i)
		if i%7 == 3 {
			a.WriteString("oops,T1,x\n\n")
		}
	}
	b.WriteString("99000,T2,99")
	for i := range 17 {
		fmt.Fprintf(&c, `{"ts":%d,"dev":"T%d","v":%d}`+"\n", 1700000000000+int64(i)*1000, i%3, i)
		if i%5 == 0 {
			c.WriteString("not json\n")
		}
	}
	return map[string]string{"in/a.csv": a.String(), "in/b.csv": b.String(), "in/empty.csv": "", "j/c.jsonl": c.String()}
}

// TestCheckpointResume emits a file input once, taking the position after
// every record; a new source resumed at the position after k records
// emits exactly the records that followed it, for every k, across files,
// past headers and bad lines, whatever the batch size: the same Arrow
// records, and the same positions after them.
func TestCheckpointResume(t *testing.T) {
	for _, tc := range []struct {
		name, conf string
		batch      int
	}{
		{"csv files batch 1", "path: in/*.csv\nformat: csv\nschema: {time: time, key: asset, fields: {power: float64}}\n", 1},
		{"csv files batch 5", "path: in/*.csv\nformat: csv\nschema: {time: time, key: asset, fields: {power: float64}}\n", 5},
		{"csv files one batch", "path: in/*.csv\nformat: csv\nschema: {time: time, key: asset, fields: {power: float64}}\n", 1000},
		{"csv columns", "path: in/a.csv\nformat: csv\nheader: true\ncolumns: [time, asset, power]\nschema: {time: time, key: asset, fields: {power: float64}}\n", 4},
		{"jsonl", "path: j/c.jsonl\nformat: jsonl\nschema: {key: asset, fields: {v: float64}}\nmapping: {time: ts, asset: dev}\n", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, replayFiles())
			e.batch = engine.BatchPolicy{Size: tc.batch}
			data := t.TempDir()
			first := e.buildCk(t, tc.conf, data)
			start := first.Position()
			all, pos, err := runCk(t, first, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(all) == 0 {
				t.Fatal("no records")
			}
			for k := 0; k <= len(all); k++ {
				at := start
				if k > 0 {
					at = pos[k-1]
				}
				s := e.buildCk(t, tc.conf, data)
				if err := s.ResumeAt(at); err != nil {
					t.Fatalf("after %d records: %v", k, err)
				}
				if !bytes.Equal(s.Position(), at) {
					t.Fatalf("after %d records: Position before Run is not where it starts", k)
				}
				if got := s.Source.(engine.Resumer).Resuming(); got != (k > 0) {
					t.Fatalf("after %d records: Resuming() = %v", k, got)
				}
				recs, p, err := runCk(t, s, 0)
				if err != nil {
					t.Fatalf("after %d records: %v", k, err)
				}
				sameRecords(t, recs, all[k:])
				for i := range p {
					if !bytes.Equal(p[i], pos[k+i]) {
						t.Fatalf("after %d records: position after record %d differs", k, k+i)
					}
				}
			}
			// Nothing was recorded in the position file.
			if _, err := os.Stat(filepath.Join(data, "p", "src")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a checkpointing source used its position directory: %v", err)
			}
		})
	}
}

// TestCheckpointIgnoresPositionFile: a source of a pipeline that takes
// checkpoints reads its input from the start, or from the position
// ResumeAt gave it, never from the position file of an earlier run
// without checkpoints.
func TestCheckpointIgnoresPositionFile(t *testing.T) {
	e := newEnv(t, replayFiles())
	e.batch = engine.BatchPolicy{Size: 4}
	conf := "path: in/*.csv\nformat: csv\nschema: {time: time, key: asset, fields: {power: float64}}\n"
	data := t.TempDir()
	if rows := e.runAcked(t, conf, data, 3, 5); len(rows) != 12 {
		t.Fatalf("%d rows acknowledged", len(rows))
	}
	all, _, err := runCk(t, e.buildCk(t, conf, data), 0)
	if err != nil {
		t.Fatal(err)
	}
	n := int64(0)
	for _, r := range all {
		n += r.NumRows()
	}
	if n != 47 {
		t.Fatalf("a checkpointing source read %d rows, want all 47", n)
	}
	// The position file still says where the run without checkpoints
	// stopped.
	if rows := e.runAcked(t, conf, data, -1, 0); len(rows) != 35 {
		t.Fatalf("the run without checkpoints resumed with %d rows, want 35", len(rows))
	}
}

// TestCheckpointEmitFails: the position is not advanced past a record
// whose emit failed.
func TestCheckpointEmitFails(t *testing.T) {
	e := newEnv(t, replayFiles())
	e.batch = engine.BatchPolicy{Size: 4}
	conf := "path: in/*.csv\nformat: csv\nschema: {time: time, key: asset, fields: {power: float64}}\n"
	_, pos, err := runCk(t, e.buildCk(t, conf, ""), 0)
	if err != nil {
		t.Fatal(err)
	}
	s := e.buildCk(t, conf, "")
	if _, _, err := runCk(t, s, 4); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.Position(), pos[2]) {
		t.Fatal("the position after a failed emit is not the one after the last record emitted")
	}
}

// TestCheckpointAppended: a source resumed at the end of its input reads
// the lines appended since, and only them.
func TestCheckpointAppended(t *testing.T) {
	e := newEnv(t, map[string]string{"a.csv": "time,v\n1,1\n2,2\n"})
	conf := "path: a.csv\nformat: csv\nschema: {fields: {v: float64}}\n"
	_, pos, err := runCk(t, e.buildCk(t, conf, ""), 0)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(e.dir, "a.csv"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString("3,3\n")
	f.Close()
	s := e.buildCk(t, conf, "")
	if err := s.ResumeAt(pos[len(pos)-1]); err != nil {
		t.Fatal(err)
	}
	recs, _, err := runCk(t, s, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].NumRows() != 1 || recs[0].Column(1).(*array.Float64).Value(0) != 3 {
		t.Fatalf("after an append: %v", recs)
	}
}

// TestCheckpointRefusesOtherFile: a position is refused, with an error
// saying why, when it is not a position of a file source, or when the
// file it is in is gone, no longer matched, or another file: other first
// bytes, shorter than the offset, other bytes before the offset.
func TestCheckpointRefusesOtherFile(t *testing.T) {
	var data strings.Builder
	data.WriteString("time,v\n")
	for i := range 400 {
		fmt.Fprintf(&data, "%d,%d\n", i, i)
	}
	orig := data.String()
	conf := "path: in/*.csv\nformat: csv\nschema: {fields: {v: float64}}\n"
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, path string) // before ResumeAt
		pos    func(p []byte) []byte
		want   string // in the error of ResumeAt
	}{
		{name: "empty", pos: func([]byte) []byte { return nil }, want: "too short"},
		{name: "a sim position", pos: func([]byte) []byte { return []byte("S\x01abcdefghijkl") }, want: "not the position of a file source"},
		{name: "a later version", pos: func(p []byte) []byte { q := bytes.Clone(p); q[1] = 9; return q }, want: "version 9"},
		{name: "garbled", pos: func(p []byte) []byte { q := bytes.Clone(p); q[len(q)/2] ^= 0x40; return q }, want: "checksum mismatch"},
		{name: "truncated", pos: func(p []byte) []byte { return p[:len(p)-3] }, want: "unreadable checkpoint position"},
		{name: "removed", change: func(t *testing.T, p string) { _ = os.Remove(p) }, want: "the checkpoint position is in in/a.csv: stat"},
		{name: "replaced", change: func(t *testing.T, p string) { write(t, p, strings.Replace(orig, "time,v\n0,0", "time,v\n0,7", 1)) },
			want: "in/a.csv is not the file the checkpoint was taken in (its first bytes differ)"},
		{name: "shortened", change: func(t *testing.T, p string) { write(t, p, orig[:1500]) },
			want: "in/a.csv is not the file the checkpoint was taken in (it holds 1500 bytes)"},
		{name: "rewritten before the offset", change: func(t *testing.T, p string) {
			write(t, p, strings.Replace(orig, "\n300,300\n", "\n300,301\n", 1))
		}, want: "in/a.csv is not the file the checkpoint was taken in (the bytes before the position differ): its position (line 331, byte "},
		{name: "a directory", change: func(t *testing.T, p string) { _ = os.Remove(p); _ = os.Mkdir(p, 0o755) }, want: "no longer a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, map[string]string{"in/a.csv": orig})
			e.batch = engine.BatchPolicy{Size: 10}
			_, pos, err := runCk(t, e.buildCk(t, conf, ""), 0)
			if err != nil {
				t.Fatal(err)
			}
			p := pos[32] // after 330 rows, line 331
			if tc.pos != nil {
				p = tc.pos(p)
			}
			if tc.change != nil {
				tc.change(t, filepath.Join(e.dir, "in/a.csv"))
			}
			err = e.buildCk(t, conf, "").ResumeAt(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	// A file changed between ResumeAt and Run is refused by Run; one
	// the pattern no longer matches too.
	e := newEnv(t, map[string]string{"in/a.csv": orig})
	e.batch = engine.BatchPolicy{Size: 10}
	_, pos, err := runCk(t, e.buildCk(t, conf, ""), 0)
	if err != nil {
		t.Fatal(err)
	}
	s := e.buildCk(t, conf, "")
	if err := s.ResumeAt(pos[5]); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(e.dir, "in/a.csv"), "time,v\n"+orig[7:100])
	if _, _, err := runCk(t, s, 0); err == nil || !strings.Contains(err.Error(), "is not the file the checkpoint was taken in") {
		t.Fatalf("Run on a changed file: %v", err)
	}
	s = e.buildCk(t, "path: in/*.txt\nformat: csv\nschema: {fields: {v: float64}}\n", "")
	write(t, filepath.Join(e.dir, "in/b.txt"), "time,v\n")
	write(t, filepath.Join(e.dir, "in/a.csv"), orig)
	if err := s.ResumeAt(pos[0]); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCk(t, s, 0); err == nil || !strings.Contains(err.Error(), "the checkpoint position is in in/a.csv, which "+filepath.Join(e.dir, "in/*.txt")+" no longer matches") {
		t.Fatalf("Run with a position in a file no longer matched: %v", err)
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
