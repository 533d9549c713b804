package control_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/control"
)

// named is a transport that says who it is; onePoint ones check that a
// command sets one point, like a JSON command topic.
type named struct {
	name     string
	onePoint bool
}

func (n *named) Ready(context.Context) error                   { return nil }
func (n *named) Deliver(context.Context, control.Record) error { return nil }
func (n *named) OnePoint(string, string) bool                  { return n.onePoint }
func (n *named) Check(c *control.Record) error {
	if n.onePoint && len(c.Inputs) != 1 {
		return errors.New(n.name + ": one point per command")
	}
	return nil
}

func TestRouter(t *testing.T) {
	enos, jsonA, jsonB := &named{name: "enos"}, &named{name: "json-a", onePoint: true}, &named{name: "json-b", onePoint: true}
	r, err := control.NewRouter(enos,
		control.Route{Name: "a", Assets: []string{"P1", "P2"}, Products: []string{"pump"}, Transport: jsonA},
		control.Route{Name: "b", Assets: []string{"V1"}, Transport: jsonB})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		product, asset string
		want           *named
	}{
		{"turbine", "T1", enos},
		{"", "P1", jsonA},
		{"turbine", "P2", jsonA}, // the asset wins over the product
		{"pump", "X", jsonA},
		{"pump", "V1", jsonB},
		{"", "V1", jsonB},
		{"", "T1", enos},
		{"valve", "v1", enos}, // names are case-sensitive
	} {
		if got := r.For(tc.product, tc.asset); got != tc.want {
			t.Errorf("For(%q, %q) = %s, want %s", tc.product, tc.asset, got.(*named).name, tc.want.name)
		}
	}

	for _, tc := range []struct {
		name   string
		routes []control.Route
		want   string
	}{
		{"no transport", []control.Route{{Name: "x", Assets: []string{"A"}}}, "x has no transport"},
		{"no device", []control.Route{{Name: "x", Transport: jsonA}}, "names no asset and no product"},
		{"asset twice", []control.Route{{Name: "x", Assets: []string{"A"}, Transport: jsonA}, {Name: "y", Assets: []string{"A"}, Transport: jsonB}}, `asset "A" is in x and in y`},
		{"product twice", []control.Route{{Name: "x", Products: []string{"p"}, Transport: jsonA}, {Name: "y", Products: []string{"p"}, Transport: jsonB}}, `product "p" is in x and in y`},
		{"bad name", []control.Route{{Name: "x", Assets: []string{"a/b"}, Transport: jsonA}}, "x:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := control.NewRouter(enos, tc.routes...); !errors.Is(err, control.ErrRoute) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want %q", err, tc.want)
			}
		})
	}
	if _, err := control.NewRouter(nil); !errors.Is(err, control.ErrRoute) {
		t.Errorf("no default: %v", err)
	}

	// Through a LateTransport, the arbiter asks the route's transport: a
	// command it cannot carry is refused as malformed, not recorded.
	late := &control.LateTransport{}
	a, err := control.Open(control.Options{Dir: t.TempDir(), Transport: late, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	late.Set(r)
	if !a.OnePoint("", "P1") || a.OnePoint("turbine", "T1") {
		t.Error("OnePoint does not follow the routes")
	}
	ctx := context.Background()
	two := map[string]any{"a": 1.0, "b": 2.0}
	if _, err := a.Submit(ctx, control.Command{Asset: "P1", Origin: "cloud", Inputs: two}); !errors.Is(err, control.ErrInvalid) || !strings.Contains(err.Error(), "json-a: one point") {
		t.Errorf("two points for a JSON device: %v", err)
	}
	rec, err := a.Submit(ctx, control.Command{Product: "turbine", Asset: "T1", Origin: "cloud", Inputs: two})
	if err != nil || rec.Status != command.Queued {
		t.Errorf("two points for an EnOS device: %s %v", rec.Status, err)
	}
	if n := len(a.List(control.Filter{})); n != 1 {
		t.Errorf("%d records, want 1 (the refused command is not recorded)", n)
	}
}

// lazyLink is a transport that connects only when asked to be ready, as
// the MQTT downlinks do; once connected it hears the reply the device
// sent to a command while the process was down.
type lazyLink struct {
	a     *control.Arbiter
	reply control.Record // the command the device answered
	once  sync.Once
}

func (l *lazyLink) Ready(context.Context) error {
	l.once.Do(func() { _, _ = l.a.Tracker().Reply(l.reply.ID, l.reply.Target(), 200, "done", nil) })
	return nil
}

func (l *lazyLink) Deliver(context.Context, control.Record) error { return nil }

// A command found sent after a restart gets its reply: the arbiter asks
// the transport to be ready (to connect) before waiting for it, even with
// nothing else to send; before, a transport that connects on demand never
// connected and the command waited for its timeout.
func TestRestartHearsReplies(t *testing.T) {
	f := newFixture(t, true)
	f.dev.silent = true
	sent, err := f.a.Submit(context.Background(), setPoint("cloud", "T1", 1))
	if err != nil {
		t.Fatal(err)
	}
	<-f.dev.seen
	waitStatus(t, f.a, sent.ID, command.Sent)
	f.a.Close()

	late := &control.LateTransport{}
	a, err := control.Open(control.Options{Dir: f.dir, Transport: late, Clock: f.clock, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	f.a = a
	late.Set(&lazyLink{a: a, reply: sent})
	if got := wait(t, a, sent.ID); got.Status != command.Acked {
		t.Fatalf("the command sent before the restart: %s %q", got.Status, got.Reason)
	}
}
