package health

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine"
)

// TestMonitorNewRules drives backlog_drain_eta, checkpoint_failed,
// engine_restarts and apply_failed through raise and clear.
func TestMonitorNewRules(t *testing.T) {
	th := Thresholds{Interval: 10 * time.Second, DrainETAFor: 20 * time.Second, ClearAfter: 20 * time.Second,
		RestartsMax: 3, RestartsWindow: time.Hour}
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * th.Interval) }
	// A link with a TTL of 10 minutes whose oldest rows are 5 minutes old
	// at sample 0.
	link := func(backlog int64, rate float64, up bool) func(int) Sample {
		return func(i int) Sample {
			return Sample{Links: []Link{{Pipeline: "p", Component: "cloud", LinkUp: up, BacklogRows: backlog, DrainRate: rate,
				TTL: 10 * time.Minute, OldestEventTime: t0.Add(-5 * time.Minute)}}}
		}
	}
	ckpt := func(ok, failed int) func(int) Sample {
		return func(int) Sample {
			c := Checkpoint{Pipeline: "p", Err: "disk full"}
			if ok >= 0 {
				c.LastSuccess = at(ok)
			}
			if failed >= 0 {
				c.LastFailure = at(failed)
			}
			return Sample{Checkpoints: []Checkpoint{c}}
		}
	}
	restarts := func(ts ...int) func(int) Sample {
		return func(int) Sample {
			e := &Engine{Edge: "p"}
			for _, i := range ts {
				e.Restarts = append(e.Restarts, at(i))
			}
			return Sample{Engine: e}
		}
	}
	apply := func(failed bool, since int) func(int) Sample {
		return func(int) Sample {
			return Sample{Engine: &Engine{Edge: "p", Apply: &Apply{Failed: failed, Since: at(since), Text: "farm v2"}}}
		}
	}
	type st struct {
		s    func(int) Sample
		want string
	}
	tests := []struct {
		name  string
		steps []st
	}{
		{"drain eta beyond the ttl, then fast enough", []st{
			{s: link(10000, 10, true)}, // 1000 s to drain, 300 s left
			{s: link(9900, 10, true)},
			{s: link(9800, 10, true), want: "raised backlog_drain_eta"},
			{s: link(9000, 1000, true)}, {s: link(8000, 1000, true)},
			{s: link(7000, 1000, true), want: "cleared backlog_drain_eta"},
		}},
		{"a drain within the ttl raises nothing", []st{
			{s: link(1000, 10, true)}, {s: link(900, 10, true)}, {s: link(800, 10, true)}, {s: link(700, 10, true)},
		}},
		{"a link down gives no estimate", []st{
			{s: link(10000, 10, false)}, {s: link(10000, 10, false)}, {s: link(10000, 10, false)},
		}},
		{"checkpoint fails, then succeeds", []st{
			{s: ckpt(0, -1)},
			{s: ckpt(0, 1), want: "raised checkpoint_failed"},
			{s: ckpt(0, 1)},
			{s: ckpt(3, 1)}, {s: ckpt(4, 1)},
			{s: ckpt(5, 1), want: "cleared checkpoint_failed"},
		}},
		{"restarts: a crash loop, then a stable run", []st{
			{s: restarts(0)}, {s: restarts(0, 1)},
			{s: restarts(0, 1, 2), want: "raised engine_restarts"},
			{s: restarts(0, 1, 2)},
			// An hour later the restarts are out of the window.
			{s: func(i int) Sample { s := restarts(0, 1, 2)(i); s.Time = at(3).Add(time.Hour); return s }},
			{s: func(i int) Sample { s := restarts(0, 1, 2)(i); s.Time = at(5).Add(time.Hour); return s }, want: "cleared engine_restarts"},
		}},
		{"apply refused, then applied", []st{
			{s: apply(false, 0)},
			{s: apply(true, 1), want: "raised apply_failed"},
			{s: apply(true, 1)},
			{s: apply(false, 1), want: "cleared apply_failed"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := New(th)
			if err != nil {
				t.Fatal(err)
			}
			ids := map[string]string{}
			for i, s := range tt.steps {
				smp := s.s(i)
				if smp.Time.IsZero() {
					smp.Time = at(i)
				}
				got := m.Observe(smp)
				if describe(got) != s.want {
					t.Fatalf("sample %d: %q, want %q", i, describe(got), s.want)
				}
				for _, a := range got {
					if a.Type != Type || a.Asset != "p" {
						t.Errorf("alert %+v", a)
					}
					if a.State == "raised" {
						ids[a.Rule] = a.ID
					} else if ids[a.Rule] != a.ID {
						t.Errorf("clear %+v: id of the raise %q", a, ids[a.Rule])
					}
				}
			}
		})
	}
}

