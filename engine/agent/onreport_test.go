package agent

import (
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
)

// TestOnReportSeesEveryReport checks that OnReport receives every report
// reports.jsonl gets, in order, whatever made it: an apply, a rejection,
// a refused offline import, a refusal by size, and the apply a restart
// records.
func TestOnReportSeesEveryReport(t *testing.T) {
	var mu sync.Mutex
	var seen []Report
	hook := func(o *Options) {
		o.OnReport = func(r Report) {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, r)
		}
	}
	e := newEnv(t, hook)
	e.apply(t, buildFile(t, e.files, e.key, "w", 2, nil, releaseFiles(2)))
	e.apply(t, buildFile(t, e.files, e.key, "w", 1, nil, releaseFiles(1))) // older: rejected
	if r, err := e.agent.Stage(buildFile(t, e.files, testKey(9), "w", 3, nil, releaseFiles(3))); err != nil || r.Outcome != Rejected {
		t.Fatalf("stage with an unknown key: %+v %v", r, err)
	}
	if _, err := e.agent.RejectTooLarge("big.bundle", 1<<40); err != nil {
		t.Fatal(err)
	}
	want, err := ReadReports(e.dir, DefaultMaxReportBytes)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := append([]Report(nil), seen...)
	mu.Unlock()
	if len(want) != 4 || !sameReports(got, want) {
		t.Fatalf("OnReport saw\n%+v\nreports.jsonl holds\n%+v", got, want)
	}

	// A restart that records the apply a crash interrupted reports it too.
	e.agent.Close()
	if err := os.Remove(filepath.Join(e.dir, reportsFile)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	seen = nil
	mu.Unlock()
	e.runner = &fakeRunner{}
	e.open(t, hook)
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 || seen[0].Outcome != Applied || seen[0].Version != 2 || seen[0].Steps != "recorded after a restart" {
		t.Fatalf("after a restart OnReport saw %+v", seen)
	}
}

// sameReports compares reports as reports.jsonl keeps them (times to the
// nanosecond through JSON).
func sameReports(a, b []Report) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if !x.Time.Equal(y.Time) {
			return false
		}
		x.Time = y.Time
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}
