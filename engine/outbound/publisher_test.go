package outbound_test

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/spec"
)

type recorder struct {
	topics []string
	n      int
	closed int
	err    error
}

func (r *recorder) Publish(topic string, msgs ...*message.Message) error {
	r.topics = append(r.topics, topic)
	r.n += len(msgs)
	return r.err
}

func (r *recorder) Close() error { r.closed++; return nil }

func parse(t *testing.T, s spec.Spec, src string) *spec.Config {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	cfg, errs := s.Parse("test.yaml", &n)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return cfg
}

func TestRegistry(t *testing.T) {
	s := spec.Spec{
		Name:    "test-recorder",
		Summary: "Records publishes.",
		Fields:  append([]spec.Field{{Name: "topic", Type: spec.String, Description: "Topic."}}, outbound.EncodingFields(outbound.JSONBatch)...),
	}
	outbound.RegisterPublisher(s, func(cfg *spec.Config, bc engine.BuildContext) (*outbound.Publisher, error) {
		return outbound.New(cfg, &recorder{}, cfg.String("topic"), nil)
	})
	r, ok := outbound.LookupPublisher("test-recorder")
	if !ok {
		t.Fatal("not registered")
	}
	if r.Spec.Kind != spec.KindSink {
		t.Errorf("kind %q", r.Spec.Kind)
	}
	found := false
	for _, s := range outbound.PublisherSpecs() {
		found = found || s.Name == "test-recorder"
	}
	if !found {
		t.Error("PublisherSpecs misses the type")
	}
	p, err := r.New(parse(t, r.Spec, "topic: a.b\nencoding: arrow\nbatch_rows: 10"), engine.BuildContext{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Topic != "a.b" || p.Encoding != outbound.Arrow || p.BatchRows != 10 {
		t.Errorf("publisher %+v", p)
	}
	p, err = r.New(parse(t, r.Spec, "topic: a"), engine.BuildContext{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Encoding != outbound.JSONBatch || p.BatchRows != outbound.DefaultBatchRows {
		t.Errorf("defaults: %+v", p)
	}
	if _, err := r.New(parse(t, r.Spec, "topic: a\nbatch_rows: -1"), engine.BuildContext{}); err == nil || !strings.Contains(err.Error(), "test.yaml:2:") {
		t.Errorf("negative batch_rows: %v", err)
	}

	mustPanic(t, "duplicate", func() {
		outbound.RegisterPublisher(s, func(*spec.Config, engine.BuildContext) (*outbound.Publisher, error) { return nil, nil })
	})
	bad := spec.Spec{Name: "bad", Fields: []spec.Field{{Name: "x", Type: spec.String, Default: 1}}}
	mustPanic(t, "bad spec", func() {
		outbound.RegisterPublisher(bad, func(*spec.Config, engine.BuildContext) (*outbound.Publisher, error) { return nil, nil })
	})
	mustPanic(t, "nil factory", func() { outbound.RegisterPublisher(spec.Spec{Name: "nil-factory"}, nil) })
}

func mustPanic(t *testing.T, name string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s: no panic", name)
		}
	}()
	f()
}

func TestIsPermanent(t *testing.T) {
	tooBig := errors.New("too big")
	p := &outbound.Publisher{Permanent: func(err error) bool { return errors.Is(err, tooBig) }}
	cases := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("timeout"), false},
		{fmt.Errorf("publish: %w", tooBig), true},
		{outbound.MarkPermanent(errors.New("bad")), true},
		{fmt.Errorf("wrapped: %w", outbound.MarkPermanent(errors.New("bad"))), true},
	}
	for _, c := range cases {
		if got := p.IsPermanent(c.err); got != c.want {
			t.Errorf("IsPermanent(%v) = %v", c.err, got)
		}
	}
	if (&outbound.Publisher{}).IsPermanent(errors.New("x")) {
		t.Error("nil Permanent classified an error as permanent")
	}
	if outbound.MarkPermanent(nil) != nil {
		t.Error("MarkPermanent(nil) != nil")
	}
}

func TestLazy(t *testing.T) {
	var builds atomic.Int32
	rec := &recorder{}
	fail := true
	l := outbound.NewLazy(func() (message.Publisher, error) {
		builds.Add(1)
		if fail {
			return nil, errors.New("broker down")
		}
		return rec, nil
	})
	if err := l.Publish("t", message.NewMessage("1", nil)); err == nil || !strings.Contains(err.Error(), "broker down") {
		t.Fatalf("first publish: %v", err)
	}
	fail = false
	for range 3 {
		if err := l.Publish("t", message.NewMessage("1", nil)); err != nil {
			t.Fatal(err)
		}
	}
	if builds.Load() != 2 || rec.n != 3 {
		t.Errorf("builds %d, published %d", builds.Load(), rec.n)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rec.closed != 1 {
		t.Errorf("underlying closed %d times", rec.closed)
	}
	if err := l.Publish("t"); !errors.Is(err, outbound.ErrClosed) {
		t.Errorf("publish after close: %v", err)
	}
	// Closing a never-built publisher builds nothing.
	l2 := outbound.NewLazy(func() (message.Publisher, error) { t.Error("built on Close"); return nil, nil })
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestTLSConfig(t *testing.T) {
	s := spec.Spec{Name: "tls-test", Fields: []spec.Field{outbound.TLSField()}}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	c, err := outbound.TLSConfig(parse(t, s, "{}"), engine.BuildContext{})
	if err != nil || c != nil {
		t.Fatalf("absent: %v %v", c, err)
	}
	c, err = outbound.TLSConfig(parse(t, s, "tls: {enabled: true, server_name: x, insecure_skip_verify: true}"), engine.BuildContext{})
	if err != nil || c == nil || c.ServerName != "x" || !c.InsecureSkipVerify {
		t.Fatalf("enabled: %+v %v", c, err)
	}
	_, err = outbound.TLSConfig(parse(t, s, "tls:\n  enabled: true\n  ca_file: missing.pem"), engine.BuildContext{Dir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "test.yaml:3:") {
		t.Fatalf("missing ca file: %v", err)
	}
	_, err = outbound.TLSConfig(parse(t, s, "tls: {enabled: true, cert_file: a.pem}"), engine.BuildContext{})
	if err == nil || !strings.Contains(err.Error(), "go together") {
		t.Fatalf("cert without key: %v", err)
	}
}
