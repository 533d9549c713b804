package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/sluice-edge/sluice/connectors/devsim"
	"github.com/sluice-edge/sluice/connectors/mqtt"
	"github.com/sluice-edge/sluice/pipelines"
)

// MQTT is the scenario that measures ingest over MQTT: the engine, a
// broker and a plain counting subscriber each in a process of their own,
// so that the CPU each spends is its own.
const MQTT = "mqtt"

// Defaults of the MQTT scenario.
var (
	// DefaultMQTTRates are the paced publishing rates (payloads/s).
	DefaultMQTTRates = []float64{10_000, 20_000, 40_000}
	// DefaultMQTTQoS are the QoS levels measured.
	DefaultMQTTQoS = []int{0, 1}
)

// DefaultMQTTSeconds is how long each rate is published.
const DefaultMQTTSeconds = 10 * time.Second

// childEnv names the environment variable that turns a sluice process (or
// a test binary) into one of the MQTT scenario's child processes; see
// ChildMain.
const childEnv = "SLUICE_BENCH_CHILD"

// MQTTOptions configure the MQTT scenario. Zero values take the defaults.
type MQTTOptions struct {
	// Broker is an external broker's URL (tcp://host:port); empty starts
	// the embedded broker in a process of its own, whose CPU is measured.
	Broker string
	// Rates are the publishing rates, payloads per second, all devices
	// together (default DefaultMQTTRates).
	Rates []float64
	// QoS are the QoS levels of the publications and subscriptions
	// (default 0 and 1).
	QoS []int
	// Seconds is how long each rate is published (default 10 s).
	Seconds time.Duration
	// Connections is the number of publishing connections (default 2).
	Connections int
	// Exe is the program started for the child processes (default: this
	// one); it must call ChildMain first thing.
	Exe string
}

func (o MQTTOptions) normalize() (MQTTOptions, error) {
	if len(o.Rates) == 0 {
		o.Rates = DefaultMQTTRates
	}
	for _, r := range o.Rates {
		if r <= 0 || r > 10_000_000 {
			return o, fmt.Errorf("bench: mqtt rate %g is not between 1 and 10000000 payloads/s", r)
		}
	}
	if len(o.QoS) == 0 {
		o.QoS = DefaultMQTTQoS
	}
	for _, q := range o.QoS {
		if q != 0 && q != 1 {
			return o, fmt.Errorf("bench: mqtt qos %d is not 0 or 1", q)
		}
	}
	if o.Seconds < 0 {
		return o, errors.New("bench: mqtt seconds must not be negative")
	}
	if o.Seconds == 0 {
		o.Seconds = DefaultMQTTSeconds
	}
	if o.Connections < 0 || o.Connections > 64 {
		return o, fmt.Errorf("bench: mqtt connections %d is not between 1 and 64", o.Connections)
	}
	if o.Connections == 0 {
		o.Connections = 2
	}
	if o.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return o, fmt.Errorf("bench: mqtt: the program to start the child processes: %w", err)
		}
		o.Exe = exe
	}
	return o, nil
}

// MQTTResult holds the figures of the MQTT scenario.
type MQTTResult struct {
	// Broker is "embedded" or the external broker's URL.
	Broker  string  `json:"broker"`
	Devices int     `json:"devices"`
	Points  int     `json:"points"`
	Seconds float64 `json:"seconds_per_rate"`
	// Connections is the number of publishing connections.
	Connections int `json:"connections"`
	// Rates holds one entry per QoS and rate, in the order run.
	Rates []MQTTRate `json:"rates"`
	// Ceiling is, per QoS, the highest rate the publishers reached at
	// which the engine received every payload they sent (0 when none).
	Ceiling map[string]float64 `json:"lossless_ceiling"`
}

