package health

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine"
)

var t0 = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

// step is one sample of a scenario.
type step struct {
	in   *Input
	link *Link
	want string // alerts this sample makes: "raised rule, cleared rule"
}

func describe(as []engine.EngineAlert) string {
	var parts []string
	for _, a := range as {
		parts = append(parts, a.State+" "+a.Rule)
	}
	return strings.Join(parts, ", ")
}

func TestMonitor(t *testing.T) {
	th := Thresholds{Interval: 10 * time.Second, StallAfter: 30 * time.Second, BacklogFor: 30 * time.Second, LinkDownAfter: 20 * time.Second, ClearAfter: 20 * time.Second}
	src := func(rows, bad int64) *Input {
		return &Input{Pipeline: "p", Component: "s", Source: true, Rows: rows, Bad: bad}
	}
	win := func(rows, late int64) *Input { return &Input{Pipeline: "p", Component: "w", Rows: rows, Late: late} }
	link := func(backlog int64, up bool) *Link {
		return &Link{Pipeline: "p", Component: "cloud", BacklogRows: backlog, LinkUp: up}
	}
	quota := func(used int64) *Link {
		return &Link{Pipeline: "p", Component: "cloud", LinkUp: true, QuotaBytes: 100, QuotaUsed: used}
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"input stalls then flows", []step{
			{in: src(0, 0)}, {in: src(100, 0)}, {in: src(200, 0)},
			{in: src(200, 0)}, {in: src(200, 0)}, {in: src(200, 0)}, // 30 s without rows
			{in: src(200, 0), want: "raised input_stalled"},
			{in: src(200, 0)},
			{in: src(300, 0)}, {in: src(400, 0)},
			{in: src(500, 0), want: "cleared input_stalled"},
		}},
		{"a source that never delivered is not stalled", []step{
			{in: src(0, 0)}, {in: src(0, 0)}, {in: src(0, 0)}, {in: src(0, 0)}, {in: src(0, 0)}, {in: src(0, 0)},
		}},
		{"a short pause is no stall", []step{
			{in: src(0, 0)}, {in: src(100, 0)}, {in: src(100, 0)}, {in: src(100, 0)}, {in: src(200, 0)}, {in: src(200, 0)}, {in: src(300, 0)},
		}},
		{"bad input spike with hysteresis", []step{
			{in: src(0, 0)}, {in: src(100, 0)},
			{in: src(150, 50), want: "raised bad_input_spike"},
			{in: src(250, 50)},
			{in: src(300, 100)}, // spikes again: stays raised
			{in: src(400, 100)}, {in: src(500, 100)},
			{in: src(600, 100), want: "cleared bad_input_spike"},
		}},
		{"a few bad rows are no spike", []step{
			{in: src(0, 0)}, {in: src(1000, 5)}, {in: src(2000, 30)}, // 25 of 1025: under 5%
		}},
		{"late rows", []step{
			{in: win(0, 0)}, {in: win(100, 50), want: "raised late_row_spike"},
			{in: win(200, 50)}, {in: win(300, 50)}, {in: win(400, 50), want: "cleared late_row_spike"},
		}},
		{"link cut: backlog grows, link down, then both clear", []step{
			{link: link(0, true)},
			{link: link(10, false)}, {link: link(20, false)},
			{link: link(30, false), want: "raised link_down"},
			{link: link(40, false), want: "raised backlog_growing"},
			{link: link(50, true)},
			{link: link(20, true)}, {link: link(0, true), want: "cleared link_down"},
			{link: link(0, true), want: "cleared backlog_growing"},
		}},
		{"a flapping link raises nothing", []step{
			{link: link(0, true)}, {link: link(0, false)}, {link: link(0, true)}, {link: link(0, false)}, {link: link(0, true)},
		}},
		{"quota", []step{
			{link: quota(50)}, {link: quota(81), want: "raised buffer_quota"},
			{link: quota(96), want: "raised buffer_quota_critical"},
			{link: quota(92)}, {link: quota(89), want: "cleared buffer_quota_critical"},
			{link: quota(77)}, {link: quota(74), want: "cleared buffer_quota"},
		}},
		{"dead letters", []step{
			{link: &Link{Pipeline: "p", Component: "cloud", LinkUp: true}},
			{link: &Link{Pipeline: "p", Component: "cloud", LinkUp: true, DeadLetterRows: 3}, want: "raised sink_dead_lettering"},
			{link: &Link{Pipeline: "p", Component: "cloud", LinkUp: true, DeadLetterRows: 3}},
			{link: &Link{Pipeline: "p", Component: "cloud", LinkUp: true, DeadLetterRows: 4}},
			{link: &Link{Pipeline: "p", Component: "cloud", LinkUp: true, DeadLetterRows: 4}},
			{link: &Link{Pipeline: "p", Component: "cloud", LinkUp: true, DeadLetterRows: 4}},
			{link: &Link{Pipeline: "p", Component: "cloud", LinkUp: true, DeadLetterRows: 4}, want: "cleared sink_dead_lettering"},
		}},
		{"a raised alert of a removed component is cleared", []step{
			{link: link(0, false)}, {link: link(0, false)}, {link: link(0, false), want: "raised link_down"},
			{want: "cleared link_down"},
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
				var smp Sample
				smp.Time = t0.Add(time.Duration(i) * th.Interval)
				if s.in != nil {
					smp.Inputs = []Input{*s.in}
				}
				if s.link != nil {
					smp.Links = []Link{*s.link}
				}
				got := m.Observe(smp)
				if describe(got) != s.want {
					t.Fatalf("sample %d: %q, want %q", i, describe(got), s.want)
				}
				for _, a := range got {
					if a.Type != Type || a.Asset != "p" || !strings.HasPrefix(a.ID, a.Rule+"/p/") {
						t.Errorf("alert %+v", a)
					}
					if a.State == engine.AlertRaised {
						ids[a.Rule] = a.ID
						if a.Occur.After(smp.Time) || !a.Recover.IsZero() {
							t.Errorf("raise %+v at %v", a, smp.Time)
						}
					} else if ids[a.Rule] != a.ID || !a.Recover.Equal(smp.Time) {
						t.Errorf("clear %+v: id of the raise %q", a, ids[a.Rule])
					}
				}
			}
		})
	}
}

func TestThresholdsCheck(t *testing.T) {
	for _, th := range []Thresholds{
		{Interval: time.Millisecond}, {BadRatio: 2}, {QuotaWarn: 0.9, QuotaCritical: 0.5}, {StallAfter: -time.Second}, {BadMin: -1},
	} {
		if _, err := New(th); err == nil {
			t.Errorf("%+v accepted", th)
		}
	}
	m, err := New(Thresholds{})
	if err != nil || m.Thresholds() != Defaults {
		t.Errorf("defaults: %v %+v", err, m.Thresholds())
	}
}

func BenchmarkObserve(b *testing.B) {
	m, _ := New(Thresholds{})
	s := Sample{}
	for i := 0; i < 50; i++ {
		s.Inputs = append(s.Inputs, Input{Pipeline: fmt.Sprintf("p%d", i), Component: "s", Source: true})
		s.Links = append(s.Links, Link{Pipeline: fmt.Sprintf("p%d", i), Component: "cloud", LinkUp: true, QuotaBytes: 100})
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s.Time = t0.Add(time.Duration(i) * time.Second)
		for j := range s.Inputs {
			s.Inputs[j].Rows += 10
		}
		m.Observe(s)
	}
}
