package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/control"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

// TestControlRouter: one arbiter reaches EnOS devices over the EnOS
// downlink and other devices over a generic JSON command topic, chosen by
// a control.Router from their asset or product, with the same rules for
// both: a device answering on the reply topic acks its command, a silent
// one times it out (its late reply audited and ignored), a lease blocks
// others' commands; commands the JSON topic cannot carry are refused when
// submitted.
func TestControlRouter(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, b := range brokers(t) {
		t.Run(b.name, func(t *testing.T) {
			pk, jpk, root := "pk"+suffix(), "jpk"+suffix(), "plant"+suffix()
			sim := answeringDevices(t, b.url, pk)
			dev := &jsonDevice{sub: newSubscriber(t, b.url, root+"/+/cmd"), pub: newPublisher(t, b.url, 5)}

			clock := command.NewManualClock(start)
			late := &control.LateTransport{}
			a, err := control.Open(control.Options{Dir: t.TempDir(), Transport: late, Clock: clock, Timeout: 30 * time.Second, NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			enos, err := NewDownlink(DownlinkOptions{Tracker: a.Tracker(), SendTimeout: 5 * time.Second,
				Client: ClientOptions{URLs: []string{b.url}, ClientID: "ctl-" + suffix(), CleanSession: true}})
			if err != nil {
				t.Fatal(err)
			}
			jdl, err := NewJSONDownlink(JSONDownlinkOptions{Tracker: a.Tracker(), Topic: root + "/{asset}/cmd", ReplyTopic: root + "/{asset}/reply",
				SendTimeout: 5 * time.Second, Client: ClientOptions{URLs: []string{b.url}, ClientID: "ctlj-" + suffix(), CleanSession: true}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { a.Close(); enos.Close(); jdl.Close() })
			router, err := control.NewRouter(enos, control.Route{Name: "json", Assets: []string{"P1", "P2", "P3"}, Products: []string{jpk}, Transport: jdl})
			if err != nil {
				t.Fatal(err)
			}
			late.Set(router)
			ctx, cancel := context.WithTimeout(context.Background(), 2*waitFor)
			defer cancel()
			if _, err := a.TakeLease(ctx, control.LeaseRequest{Asset: "P3", Holder: "hmi-1", Origin: "local:hmi", Class: control.ClassSafety, For: time.Hour}); err != nil {
				t.Fatal(err)
			}

			const (
				ack    = "ack"    // the JSON device acknowledges
				silent = "silent" // the JSON device never answers in time
				enosOK = "enos"   // an EnOS device (devsim) answers
				none   = "none"   // nothing is delivered
			)
			cases := []struct {
				name    string
				c       control.Command
				device  string
				want    command.Status
				wantErr error
				reason  string
			}{
				{"JSON device by asset acks", control.Command{Asset: "P1", Origin: "cloud", Inputs: map[string]any{"limit": 5.0}}, ack, command.Acked, nil, ""},
				{"JSON device by product acks", control.Command{Product: jpk, Asset: "X9", Origin: "rule:p.s", Inputs: map[string]any{"mode": "eco"}}, ack, command.Acked, nil, ""},
				{"EnOS device stays on the EnOS downlink", control.Command{Product: pk, Asset: "T0001", Origin: "cloud", Inputs: map[string]any{"routed": 3.0}}, enosOK, command.Acked, nil, ""},
				{"silent JSON device times out", control.Command{Asset: "P2", Origin: "cloud", Inputs: map[string]any{"limit": 7.0}}, silent, command.Timeout, nil, ""},
				{"lease blocks a JSON device's command", control.Command{Asset: "P3", Origin: "cloud", Inputs: map[string]any{"limit": 1.0}}, none, command.Rejected, control.ErrLeased, "leased by hmi-1"},
				{"two points refused for the JSON topic", control.Command{Asset: "P1", Origin: "cloud", Inputs: map[string]any{"a": 1.0, "b": 2.0}}, none, "", control.ErrInvalid, ""},
				{"a service refused for the JSON topic", control.Command{Asset: "P1", Origin: "cloud", Service: "reboot"}, none, "", control.ErrInvalid, ""},
				{"EnOS device without a product refused", control.Command{Asset: "T0001", Origin: "cloud", Inputs: map[string]any{"x": 1.0}}, none, "", control.ErrInvalid, ""},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					rec, err := a.Submit(ctx, tc.c)
					if tc.wantErr != nil {
						if !errors.Is(err, tc.wantErr) || rec.Status != tc.want || !strings.Contains(rec.Reason, tc.reason) {
							t.Fatalf("%s %q %v, want %s %v", rec.Status, rec.Reason, err, tc.want, tc.wantErr)
						}
						return
					}
					if err != nil {
						t.Fatal(err)
					}
					var topic string
					var body struct {
						ID    string `json:"id"`
						Point string `json:"point"`
						Value any    `json:"value"`
					}
					if tc.device == ack || tc.device == silent {
						m := dev.sub.next(t)
						topic = m.topic
						if err := json.Unmarshal(m.payload, &body); err != nil || body.ID != rec.ID || topic != root+"/"+tc.c.Asset+"/cmd" {
							t.Fatalf("the device got %s %s for %s", topic, m.payload, rec.ID)
						}
						for k, v := range tc.c.Inputs {
							if body.Point != k || body.Value != v {
								t.Fatalf("the device got %s=%v, want %s=%v", body.Point, body.Value, k, v)
							}
						}
					}
					reply := func() {
						dev.pub.publish(root+"/"+tc.c.Asset+"/reply", []byte(`{"id":"`+rec.ID+`","code":200}`))
					}
					switch tc.device {
					case ack:
						reply()
					case silent:
						waitSent(t, a, rec.ID)
						clock.Advance(30 * time.Second)
					}
					got := waitFinal(t, a, rec.ID)
					if got.Status != tc.want {
						t.Fatalf("status %s (%s), want %s", got.Status, got.Reason, tc.want)
					}
					switch tc.device {
					case enosOK:
						if v := sim.SetPoints(tc.c.Asset)["routed"]; v != 3 {
							t.Fatalf("the EnOS device holds routed=%v", v)
						}
					case ack:
						if got.Replied.IsZero() || got.Code != 200 {
							t.Fatalf("acked without the reply: %+v", got)
						}
					case silent:
						reply() // at last
						deadline := time.Now().Add(waitFor)
						for !auditHas(a, rec.ID, "late reply ignored") {
							if time.Now().After(deadline) {
								t.Fatalf("the late reply is not audited: %v", a.Audit(control.Filter{ID: rec.ID}))
							}
							time.Sleep(5 * time.Millisecond)
						}
						if got, _ := a.Get(rec.ID); got.Status != command.Timeout {
							t.Fatalf("status after the late reply: %s", got.Status)
						}
					}
				})
			}
			select {
			case m := <-dev.sub.msgs:
				t.Errorf("a refused command reached the JSON device: %s %s", m.topic, m.payload)
			default:
			}
		})
	}
}

// declared is the arbiter as the edge gives it to pipelines: it says which
// JSON command topics its control section declares.
type declared struct {
	*control.Arbiter
	topics map[string]string // command topic -> reply topic
}

func (d declared) JSONCommandTopic(cmd, reply string) bool {
	r, ok := d.topics[cmd]
	return ok && r == reply
}

// TestSinkCommandTopicControlled: with the edge's arbiter, an mqtt sink
// with a command_topic declared in the control section submits one
// command per point (origin rule:<pipeline>.<sink>) instead of sending
// them itself; the arbiter reaches the device over the declared topic and
// its replies ack them, and a lease holds them back like any other. A
// sink whose command_topic the control section does not declare is
// refused when built.
func TestSinkCommandTopicControlled(t *testing.T) {
	b := embedded(t)
	root := "plant" + suffix()
	cmdTopic, replyTopic := root+"/{asset}/cmd", root+"/{asset}/cmd/reply"
	late := &control.LateTransport{}
	a, err := control.Open(control.Options{Dir: t.TempDir(), Transport: late, Timeout: 30 * time.Second, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	enos, err := NewDownlink(DownlinkOptions{Tracker: a.Tracker(), Client: ClientOptions{URLs: []string{b.url}, ClientID: "ctl-" + suffix(), CleanSession: true}})
	if err != nil {
		t.Fatal(err)
	}
	jdl, err := NewJSONDownlink(JSONDownlinkOptions{Tracker: a.Tracker(), Topic: cmdTopic, ReplyTopic: replyTopic,
		Client: ClientOptions{URLs: []string{b.url}, ClientID: "ctlj-" + suffix(), CleanSession: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); enos.Close(); jdl.Close() })
	router, err := control.NewRouter(enos, control.Route{Name: "json", Assets: []string{"T1", "T2"}, Transport: jdl})
	if err != nil {
		t.Fatal(err)
	}
	late.Set(router)
	commands := declared{a, map[string]string{cmdTopic: replyTopic}}

	for _, tc := range []struct{ doc, want string }{
		{"command_topic: " + root + "/{asset}/other\n", "is not declared in the edge's control.json_devices"},
		{"command_topic: " + cmdTopic + "\nreply_topic: " + root + "/{asset}/ack\n", "is not declared"},
		{"command_topic: " + cmdTopic + "\n", ""},
	} {
		s, err := parseSink(t, "urls: [tcp://127.0.0.1:1883]\n"+tc.doc, limitRows,
			engine.BuildContext{Pipeline: "p", Name: "cmd", Commands: commands, DryRun: true})
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%q: error %v, want %q", tc.doc, err, tc.want)
		}
		if s != nil {
			_ = s.Close(context.Background())
		}
	}

	dev := &jsonDevice{sub: newSubscriber(t, b.url, root+"/+/cmd"), pub: newPublisher(t, b.url, 5)}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := a.TakeLease(ctx, control.LeaseRequest{Asset: "T2", Holder: "hmi-1", Origin: "local:hmi", Class: control.ClassOperator, For: time.Hour}); err != nil {
		t.Fatal(err)
	}
	go func() { // the device acknowledges every command
		for {
			var m message
			select {
			case m = <-dev.sub.msgs:
			case <-ctx.Done():
				return
			}
			var body struct{ ID string }
			_ = json.Unmarshal(m.payload, &body)
			_ = dev.pub.tryPublish(m.topic+"/reply", []byte(`{"id":"`+body.ID+`","code":200}`))
		}
	}()
	counters := engine.NewCounters()
	mem := checkedMem(t)
	s, err := parseSink(t, "urls: [tcp://127.0.0.1:1883]\ncommand_topic: "+cmdTopic+"\nparams: {power_limit: limit_kw, mode: mode}\n",
		limitRows, engine.BuildContext{Pipeline: "p", Name: "cmd", Counters: counters, Mem: mem, Commands: commands})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	rec := enginetest.Record(mem, limitRows,
		enginetest.Row{int64(1), "T1", 1200.0, "eco"},
		enginetest.Row{int64(2), "T2", 800.0, nil},
	)
	if err := s.Write(ctx, engine.Batch{Rec: rec}); err != nil {
		t.Fatal(err)
	}
	got := map[string]command.Status{}
	for _, r := range a.List(control.Filter{}) {
		done := waitFinal(t, a, r.ID)
		if done.Origin != "rule:p.cmd" {
			t.Errorf("origin %q", done.Origin)
		}
		for k, v := range done.Inputs {
			got[done.Asset+"."+k+"="+fmt.Sprint(v)] = done.Status
		}
	}
	want := map[string]command.Status{"T1.power_limit=1200": command.Acked, "T1.mode=eco": command.Acked, "T2.power_limit=800": command.Rejected}
	if !maps.Equal(got, want) {
		t.Errorf("commands %v, want %v", got, want)
	}
	if sink := s.(*Sink); len(sink.Tracker().List(nil)) != 0 {
		t.Error("the sink sent commands itself")
	}
	if c := counters.Snapshot(); c["commands_sent"] != 2 || c["commands_failed"] != 1 {
		t.Errorf("counters %v", c)
	}
}
