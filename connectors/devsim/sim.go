// Package devsim simulates EnOS devices over MQTT, to drive pipelines and
// benchmarks without hardware: a wind farm whose turbines post measure
// points (/sys/{productKey}/{deviceKey}/thing/measurepoint/post) at a set
// rate — with fault episodes, offline history and bad payloads on request —
// or the rows of a CSV file replayed as devices. The simulated devices
// also answer the commands sent to them
// (/sys/{productKey}/{deviceKey}/thing/service/... and "_reply"), so that a
// downlink has someone to talk to. Stats reports what was sent and
// acknowledged. Counter is the plain subscriber that benchmarks compare a
// source with.
//
// The simulator speaks MQTT 5 to any broker. Each connection gathers the
// messages it publishes into as few writes as possible, so that one core
// can offer more than a broker delivers.
package devsim

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/connectors/windfarm"
	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/topic"
)

// Config configures a simulation. Zero fields take the defaults noted.
type Config struct {
	// URLs are the brokers (tcp://host:port or tls://host:port); default
	// tcp://127.0.0.1:1883.
	URLs []string
	// ClientID prefixes the client ids of the simulator's connections
	// (default devsim-<random>).
	ClientID string
	// Username, Password and TLS authenticate the connections.
	Username, Password string
	TLS                *tls.Config
	// QoS of the posts: 0 or 1. At QoS 1 Stats.Acked counts the posts the
	// broker acknowledged.
	QoS int

	// ProductKey of every device (default "turbine").
	ProductKey string
	// Devices is the number of turbines (default 100); their keys are
	// T0001, T0002, ... as in the "sim" source.
	Devices int
	// Points per payload (default 10, at most 64): the ten turbine points
	// (see Points), then p10, p11, ...
	Points int
	// Rate is the number of payloads per second, all devices together;
	// 0 sends as fast as the connections allow.
	Rate float64
	// Payloads ends the run after this many payloads; 0 runs until
	// Duration or the context ends.
	Payloads int64
	// Duration ends the run after this long; 0 runs until Payloads or the
	// context ends.
	Duration time.Duration
	// Interval is the event-time step between two readings of a device
	// (default 1s); Start is the event time of the first (default: now).
	Interval time.Duration
	Start    time.Time
	// Seed selects the farm; the same seed gives the same readings.
	Seed uint64
	// Faults is the number of fault episodes (gearbox overheating, high
	// vibration, curtailment) per device per hour of event time.
	Faults float64
	// Resume is the fraction of payloads posted as offline history (on
	// .../measurepoint/resume, one hour in the past).
	Resume float64
	// Bad is the fraction of payloads that are bad input: malformed JSON,
	// a wrong value type, or a device that does not exist, in turn.
	Bad float64

	// Replay, when set, replays a CSV file instead of simulating a farm.
	Replay *Replay

	// Connections is the number of connections posts are spread over
	// (default 1); Inflight is how many QoS 1 posts each connection keeps
	// unacknowledged (default 32).
	Connections int
	Inflight    int

	// Answer makes the devices answer commands: measure-point settings
	// and service invocations are acknowledged with code 200, except that
	// Failing devices answer 500 and Silent devices do not answer. A set
	// point power_limit (kW; through measurepoint.set or the service
	// setPowerLimit) caps the turbine's output from its next reading on,
	// as the farm model (connectors/windfarm) does; other set points
	// override the simulated values.
	Answer          bool
	Failing, Silent []string
	// CommandTopic, when set, makes the devices also answer a generic
	// JSON command topic, as devices that are not EnOS devices do (see
	// mqtt.JSONDownlink): {"id","point","value"} on this template
	// ({asset} required, {product} and {point} optional), answered with
	// {"id","code"} on ReplyTopic (default: CommandTopic + "/reply").
	CommandTopic, ReplyTopic string

	// Log receives progress and errors; nil discards them.
	Log *slog.Logger
}

// Stats is what a simulation did.
type Stats struct {
	// Sent payloads (handed to the connection at QoS 0, acknowledged by
	// the broker at QoS 1) and the point values they carried; Acked
	// payloads the broker acknowledged (QoS 1); Bad payloads made bad on
	// purpose;
	// Errors publications that failed; Skipped rows of a replayed file
	// that could not be read.
	Sent, Points, Acked, Bad, Errors, Skipped int64
	// Commands received and Replies sent.
	Commands, Replies int64
	// Elapsed is the time since the run started.
	Elapsed time.Duration
}

