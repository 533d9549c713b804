package mqtt

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine"
)

// recordLog keeps the records logged at or above a level.
type recordLog struct {
	mu   sync.Mutex
	recs []string
	lvl  slog.Level
}

func (h *recordLog) Enabled(_ context.Context, l slog.Level) bool { return l >= h.lvl }
func (h *recordLog) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	h.mu.Lock()
	h.recs = append(h.recs, b.String())
	h.mu.Unlock()
	return nil
}
func (h *recordLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordLog) WithGroup(string) slog.Handler      { return h }

func (h *recordLog) lines(prefix string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range h.recs {
		if strings.HasPrefix(r, prefix) {
			out = append(out, r)
		}
	}
	return out
}

// TestSessionTakeover: another client connecting again and again with the
// source's client id is counted and logged loudly (at most once a minute),
// without the id in the clear, and the source keeps running.
func TestSessionTakeover(t *testing.T) {
	b := embedded(t)
	for _, version := range []string{"5", "3.1.1"} {
		t.Run(version, func(t *testing.T) {
			id := "secret-" + suffix()
			counters := engine.NewCounters()
			logs := &recordLog{lvl: slog.LevelInfo}
			src := buildSource(t, fmt.Sprintf(`
urls: [%s]
client_id: %s
version: %q
clean_session: true
reconnect_min: 20ms
reconnect_max: 100ms
topics: [takeover/%s]
format: json
schema: {key: asset, fields: {power: float64}}
`, b.url, id, version, id), engine.BuildContext{Counters: counters, Log: slog.New(logs)})
			c := newCollector()
			r := start(t, src, c)
			v := 5
			if version == "3.1.1" {
				v = 4
			}
			// The intruder reconnects at once each time it is pushed out.
			intruder, err := newClient(clientConfig{ClientOptions: ClientOptions{URLs: []string{b.url}, ClientID: id, Version: v,
				CleanSession: true, ReconnectMin: time.Millisecond, ReconnectMax: 5 * time.Millisecond}})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			if err := intruder.start(ctx); err != nil {
				t.Fatal(err)
			}
			waitCounter(t, counters, "takeovers", 3)
			_ = intruder.stop(context.Background())
			r.stop(t)
			errs := logs.lines("ERROR")
			if len(errs) != 1 || !strings.Contains(errs[0], "session taken over") {
				t.Errorf("ERROR lines %q, want one about the session taken over", errs)
			}
			for _, l := range logs.lines("") {
				if strings.Contains(l, id) {
					t.Errorf("the client id is logged: %s", l)
				}
			}
		})
	}
}

// TestFlapGuard: connections lost at once count as failed attempts, so
// the delay before reconnecting doubles up to reconnect_max; a connection
// that lasted starts over.
func TestFlapGuard(t *testing.T) {
	cases := []struct {
		name      string
		version   int
		takenOver []bool          // per loss: the broker said the session was taken over
		lived     []time.Duration // per loss: how long the connection was up
		flaps     []int
		delays    []time.Duration // expected delays without jitter (±20%)
		reported  []bool          // reported as taken over
	}{
		{"taken over again and again (5)", 5, []bool{true, true, true, true, true, true, true, true},
			[]time.Duration{0, 0, 0, 0, 0, 0, 0, 0}, []int{1, 2, 3, 4, 5, 6, 7, 8},
			[]time.Duration{100, 200, 400, 800, 1600, 3200, 5000, 5000}, []bool{true, true, true, true, true, true, true, true}},
		{"a stable connection starts over (5)", 5, []bool{true, true, false, true},
			[]time.Duration{0, 0, time.Minute, 0}, []int{1, 2, 0, 1},
			[]time.Duration{100, 200, 0, 100}, []bool{true, true, false, true}},
		{"3.1.1 gives no reason: short connections are takeovers", 4, []bool{false, false, false},
			[]time.Duration{0, 0, time.Minute}, []int{1, 2, 0},
			[]time.Duration{100, 200, 0}, []bool{true, true, false}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := newFlapGuard(ClientOptions{ReconnectMin: 100 * time.Millisecond, ReconnectMax: 5 * time.Second, Version: tc.version})
			for i := range tc.flaps {
				g.up()
				g.upAt = g.upAt.Add(-tc.lived[i])
				if tc.takenOver[i] {
					g.sessionTakenOver()
				}
				d := g.down(nil)
				want := tc.delays[i] * time.Millisecond
				if d.flaps != tc.flaps[i] || d.takenOver != tc.reported[i] ||
					float64(d.delay) < 0.79*float64(want) || float64(d.delay) > 1.21*float64(want) {
					t.Errorf("loss %d: %+v, want %d flaps, delay ~%v, taken over %v", i, d, tc.flaps[i], want, tc.reported[i])
				}
				if w := g.wait(0); w != 0 && want == 0 || float64(w) < 0.79*float64(want) {
					t.Errorf("loss %d: next attempt waits %v, want ~%v", i, w, want)
				}
			}
		})
	}
}
