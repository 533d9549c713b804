package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/connectors/devsim"
	"github.com/sluice-edge/sluice/connectors/devsim/devsimtest"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/control"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

func TestTopicTemplate(t *testing.T) {
	cases := []struct {
		tmpl, want string // want: an error's text, or "" for a valid template
		topic      string // Topic("pk", "T1", "power_limit")
		filter     string
	}{
		{"plant/{asset}/cmd", "", "plant/T1/cmd", "plant/+/cmd"},
		{"{product}/{asset}/set/{point}", "", "pk/T1/set/power_limit", "+/+/set/+"},
		{"/dev/{asset}", "", "/dev/T1", "/dev/+"},
		{"", "empty", "", ""},
		{strings.Repeat("a/", 200) + "{asset}", "exceeds", "", ""},
		{"plant/+/{asset}", "wildcard", "", ""},
		{"plant/{asset}/#", "wildcard", "", ""},
		{"$SYS/{asset}", "starts with $", "", ""},
		{"plant/cmd", "does not name the device", "", ""},
		{"plant/{asset}/{asset}", "twice", "", ""},
		{"plant/dev-{asset}", "whole segments", "", ""},
		{"plant/{device}/cmd", "whole segments", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.tmpl, func(t *testing.T) {
			tt, err := ParseTopicTemplate(tc.tmpl)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := tt.Topic("pk", "T1", "power_limit"); got != tc.topic {
				t.Errorf("Topic = %q, want %q", got, tc.topic)
			}
			if got := tt.Filter(); got != tc.filter {
				t.Errorf("Filter = %q, want %q", got, tc.filter)
			}
			p, a, pt, ok := tt.Match(tc.topic)
			if !ok || a != "T1" || tt.Has(PlaceholderProduct) && p != "pk" || tt.Has(PlaceholderPoint) && pt != "power_limit" {
				t.Errorf("Match(%q) = %q %q %q %v", tc.topic, p, a, pt, ok)
			}
			for _, other := range []string{tc.topic + "/x", "x/" + tc.topic, strings.Replace(tc.topic, "T1", "", 1)} {
				if _, _, _, ok := tt.Match(other); ok {
					t.Errorf("Match(%q) matched", other)
				}
			}
		})
	}
	if _, err := NewJSONDownlink(JSONDownlinkOptions{Topic: "plant/{asset}/cmd", ReplyTopic: "plant/{asset}/{point}"}); err == nil {
		t.Error("a reply topic that matches the command topic was accepted")
	}
}

// jsonDevice answers the commands of the JSON command topic as told.
type jsonDevice struct {
	sub *subscriber
	pub *publisher
}

// command returns the next command the device receives.
func (d *jsonDevice) command(t *testing.T) (topic, id, point string, value any) {
	t.Helper()
	m := d.sub.next(t)
	var body struct {
		ID    string `json:"id"`
		Point string `json:"point"`
		Value any    `json:"value"`
	}
	if err := json.Unmarshal(m.payload, &body); err != nil {
		t.Fatalf("command %s: %v", m.payload, err)
	}
	return m.topic, body.ID, body.Point, body.Value
}

