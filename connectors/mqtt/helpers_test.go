package mqtt

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

// mosquittoAddr is the machine's Mosquitto broker.
const mosquittoAddr = "127.0.0.1:1883"

// waitFor bounds every wait of the tests.
const waitFor = 20 * time.Second

// suffix returns a random suffix that keeps topics and client ids of
// concurrent tests apart.
func suffix() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// testBroker is a broker the tests run against.
type testBroker struct {
	name string
	url  string
}

// mosquitto returns the machine's Mosquitto, skipping the test when it is
// unreachable.
func mosquitto(t testing.TB) testBroker {
	t.Helper()
	c, err := net.DialTimeout("tcp", mosquittoAddr, time.Second)
	if err != nil {
		t.Skipf("Mosquitto is not reachable at %s (%v): start it (service mosquitto start) to run this test", mosquittoAddr, err)
	}
	_ = c.Close()
	return testBroker{name: "mosquitto", url: "tcp://" + mosquittoAddr}
}

// embedded starts an embedded broker on a free port for the test.
func embedded(t testing.TB) testBroker {
	t.Helper()
	b, err := StartBroker(BrokerOptions{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return testBroker{name: "embedded", url: b.URL()}
}

// brokers returns the brokers every round-trip test runs against: the
// embedded broker, and Mosquitto when it is reachable.
func brokers(t *testing.T) []testBroker {
	out := []testBroker{embedded(t)}
	if c, err := net.DialTimeout("tcp", mosquittoAddr, time.Second); err == nil {
		_ = c.Close()
		out = append(out, testBroker{name: "mosquitto", url: "tcp://" + mosquittoAddr})
	} else {
		t.Logf("Mosquitto is not reachable at %s: testing the embedded broker only", mosquittoAddr)
	}
	return out
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// buildSource builds an mqtt source from YAML.
func buildSource(t testing.TB, doc string, bc engine.BuildContext) *Source {
	t.Helper()
	src, err := tryBuildSource(doc, bc)
	if err != nil {
		t.Fatalf("building the source: %v", err)
	}
	return src
}

func tryBuildSource(doc string, bc engine.BuildContext) (*Source, error) {
	var node yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &node); err != nil {
		return nil, err
	}
	cfg, errs := SourceSpec.Parse("test.yaml", &node)
	if len(errs) > 0 {
		return nil, errs
	}
	if bc.Name == "" {
		bc.Pipeline, bc.Name = "test", "src"
	}
	if bc.Counters == nil {
		bc.Counters = engine.NewCounters()
	}
	if bc.Log == nil {
		bc.Log = slog.New(slog.DiscardHandler)
	}
	src, err := newSource(cfg, bc)
	if err != nil {
		return nil, err
	}
	return src.(*Source), nil
}

// collector receives what a source emits. With hold set it keeps the Acks
// instead of releasing them.
type collector struct {
	mu      sync.Mutex
	rows    []enginetest.Row
	schema  *arrow.Schema
	batches int
	sizes   []int
	hold    bool
	held    []*engine.Ack
	changed chan struct{}
}

func newCollector() *collector { return &collector{changed: make(chan struct{}, 1)} }

func (c *collector) emit(rec arrow.RecordBatch, ack *engine.Ack) error {
	rows := enginetest.Rows(rec)
	c.mu.Lock()
	c.rows = append(c.rows, rows...)
	c.schema = rec.Schema()
	c.batches++
	c.sizes = append(c.sizes, int(rec.NumRows()))
	if c.hold {
		c.held = append(c.held, ack)
	}
	c.mu.Unlock()
	rec.Release()
	if !c.hold {
		ack.Done()
	}
	select {
	case c.changed <- struct{}{}:
	default:
	}
	return nil
}

// waitRows waits until at least n rows have been emitted and returns them.
func (c *collector) waitRows(t testing.TB, n int) []enginetest.Row {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		c.mu.Lock()
		if len(c.rows) >= n {
			out := append([]enginetest.Row(nil), c.rows...)
			c.mu.Unlock()
			return out
		}
		got := len(c.rows)
		c.mu.Unlock()
		select {
		case <-c.changed:
		case <-deadline:
			t.Fatalf("timed out waiting for %d rows; got %d", n, got)
		}
	}
}

func (c *collector) snapshot() []enginetest.Row {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]enginetest.Row(nil), c.rows...)
}

// releaseHeld releases every Ack held so far.
func (c *collector) releaseHeld() {
	c.mu.Lock()
	held := c.held
	c.held = nil
	c.mu.Unlock()
	for _, a := range held {
		a.Done()
	}
}

// running is a source running in the background.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

// start runs src until stop; it returns once the source has subscribed.
func start(t testing.TB, src *Source, c *collector) *running {
	t.Helper()
	return startNotify(t, src, c, nil)
}

