package hubsync

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/bundle"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/hub/protocol"
)

// TestMain checks no goroutine outlives the tests. The one ignored is
// nats.go's: an object store upload (the test's hub side, never the edge's)
// starts a watcher of the connection's status that, once the publisher is
// cleaned up, waits on a nil channel after the connection is closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/nats-io/nats.go/jetstream.(*jetStream).resetPendingAcksOnReconnect"))
}

// newNATSProcess starts a nats-server of the test's own, with JetStream in
// a temporary directory, that the test may kill and start again.
func newNATSProcess(t testing.TB) *enginetest.NATSServer {
	n := enginetest.NewNATSServer(t)
	n.Start()
	return n
}

// connect returns a JetStream client that reconnects without end.
func connect(t *testing.T, n *enginetest.NATSServer) jetstream.JetStream {
	t.Helper()
	nc, err := natsgo.Connect(n.URL(), natsgo.MaxReconnects(-1), natsgo.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// hub is the test's stand-in for the hub: it writes bundles and desired
// records.
type hub struct {
	t   *testing.T
	key ed25519.PrivateKey
	kv  jetstream.KeyValue
	obs jetstream.ObjectStore
	rel int
}

func newHub(t *testing.T, js jetstream.JetStream) *hub {
	t.Helper()
	ctx := context.Background()
	kcfg := protocol.DesiredConfig(1)
	kcfg.MaxValueSize = -1 // the edge's own bound is under test, not the server's
	kv, err := js.CreateKeyValue(ctx, kcfg)
	if err != nil {
		t.Fatal(err)
	}
	obs, err := js.CreateObjectStore(ctx, protocol.BundlesConfig(1))
	if err != nil {
		t.Fatal(err)
	}
	return &hub{t: t, key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize)), kv: kv, obs: obs}
}

// build returns a signed bundle of release name v.
func (h *hub) build(name string, v uint64) []byte { return h.buildWith(name, v, nil) }

// buildWith returns a signed bundle of release name v with the file
// ml/model.bin of model when it is not nil.
func (h *hub) buildWith(name string, v uint64, model []byte) []byte {
	h.t.Helper()
	src := h.t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "pipelines"), 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "pipelines", "p.yaml"), fmt.Appendf(nil, "sources:\n  s: {type: sim, rows: %d}\n", v), 0o644); err != nil {
		h.t.Fatal(err)
	}
	if model != nil {
		if err := os.MkdirAll(filepath.Join(src, "ml"), 0o755); err != nil {
			h.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, "ml", "model.bin"), model, 0o644); err != nil {
			h.t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if _, err := bundle.Build(&buf, src, bundle.BuildOptions{Name: name, Version: v, Key: h.key}); err != nil {
		h.t.Fatal(err)
	}
	return buf.Bytes()
}

func digestOf(data []byte) string {
	sum := sha256.Sum256(data)
	return protocol.DigestPrefix + hex.EncodeToString(sum[:])
}

// upload stores data under name.
func (h *hub) upload(name string, data []byte) {
	h.t.Helper()
	if _, err := h.obs.PutBytes(context.Background(), name, data); err != nil {
		h.t.Fatal(err)
	}
}

// record is the desired record of data as release name v.
func (h *hub) record(name string, v uint64, data []byte) protocol.Desired {
	h.rel++
	return protocol.Desired{Bundle: name, Version: v, Digest: digestOf(data), Size: int64(len(data)),
		ReleasedAt: time.Now().UTC(), ReleaseID: fmt.Sprintf("r-%d", h.rel)}
}

// desire writes d as edge's desired release.
func (h *hub) desire(edge string, d protocol.Desired) {
	h.t.Helper()
	data, err := d.Encode()
	if err != nil {
		h.t.Fatal(err)
	}
	h.put(edge, data)
}

func (h *hub) put(edge string, data []byte) {
	h.t.Helper()
	key, err := protocol.DesiredKey(edge)
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := h.kv.Put(context.Background(), key, data); err != nil {
		h.t.Fatal(err)
	}
}

// release builds, uploads and desires release name v for edge.
func (h *hub) release(edge, name string, v uint64) protocol.Desired {
	h.t.Helper()
	data := h.build(name, v)
	h.upload(digestOf(data), data)
	d := h.record(name, v, data)
	h.desire(edge, d)
	return d
}

