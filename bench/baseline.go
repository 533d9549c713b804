package bench

import (
	"cmp"
	"context"
	"encoding/json"
	"math"
	"slices"
	"strings"

	"github.com/reugn/go-streams/extension"
	"github.com/reugn/go-streams/flow"

	"github.com/sluice-edge/sluice/connectors/sim"
)

// The baseline is the reference computation as a straightforward
// per-element program on plain go-streams flows, the way it is commonly
// written without batches:
//
//	ChanSource(messages) -> Map(decode one payload with encoding/json) -> sink
//
// The sink keeps a map from (turbine, minute) to the state of that window
// (count, sum, min, max, Welford mean and M2 for the standard deviation,
// and the values themselves for the exact 95th percentile), closes the
// windows the event-time watermark has passed, and runs the same three
// alert rules as the reference pipeline, with the same semantics (hold
// durations, clear conditions). It is fed the same payloads as the "enos"
// scenario, one message (device key and payload) per element.

// baselineMsg is one received message: the device key (from the topic)
// and the payload.
type baselineMsg struct {
	key     string
	payload []byte
}

// enosPost is the EnOS measure-point post, decoded with encoding/json.
type enosPost struct {
	ID      string `json:"id"`
	Version string `json:"version"`
	Method  string `json:"method"`
	Params  struct {
		MeasurePoints map[string]json.RawMessage `json:"measurepoints"`
		Time          int64                      `json:"time"`
	} `json:"params"`
}

// pointValue is a measure point written as {"value": v, "quality": q}.
type pointValue struct {
	Value   float64 `json:"value"`
	Quality int     `json:"quality"`
}

// reading is one decoded payload.
type reading struct {
	asset  string
	time   int64
	values [sim.NumPoints]float64
	has    [sim.NumPoints]bool
}

var pointIndex = func() map[string]int {
	m := make(map[string]int, sim.NumPoints)
	for i, p := range sim.Points {
		m[p] = i
	}
	return m
}()

// decodeReading decodes one message; it returns nil for a bad payload.
func decodeReading(m *baselineMsg) *reading {
	var post enosPost
	if err := json.Unmarshal(m.payload, &post); err != nil {
		return nil
	}
	r := &reading{asset: m.key, time: post.Params.Time}
	for name, raw := range post.Params.MeasurePoints {
		i, ok := pointIndex[name]
		if !ok || len(raw) == 0 {
			continue
		}
		var v float64
		if raw[0] == '{' {
			var pv pointValue
			if err := json.Unmarshal(raw, &pv); err != nil {
				return nil
			}
			v = pv.Value
		} else if err := json.Unmarshal(raw, &v); err != nil {
			return nil
		}
		r.values[i], r.has[i] = v, true
	}
	return r
}

const windowMS = 60_000

type winKey struct {
	asset string
	start int64
}

// pointStats is the state of one point in one window.
type pointStats struct {
	n             int64
	sum, min, max float64
	mean, m2      float64
	values        []float64
}

func (s *pointStats) add(v float64) {
	if s.n == 0 {
		s.min, s.max = v, v
	}
	s.n++
	s.sum += v
	s.min = min(s.min, v)
	s.max = max(s.max, v)
	d := v - s.mean
	s.mean += d / float64(s.n)
	s.m2 += d * (v - s.mean)
	s.values = append(s.values, v)
}

// winState is one open window of one turbine.
type winState struct {
	key    winKey
	count  int64
	points [sim.NumPoints]pointStats
}

// windowResult is one closed window: the statistics of every point.
type windowResult struct {
	asset                   string
	start                   int64
	count                   int64
	avg, min, max, std, p95 [sim.NumPoints]float64
}

func (w *winState) result() *windowResult {
	r := &windowResult{asset: w.key.asset, start: w.key.start, count: w.count}
	for i := range w.points {
		p := &w.points[i]
		if p.n == 0 {
			r.avg[i], r.min[i], r.max[i], r.std[i], r.p95[i] = math.NaN(), math.NaN(), math.NaN(), math.NaN(), math.NaN()
			continue
		}
		r.avg[i] = p.sum / float64(p.n)
		r.min[i], r.max[i] = p.min, p.max
		r.std[i] = math.NaN()
		if p.n > 1 {
			r.std[i] = math.Sqrt(p.m2 / float64(p.n-1))
		}
		slices.Sort(p.values)
		r.p95[i] = p.values[int(math.Ceil(0.95*float64(p.n)))-1]
	}
	return r
}

// baselineRule is one alert rule written as Go code.
type baselineRule struct {
	name  string
	cond  func(*windowResult) bool
	clear func(*windowResult) bool // nil: clear when cond stops holding
	hold  int64                    // milliseconds
}

// baselineRules are the rules of the reference pipeline (reference.yaml).
var baselineRules = []baselineRule{
	{
		name:  "gearbox_hot",
		cond:  func(w *windowResult) bool { return w.max[sim.GearboxTemp] > 70 },
		clear: func(w *windowResult) bool { return w.max[sim.GearboxTemp] < 68 },
	},
	{
		name: "high_vibration",
		cond: func(w *windowResult) bool { return w.max[sim.Vibration] > 4 },
		hold: 60_000,
	},
	{
		name: "curtailed",
		cond: func(w *windowResult) bool { return w.avg[sim.WindSpeed] > 12 && w.avg[sim.Power] < 1500 },
	},
}

