package position_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/sluice-edge/sluice/engine/position"
)

func load(t *testing.T, dir string) string {
	t.Helper()
	s, err := position.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := s.Load()
	if !ok {
		return "<none>"
	}
	return string(p)
}

func TestTrackerCommitsInOrder(t *testing.T) {
	for _, tc := range []struct {
		name string
		done []int // acks completed, in this order
		end  bool
		want string
	}{
		{"in order", []int{0, 1, 2}, false, "p2"},
		{"out of order waits for the prefix", []int{2, 1}, false, "<none>"},
		{"out of order", []int{2, 0}, false, "p0"},
		{"all then end keeps the end", []int{0, 1, 2}, true, "p2"},
		{"end with an unacknowledged batch", []int{0, 2}, true, "p0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "src")
			s, err := position.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			tr := position.NewTracker(s, func(msg string, err error) { t.Errorf("%s: %v", msg, err) })
			acks := []interface{ Done() }{tr.Emit([]byte("p0")), tr.Emit([]byte("p1")), tr.Emit([]byte("p2"))}
			for _, i := range tc.done {
				acks[i].Done()
			}
			if tc.end {
				tr.End()
			}
			tr.Close()
			if got := load(t, dir); got != tc.want {
				t.Fatalf("position %s, want %s", got, tc.want)
			}
		})
	}
}

func TestDamagedPositionIsAnError(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, position.FileName), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := position.Open(dir); err == nil {
		t.Fatal("a damaged position opened")
	}
}

// TestResetForgetsThePosition: a recorded position is forgotten durably,
// in place, and a store without a file stays without one.
func TestResetForgetsThePosition(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "src")
	s, err := position.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Reset(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, position.FileName)); !os.IsNotExist(err) {
		t.Fatalf("reset created a position file: %v", err)
	}
	tr := position.NewTracker(s, nil)
	tr.Emit([]byte("p0")).Done()
	tr.End()
	if got := load(t, dir); got != "p0" {
		t.Fatalf("position %s, want p0", got)
	}
	s, err = position.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Reset(); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Load(); ok {
		t.Fatal("Load returns a position after Reset")
	}
	if got := load(t, dir); got != "<none>" {
		t.Fatalf("position %s after Reset, want none", got)
	}
}