// runner is a Runner that records its switches; the engine is not what
// these tests are about.
type runner struct {
	mu       sync.Mutex
	switches []string
}

func (r *runner) Check(string, *bundle.Manifest) error { return nil }

func (r *runner) Switch(_ context.Context, _ string, m *bundle.Manifest) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.switches = append(r.switches, fmt.Sprintf("%s v%d", m.Name, m.Version))
	return "switched", nil
}

func (r *runner) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.switches...)
}

// edge is an agent with its hubsync.
type edge struct {
	id       string
	agent    *agent.Agent
	runner   *runner
	log      enginetest.LogBuffer
	mu       sync.Mutex
	outcomes []Outcome
}

func newEdge(t *testing.T, id string, h *hub) *edge {
	t.Helper()
	e := &edge{id: id, runner: &runner{}}
	a, err := agent.Open(agent.Options{Dir: filepath.Join(t.TempDir(), "agent"), Edge: id,
		Trust: bundle.NewTrust(h.key.Public().(ed25519.PublicKey)), DiskReserve: 1}, e.runner)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if _, err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.agent = a
	return e
}

// sync runs Sync until the test ends.
func (e *edge) sync(t *testing.T, js jetstream.JetStream, mod func(*Options)) {
	t.Helper()
	opts := Options{Current: AgentCurrent(e.agent), MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Resync: 200 * time.Millisecond, FetchTimeout: 5 * time.Second,
		Log: slog.New(slog.NewTextHandler(&e.log, nil)),
		OnOutcome: func(o Outcome) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.outcomes = append(e.outcomes, o)
		}}
	if mod != nil {
		mod(&opts)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Sync(ctx, js, e.id, e.agent, opts) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Sync returned %v, want context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Sync did not return after its context ended")
		}
	})
}

func (e *edge) results() []Outcome {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Outcome(nil), e.outcomes...)
}