// MQTTRate is what one paced rate gave.
type MQTTRate struct {
	QoS int `json:"qos"`
	// Target is the rate asked; Offered the rate the publishers reached.
	Target  float64 `json:"target_per_s"`
	Offered float64 `json:"offered_per_s"`
	// Published payloads (handed over at QoS 0, acknowledged at QoS 1);
	// Engine and Plain what the engine's source and the plain counting
	// subscriber received.
	Published int64 `json:"published"`
	Engine    int64 `json:"engine_received"`
	Plain     int64 `json:"plain_received"`
	// CPU per published payload, microseconds, of each process: the
	// engine (source, decode, window, alert rules), the plain subscriber,
	// the broker (-1 when external) and the publishers.
	EngineUS    float64 `json:"engine_cpu_us_per_msg"`
	PlainUS     float64 `json:"plain_cpu_us_per_msg"`
	BrokerUS    float64 `json:"broker_cpu_us_per_msg"`
	PublisherUS float64 `json:"publisher_cpu_us_per_msg"`
	// EngineRSS is the engine process's peak RSS so far, bytes.
	EngineRSS int64 `json:"engine_peak_rss_bytes"`
	// Ratio is the engine's CPU over the plain subscriber's.
	Ratio float64 `json:"engine_to_plain_cpu"`
}

// Lossless reports whether the engine received every published payload.
func (r MQTTRate) Lossless() bool { return r.Engine >= r.Published }

// childStat is what a child process reports about itself.
type childStat struct {
	URL    string `json:"url,omitempty"`
	Count  int64  `json:"count"`
	CPUNs  int64  `json:"cpu_ns"`
	MaxRSS int64  `json:"maxrss_bytes"`
	Err    string `json:"error,omitempty"`
}

// child is a running child process of the scenario.
type child struct {
	role   string
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Scanner
	stderr *tailBuffer
	mu     sync.Mutex
}

// startChild starts exe as the child of that role, with env added.
func startChild(ctx context.Context, exe, role string, env map[string]string) (*child, error) {
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), childEnv+"="+role)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	tail := &tailBuffer{max: 16 << 10}
	cmd.Stderr = tail
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: mqtt: starting the %s process: %w", role, err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 4096), 1<<20)
	return &child{role: role, cmd: cmd, in: in, out: sc, stderr: tail}, nil
}

// read reads the child's next report.
func (c *child) read() (childStat, error) {
	if !c.out.Scan() {
		err := c.out.Err()
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return childStat{}, fmt.Errorf("bench: mqtt: the %s process ended: %w; its last words: %s", c.role, err, c.stderr.String())
	}
	var s childStat
	if err := json.Unmarshal(c.out.Bytes(), &s); err != nil {
		return childStat{}, fmt.Errorf("bench: mqtt: the %s process said %q: %w", c.role, c.out.Text(), err)
	}
	if s.Err != "" {
		return s, fmt.Errorf("bench: mqtt: the %s process: %s", c.role, s.Err)
	}
	return s, nil
}

// stat asks the child for its figures.
func (c *child) stat() (childStat, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := io.WriteString(c.in, "stat\n"); err != nil {
		return childStat{}, fmt.Errorf("bench: mqtt: asking the %s process: %w; its last words: %s", c.role, err, c.stderr.String())
	}
	return c.read()
}

// stop ends the child and waits for it.
func (c *child) stop() {
	_ = c.in.Close()
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = slices.Clone(t.buf[len(t.buf)-t.max:])
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}

// runMQTT runs the MQTT scenario.
func runMQTT(ctx context.Context, opts Options) (*MQTTResult, error) {
	mo, err := opts.MQTT.normalize()
	if err != nil {
		return nil, err
	}
	res := &MQTTResult{Broker: "embedded", Devices: opts.Turbines, Points: Points, Seconds: mo.Seconds.Seconds(),
		Connections: mo.Connections, Ceiling: map[string]float64{}}
	url := mo.Broker
	var broker *child
	if url == "" {
		if broker, err = startChild(ctx, mo.Exe, "broker", nil); err != nil {
			return nil, err
		}
		defer broker.stop()
		st, err := broker.read()
		if err != nil {
			return nil, err
		}
		url = st.URL
	} else {
		res.Broker = url
	}
	for _, qos := range mo.QoS {
		rates, err := runMQTTQoS(ctx, opts, mo, url, qos, broker)
		if err != nil {
			return nil, err
		}
		res.Rates = append(res.Rates, rates...)
		ceiling := 0.0
		for _, r := range rates {
			if r.Lossless() && r.Offered > ceiling {
				ceiling = r.Offered
			}
		}
		res.Ceiling["qos"+strconv.Itoa(qos)] = ceiling
	}
	return res, nil
}

