package nats_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/connectors/nats"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
)

const localURL = "nats://127.0.0.1:4222"

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// local connects to the JetStream server on this machine or skips.
func local(t testing.TB) *natsgo.Conn {
	t.Helper()
	nc, err := natsgo.Connect(localURL, natsgo.Timeout(time.Second), natsgo.MaxReconnects(0))
	if err != nil {
		t.Skipf("NATS server at %s unreachable: %v", localURL, err)
	}
	js, _ := nc.JetStream()
	if _, err := js.AccountInfo(); err != nil {
		nc.Close()
		t.Skipf("NATS server at %s has no JetStream: %v", localURL, err)
	}
	return nc
}

// build builds a publisher from YAML fields.
func build(t testing.TB, yaml string) *outbound.Publisher {
	t.Helper()
	p, err := nats.New(outboundtest.Parse(t, nats.Spec, yaml), engine.BuildContext{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// readStream returns a Reader over every message of a stream, read with
// its own connection by stream sequence.
func readStream(url, stream string) outboundtest.Reader {
	return func(ctx context.Context, n int) ([]*message.Message, error) {
		nc, err := natsgo.Connect(url, natsgo.Timeout(time.Second))
		if err != nil {
			return nil, err
		}
		defer nc.Close()
		js, err := nc.JetStream()
		if err != nil {
			return nil, err
		}
		var info *natsgo.StreamInfo
		for {
			info, err = js.StreamInfo(stream)
			if err == nil && int(info.State.Msgs) >= n {
				break
			}
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("stream %s holds %v messages: %w (%v)", stream, msgs(info), ctx.Err(), err)
			case <-time.After(20 * time.Millisecond):
			}
		}
		var out []*message.Message
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
			raw, err := js.GetMsg(stream, seq)
			if err != nil {
				return out, err
			}
			m, err := nats.Marshaler().Unmarshal(&natsgo.Msg{Subject: raw.Subject, Header: raw.Header, Data: raw.Data})
			if err != nil {
				return out, err
			}
			if id := raw.Header.Get(natsgo.MsgIdHdr); !strings.HasPrefix(id, m.UUID+"#") {
				return out, fmt.Errorf("message %d: Nats-Msg-Id %q, uuid %q", seq, id, m.UUID)
			}
			out = append(out, m)
		}
		return out, nil
	}
}

func msgs(info *natsgo.StreamInfo) any {
	if info == nil {
		return "no"
	}
	return info.State.Msgs
}

func deleteStream(t *testing.T, url, stream string) {
	t.Cleanup(func() { deleteStreamAt(url, stream) })
}

func deleteStreamAt(url, stream string) {
	nc, err := natsgo.Connect(url, natsgo.Timeout(time.Second), natsgo.MaxReconnects(0))
	if err != nil {
		return
	}
	defer nc.Close()
	js, _ := nc.JetStream()
	_ = js.DeleteStream(stream)
}

func TestConformance(t *testing.T) {
	local(t).Close()
	outboundtest.Run(t, outboundtest.Case{
		Spec:   nats.Spec,
		Dedupe: true,
		New: func(t *testing.T, enc outbound.Encoding) (*outbound.Publisher, outboundtest.Reader) {
			sfx := outboundtest.Suffix()
			stream := "SLUICE_TEST_" + sfx
			deleteStream(t, localURL, stream)
			p := build(t, fmt.Sprintf("url: %s\nsubject: sluice.test.%s\nstream: %s\nencoding: %s", localURL, sfx, stream, enc))
			t.Cleanup(func() { _ = p.Close() })
			return p, readStream(localURL, stream)
		},
	})
}

// TestDedupe publishes the same ID twice, in one call and in two, and
// finds one stored message.
func TestDedupe(t *testing.T) {
	nc := local(t)
	defer nc.Close()
	sfx := outboundtest.Suffix()
	stream := "SLUICE_DEDUPE_" + sfx
	deleteStream(t, localURL, stream)
	p := build(t, fmt.Sprintf("subject: sluice.dedupe.%s\nstream: %s", sfx, stream))
	defer p.Close()

	mk := func() *message.Message {
		m := message.NewMessage("site/raw/7", []byte(`{"v":1}`))
		m.Metadata.Set(outbound.MetaID, m.UUID)
		return m
	}
	if err := p.Publish(p.Topic, mk(), mk()); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(p.Topic, mk()); err != nil {
		t.Fatal(err)
	}
	js, _ := nc.JetStream()
	info, err := js.StreamInfo(stream)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("stream holds %d messages, want 1", info.State.Msgs)
	}
	if info.Config.Duplicates != 2*time.Minute {
		t.Errorf("duplicate window %v, want the default 2m", info.Config.Duplicates)
	}
}

