package mqtt

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/connectors/devsim"
	"github.com/sluice-edge/sluice/connectors/devsim/devsimtest"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

// answeringDevices starts simulated devices that answer commands: T0001 acknowledges,
// T0002 fails, T0003 stays silent.
func answeringDevices(t *testing.T, url, productKey string) *devsim.Sim {
	t.Helper()
	return devsimtest.Answering(t, devsim.Config{URLs: []string{url}, ClientID: "dev-" + suffix(), ProductKey: productKey,
		Devices: 3, Failing: []string{"T0002"}, Silent: []string{"T0003"}})
}

func TestDownlink(t *testing.T) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	type step struct {
		device, service string
		inputs          map[string]any
		want            command.Status
		code            int
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"set points acknowledged", []step{{"T0001", command.SetPoints, map[string]any{"power_limit": 1500.0, "yaw_error": 0.0}, command.Acked, 200}}},
		{"service acknowledged", []step{{"T0001", "reboot", map[string]any{"delay": 5}, command.Acked, 200}}},
		{"device reports failure", []step{{"T0002", command.SetPoints, map[string]any{"power_limit": 100.0}, command.Failed, 500}}},
		{"silent device times out", []step{{"T0003", command.SetPoints, map[string]any{"power_limit": 100.0}, command.Timeout, 0}}},
		{"unknown device times out", []step{{"T0999", "reboot", nil, command.Timeout, 0}}},
	}
	for _, b := range brokers(t) {
		for _, version := range []int{5, 4} {
			t.Run(fmt.Sprintf("%s/v%d", b.name, version), func(t *testing.T) {
				pk := "pk" + suffix()
				sim := answeringDevices(t, b.url, pk)
				for _, tc := range cases {
					t.Run(tc.name, func(t *testing.T) {
						clock := command.NewManualClock(start)
						tr := command.New(command.Options{Clock: clock, Timeout: 30 * time.Second})
						defer tr.Close()
						dl, err := NewDownlink(DownlinkOptions{Tracker: tr, Client: ClientOptions{
							URLs: []string{b.url}, ClientID: "dl-" + suffix(), Version: version, CleanSession: true}})
						if err != nil {
							t.Fatal(err)
						}
						defer dl.Close()
						ctx, cancel := context.WithTimeout(context.Background(), waitFor)
						defer cancel()
						if err := dl.Start(ctx); err != nil {
							t.Fatal(err)
						}
						for _, st := range tc.steps {
							c, err := dl.Invoke(ctx, pk, st.device, st.service, st.inputs)
							if err != nil {
								t.Fatal(err)
							}
							if c.Status != command.Sent && !c.Status.Final() {
								t.Fatalf("after Send: status %s", c.Status)
							}
							if st.want == command.Timeout {
								clock.Advance(30 * time.Second)
							}
							got, err := tr.Wait(ctx, c.ID)
							if err != nil {
								t.Fatal(err)
							}
							if got.Status != st.want || got.Code != st.code {
								t.Fatalf("command %s: status %s code %d (%s), want %s code %d", got.ID, got.Status, got.Code, got.Reason, st.want, st.code)
							}
							var path []command.Status
							for _, tr := range tr.Audit(c.ID) {
								path = append(path, tr.To)
							}
							if want := []command.Status{command.Accepted, command.Sent, st.want}; !slices.Equal(path, want) {
								t.Errorf("audit %v, want %v", path, want)
							}
							if st.want == command.Acked && st.service == command.SetPoints {
								set := sim.SetPoints(st.device)
								for k, v := range st.inputs {
									if set[k] != v {
										t.Errorf("device %s: %s = %v, want %v", st.device, k, set[k], v)
									}
								}
							}
						}
					})
				}
			})
		}
	}
}