// runMQTTQoS measures every rate at one QoS, with one engine and one
// plain subscriber subscribed throughout.
func runMQTTQoS(ctx context.Context, opts Options, mo MQTTOptions, url string, qos int, broker *child) ([]MQTTRate, error) {
	sfx := strconv.FormatInt(time.Now().UnixNano(), 36)
	pk := "bench" + sfx
	env := map[string]string{
		"SLUICE_BENCH_URL":    url,
		"SLUICE_BENCH_QOS":    strconv.Itoa(qos),
		"SLUICE_BENCH_FILTER": "/sys/" + pk + "/+/thing/measurepoint/post",
		"SLUICE_BENCH_ID":     sfx,
	}
	if opts.CPUProfile != "" {
		env["SLUICE_BENCH_CPUPROFILE"] = profilePath(opts, MQTT+"-engine-qos"+strconv.Itoa(qos))
	}
	engine, err := startChild(ctx, mo.Exe, "engine", env)
	if err != nil {
		return nil, err
	}
	defer engine.stop()
	plain, err := startChild(ctx, mo.Exe, "count", env)
	if err != nil {
		return nil, err
	}
	defer plain.stop()
	for _, c := range []*child{engine, plain} {
		if _, err := c.read(); err != nil { // ready
			return nil, err
		}
	}
	cfg := devsim.Config{URLs: []string{url}, ClientID: "bench-pub-" + sfx, ProductKey: pk, QoS: qos,
		Devices: opts.Turbines, Points: Points, Connections: mo.Connections, Inflight: 64, Seed: opts.Seed}
	if err := warmUp(ctx, cfg, engine, plain); err != nil {
		return nil, err
	}
	var out []MQTTRate
	for _, rate := range mo.Rates {
		opts.Log.Info("bench: mqtt rate", "qos", qos, "rate", rate, "seconds", mo.Seconds.Seconds())
		r, err := measureRate(ctx, cfg, mo, rate, engine, plain, broker)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// warmUp publishes until both receivers have received something, so that
// their subscriptions are in place, then waits until they are quiet.
func warmUp(ctx context.Context, cfg devsim.Config, engine, plain *child) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cfg.Rate, cfg.Duration = 1000, time.Minute
	cfg.ClientID += "-warm"
	sim, err := devsim.New(cfg)
	if err != nil {
		return err
	}
	simCtx, stopSim := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _, _ = sim.Run(simCtx); close(done) }()
	stopped := false
	finish := func() {
		if !stopped {
			stopped = true
			stopSim()
			<-done
		}
	}
	defer finish()
	for {
		e, err := engine.stat()
		if err != nil {
			return err
		}
		p, err := plain.stat()
		if err != nil {
			return err
		}
		if e.Count > 0 && p.Count > 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bench: mqtt: no payload reached the engine (%d) or the plain subscriber (%d) within a minute", e.Count, p.Count)
		case <-time.After(20 * time.Millisecond):
		}
	}
	finish()
	_, _, err = settle(ctx, engine, plain, -1, -1)
	return err
}

