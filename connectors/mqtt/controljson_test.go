package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/control"
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