// TestJSONDownlink: set-points over a generic JSON command topic; replies,
// failures, silence (timeout), late replies and hostile replies.
func TestJSONDownlink(t *testing.T) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, b := range brokers(t) {
		t.Run(b.name, func(t *testing.T) {
			root := "plant" + suffix()
			dev := &jsonDevice{sub: newSubscriber(t, b.url, root+"/+/set/+"), pub: newPublisher(t, b.url, 5)}
			clock := command.NewManualClock(start)
			tr := command.New(command.Options{Clock: clock, Timeout: 30 * time.Second})
			defer tr.Close()
			var unmatched atomic.Int64
			dl, err := NewJSONDownlink(JSONDownlinkOptions{Tracker: tr, Unmatched: &unmatched,
				Topic: root + "/{asset}/set/{point}", ReplyTopic: root + "/{asset}/reply",
				Client: ClientOptions{URLs: []string{b.url}, ClientID: "jdl-" + suffix(), CleanSession: true}})
			if err != nil {
				t.Fatal(err)
			}
			defer dl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			if err := dl.Start(ctx); err != nil {
				t.Fatal(err)
			}
			send := func(asset string, value any) command.Command {
				t.Helper()
				c, err := dl.Send(ctx, command.Command{Asset: asset, Service: command.SetPoints, Inputs: map[string]any{"power_limit": value}, Origin: "test"})
				if err != nil || c.Status != command.Sent {
					t.Fatalf("send: %s %v", c.Status, err)
				}
				topic, id, point, v := dev.command(t)
				if topic != root+"/"+asset+"/set/power_limit" || id != c.ID || point != "power_limit" || v != value {
					t.Fatalf("device got %s %s %s %v for %+v", topic, id, point, v, c)
				}
				return c
			}
			reply := func(asset, body string) { dev.pub.publish(root+"/"+asset+"/reply", []byte(body)) }
			wait := func(id string) command.Command {
				t.Helper()
				got, err := tr.Wait(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				return got
			}

			// Acknowledged, with a numeric id and data.
			c := send("T1", 1500.0)
			reply("T1", `{"id":"`+c.ID+`","code":200,"message":"ok","data":{"applied":1500}}`)
			if got := wait(c.ID); got.Status != command.Acked || got.Code != 200 || string(got.Output) != `{"applied":1500}` {
				t.Errorf("acked command: %+v", got)
			}
			// The device's failure.
			c = send("T2", true)
			reply("T2", `{"id":"`+c.ID+`","code":503,"msg":"interlock"}`)
			if got := wait(c.ID); got.Status != command.Failed || got.Code != 503 || got.Reason != "interlock" {
				t.Errorf("failed command: %+v", got)
			}
			// Hostile replies first, then the real one.
			c = send("T3", "auto")
			before := unmatched.Load()
			for _, body := range []string{
				`not json`, `{"id":`, `{"code":200}`, `{"id":{"x":1},"code":200}`, `{"id":"` + c.ID + `"}`,
				`{"id":"` + c.ID + `","code":"200"}`, `{"id":"` + strings.Repeat("x", 100_000) + `","code":200}`,
				strings.Repeat("[", 100_000), `{"id":"no-such-command","code":200}`, `[]`, `null`, `""`,
			} {
				reply("T3", body)
			}
			reply("T9", `{"id":"`+c.ID+`","code":200}`) // another device
			reply("T3", `{"id":"`+c.ID+`","code":200}`)
			if got := wait(c.ID); got.Status != command.Acked {
				t.Errorf("after hostile replies: %+v", got)
			}
			if n := unmatched.Load() - before; n != 13 {
				t.Errorf("%d unmatched replies, want 13", n)
			}
			// Silence: timeout; the late reply is audited and changes nothing.
			c = send("T4", 42.0)
			clock.Advance(30 * time.Second)
			if got := wait(c.ID); got.Status != command.Timeout {
				t.Errorf("silent device: %+v", got)
			}
			reply("T4", `{"id":"`+c.ID+`","code":200}`)
			deadline := time.Now().Add(waitFor)
			for !slices.ContainsFunc(tr.Audit(c.ID), func(x command.Transition) bool { return strings.Contains(x.Reason, "late reply") }) {
				if time.Now().After(deadline) {
					t.Fatalf("late reply not audited: %+v", tr.Audit(c.ID))
				}
				time.Sleep(10 * time.Millisecond)
			}
			if got, _ := tr.Get(c.ID); got.Status != command.Timeout {
				t.Errorf("after a late reply: %s", got.Status)
			}
		})
	}
}