// TestProvisionExisting checks that an existing stream gets the subject
// and a wider duplicate window.
func TestProvisionExisting(t *testing.T) {
	nc := local(t)
	defer nc.Close()
	js, _ := nc.JetStream()
	sfx := outboundtest.Suffix()
	stream := "SLUICE_PROV_" + sfx
	deleteStream(t, localURL, stream)
	if _, err := js.AddStream(&natsgo.StreamConfig{Name: stream, Subjects: []string{"other." + sfx}, Duplicates: time.Second}); err != nil {
		t.Fatal(err)
	}
	p := build(t, fmt.Sprintf("subject: sluice.prov.%s\nstream: %s\nduplicate_window: 5m", sfx, stream))
	defer p.Close()
	entries := outboundtest.Entries(1, 3)
	defer entries[0].Rec.Release()
	msgs, _ := p.Encoder("e", "s").Encode(entries[0])
	if err := p.Publish(p.Topic, msgs...); err != nil {
		t.Fatal(err)
	}
	info, err := js.StreamInfo(stream)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Duplicates != 5*time.Minute || len(info.Config.Subjects) != 2 || info.State.Msgs != 1 {
		t.Fatalf("stream config %v subjects %v, %d messages", info.Config.Duplicates, info.Config.Subjects, info.State.Msgs)
	}
}

// TestProvisionOff publishes to a subject no stream captures.
func TestProvisionOff(t *testing.T) {
	local(t).Close()
	p := build(t, fmt.Sprintf("subject: sluice.nostream.%s\nprovision: false\ntimeout: 1s", outboundtest.Suffix()))
	defer p.Close()
	err := p.Publish(p.Topic, message.NewMessage("a/b/1", []byte("{}")))
	if err == nil || !strings.Contains(err.Error(), "no JetStream stream") {
		t.Fatalf("err %v", err)
	}
	if p.IsPermanent(err) {
		t.Error("a missing stream is classified permanent")
	}
}

// TestTooLarge publishes a message above the stream's limit: the server's
// rejection is permanent.
func TestTooLarge(t *testing.T) {
	nc := local(t)
	defer nc.Close()
	js, _ := nc.JetStream()
	sfx := outboundtest.Suffix()
	stream := "SLUICE_BIG_" + sfx
	deleteStream(t, localURL, stream)
	if _, err := js.AddStream(&natsgo.StreamConfig{Name: stream, Subjects: []string{"sluice.big." + sfx}, MaxMsgSize: 1024}); err != nil {
		t.Fatal(err)
	}
	p := build(t, fmt.Sprintf("subject: sluice.big.%s\nstream: %s", sfx, stream))
	defer p.Close()
	err := p.Publish(p.Topic, message.NewMessage("a/b/1", make([]byte, 4096)))
	if err == nil || !p.IsPermanent(err) {
		t.Fatalf("err %v, permanent %v", err, p.IsPermanent(err))
	}
	if err := p.Publish(p.Topic, message.NewMessage("a/b/2", []byte("small"))); err != nil {
		t.Fatalf("small message after a rejected one: %v", err)
	}
}

func TestPermanent(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"max payload", fmt.Errorf("sending message failed: %w", natsgo.ErrMaxPayload), true},
		{"bad subject", natsgo.ErrBadSubject, true},
		{"permission", fmt.Errorf("%w: Permissions Violation for Publish to \"x\"", natsgo.ErrPermissionViolation), true},
		{"message too large for stream", &natsgo.APIError{Code: 400, ErrorCode: 10054, Description: "message size exceeds maximum allowed"}, true},
		{"header too large", &natsgo.APIError{Code: 400, ErrorCode: 10097}, true},
		{"timeout", natsgo.ErrTimeout, false},
		{"no stream", natsgo.ErrNoStreamResponse, false},
		{"no responders", natsgo.ErrNoResponders, false},
		{"reconnect buffer", natsgo.ErrReconnectBufExceeded, false},
		{"connection closed", natsgo.ErrConnectionClosed, false},
		{"jetstream unavailable", &natsgo.APIError{Code: 503, ErrorCode: 10008}, false},
		{"insufficient resources", &natsgo.APIError{Code: 503, ErrorCode: 10023}, false},
		{"other", errors.New("boom"), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := nats.Permanent(c.err); got != c.want {
				t.Errorf("Permanent(%v) = %v, want %v", c.err, got, c.want)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"subject: a..b", "empty token"},
		{"subject: a.*", "wildcards"},
		{"subject: a\nstream: a.b", "stream name"},
		{"subject: a\ntimeout: 0s", "timeout must be above 0"},
		{"subject: a\nreplicas: 0", "replicas"},
		{"subject: a\nencoding: xml", "not one of"},
	} {
		_, errs := nats.Spec.Parse("test.yaml", node(t, c.yaml))
		var err error = errs.Err()
		if err == nil {
			_, err = nats.New(outboundtest.Parse(t, nats.Spec, c.yaml), engine.BuildContext{})
		}
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "test.yaml:") {
			t.Errorf("%q: err %v, want %q with a location", c.yaml, err, c.want)
		}
	}
}