// SentRate is Sent per second of Elapsed.
func (s Stats) SentRate() float64 { return rate(s.Sent, s.Elapsed) }

// AckedRate is Acked per second of Elapsed.
func (s Stats) AckedRate() float64 { return rate(s.Acked, s.Elapsed) }

// PointRate is Points per second of Elapsed.
func (s Stats) PointRate() float64 { return rate(s.Points, s.Elapsed) }

func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// Sim is a configured simulation.
type Sim struct {
	cfg      Config
	cmdTopic *topic.Template // generic JSON command topic, if any
	repTopic topic.Template
	model    *windfarm.Farm
	turbines []*turbine
	byKey    map[string]*turbine
	failing  map[string]bool
	silent   map[string]bool
	replay   *replayer

	mu sync.Mutex // serialises changes of set points

	started                            atomic.Int64 // ns since the epoch
	sent, points, acked, bad, errCount atomic.Int64
	skipped                            atomic.Int64
	commands, replies                  atomic.Int64
}

// New checks cfg and returns a simulation.
func New(cfg Config) (*Sim, error) {
	if len(cfg.URLs) == 0 {
		cfg.URLs = []string{"tcp://127.0.0.1:1883"}
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "devsim-" + randomHex()
	}
	if cfg.QoS != 0 && cfg.QoS != 1 {
		return nil, fmt.Errorf("devsim: qos must be 0 or 1, not %d", cfg.QoS)
	}
	if cfg.ProductKey == "" {
		cfg.ProductKey = "turbine"
	}
	if strings.ContainsAny(cfg.ProductKey, "/+#") {
		return nil, fmt.Errorf("devsim: product key %q must not contain /, + or #", cfg.ProductKey)
	}
	if cfg.Devices <= 0 {
		cfg.Devices = 100
	}
	if cfg.Points <= 0 {
		cfg.Points = len(Points)
	}
	if cfg.Points > 64 {
		return nil, fmt.Errorf("devsim: at most 64 points, not %d", cfg.Points)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Interval < time.Millisecond {
		return nil, errors.New("devsim: interval must be at least 1ms")
	}
	if cfg.Start.IsZero() {
		cfg.Start = time.Now().Truncate(time.Second)
	}
	if cfg.Rate < 0 || cfg.Payloads < 0 || cfg.Duration < 0 || cfg.Faults < 0 {
		return nil, errors.New("devsim: rate, payloads, duration and faults must not be negative")
	}
	if cfg.Resume < 0 || cfg.Resume > 1 || cfg.Bad < 0 || cfg.Bad > 1 {
		return nil, errors.New("devsim: resume and bad are fractions between 0 and 1")
	}
	if cfg.Connections <= 0 {
		cfg.Connections = 1
	}
	if cfg.Inflight <= 0 {
		cfg.Inflight = 32
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Sim{cfg: cfg, byKey: map[string]*turbine{}, failing: set(cfg.Failing), silent: set(cfg.Silent)}
	if cfg.CommandTopic != "" {
		ct, err := topic.Parse(cfg.CommandTopic)
		if err != nil {
			return nil, fmt.Errorf("devsim: command topic: %w", err)
		}
		if cfg.ReplyTopic == "" {
			cfg.ReplyTopic = cfg.CommandTopic + "/reply"
			s.cfg.ReplyTopic = cfg.ReplyTopic
		}
		if s.repTopic, err = topic.Parse(cfg.ReplyTopic); err != nil {
			return nil, fmt.Errorf("devsim: reply topic: %w", err)
		}
		if topic.Overlaps(ct, s.repTopic) {
			return nil, fmt.Errorf("devsim: reply topic %q matches the command topic %q", cfg.ReplyTopic, cfg.CommandTopic)
		}
		s.cmdTopic = &ct
	}
	if cfg.Replay != nil {
		r, err := newReplayer(cfg.Replay)
		if err != nil {
			return nil, err
		}
		s.replay = r
		return s, nil
	}
	s.model = windfarm.New(windfarm.Config{Turbines: cfg.Devices, Interval: cfg.Interval, Start: cfg.Start,
		Seed: cfg.Seed, Faults: cfg.Faults})
	for i := range cfg.Devices {
		key := s.model.Asset(i)
		t := newTurbine(key, cfg.ProductKey, cfg.Seed, i)
		s.turbines = append(s.turbines, t)
		s.byKey[key] = t
	}
	return s, nil
}

func randomHex() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func set(keys []string) map[string]bool {
	m := map[string]bool{}
	for _, k := range keys {
		m[k] = true
	}
	return m
}

// DeviceKeys returns the keys of the simulated farm's devices.
func (s *Sim) DeviceKeys() []string {
	out := make([]string, len(s.turbines))
	for i, t := range s.turbines {
		out[i] = t.key
	}
	return out
}

// SetPoints returns the measure points a device was told to set.
func (s *Sim) SetPoints(device string) map[string]float64 {
	t, ok := s.byKey[device]
	if !ok {
		return nil
	}
	out := map[string]float64{}
	if c := t.ctl.Load(); c != nil {
		for k, v := range c.set {
			out[k] = v
		}
	}
	if kW, ok := s.model.PowerLimit(t.idx); ok {
		out[windfarm.PowerLimitPoint] = kW
	}
	return out
}

// Stats returns what the simulation has done so far.
func (s *Sim) Stats() Stats {
	st := Stats{
		Sent: s.sent.Load(), Points: s.points.Load(), Acked: s.acked.Load(), Bad: s.bad.Load(),
		Errors: s.errCount.Load(), Skipped: s.skipped.Load(), Commands: s.commands.Load(), Replies: s.replies.Load(),
	}
	if ns := s.started.Load(); ns > 0 {
		st.Elapsed = time.Since(time.Unix(0, ns))
	}
	return st
}

// Run posts payloads until Payloads or Duration is reached or ctx ends,
// answering commands meanwhile when Answer is set. It returns the final
// Stats; an error means the broker could not be reached.
func (s *Sim) Run(ctx context.Context) (Stats, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if s.cfg.Duration > 0 {
		var c context.CancelFunc
		ctx, c = context.WithTimeout(ctx, s.cfg.Duration)
		defer c()
	}
	if s.cfg.Answer {
		stop, err := s.Answer(ctx)
		if err != nil {
			return s.Stats(), err
		}
		defer stop()
	}
	conns := make([]*conn, s.cfg.Connections)
	for i := range conns {
		c, err := dial(ctx, &s.cfg, fmt.Sprintf("%s-%d", s.cfg.ClientID, i), nil, false, nil)
		if err != nil {
			for _, c := range conns[:i] {
				c.close()
			}
			if ctx.Err() != nil {
				return s.Stats(), nil
			}
			return s.Stats(), err
		}
		conns[i] = c
	}
	defer func() {
		for _, c := range conns {
			c.close()
		}
	}()
	s.started.Store(time.Now().UnixNano())
	s.cfg.Log.Info("devsim: running", "devices", len(s.turbines), "rate", s.cfg.Rate, "qos", s.cfg.QoS, "connections", len(conns))

	// One worker per connection at QoS 0; at QoS 1 as many as the
	// connection keeps in flight, within the broker's Receive Maximum.
	perConn := 1
	if s.cfg.QoS == 1 {
		perConn = s.cfg.Inflight
		for _, c := range conns {
			perConn = min(perConn, c.receiveMaximum())
		}
	}
	workers := len(conns) * perConn
	if s.replay == nil {
		workers = min(workers, len(s.turbines))
	}
	var budget atomic.Int64 // payloads left; negative when unbounded
	budget.Store(-1)
	if s.cfg.Payloads > 0 {
		budget.Store(s.cfg.Payloads)
	}
	var wg sync.WaitGroup
	if s.replay != nil {
		s.runReplay(ctx, conns, workers, &budget, &wg)
	} else {
		for w := range workers {
			var mine []*turbine
			for i := w; i < len(s.turbines); i += workers {
				mine = append(mine, s.turbines[i])
			}
			f := &farm{model: s.model.Part(), turbines: mine, points: s.cfg.Points}
			wg.Go(func() { s.farmWorker(ctx, conns[w%len(conns)], f, workers, w, &budget) })
		}
	}
	wg.Wait()
	st := s.Stats()
	s.cfg.Log.Info("devsim: done", "sent", st.Sent, "acked", st.Acked, "errors", st.Errors,
		"sent_per_s", int64(st.SentRate()), "points_per_s", int64(st.PointRate()))
	return st, nil
}

// Answer makes the devices answer commands, without posting, until stop
// is called; it returns once they listen.
func (s *Sim) Answer(ctx context.Context) (stop func(), err error) {
	a := &answerer{s: s, replies: make(chan reply, 1024)}
	a.ctx, a.cancel = context.WithCancel(context.WithoutCancel(ctx))
	filters := []string{"/sys/" + s.cfg.ProductKey + "/+/thing/service/#"}
	if s.cmdTopic != nil {
		filters = append(filters, s.cmdTopic.Filter())
	}
	a.c, err = dial(ctx, &s.cfg, s.cfg.ClientID+"-cmd", filters, false, a.answer)
	if err != nil {
		a.cancel()
		return nil, err
	}
	a.wg.Go(a.send)
	var once sync.Once
	return func() {
		once.Do(func() {
			a.cancel()
			a.wg.Wait()
			a.c.close()
		})
	}, nil
}

// take reserves one payload of the budget.
func take(budget *atomic.Int64) bool {
	for {
		n := budget.Load()
		if n < 0 {
			return true
		}
		if n == 0 {
			return false
		}
		if budget.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

// pacer spaces one worker's payloads at rate/workers per second.
type pacer struct {
	start    time.Time
	interval time.Duration // 0: no pacing
	n        int64
}

func newPacer(rate float64, workers int) pacer {
	p := pacer{start: time.Now()}
	if rate > 0 {
		p.interval = time.Duration(float64(time.Second) * float64(workers) / rate)
	}
	return p
}

// wait blocks until the next payload is due; false when ctx ended.
func (p *pacer) wait(ctx context.Context) bool {
	if p.interval == 0 {
		return ctx.Err() == nil
	}
	due := p.start.Add(time.Duration(p.n) * p.interval)
	p.n++
	if d := time.Until(due); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return false
		}
	}
	return ctx.Err() == nil
}

func (s *Sim) farmWorker(ctx context.Context, c *conn, f *farm, workers, w int, budget *atomic.Int64) {
	p := newPacer(s.cfg.Rate, workers)
	qos := byte(s.cfg.QoS)
	var members, payload []byte
	badEvery := int64(0)
	if s.cfg.Bad > 0 {
		badEvery = max(1, int64(1/s.cfg.Bad))
	}
	resumeEvery := int64(0)
	if s.cfg.Resume > 0 {
		resumeEvery = max(1, int64(1/s.cfg.Resume))
	}
	id := int64(w) << 40
	for k := 0; ; k++ {
		if !take(budget) || !p.wait(ctx) {
			return
		}
		t := f.turbines[k%len(f.turbines)]
		var ms int64
		members, ms = f.step(members[:0], t)
		id++
		topic, method := t.topic, "thing.measurepoint.post"
		if resumeEvery > 0 && id%resumeEvery == 0 {
			topic, method = t.resume, "thing.measurepoint.resume"
			ms -= time.Hour.Milliseconds()
		}
		payload = appendPost(payload[:0], id, method, members, ms)
		if badEvery > 0 && id%badEvery == 0 {
			payload, topic = s.spoil(payload, topic, t.key, id)
		}
		s.send(ctx, c, topic, qos, payload, int64(f.points))
	}
}

// spoil turns a payload into bad input of one of three kinds.
func (s *Sim) spoil(payload []byte, topic, key string, id int64) ([]byte, string) {
	s.bad.Add(1)
	switch (id / max(1, int64(1/s.cfg.Bad))) % 3 {
	case 0: // malformed: cut short
		return payload[:len(payload)/2], topic
	case 1: // a wrong value type
		i := strings.Index(string(payload), `"wind_speed":`)
		if i >= 0 {
			j := i + len(`"wind_speed":`)
			k := j
			for k < len(payload) && payload[k] != ',' && payload[k] != '}' {
				k++
			}
			out := slices.Concat(payload[:j], []byte(`"fast"`), payload[k:])
			return out, topic
		}
		return payload[:len(payload)/2], topic
	default: // a device that does not exist
		return payload, strings.Replace(topic, "/"+key+"/", "/X"+key+"/", 1)
	}
}

// send publishes one payload. A payload counts as sent once handed to the
// connection (QoS 0) or acknowledged by the broker (QoS 1); one whose
// publication the end of the run interrupted is not counted (the broker
// may still have it).
func (s *Sim) send(ctx context.Context, c *conn, topic string, qos byte, payload []byte, points int64) {
	if err := c.publish(ctx, topic, qos, payload); err != nil {
		if ctx.Err() == nil {
			s.errCount.Add(1)
			s.cfg.Log.Debug("devsim: publish failed", "topic", topic, "err", err)
		}
		return
	}
	s.sent.Add(1)
	s.points.Add(points)
	if qos == 1 {
		s.acked.Add(1)
	}
}

// answerer answers the commands sent to the simulated devices.
type answerer struct {
	s       *Sim
	c       *conn
	replies chan reply
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

type reply struct {
	topic   string
	payload []byte
}

// send publishes the queued replies until the answerer stops.
func (a *answerer) send() {
	for {
		select {
		case r := <-a.replies:
			if a.c.publish(a.ctx, r.topic, 1, r.payload) == nil {
				a.s.replies.Add(1)
			}
		case <-a.ctx.Done():
			return
		}
	}
}

// answer handles one command. It runs on the connection's receiving
// goroutine, so it queues its reply rather than wait for the broker; when
// the queue is full the reply is dropped, as a busy device would.
func (a *answerer) answer(topic string, payload []byte) {
	s := a.s
	t := codec.ParseTopic(topic)
	if t.Kind != codec.ServiceTopic || t.ProductKey != s.cfg.ProductKey || t.Service == "" {
		if s.cmdTopic != nil {
			a.answerJSON(topic, payload)
		}
		return
	}
	device, service := t.DeviceKey, t.Service
	s.commands.Add(1)
	if s.silent[device] || (s.replay == nil && s.byKey[device] == nil) {
		return
	}
	var req struct {
		ID     json.RawMessage            `json:"id"`
		Method string                     `json:"method"`
		Params map[string]json.RawMessage `json:"params"`
	}
	code, msg := 200, ""
	if err := json.Unmarshal(payload, &req); err != nil {
		code, msg = 400, "bad request: "+err.Error()
	} else if s.failing[device] {
		code, msg = 500, "simulated failure"
	} else if service == command.SetPoints {
		var points map[string]float64
		if err := json.Unmarshal(req.Params["measurepoints"], &points); err != nil {
			code, msg = 400, "measurepoints: "+err.Error()
		} else {
			s.apply(device, points)
		}
	} else if service == PowerLimitService {
		var kW float64
		if err := json.Unmarshal(req.Params[windfarm.PowerLimitPoint], &kW); err != nil {
			code, msg = 400, windfarm.PowerLimitPoint+": "+err.Error()
		} else {
			s.apply(device, map[string]float64{windfarm.PowerLimitPoint: kW})
		}
	}
	b := codec.AppendReply(nil, codec.IDText(req.ID), code, msg)
	select {
	case a.replies <- reply{topic: codec.ReplyTopicFor(topic), payload: b}:
	default:
	}
}

// apply records measure-point settings of a device.
func (s *Sim) apply(device string, points map[string]float64) {
	s.mu.Lock() // one writer at a time; generators read without it
	defer s.mu.Unlock()
	t := s.byKey[device]
	if t == nil {
		return
	}
	next := &control{set: map[string]float64{}}
	if c := t.ctl.Load(); c != nil {
		maps.Copy(next.set, c.set)
	}
	for k, v := range points {
		if k == windfarm.PowerLimitPoint {
			// The model caps the output: power, pitch, load,
			// temperatures and vibration follow from the next reading.
			s.model.SetPowerLimit(t.idx, v)
			continue
		}
		next.set[k] = v
	}
	t.ctl.Store(next)
}

// answerJSON handles one command of the generic JSON command topic:
// {"id","point","value"}, a numeric value setting the point as
// measurepoint.set does.
func (a *answerer) answerJSON(name string, payload []byte) {
	s := a.s
	product, device, point, ok := s.cmdTopic.Match(name)
	if !ok || s.cmdTopic.Has(topic.PlaceholderProduct) && product != s.cfg.ProductKey {
		return
	}
	s.commands.Add(1)
	if s.silent[device] || (s.replay == nil && s.byKey[device] == nil) {
		return
	}
	var req struct {
		ID    json.RawMessage `json:"id"`
		Point string          `json:"point"`
		Value json.RawMessage `json:"value"`
	}
	code, msg := 200, ""
	var v float64
	switch err := json.Unmarshal(payload, &req); {
	case err != nil:
		code, msg = 400, "bad request: "+err.Error()
	case req.Point == "" || s.cmdTopic.Has(topic.PlaceholderPoint) && req.Point != point:
		code, msg = 400, "bad request: no point, or not the topic's"
	case s.failing[device]:
		code, msg = 500, "simulated failure"
	case json.Unmarshal(req.Value, &v) != nil:
		// Values that are not numbers are acknowledged and ignored.
	default:
		s.apply(device, map[string]float64{req.Point: v})
	}
	b := codec.AppendReply(nil, codec.IDText(req.ID), code, msg)
	if product == "" {
		product = s.cfg.ProductKey
	}
	to := s.repTopic.Topic(product, device, point)
	select {
	case a.replies <- reply{topic: to, payload: b}:
	default:
	}
}