// TestRestore: alerts raised before a restart keep their id while their
// condition holds and are cleared when it does not or is not looked at.
func TestRestore(t *testing.T) {
	m, _ := New(Thresholds{Interval: 10 * time.Second, ClearAfter: 20 * time.Second, LinkDownAfter: 20 * time.Second})
	down := Sample{Links: []Link{{Pipeline: "p", Component: "cloud"}}}
	for i := range 3 {
		down.Time = t0.Add(time.Duration(i) * 10 * time.Second)
		m.Observe(down)
	}
	rs := m.Raised()
	if len(rs) != 1 || rs[0].Rule != RuleLinkDown {
		t.Fatalf("raised %+v", rs)
	}
	name := filepath.Join(t.TempDir(), "raised.json")
	if err := WriteRaised(name, rs); err != nil {
		t.Fatal(err)
	}
	// Still down after the restart: no new alert; up: cleared, same id.
	m2, _ := New(m.Thresholds())
	m2.Restore(ReadRaised(name))
	down.Time = t0.Add(time.Minute)
	if as := m2.Observe(down); len(as) != 0 {
		t.Fatalf("a restored alert still holding raised again: %+v", as)
	}
	up := Sample{Links: []Link{{Pipeline: "p", Component: "cloud", LinkUp: true}}}
	var cleared string
	for i := 1; i <= 3 && cleared == ""; i++ {
		up.Time = t0.Add(time.Minute + time.Duration(i)*10*time.Second)
		for _, a := range m2.Observe(up) {
			cleared = a.ID
		}
	}
	if want := "link_down/p/cloud/" + strconv.FormatInt(t0.UnixMilli(), 10); cleared != want {
		t.Fatalf("cleared %q, want %q", cleared, want)
	}
	// A restored alert no sample looks at is cleared at once.
	m3, _ := New(m.Thresholds())
	m3.Restore(rs)
	if as := m3.Observe(Sample{Time: t0.Add(time.Hour)}); len(as) != 1 || as[0].State != "cleared" {
		t.Fatalf("unlooked restored alert: %+v", as)
	}
	if ReadRaised(filepath.Join(t.TempDir(), "none")) != nil {
		t.Fatal("a missing file restored something")
	}
}

// TestStartLog: starts without a recorded stop count as restarts,
// across "processes" (each call reads the file anew); a clean stop does
// not count; old restarts leave the window.
func TestStartLog(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "health")
	got := func(now time.Time) int {
		t.Helper()
		rs, err := RecordStart(dir, now, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return len(rs)
	}
	if n := got(t0); n != 0 {
		t.Fatalf("first start: %d restarts", n)
	}
	for i := 1; i <= 4; i++ { // crashes: no stop recorded
		if n := got(t0.Add(time.Duration(i) * time.Minute)); n != i {
			t.Fatalf("crash %d: %d restarts", i, n)
		}
	}
	if err := RecordStop(dir); err != nil {
		t.Fatal(err)
	}
	if n := got(t0.Add(5 * time.Minute)); n != 4 {
		t.Fatalf("after a clean stop: %d restarts, want the 4 before it", n)
	}
	if n := got(t0.Add(2 * time.Hour)); n != 1 {
		t.Fatalf("two hours later: %d restarts, want only this one", n)
	}
	// A damaged file starts the count again.
	if err := os.WriteFile(filepath.Join(dir, StartsFile), []byte("{torn"), 0o600); err != nil {
		t.Fatal(err)
	}
	if n := got(t0.Add(3 * time.Hour)); n != 0 {
		t.Fatalf("after damage: %d", n)
	}
	// An unwritable directory is an error, not a panic.
	if _, err := RecordStart(filepath.Join(dir, StartsFile, "x"), t0, time.Hour); err == nil {
		t.Fatal("a start recorded under a file")
	}
}

// TestUnsentFile: the alerts no sink took come back in order, every
// field kept, the newest max of them; a missing or damaged file gives
// none.
func TestUnsentFile(t *testing.T) {
	name := filepath.Join(t.TempDir(), UnsentFile)
	if got := ReadUnsent(name, 10); got != nil {
		t.Fatalf("missing file: %v", got)
	}
	var as []engine.EngineAlert
	for i := range 3 {
		as = append(as, engine.EngineAlert{ID: engine.EngineAlertID(RuleLinkDown, "p/c", strconv.Itoa(i)), Asset: "p", Rule: RuleLinkDown,
			Severity: "major", Type: Type, Content: "down", Value: float64(i), State: engine.AlertCleared,
			Occur: t0.Add(time.Duration(i) * time.Second), Recover: t0.Add(time.Minute)})
	}
	if err := WriteUnsent(name, as); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		max  int
		want []engine.EngineAlert
	}{{10, as}, {3, as}, {2, as[1:]}, {0, nil}} {
		got := ReadUnsent(name, c.max)
		if len(got) != len(c.want) {
			t.Fatalf("max %d: %d alerts, want %d", c.max, len(got), len(c.want))
		}
		for i := range got {
			if got[i].ID != c.want[i].ID || !got[i].Occur.Equal(c.want[i].Occur) || !got[i].Recover.Equal(c.want[i].Recover) ||
				got[i].State != c.want[i].State || got[i].Value != c.want[i].Value || got[i].Content != c.want[i].Content {
				t.Fatalf("max %d: alert %d is %+v, want %+v", c.max, i, got[i], c.want[i])
			}
		}
	}
	if err := WriteUnsent(name, nil); err != nil {
		t.Fatal(err)
	}
	if got := ReadUnsent(name, 10); len(got) != 0 {
		t.Fatalf("after all were taken: %v", got)
	}
	if err := os.WriteFile(name, []byte("[{torn"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := ReadUnsent(name, 10); got != nil {
		t.Fatalf("damaged file: %v", got)
	}
}