// TestJSONDownlinkRefuses: commands the topic cannot carry are rejected
// before anything is published.
func TestJSONDownlinkRefuses(t *testing.T) {
	b := embedded(t)
	root := "plant" + suffix()
	all := newSubscriber(t, b.url, root+"/#")
	dl, err := NewJSONDownlink(JSONDownlinkOptions{Topic: root + "/{product}/{asset}/cmd",
		Client: ClientOptions{URLs: []string{b.url}, ClientID: "jdl-" + suffix(), CleanSession: true}})
	ctx := startDownlink(t, dl, err)
	for _, c := range []command.Command{
		{Product: "pk", Asset: "T1", Service: command.SetPoints, Inputs: map[string]any{"a": 1, "b": 2}},
		{Product: "pk", Asset: "T1", Service: command.SetPoints},
		{Product: "pk", Asset: "T1", Service: "reboot", Inputs: map[string]any{"a": 1}},
		{Product: "pk", Asset: "T1/x", Inputs: map[string]any{"a": 1}},
		{Product: "p#", Asset: "T1", Inputs: map[string]any{"a": 1}},
		{Product: "", Asset: "T1", Inputs: map[string]any{"a": 1}},
		{Product: "pk", Asset: "T1", Inputs: map[string]any{"a": math.NaN()}},
	} {
		got, err := dl.Send(ctx, c)
		if err == nil || got.Status != command.Rejected {
			t.Errorf("%+v: status %s, err %v; want rejected", c, got.Status, err)
		}
	}
	if err := dl.Deliver(ctx, command.Command{ID: "x", Asset: "T1", Service: command.SetPoints, Inputs: map[string]any{"a": 1, "b": 2}}); !errors.Is(err, ErrNotOnePoint) {
		t.Errorf("Deliver of two points: %v", err)
	}
	good, err := dl.Send(ctx, command.Command{Product: "pk", Asset: "T1", Inputs: map[string]any{"a": 1}})
	if err != nil {
		t.Fatal(err)
	}
	if m := all.next(t); m.topic != root+"/pk/T1/cmd" || string(m.payload) != fmt.Sprintf(`{"id":%q,"point":"a","value":1}`, good.ID) {
		t.Errorf("first message: %s %s", m.topic, m.payload)
	}
}

func BenchmarkJSONCommandPayload(b *testing.B) {
	d, err := NewJSONDownlink(JSONDownlinkOptions{Topic: "plant/{asset}/set/{point}", Client: ClientOptions{URLs: []string{"tcp://127.0.0.1:1"}, ClientID: "bench"}})
	if err != nil {
		b.Fatal(err)
	}
	c := command.Command{ID: "c-1", Asset: "T0001", Service: command.SetPoints, Inputs: map[string]any{"power_limit": 1500.0}}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := d.payload(&c); err != nil {
			b.Fatal(err)
		}
	}
}

func parseSink(t *testing.T, doc string, in *engine.Schema, bc engine.BuildContext) (engine.Sink, error) {
	t.Helper()
	var node yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &node); err != nil {
		t.Fatal(err)
	}
	cfg, errs := SinkSpec.Parse("site.yaml", &node)
	if len(errs) > 0 {
		return nil, errs
	}
	return newSink(cfg, in, bc)
}

var limitRows = engine.MustSchema([]engine.Field{
	{Name: "time", Type: engine.Timestamp}, {Name: "asset", Type: engine.String},
	{Name: "limit_kw", Type: engine.Float64}, {Name: "mode", Type: engine.String},
}, "time", "asset")

func TestSinkCommandTopicSpec(t *testing.T) {
	cases := []struct{ doc, want string }{
		{"command_topic: plant/{asset}/cmd\n", ""},
		{"command_topic: plant/{product}/{asset}/cmd\nproduct_key: pk\n", ""},
		{"command_topic: plant/{product}/{asset}/cmd\n", "set product_key or product_key_column"},
		{"command_topic: plant/{asset}/cmd\nreply_topic: plant/{asset}/ack\n", ""},
		{"command_topic: plant/cmd\n", "does not name the device"},
		{"command_topic: plant/+/cmd/{asset}\n", "wildcard"},
		{"command_topic: plant/{asset}/cmd\nreply_topic: plant/{asset}/{point}\n", "matches the command topic"},
		{"command_topic: plant/{asset}/cmd\nservice: reboot\n", "set-points only"},
		{"reply_topic: plant/{asset}/ack\nproduct_key: pk\n", "goes with command_topic"},
	}
	for _, tc := range cases {
		t.Run(tc.doc, func(t *testing.T) {
			s, err := parseSink(t, "urls: [tcp://127.0.0.1:1883]\n"+tc.doc, limitRows, engine.BuildContext{Pipeline: "p", Name: "cmd", DryRun: true})
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if s != nil {
				_ = s.Close(context.Background())
			}
		})
	}
}