// running is the release the agent runs.
func (e *edge) running() string {
	if c := e.agent.Current(); c != nil {
		return fmt.Sprintf("%s v%d", c.Name, c.Version)
	}
	return ""
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestOfflineEdgeAppliesOnlyNewest(t *testing.T) {
	n := newNATSProcess(t)
	js := connect(t, n)
	h := newHub(t, js)
	e := newEdge(t, "edge-offline", h)
	for v := uint64(1); v <= 3; v++ {
		h.release(e.id, "windfarm", v)
	}
	e.sync(t, connect(t, n), nil)
	waitFor(t, "v3 applied", func() bool { return e.running() == "windfarm v3" })
	if got := e.runner.list(); len(got) != 1 || got[0] != "windfarm v3" {
		t.Errorf("switches %v, want only windfarm v3", got)
	}
	// A release while online applies too; the one that runs is skipped.
	h.release(e.id, "windfarm", 4)
	waitFor(t, "v4 reported", func() bool { return len(e.results()) >= 2 })
	if r := e.running(); r != "windfarm v4" {
		t.Errorf("runs %q, want windfarm v4", r)
	}
	rs := e.results()
	for _, o := range rs {
		if o.Report == nil || o.Report.Outcome != agent.Applied {
			t.Errorf("outcome %+v, want applied", o)
		}
	}
	if len(rs) != 2 {
		t.Errorf("%d outcomes, want 2 (v3, v4)", len(rs))
	}
}

func TestMissingBundleIsRetriedNotApplied(t *testing.T) {
	n := newNATSProcess(t)
	js := connect(t, n)
	h := newHub(t, js)
	e := newEdge(t, "edge-missing", h)
	data := h.build("windfarm", 1)
	h.desire(e.id, h.record("windfarm", 1, data))
	e.sync(t, connect(t, n), nil)
	waitFor(t, "two failed attempts", func() bool {
		rs := e.results()
		return len(rs) >= 2 && rs[1].Retry && errors.Is(rs[1].Err, jetstream.ErrObjectNotFound)
	})
	if r := e.running(); r != "" || len(e.runner.list()) != 0 {
		t.Fatalf("runs %q after a missing bundle", r)
	}
	reps, err := agent.ReadReports(e.agent.Dir(), 1<<20)
	if err != nil || len(reps) != 0 {
		t.Fatalf("reports %v, %v: nothing reached the agent", reps, err)
	}
	h.upload(digestOf(data), data)
	waitFor(t, "v1 applied once uploaded", func() bool { return e.running() == "windfarm v1" })
}

func TestBadObjectsRefused(t *testing.T) {
	n := newNATSProcess(t)
	js := connect(t, n)
	h := newHub(t, js)
	tests := []struct {
		name  string
		max   int64
		setup func(t *testing.T, name string) protocol.Desired
	}{
		{"size mismatch", 0, func(t *testing.T, name string) protocol.Desired {
			data := h.build(name, 1)
			h.upload(digestOf(data), data)
			d := h.record(name, 1, data)
			d.Size++
			return d
		}},
		{"oversized", 100, func(t *testing.T, name string) protocol.Desired {
			data := h.build(name, 1)
			h.upload(digestOf(data), data)
			return h.record(name, 1, data)
		}},
		{"wrong bytes", 0, func(t *testing.T, name string) protocol.Desired {
			data := h.build(name, 1)
			bad := bytes.Clone(data)
			bad[len(bad)/2] ^= 0xff
			h.upload(digestOf(data), bad)
			return h.record(name, 1, data)
		}},
		{"link", 0, func(t *testing.T, name string) protocol.Desired {
			data := h.build(name, 1)
			h.upload("elsewhere-"+name, data)
			info, err := h.obs.GetInfo(context.Background(), "elsewhere-"+name)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := h.obs.AddLink(context.Background(), digestOf(data), info); err != nil {
				t.Fatal(err)
			}
			return h.record(name, 1, data)
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEdge(t, fmt.Sprintf("edge-bad-%d", i), h)
			// Each case has its own bundle name, hence its own digest.
			name := fmt.Sprintf("wf%d", i)
			d := tt.setup(t, name)
			h.desire(e.id, d)
			e.sync(t, connect(t, n), func(o *Options) { o.MaxBundleBytes = tt.max })
			waitFor(t, "refusal", func() bool { return len(e.results()) >= 1 })
			o := e.results()[0]
			if o.Retry || o.Err == nil || o.Report != nil {
				t.Fatalf("outcome %+v, want a refusal", o)
			}
			if r := e.running(); r != "" || len(e.runner.list()) != 0 {
				t.Fatalf("runs %q after a refused bundle", r)
			}
			if !strings.Contains(e.log.String(), "refused the desired release") {
				t.Errorf("log lacks the refusal:\n%s", e.log.String())
			}
			if tt.max > 0 {
				return // every bundle is too large for this edge
			}
			// Refused for good: a later good release still applies.
			h.release(e.id, name, 2)
			waitFor(t, "v2 reported", func() bool { return len(e.results()) >= 2 })
			if r := e.running(); r != name+" v2" {
				t.Errorf("runs %q, want %s v2", r, name)
			}
			if n := len(e.results()); n != 2 {
				t.Errorf("%d outcomes, want 2: the refused record is not tried again", n)
			}
		})
	}
}

func TestNewerReleaseReplacesOneRetried(t *testing.T) {
	n := newNATSProcess(t)
	js := connect(t, n)
	h := newHub(t, js)
	e := newEdge(t, "edge-newer", h)
	e.sync(t, connect(t, n), nil)
	lost := h.build("windfarm", 1)
	h.desire(e.id, h.record("windfarm", 1, lost)) // never uploaded
	waitFor(t, "a retry", func() bool { rs := e.results(); return len(rs) >= 1 && rs[0].Retry })
	h.release(e.id, "windfarm", 2)
	waitFor(t, "v2 applied", func() bool { return e.running() == "windfarm v2" })
	h.upload(digestOf(lost), lost)
	// v1 is no longer desired: a later release shows it was not applied.
	h.release(e.id, "windfarm", 3)
	waitFor(t, "v3 applied", func() bool { return e.running() == "windfarm v3" })
	if got := e.runner.list(); strings.Join(got, ",") != "windfarm v2,windfarm v3" {
		t.Errorf("switches %v, want v2 and v3 only", got)
	}
}

func TestRejectedBundleReported(t *testing.T) {
	n := newNATSProcess(t)
	js := connect(t, n)
	h := newHub(t, js)
	e := newEdge(t, "edge-reject", h)
	e.sync(t, connect(t, n), nil)
	h.release(e.id, "windfarm", 1)
	waitFor(t, "v1 applied", func() bool { return e.running() == "windfarm v1" })
	// Signed by a key the edge does not trust: the agent rejects it.
	trusted := h.key
	h.key = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize))
	h.release(e.id, "windfarm", 2)
	h.key = trusted
	waitFor(t, "the rejection", func() bool { return len(e.results()) >= 2 })
	o := e.results()[1]
	if o.Report == nil || o.Report.Outcome != agent.Rejected || o.Retry {
		t.Fatalf("outcome %+v, want a rejection not retried", o)
	}
	if r := e.running(); r != "windfarm v1" {
		t.Errorf("runs %q after a rejected bundle, want windfarm v1", r)
	}
	reps, err := agent.ReadReports(e.agent.Dir(), 1<<20)
	if err != nil || len(reps) != 2 || reps[1].Outcome != agent.Rejected {
		t.Errorf("agent reports %v, %v", reps, err)
	}
}