// settle waits until both receivers have reached their targets (a
// negative target: none) or neither has moved for a second, and returns
// their last figures.
func settle(ctx context.Context, engine, plain *child, eWant, pWant int64) (childStat, childStat, error) {
	var last [2]int64
	lastMove := time.Now()
	for {
		e, err := engine.stat()
		if err != nil {
			return e, e, err
		}
		p, err := plain.stat()
		if err != nil {
			return e, p, err
		}
		if eWant >= 0 && e.Count >= eWant && p.Count >= pWant {
			return e, p, nil
		}
		if now := [2]int64{e.Count, p.Count}; now != last {
			last, lastMove = now, time.Now()
		} else if time.Since(lastMove) >= time.Second {
			return e, p, nil
		}
		select {
		case <-ctx.Done():
			return e, p, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// measureRate publishes at rate for mo.Seconds and reports what every
// process received and spent.
func measureRate(ctx context.Context, cfg devsim.Config, mo MQTTOptions, rate float64, engine, plain, broker *child) (MQTTRate, error) {
	r := MQTTRate{QoS: cfg.QoS, Target: rate}
	e0, err := engine.stat()
	if err != nil {
		return r, err
	}
	p0, err := plain.stat()
	if err != nil {
		return r, err
	}
	var b0 childStat
	if broker != nil {
		if b0, err = broker.stat(); err != nil {
			return r, err
		}
	}
	pub0, _, _ := cpuTimes()
	cfg.Rate, cfg.Duration = rate, mo.Seconds
	cfg.ClientID += "-" + strconv.FormatFloat(rate, 'f', 0, 64)
	sim, err := devsim.New(cfg)
	if err != nil {
		return r, err
	}
	st, err := sim.Run(ctx)
	if err != nil {
		return r, fmt.Errorf("bench: mqtt: publishing at %g/s: %w", rate, err)
	}
	pubU, pubS, _ := cpuTimes()
	pubCPU := pubU + pubS - pub0
	e1, p1, err := settle(ctx, engine, plain, e0.Count+st.Sent, p0.Count+st.Sent)
	if err != nil {
		return r, err
	}
	var b1 childStat
	if broker != nil {
		if b1, err = broker.stat(); err != nil {
			return r, err
		}
	}
	r.Published = st.Sent
	r.Offered = st.SentRate()
	r.Engine, r.Plain = e1.Count-e0.Count, p1.Count-p0.Count
	per := func(ns int64) float64 {
		if st.Sent == 0 {
			return 0
		}
		return float64(ns) / 1e3 / float64(st.Sent)
	}
	r.EngineUS, r.PlainUS = per(e1.CPUNs-e0.CPUNs), per(p1.CPUNs-p0.CPUNs)
	r.BrokerUS = -1
	if broker != nil {
		r.BrokerUS = per(b1.CPUNs - b0.CPUNs)
	}
	r.PublisherUS = per(int64(pubCPU))
	r.EngineRSS = e1.MaxRSS
	if r.PlainUS > 0 {
		r.Ratio = r.EngineUS / r.PlainUS
	}
	return r, nil
}

func (r *MQTTResult) writeTable(w io.Writer) error {
	fmt.Fprintf(w, "\nmqtt: %d devices x %d points, %s broker, %d publishing connections, %gs per rate; CPU in us per published payload, each process its own\n",
		r.Devices, r.Points, r.Broker, r.Connections, r.Seconds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "qos\ttarget/s\toffered/s\tpublished\tengine got\tplain got\tengine us\tplain us\tbroker us\tpublisher us\tengine/plain\tengine RSS\t")
	for _, x := range r.Rates {
		broker := "-"
		if x.BrokerUS >= 0 {
			broker = fmt.Sprintf("%.1f", x.BrokerUS)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%.1f\t%.1f\t%s\t%.1f\t%.2f\t%s\t\n", x.QoS, group(int64(x.Target)), group(int64(x.Offered)),
			group(x.Published), group(x.Engine), group(x.Plain), x.EngineUS, x.PlainUS, broker, x.PublisherUS, x.Ratio, mib(x.EngineRSS, x.EngineRSS > 0))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	keys := make([]string, 0, len(r.Ceiling))
	for k := range r.Ceiling {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "lossless ceiling at %s: %s payloads/s (highest rate reached at which the engine received every payload)\n", k, group(int64(r.Ceiling[k])))
	}
	return nil
}

// ChildMain runs this process as a child of the MQTT scenario when the
// environment says so, and then exits; otherwise it returns at once. A
// program that runs the scenario (sluice, or a test binary through
// TestMain) calls it before anything else.
func ChildMain() {
	role := os.Getenv(childEnv)
	if role == "" {
		return
	}
	err := runChild(role, os.Stdin, os.Stdout)
	if err != nil {
		_ = json.NewEncoder(os.Stdout).Encode(childStat{Err: err.Error()})
		os.Exit(1)
	}
	os.Exit(0)
}

// runChild runs one role: it reports once when ready, then its figures
// each time it reads "stat", until its input ends.
func runChild(role string, in io.Reader, out io.Writer) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	qos, _ := strconv.Atoi(os.Getenv("SLUICE_BENCH_QOS"))
	url, filter, id := os.Getenv("SLUICE_BENCH_URL"), os.Getenv("SLUICE_BENCH_FILTER"), os.Getenv("SLUICE_BENCH_ID")
	var count func() int64
	ready := childStat{}
	switch role {
	case "broker":
		b, err := mqtt.StartBroker(mqtt.BrokerOptions{Listen: "127.0.0.1:0", Log: log})
		if err != nil {
			return err
		}
		defer b.Close()
		ready.URL = b.URL()
		count = func() int64 { return 0 }
	case "count":
		k, err := devsim.NewCounter(ctx, devsim.Config{URLs: []string{url}, ClientID: "bench-plain-" + id, QoS: qos}, filter)
		if err != nil {
			return err
		}
		defer k.Close()
		count = k.Count
	case "engine":
		if path := os.Getenv("SLUICE_BENCH_CPUPROFILE"); path != "" {
			f, err := os.Create(path)
			if err != nil {
				return err
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				f.Close()
				return err
			}
			defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
		}
		n, stop, err := runEngineChild(ctx, url, filter, id, qos, log)
		if err != nil {
			return err
		}
		defer stop()
		count = n
	default:
		return fmt.Errorf("unknown role %q", role)
	}
	enc := json.NewEncoder(out)
	if err := enc.Encode(ready); err != nil {
		return err
	}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		if !bytes.Equal(bytes.TrimSpace(sc.Bytes()), []byte("stat")) {
			continue
		}
		user, sys, _ := cpuTimes()
		st := childStat{Count: count(), CPUNs: int64(user + sys), MaxRSS: peakRSS()}
		if err := enc.Encode(st); err != nil {
			return err
		}
	}
	return nil
}

// engineYAML is the reference pipeline with an MQTT source in place of
// the simulator.
func engineYAML(url, filter, id string, qos int) ([]byte, error) {
	ref := string(ReferenceYAML)
	i, j := strings.Index(ref, "\nsources:\n"), strings.Index(ref, "\nsteps:\n")
	if i < 0 || j < i {
		return nil, errors.New("the reference pipeline has no sources and steps sections")
	}
	src := fmt.Sprintf(`
sources:
  %s:
    type: mqtt
    urls: [%q]
    client_id: bench-engine-%s
    clean_session: true
    qos: %d
    topics: [%q]
    schema: {key: asset, fields: {wind_speed: float64, power: float64, rotor_rpm: float64, pitch_angle: float64,
      nacelle_temp: float64, gearbox_temp: float64, generator_temp: float64, ambient_temp: float64, yaw_error: float64, vibration: float64}}`,
		sourceName, url, id, qos, filter)
	return []byte(ref[:i] + src + ref[j:]), nil
}

// runEngineChild builds and starts the engine's pipeline; it returns the
// count of messages its source received and a function that stops it.
func runEngineChild(ctx context.Context, url, filter, id string, qos int, log *slog.Logger) (func() int64, func(), error) {
	doc, err := engineYAML(url, filter, id, qos)
	if err != nil {
		return nil, nil, err
	}
	defs, errs := pipelines.Parse("bench-mqtt.yaml", doc, func(string) (string, bool) { return "", false })
	if len(errs) > 0 {
		return nil, nil, errs
	}
	dataDir, err := os.MkdirTemp("", "sluice-bench-mqtt-")
	if err != nil {
		return nil, nil, err
	}
	p, errs := pipelines.Build(defs[0], pipelines.Options{Log: log, DataDir: dataDir, FromStart: true})
	if len(errs) > 0 {
		_ = os.RemoveAll(dataDir)
		return nil, nil, errs
	}
	var messages func() int64
	for _, b := range p.Components {
		if b.Def.Name == sourceName {
			c := b.Counters.Counter("messages")
			messages = c.Load
		}
	}
	if messages == nil {
		_ = os.RemoveAll(dataDir)
		return nil, nil, errors.New("the engine's pipeline has no source to count")
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- pipelines.RunAll(runCtx, []*pipelines.Pipeline{p}) }()
	// Ready once the source has connected: its subscription follows, and
	// the warm-up waits for a first message anyway.
	connects := func() int64 { return 0 }
	for _, b := range p.Components {
		if b.Def.Name == sourceName {
			connects = b.Counters.Counter("connects").Load
		}
	}
	for connects() == 0 {
		select {
		case err := <-done:
			cancel()
			_ = os.RemoveAll(dataDir)
			return nil, nil, fmt.Errorf("the engine stopped before it connected: %w", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	stop := func() {
		cancel()
		<-done
		_ = os.RemoveAll(dataDir)
	}
	return messages, stop, nil
}