// startNotify is start that also sends on subscribed each time the source
// has subscribed.
func startNotify(t testing.TB, src *Source, c *collector, subscribed chan<- struct{}) *running {
	t.Helper()
	return startEmit(t, src, c.emit, subscribed)
}

// startEmit runs src with emit until stop; it returns once the source has
// subscribed.
func startEmit(t testing.TB, src *Source, emit engine.Emit, subscribed chan<- struct{}) *running {
	t.Helper()
	r := startRun(t, src, func(ctx context.Context) error { return src.Run(ctx, emit) }, subscribed)
	if !src.opts.CleanSession {
		// Leave no session behind in the broker (registered first, so it
		// runs after the stop).
		t.Cleanup(func() { forgetSession(t, src.opts.URLs[0], src.opts.ClientID) })
	}
	t.Cleanup(func() { r.stop(t) })
	return r
}

// startRun calls run (which runs src) in the background until stop; it
// returns once src has subscribed, and sends on subscribed each time src
// has subscribed.
func startRun(t testing.TB, src *Source, run func(context.Context) error, subscribed chan<- struct{}) *running {
	t.Helper()
	ready := make(chan struct{})
	var once sync.Once
	src.onReady = func() {
		once.Do(func() { close(ready) })
		if subscribed != nil {
			subscribed <- struct{}{}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- run(ctx) }()
	select {
	case <-ready:
	case err := <-r.done:
		cancel()
		t.Fatalf("source stopped before subscribing: %v", err)
	case <-time.After(waitFor):
		cancel()
		t.Fatal("timed out waiting for the source to subscribe")
	}
	return r
}

// stop stops the source and waits for it; it is idempotent.
func (r *running) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
			if err != nil {
				t.Errorf("source: %v", err)
			}
		}
	case <-time.After(waitFor):
		t.Error("timed out waiting for the source to stop")
	}
}

// publisher publishes test messages.
type publisher struct {
	t  testing.TB
	cl client
}

func newPublisher(t testing.TB, url string, version int) *publisher {
	t.Helper()
	cl, err := newClient(clientConfig{ClientOptions: ClientOptions{
		URLs: []string{url}, ClientID: "pub-" + suffix(), Version: version, CleanSession: true,
		ReconnectMin: 10 * time.Millisecond, ReconnectMax: 200 * time.Millisecond,
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := cl.start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := cl.awaitConnection(ctx); err != nil {
		t.Fatalf("publisher: %v", err)
	}
	p := &publisher{t: t, cl: cl}
	t.Cleanup(func() { _ = cl.stop(context.Background()) })
	return p
}

// publish sends one message at QoS 1, so that messages arrive in order
// and are not dropped by the broker.
func (p *publisher) publish(topic string, payload []byte) {
	p.t.Helper()
	if err := p.tryPublish(topic, payload); err != nil {
		p.t.Fatal(err)
	}
}

// tryPublish is publish for goroutines other than the test's.
func (p *publisher) tryPublish(topic string, payload []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for {
		err := p.cl.publish(ctx, topic, 1, payload)
		if err == nil {
			return nil
		}
		if !errors.Is(err, errNotConnected) || ctx.Err() != nil {
			return fmt.Errorf("publish %s: %w", topic, err)
		}
		_ = p.cl.awaitConnection(ctx)
	}
}

// subscriber collects the messages of one topic filter.
type subscriber struct {
	cl   client
	msgs chan message
}

func newSubscriber(t testing.TB, url, filter string) *subscriber {
	t.Helper()
	s := &subscriber{msgs: make(chan message, 1024)}
	cl, err := newClient(clientConfig{
		ClientOptions: ClientOptions{URLs: []string{url}, ClientID: "sub-" + suffix(), CleanSession: true},
		subs:          []subscription{{topic: filter, qos: 1}},
		onMessage: func(m message) {
			select {
			case s.msgs <- m:
			default: // a flood the test does not read is dropped rather than block the client
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := cl.start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := cl.awaitConnection(ctx); err != nil {
		t.Fatal(err)
	}
	s.cl = cl
	t.Cleanup(func() { _ = cl.stop(context.Background()) })
	return s
}

// next returns the next message.
func (s *subscriber) next(t testing.TB) message {
	t.Helper()
	select {
	case m := <-s.msgs:
		return m
	case <-time.After(waitFor):
		t.Fatal("timed out waiting for a message")
	}
	return message{}
}

// checkedMem returns a checked allocator verified at the end of the test.
func checkedMem(t testing.TB) *memory.CheckedAllocator {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	t.Cleanup(func() { mem.AssertSize(t, 0) })
	return mem
}