func TestHostileDesiredIgnored(t *testing.T) {
	n := newNATSProcess(t)
	js := connect(t, n)
	h := newHub(t, js)
	e := newEdge(t, "edge-hostile", h)
	e.sync(t, connect(t, n), nil)
	data := h.build("windfarm", 1)
	h.upload(digestOf(data), data)
	good, _ := h.record("windfarm", 1, data).Encode()
	hostile := [][]byte{
		[]byte(`not json`),
		[]byte(`{}`),
		bytes.Replace(good, []byte(`"bundle"`), []byte(`"extra":1,"bundle"`), 1),
		bytes.Replace(good, []byte(`sha256:`), []byte(`sha256:../`), 1),
		append(bytes.Clone(good), bytes.Repeat([]byte(" "), protocol.MaxDesiredBytes)...),
		bytes.Repeat([]byte("["), 100000),
	}
	for i, v := range hostile {
		h.put(e.id, v)
		waitFor(t, fmt.Sprintf("hostile record %d ignored", i), func() bool {
			return strings.Count(e.log.String(), "ignoring a desired record") >= i+1
		})
	}
	if r := e.running(); r != "" || len(e.results()) != 0 {
		t.Fatalf("runs %q, outcomes %v after hostile records", r, e.results())
	}
	h.put(e.id, good)
	waitFor(t, "v1 applied", func() bool { return e.running() == "windfarm v1" })
}

func TestServerRestartResumes(t *testing.T) {
	n := newNATSProcess(t)
	h := newHub(t, connect(t, n))
	e := newEdge(t, "edge-restart", h)
	e.sync(t, connect(t, n), nil)
	h.release(e.id, "windfarm", 1)
	waitFor(t, "v1 applied", func() bool { return e.running() == "windfarm v1" })
	n.Kill()
	n.Start()
	h.release(e.id, "windfarm", 2)
	waitFor(t, "v2 applied after the restart", func() bool { return e.running() == "windfarm v2" })
	n.Kill()
	// Released while the edge's link is down: it applies on reconnect.
	n.Start()
	h.release(e.id, "windfarm", 3)
	waitFor(t, "v3 applied after the second restart", func() bool { return e.running() == "windfarm v3" })
	if got := e.runner.list(); strings.Join(got, ",") != "windfarm v1,windfarm v2,windfarm v3" {
		t.Errorf("switches %v", got)
	}
}

// gate is an Importer that stops once, after some bytes of a bundle,
// until released.
type gate struct {
	imp     Importer
	after   int
	reached chan struct{}
	release chan struct{}
	once    sync.Once
}

func (g *gate) Import(r io.Reader, file string) (agent.Report, error) {
	return g.imp.Import(&gateReader{g: g, r: r}, file)
}

type gateReader struct {
	g *gate
	r io.Reader
	n int
}

func (r *gateReader) Read(p []byte) (int, error) {
	if r.n >= r.g.after {
		r.g.once.Do(func() {
			close(r.g.reached)
			<-r.g.release
		})
	}
	n, err := r.r.Read(p)
	r.n += n
	return n, err
}