// TestSinkCommandTopic: the mqtt sink with a command_topic sends one
// command per non-null point of each row and tracks the replies.
func TestSinkCommandTopic(t *testing.T) {
	b := embedded(t)
	root := "plant" + suffix()
	dev := &jsonDevice{sub: newSubscriber(t, b.url, root+"/+/cmd"), pub: newPublisher(t, b.url, 5)}
	counters := engine.NewCounters()
	mem := checkedMem(t)
	s, err := parseSink(t, fmt.Sprintf("urls: [%s]\ncommand_topic: %s/{asset}/cmd\nparams: {power_limit: limit_kw, mode: mode}\n", b.url, root),
		limitRows, engine.BuildContext{Pipeline: "p", Name: "cmd" + suffix(), Counters: counters, Mem: mem})
	if err != nil {
		t.Fatal(err)
	}
	rec := enginetest.Record(mem, limitRows,
		enginetest.Row{int64(1), "T1", 1200.0, "eco"},
		enginetest.Row{int64(2), "T2", 800.0, nil},
	)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	go func() { // the devices acknowledge every command
		for range 3 {
			m, ok := <-dev.sub.msgs
			if !ok {
				return
			}
			var body struct{ ID string }
			_ = json.Unmarshal(m.payload, &body)
			_ = dev.pub.tryPublish(m.topic+"/reply", []byte(`{"id":"`+body.ID+`","code":200}`))
		}
	}()
	if err := s.Write(ctx, engine.Batch{Rec: rec}); err != nil {
		t.Fatal(err)
	}
	sink := s.(*Sink)
	got := map[string]command.Status{}
	for _, c := range sink.Tracker().List(nil) {
		done, err := sink.Tracker().Wait(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range done.Inputs {
			got[done.Asset+"."+k+"="+fmt.Sprint(v)] = done.Status
		}
	}
	want := map[string]command.Status{"T1.power_limit=1200": command.Acked, "T1.mode=eco": command.Acked, "T2.power_limit=800": command.Acked}
	if !maps.Equal(got, want) {
		t.Errorf("commands %v, want %v", got, want)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := counters.Snapshot()["commands_acked"]; n != 3 {
		t.Errorf("commands_acked = %d", n)
	}
}

// TestJSONDownlinkAsArbiterTransport: the arbiter delivers a set-point
// through the JSON command topic to a simulated device that is not an
// EnOS device; its reply acks the command in the arbiter's records.
func TestJSONDownlinkAsArbiterTransport(t *testing.T) {
	b := embedded(t)
	pk := "pk" + suffix()
	topic := "plc/" + pk + "/{asset}/set/{point}"
	sim := devsimtest.Answering(t, devsim.Config{URLs: []string{b.url}, ClientID: "dev-" + suffix(), ProductKey: pk, Devices: 2, CommandTopic: topic})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	late := &control.LateTransport{}
	a, err := control.Open(control.Options{Dir: t.TempDir(), Transport: late, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	dl, err := NewJSONDownlink(JSONDownlinkOptions{Tracker: a.Tracker(), Topic: topic,
		Client: ClientOptions{URLs: []string{b.url}, ClientID: "jdl-" + suffix(), CleanSession: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer dl.Close()
	late.Set(dl)
	rec, err := a.Submit(ctx, control.Command{Asset: "T0002", Inputs: map[string]any{"power_limit": 640.0}, Origin: "local:hmi"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := a.Wait(ctx, rec.ID)
	if err != nil || got.Status != command.Acked {
		t.Fatalf("command %s (%s): %v", got.Status, got.Reason, err)
	}
	if v := sim.SetPoints("T0002")["power_limit"]; v != 640 {
		t.Errorf("device power_limit = %v", v)
	}
}