// TestDownlinkUnreachable: a command that cannot reach the broker fails.
func TestDownlinkUnreachable(t *testing.T) {
	px := enginetest.NewProxy(t, "127.0.0.1:1") // nothing listens there
	dl, err := NewDownlink(DownlinkOptions{SendTimeout: 50 * time.Millisecond,
		Client: ClientOptions{URLs: []string{"tcp://" + px.Addr()}, ClientID: "dl-" + suffix(), ReconnectMin: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer dl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := dl.Start(ctx); err == nil {
		t.Fatal("Start succeeded without a broker")
	}
	c, err := dl.SetPoints(context.Background(), "pk", "T0001", map[string]any{"x": 1})
	if err == nil || c.Status != command.Failed {
		t.Fatalf("status %s, err %v; want failed", c.Status, err)
	}
}

func TestSinkSendsCommands(t *testing.T) {
	b := embedded(t)
	pk := "pk" + suffix()
	sim := answeringDevices(t, b.url, pk)
	in := engine.MustSchema([]engine.Field{
		{Name: "time", Type: engine.Timestamp}, {Name: "asset", Type: engine.String}, {Name: "limit_kw", Type: engine.Float64},
	}, "time", "asset")
	doc := fmt.Sprintf("urls: [%s]\nproduct_key: %s\nparams: {power_limit: limit_kw}\n", b.url, pk)
	var node yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &node); err != nil {
		t.Fatal(err)
	}
	cfg, errs := SinkSpec.Parse("test.yaml", &node)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	counters := engine.NewCounters()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	s, err := newSink(cfg, in, engine.BuildContext{Pipeline: "p", Name: "cmd" + suffix(), Counters: counters, Mem: mem})
	if err != nil {
		t.Fatal(err)
	}
	rec := enginetest.Record(mem, in,
		enginetest.Row{int64(1), "T0001", 1200.0},
		enginetest.Row{int64(2), "T0002", 800.0},
		enginetest.Row{int64(3), nil, 800.0},
	)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := s.Write(ctx, engine.Batch{Rec: rec}); err != nil {
		t.Fatal(err)
	}
	sink := s.(*Sink)
	statuses := map[string]command.Status{}
	for _, c := range sink.Tracker().List(nil) {
		got, err := sink.Tracker().Wait(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		statuses[got.Asset] = got.Status
		if got.Origin == "" || got.Inputs["power_limit"] == nil {
			t.Errorf("command %+v lacks its origin or inputs", got)
		}
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if want := map[string]command.Status{"T0001": command.Acked, "T0002": command.Failed}; !maps.Equal(statuses, want) {
		t.Errorf("statuses %v, want %v", statuses, want)
	}
	if got := sim.SetPoints("T0001")["power_limit"]; got != 1200 {
		t.Errorf("T0001 power_limit = %v, want 1200", got)
	}
	snap := counters.Snapshot()
	for name, want := range map[string]int64{"commands_sent": 2, "commands_acked": 1, "commands_failed": 1, "rows_skipped": 1} {
		if snap[name] != want {
			t.Errorf("%s = %d, want %d", name, snap[name], want)
		}
	}
}

// TestSinkBrokerUnreachable: without a broker, the commands of a batch
// fail after one send_timeout, not one each.
func TestSinkBrokerUnreachable(t *testing.T) {
	px := enginetest.NewProxy(t, "127.0.0.1:1") // nothing listens there
	in := engine.MustSchema([]engine.Field{
		{Name: "time", Type: engine.Timestamp}, {Name: "asset", Type: engine.String}, {Name: "limit_kw", Type: engine.Float64},
	}, "time", "asset")
	var node yaml.Node
	if err := yaml.Unmarshal([]byte("urls: ["+"tcp://"+px.Addr()+"]\nproduct_key: pk\nsend_timeout: 50ms\nreconnect_min: 10ms\n"), &node); err != nil {
		t.Fatal(err)
	}
	cfg, errs := SinkSpec.Parse("test.yaml", &node)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	counters := engine.NewCounters()
	s, err := newSink(cfg, in, engine.BuildContext{Pipeline: "p", Name: "cmd" + suffix(), Counters: counters})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	rec := enginetest.Record(memory.DefaultAllocator, in,
		enginetest.Row{int64(1), "T0001", 1.0}, enginetest.Row{int64(2), "T0002", 2.0}, enginetest.Row{int64(3), "T0003", 3.0})
	began := time.Now()
	if err := s.Write(context.Background(), engine.Batch{Rec: rec}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("the write took %v", d)
	}
	for _, c := range s.(*Sink).Tracker().List(nil) {
		if c.Status != command.Failed {
			t.Errorf("command to %s: %s, want failed", c.Asset, c.Status)
		}
	}
	if got := counters.Snapshot()["commands_failed"]; got != 3 {
		t.Errorf("commands_failed = %d, want 3", got)
	}
}

// startDownlink fails t if the downlink (a Downlink or a JSONDownlink)
// could not be made (err), starts it and closes it when t ends; the
// context it returns is bounded by waitFor.
func startDownlink(t *testing.T, dl interface {
	Start(context.Context) error
	Close() error
}, err error) context.Context {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dl.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	if err := dl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return ctx
}

// TestDownlinkBadKeys: a product, device or service that would change the
// structure of the command's topic is refused at once, before anything is
// published.
func TestDownlinkBadKeys(t *testing.T) {
	b := embedded(t)
	pk := "pk" + suffix()
	all := newSubscriber(t, b.url, "/sys/"+pk+"/#")
	dl, err := NewDownlink(DownlinkOptions{SendTimeout: time.Minute,
		Client: ClientOptions{URLs: []string{b.url}, ClientID: "dl-" + suffix(), CleanSession: true}})
	ctx := startDownlink(t, dl, err)
	for _, c := range []command.Command{
		{Product: pk, Asset: "T1/thing/service/reboot", Service: "x"},
		{Product: pk, Asset: "T+", Service: "reboot"},
		{Product: pk, Asset: "#", Service: "reboot"},
		{Product: pk + "/x", Asset: "T1", Service: "reboot"},
		{Product: pk, Asset: strings.Repeat("k", 200), Service: "reboot"},
		{Product: pk, Asset: "T1", Service: "re#boot"},
		{Product: pk, Asset: "T1", Service: "a/b"},
	} {
		got, err := dl.Send(ctx, c)
		if !errors.Is(err, ErrBadTopicKey) || got.Status != command.Rejected {
			t.Errorf("Send(%s/%s/%s): status %s, err %v; want rejected with ErrBadTopicKey", c.Product, c.Asset, c.Service, got.Status, err)
		}
	}
	// The next good command is the first message on the devices' topics.
	good, err := dl.Invoke(ctx, pk, "T1", "reboot", nil)
	if err != nil {
		t.Fatal(err)
	}
	if m := all.next(t); m.topic != codec.ServiceTopicFor(pk, "T1", "reboot") || messageID(m.payload) != good.ID {
		t.Errorf("first command published: %s %s", m.topic, m.payload)
	}
}

// TestDownlinkForgedReplies: only a reply on the topic of the command's
// own device and service moves the command on; forged replies are
// counted as unmatched.
func TestDownlinkForgedReplies(t *testing.T) {
	b := embedded(t)
	pk := "pk" + suffix()
	var unmatched atomic.Int64
	dl, err := NewDownlink(DownlinkOptions{Unmatched: &unmatched,
		Client: ClientOptions{URLs: []string{b.url}, ClientID: "dl-" + suffix(), CleanSession: true}})
	ctx := startDownlink(t, dl, err)
	c, err := dl.Invoke(ctx, pk, "T1", "reboot", nil)
	if err != nil {
		t.Fatal(err)
	}
	pub := newPublisher(t, b.url, 5)
	reply := func(id string, code int) []byte { return codec.AppendReply(nil, id, code, "") }
	pub.publish(codec.ReplyTopicFor(codec.ServiceTopicFor(pk, "T2", "reboot")), reply(c.ID, 200))              // another device
	pub.publish(codec.ReplyTopicFor(codec.ServiceTopicFor("other", "T1", "reboot")), reply(c.ID, 200))         // another product
	pub.publish(codec.ReplyTopicFor(codec.ServiceTopicFor(pk, "T1", command.SetPoints)), reply(c.ID, 200))     // another service
	pub.publish(codec.ReplyTopicFor(codec.ServiceTopicFor(pk, "T1", "reboot")), reply("no-such-command", 200)) // unknown command
	pub.publish(codec.ReplyTopicFor(codec.ServiceTopicFor(pk, "T1", "reboot")), reply(c.ID, 500))              // the device
	got, err := dl.Tracker().Wait(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != command.Failed || got.Code != 500 {
		t.Errorf("command %s code %d, want failed by the device's 500", got.Status, got.Code)
	}
	if n := unmatched.Load(); n != 4 || dl.Unmatched() != 4 {
		t.Errorf("unmatched %d, want 4", n)
	}
	if st := dl.Tracker().ReplyStats(); st.Misdirected != 3 || st.Unknown != 1 {
		t.Errorf("tracker reply stats %+v, want 3 misdirected and 1 unknown", st)
	}
}