func TestLinkLostMidFetchNothingApplied(t *testing.T) {
	n := newNATSProcess(t)
	h := newHub(t, connect(t, n))
	e := newEdge(t, "edge-midfetch", h)
	g := &gate{imp: e.agent, after: 64 << 10, reached: make(chan struct{}), release: make(chan struct{})}
	// Random bytes do not compress: the bundle spans several chunks.
	model := make([]byte, 2<<20)
	rand.NewChaCha8([32]byte{1}).Read(model)
	data := h.buildWith("windfarm", 1, model)
	h.upload(digestOf(data), data)
	h.desire(e.id, h.record("windfarm", 1, data))
	opts := Options{Current: AgentCurrent(e.agent), MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Resync: 200 * time.Millisecond, FetchTimeout: 2 * time.Second,
		OnOutcome: func(o Outcome) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.outcomes = append(e.outcomes, o)
		}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Sync(ctx, connect(t, n), e.id, g, opts) }()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Sync returned %v", err)
		}
	}()
	select {
	case <-g.reached:
	case <-time.After(20 * time.Second):
		t.Fatal("the fetch did not start")
	}
	n.Kill()
	close(g.release)
	waitFor(t, "the broken fetch", func() bool { rs := e.results(); return len(rs) >= 1 })
	if o := e.results()[0]; !o.Retry || o.Err == nil || o.Report != nil {
		t.Fatalf("outcome %+v, want a failed fetch to retry", o)
	}
	if r := e.running(); r != "" || len(e.runner.list()) != 0 {
		t.Fatalf("runs %q after a broken fetch", r)
	}
	if reps, err := agent.ReadReports(e.agent.Dir(), 1<<20); err != nil || len(reps) != 0 {
		t.Fatalf("reports %v, %v after a broken fetch", reps, err)
	}
	n.Start()
	waitFor(t, "v1 applied once the broker is back", func() bool { return e.running() == "windfarm v1" })
}

func TestSyncRefusesBadArguments(t *testing.T) {
	imp := importerFunc(func(io.Reader, string) (agent.Report, error) { return agent.Report{}, nil })
	cur := func() (string, uint64) { return "", 0 }
	tests := []struct {
		name string
		edge string
		imp  Importer
		cur  func() (string, uint64)
	}{
		{"bad edge", "a.b", imp, cur},
		{"empty edge", "", imp, cur},
		{"no importer", "e1", nil, cur},
		{"no current", "e1", imp, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Sync(context.Background(), nil, tt.edge, tt.imp, Options{Current: tt.cur}); err == nil {
				t.Fatal("Sync accepted bad arguments")
			}
		})
	}
}

type importerFunc func(io.Reader, string) (agent.Report, error)

func (f importerFunc) Import(r io.Reader, file string) (agent.Report, error) { return f(r, file) }

func TestCheckedReader(t *testing.T) {
	data := []byte("bundle bytes")
	tests := []struct {
		name    string
		obj     []byte
		refused bool
	}{
		{"exact", data, false},
		{"longer", append(bytes.Clone(data), 'x'), true},
		{"shorter", data[:5], false},
		{"other bytes", []byte("bundle bytez"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &checked{r: bytes.NewReader(tt.obj), left: int64(len(data)), want: digestOf(data), sum: sha256.New()}
			got, err := io.ReadAll(c)
			if tt.name == "exact" {
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("%q, %v", got, err)
				}
				return
			}
			if err == nil {
				t.Fatal("a wrong object read cleanly")
			}
			if errors.Is(err, errRefused) != tt.refused {
				t.Errorf("err %v, refused want %v", err, tt.refused)
			}
		})
	}
}

// TestStopWithNothingDesired stops Sync for an edge with no desired
// release. The watch's subscription closes with the context; a client whose
// closing did not synchronise with the watch's own "no more initial
// values" mark (sent when nothing is pending) closed the updates channel
// racing that send: a data race under -race, and a send on a closed channel
// when the two meet.
func TestStopWithNothingDesired(t *testing.T) {
	n := newNATSProcess(t)
	js := connect(t, n)
	h := newHub(t, js)
	e := newEdge(t, "edge-idle", h)
	for i := range 300 {
		opts := Options{Current: AgentCurrent(e.agent), Resync: time.Hour,
			OnOutcome: func(o Outcome) { t.Errorf("outcome %+v with nothing desired", o) }}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- Sync(ctx, js, e.id, e.agent, opts) }()
		time.Sleep(time.Duration(i%10) * time.Millisecond)
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("round %d: Sync returned %v, want context.Canceled", i, err)
		}
	}
}
