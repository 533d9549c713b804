package logfile

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRotationBoundsFiles(t *testing.T) {
	tests := []struct {
		name          string
		maxBytes      int64
		maxFiles      int
		records, size int
	}{
		{"few large files", 64 << 10, 3, 2000, 200},
		{"many small files", 64 << 10, 10, 5000, 300},
		{"two files", 64 << 10, 2, 1000, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			w, err := Open(Options{Dir: dir, MaxFileBytes: tt.maxBytes, MaxFiles: tt.maxFiles, Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			rec := []byte(`{"msg":"` + strings.Repeat("x", tt.size-10) + "\"}\n")
			for i := 0; i < tt.records; i++ {
				if _, err := w.Write(rec); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			files, err := Files(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(files) != tt.maxFiles {
				t.Fatalf("%d files, want %d: %v", len(files), tt.maxFiles, files)
			}
			if filepath.Base(files[len(files)-1]) != Current {
				t.Errorf("last file %s, want %s", files[len(files)-1], Current)
			}
			for _, f := range files {
				st, err := os.Stat(f)
				if err != nil {
					t.Fatal(err)
				}
				if st.Size() > tt.maxBytes {
					t.Errorf("%s has %d bytes, over %d", f, st.Size(), tt.maxBytes)
				}
				if st.Mode().Perm() != 0o600 {
					t.Errorf("%s mode %v, want 0600", f, st.Mode().Perm())
				}
			}
		})
	}
}

func TestCutLastRecordStaysOneBadLine(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, Current), []byte("{\"msg\":\"a\"}\n{\"msg\":\"cut sho"), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("{\"msg\":\"b\"}\n")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	got, _ := os.ReadFile(filepath.Join(dir, Current))
	want := "{\"msg\":\"a\"}\n{\"msg\":\"cut sho\n{\"msg\":\"b\"}\n"
	if string(got) != want {
		t.Errorf("file %q, want %q", got, want)
	}
}

func TestLongRecordReplaced(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	n, err := w.Write(bytes.Repeat([]byte("y"), MaxLineBytes+1))
	if err != nil || n != MaxLineBytes+1 {
		t.Fatalf("Write = %d, %v", n, err)
	}
	w.Close()
	got, _ := os.ReadFile(filepath.Join(dir, Current))
	if len(got) > 512 || !strings.Contains(string(got), "log record dropped") || w.Dropped() != 1 {
		t.Errorf("file %q, dropped %d", got, w.Dropped())
	}
}

func TestOptionsBounds(t *testing.T) {
	for _, o := range []Options{{}, {Dir: "x", MaxFileBytes: 10}, {Dir: "x", MaxFiles: 1}, {Dir: "x", MaxFiles: MaxFilesLimit + 1}, {Dir: "x", MaxFileBytes: MaxFileBytesLimit + 1}} {
		if err := o.Check(); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

func TestRotatedNames(t *testing.T) {
	for name, want := range map[string]bool{
		"sluice-20260101T000000.000000000.log": true,
		"sluice.log":                           false,
		"sluice-2026.log":                      false,
		"other-20260101T000000.000000000.log":  false,
	} {
		if Rotated(name) != want {
			t.Errorf("Rotated(%q) = %v", name, !want)
		}
	}
}

func TestLateAttachKeepsAttrs(t *testing.T) {
	late := NewLate()
	var early bytes.Buffer
	log := slog.New(Tee{slog.NewJSONHandler(&early, nil), late})
	plog := log.With("pipeline", "p1").WithGroup("g")
	plog.Info("before")
	var buf bytes.Buffer
	late.Attach(slog.NewJSONHandler(&buf, nil))
	plog.Info("after", "k", 1)
	late.Detach()
	plog.Info("detached")
	out := buf.String()
	if strings.Contains(out, "before") || strings.Contains(out, "detached") || !strings.Contains(out, `"pipeline":"p1","g":{"k":1}`) {
		t.Errorf("late handler wrote %q", out)
	}
	if c := strings.Count(early.String(), "\n"); c != 3 {
		t.Errorf("first handler got %d records, want 3", c)
	}
}

func BenchmarkWrite(b *testing.B) {
	w, err := Open(Options{Dir: b.TempDir(), MaxFileBytes: 1 << 20, MaxFiles: 3})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	log := slog.New(slog.NewJSONHandler(w, nil))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		log.Info("a record", "pipeline", "p", "component", "c", "i", i)
	}
	b.ReportMetric(float64(w.Dropped()), "dropped")
}