type ruleState struct {
	pending, active bool
	start           int64
}

// alertRecord is one raised or cleared alert.
type alertRecord struct {
	asset, rule, state string
	time, occur        int64
}

// baselineSink aggregates readings into windows and evaluates the rules.
type baselineSink struct {
	in   chan any
	done chan struct{}

	windows   map[winKey]*winState
	rules     map[string][]ruleState
	wm        int64 // largest event time seen
	nextClose int64 // smallest end of an open window

	rows, bad, late, windowRows, raised, cleared int64

	// keep, when set, keeps every window result and alert record (tests
	// compare them with the pipeline's).
	keep    bool
	results []*windowResult
	alerts  []alertRecord
}

func newBaselineSink(keep bool) *baselineSink {
	s := &baselineSink{
		keep:      keep,
		in:        make(chan any),
		done:      make(chan struct{}),
		windows:   map[winKey]*winState{},
		rules:     map[string][]ruleState{},
		wm:        math.MinInt64,
		nextClose: math.MaxInt64,
	}
	go s.process()
	return s
}

// In implements streams.Inlet.
func (s *baselineSink) In() chan<- any { return s.in }

// AwaitCompletion implements streams.Sink.
func (s *baselineSink) AwaitCompletion() { <-s.done }

func (s *baselineSink) process() {
	defer close(s.done)
	for el := range s.in {
		r, _ := el.(*reading)
		if r == nil {
			s.bad++
			continue
		}
		s.rows++
		start := r.time - ((r.time%windowMS)+windowMS)%windowMS
		if start+windowMS <= s.wm {
			s.late++ // its window has closed
			continue
		}
		k := winKey{r.asset, start}
		w, ok := s.windows[k]
		if !ok {
			w = &winState{key: k}
			s.windows[k] = w
			s.nextClose = min(s.nextClose, start+windowMS)
		}
		w.count++
		for i, v := range r.values {
			if r.has[i] {
				w.points[i].add(v)
			}
		}
		if r.time > s.wm {
			s.wm = r.time
			if s.wm >= s.nextClose {
				s.closeWindows(s.wm)
			}
		}
	}
	s.closeWindows(math.MaxInt64)
}

// closeWindows closes the windows ending at or before upTo, in order of
// (start, asset), and evaluates the rules on each.
func (s *baselineSink) closeWindows(upTo int64) {
	var closed []*winState
	s.nextClose = math.MaxInt64
	for k, w := range s.windows {
		if k.start+windowMS <= upTo {
			closed = append(closed, w)
			delete(s.windows, k)
		} else {
			s.nextClose = min(s.nextClose, k.start+windowMS)
		}
	}
	slices.SortFunc(closed, func(a, b *winState) int {
		if c := cmp.Compare(a.key.start, b.key.start); c != 0 {
			return c
		}
		return strings.Compare(a.key.asset, b.key.asset)
	})
	for _, w := range closed {
		s.windowRows++
		res := w.result()
		if s.keep {
			s.results = append(s.results, res)
		}
		s.evaluate(res)
	}
}

// evaluate advances the rules of one asset on one window result, with the
// semantics of the alert step.
func (s *baselineSink) evaluate(w *windowResult) {
	st, ok := s.rules[w.asset]
	if !ok {
		st = make([]ruleState, len(baselineRules))
		s.rules[w.asset] = st
	}
	t := w.start
	for i := range baselineRules {
		r, rs := &baselineRules[i], &st[i]
		if !rs.active {
			if !r.cond(w) {
				rs.pending = false
				continue
			}
			if !rs.pending {
				rs.pending, rs.start = true, t
			}
			if t-rs.start >= r.hold {
				rs.pending, rs.active = false, true
				s.alert(alertRecord{asset: w.asset, rule: r.name, state: "raised", time: t, occur: rs.start})
			}
			continue
		}
		done := false
		if r.clear != nil {
			done = r.clear(w)
		} else {
			done = !r.cond(w)
		}
		if done {
			rs.active = false
			s.alert(alertRecord{asset: w.asset, rule: r.name, state: "cleared", time: t, occur: rs.start})
		}
	}
}

// alert delivers one alert record; the benchmark discards it.
func (s *baselineSink) alert(a alertRecord) {
	if s.keep {
		s.alerts = append(s.alerts, a)
	}
	if a.state == "raised" {
		s.raised++
	} else {
		s.cleared++
	}
}

// baseline is a prepared baseline run.
type baseline struct {
	in   *payloads
	keep bool
	sink *baselineSink
}

func newBaseline(in *payloads) *baseline { return &baseline{in: in} }

func (b *baseline) run(ctx context.Context) (outputs, error) {
	ch := make(chan any, 1024)
	go func() {
		defer close(ch)
		b.in.each(func(payload []byte, key string) bool {
			select {
			case ch <- &baselineMsg{key: key, payload: payload}:
				return true
			case <-ctx.Done():
				return false
			}
		})
	}()
	sink := newBaselineSink(b.keep)
	b.sink = sink
	extension.NewChanSource(ch).
		Via(flow.NewMap(decodeReading, 1)).
		To(sink)
	if err := ctx.Err(); err != nil {
		return outputs{}, err
	}
	return outputs{
		rows:         sink.rows,
		windows:      sink.windowRows,
		raised:       sink.raised,
		cleared:      sink.cleared,
		late:         sink.late,
		decodeErrors: sink.bad,
	}, nil
}