func TestSubjectMatch(t *testing.T) {
	if nats.StreamName("sluice.site-a.*") != "sluice_site-a__" {
		t.Error(nats.StreamName("sluice.site-a.*"))
	}
}

// TestBrokerDown builds a publisher against a port nobody listens on:
// building succeeds at once and Publish fails fast.
func TestBrokerDown(t *testing.T) {
	url := "nats://" + freeAddr(t)
	start := time.Now()
	p := build(t, "url: "+url+"\nsubject: a.b\ntimeout: 3s")
	if d := time.Since(start); d > time.Second {
		t.Errorf("building took %v", d)
	}
	start = time.Now()
	err := p.Publish(p.Topic, message.NewMessage("e/s/1", []byte("{}")))
	if err == nil {
		t.Fatal("publish to a down broker returned nil")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("publish took %v to fail", d)
	}
	if p.IsPermanent(err) {
		t.Errorf("outage classified permanent: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// embedded runs a JetStream server on a fixed port and directory.
type embedded struct {
	t    *testing.T
	port int
	dir  string
	srv  *server.Server
}

func (e *embedded) start() {
	e.t.Helper()
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: e.port, JetStream: true, StoreDir: e.dir,
		NoLog: true, NoSigs: true,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		e.t.Fatal("embedded server not ready")
	}
	e.srv = s
	e.port = s.Addr().(*net.TCPAddr).Port
}

func (e *embedded) stop() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

func (e *embedded) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", e.port) }

// TestOutage stops the server while publishing, restarts it on the same
// port and directory, retries the failed messages with the same IDs, and
// finds exactly one stored copy of each. It runs with the reconnect
// buffer off (publish fails at once) and on (publish times out, and the
// buffered message is stored after the restart anyway).
func TestOutage(t *testing.T) {
	for _, buffered := range []bool{false, true} {
		t.Run(fmt.Sprintf("reconnect_buffer=%v", buffered), func(t *testing.T) {
			srv := &embedded{t: t, port: -1, dir: t.TempDir()}
			srv.start()
			defer func() {
				if srv.srv != nil {
					srv.stop()
				}
			}()
			buf := 0
			if buffered {
				buf = 1 << 20
			}
			p := build(t, fmt.Sprintf("url: %s\nsubject: sluice.outage\nstream: OUTAGE\ntimeout: 300ms\nreconnect_buffer: %d\nencoding: json", srv.url(), buf))
			defer p.Close()
			pub := p.Publisher.(*nats.Publisher)

			entries := outboundtest.Entries(1, 10, 10, 10)
			defer func() {
				for _, e := range entries {
					e.Rec.Release()
				}
			}()
			enc := p.Encoder("site", "raw")
			var batches [][]*message.Message
			for _, e := range entries {
				msgs, err := enc.Encode(e)
				if err != nil {
					t.Fatal(err)
				}
				batches = append(batches, msgs)
			}
			if err := p.Publish(p.Topic, batches[0]...); err != nil {
				t.Fatal(err)
			}

			srv.stop()
			outboundtest.Eventually(t, 5*time.Second, "client to notice the outage", func() bool { return !pub.Conn().IsConnected() })
			// One message at a time, like a forwarder: it gives up after a
			// few failures and backs off.
			failed := 0
			for _, m := range batches[1][:4] {
				start := time.Now()
				err := p.Publish(p.Topic, m)
				if err == nil {
					t.Fatalf("publish of %s during the outage returned nil", m.UUID)
				}
				if p.IsPermanent(err) {
					t.Fatalf("outage error classified permanent: %v", err)
				}
				if !buffered && time.Since(start) > 100*time.Millisecond {
					t.Errorf("without a reconnect buffer, publish took %v to fail", time.Since(start))
				}
				failed++
			}

			srv.start() // same port, same store
			outboundtest.Eventually(t, 10*time.Second, "client to reconnect", func() bool { return pub.Conn().IsConnected() })
			if buffered {
				// The publishes that timed out were kept by the client
				// and are stored after reconnecting: "timeout" does not
				// mean "not stored".
				outboundtest.Eventually(t, 5*time.Second, "buffered messages to be stored", func() bool {
					info, err := pub.Conn().JetStream()
					if err != nil {
						return false
					}
					si, err := info.StreamInfo("OUTAGE")
					return err == nil && si.State.Msgs == uint64(10+failed)
				})
			}
			// Retry everything not confirmed, with the same IDs; retries
			// may fail while the stream recovers, so loop until all pass.
			deadline := time.Now().Add(10 * time.Second)
			for _, b := range batches[1:] {
				for _, m := range b {
					for {
						err := p.Publish(p.Topic, m)
						if err == nil {
							break
						}
						if time.Now().After(deadline) {
							t.Fatalf("retry of %s: %v", m.UUID, err)
						}
					}
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got, err := readStream(srv.url(), "OUTAGE")(ctx, 30)
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]int{}
			for _, m := range got {
				seen[m.UUID]++
			}
			for _, b := range batches {
				for _, m := range b {
					if seen[m.UUID] != 1 {
						t.Errorf("%s stored %d times", m.UUID, seen[m.UUID])
					}
				}
			}
			if len(got) != 30 {
				t.Errorf("stream holds %d messages, want 30", len(got))
			}
			t.Logf("%d publishes failed during the outage; %d messages stored", failed, len(got))
		})
	}
}

func node(t testing.TB, src string) *yaml.Node {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	return &n
}

// TestWatermillSubscriber reads published messages with Watermill's NATS
// subscriber in JetStream mode, as a hub would.
func TestWatermillSubscriber(t *testing.T) {
	local(t).Close()
	sfx := outboundtest.Suffix()
	stream, subject := "SLUICE_WM_"+sfx, "sluice.wm."+sfx
	deleteStream(t, localURL, stream)
	p := build(t, fmt.Sprintf("subject: %s\nstream: %s\nencoding: arrow\nbatch_rows: 4", subject, stream))
	entries := outboundtest.Entries(1, 10)
	defer entries[0].Rec.Release()
	want, err := p.Encoder("site", "raw").Encode(entries[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(p.Topic, want...); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}

	sub, err := wmnats.NewSubscriber(wmnats.SubscriberConfig{
		URL:            localURL,
		Unmarshaler:    nats.Marshaler(),
		AckWaitTimeout: 5 * time.Second,
		JetStream: wmnats.JetStreamConfig{
			DurablePrefix:    "hub" + sfx,
			SubscribeOptions: []natsgo.SubOpt{natsgo.DeliverAll(), natsgo.AckExplicit()},
		},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch, err := sub.Subscribe(ctx, subject)
	if err != nil {
		t.Fatal(err)
	}
	got, err := outboundtest.Collect(ctx, ch, len(want))
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		outboundtest.CheckMessage(t, i, want[i], got[i])
	}
}

// TestDoc checks the reference in docs/sinks.md against the declaration.
func TestDoc(t *testing.T) { outboundtest.CheckDoc(t, nats.Spec, "../../docs/sinks.md") }

// TestPermissionDenied publishes to a subject the user may not publish to.
// The server reports it asynchronously and the request times out; the
// publisher matches the two and reports a permanent permission error.
func TestPermissionDenied(t *testing.T) {
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		Users: []*server.User{{Username: "edge", Password: "pw", Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{Deny: []string{"denied.>"}},
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	defer func() { s.Shutdown(); s.WaitForShutdown() }()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	p := build(t, fmt.Sprintf("url: %s\nuser: edge\npassword: pw\nsubject: denied.x\nstream: DENIED\ntimeout: 500ms", s.ClientURL()))
	defer p.Close()
	err = p.Publish(p.Topic, message.NewMessage("e/s/1", []byte("{}")))
	if err == nil || !p.IsPermanent(err) || !errors.Is(err, natsgo.ErrPermissionViolation) {
		t.Fatalf("err %v, permanent %v", err, p.IsPermanent(err))
	}
	// Wrong credentials are an outage to retry, not a message error.
	q := build(t, fmt.Sprintf("url: %s\nuser: edge\npassword: wrong\nsubject: ok.x\ntimeout: 500ms", s.ClientURL()))
	defer q.Close()
	err = q.Publish(q.Topic, message.NewMessage("e/s/1", []byte("{}")))
	if err == nil || q.IsPermanent(err) {
		t.Fatalf("bad credentials: err %v, permanent %v", err, q.IsPermanent(err))
	}
}
