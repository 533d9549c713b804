package devsim_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/connectors/devsim"
	"github.com/sluice-edge/sluice/connectors/mqtt"
	"github.com/sluice-edge/sluice/connectors/sim"
	"github.com/sluice-edge/sluice/connectors/windfarm"
	"github.com/sluice-edge/sluice/engine/command"
)

// post is one decoded measure-point post.
type post struct {
	device string
	time   int64
	values [windfarm.NumPoints]float64
}

func decodePosts(t *testing.T, topics []string, bodies [][]byte) []post {
	t.Helper()
	var out []post
	for i, b := range bodies {
		var m struct {
			Params struct {
				Measurepoints map[string]json.RawMessage `json:"measurepoints"`
				Time          int64                      `json:"time"`
			} `json:"params"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		p := post{device: strings.Split(topics[i], "/")[3], time: m.Params.Time}
		for k, name := range windfarm.Points {
			raw := m.Params.Measurepoints[name]
			if k == windfarm.Power {
				var q struct{ Value float64 }
				if err := json.Unmarshal(raw, &q); err != nil {
					t.Fatalf("power %s: %v", raw, err)
				}
				p.values[k] = q.Value
				continue
			}
			if err := json.Unmarshal(raw, &p.values[k]); err != nil {
				t.Fatalf("%s %s: %v", name, raw, err)
			}
		}
		out = append(out, p)
	}
	return out
}

// TestPowerLimitCapsOutput: a power set-point, sent through the MQTT
// downlink as a measure-point setting or as the setPowerLimit service, or
// through the generic JSON command topic,
// caps the simulated turbine's output in its next measure points; the
// readings are exactly those of the farm model (and of the sim source's
// farm) given the same limit at the same reading.
func TestPowerLimitCapsOutput(t *testing.T) {
	const limit = 150.0
	cases := []struct {
		name    string
		service string
		inputs  map[string]any
		generic bool // through the generic JSON command topic
	}{
		{"measurepoint.set", command.SetPoints, map[string]any{windfarm.PowerLimitPoint: limit}, false},
		{"service invocation", devsim.PowerLimitService, map[string]any{windfarm.PowerLimitPoint: limit}, false},
		{"generic JSON command topic", command.SetPoints, map[string]any{windfarm.PowerLimitPoint: limit}, true},
	}
	for n, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			url := broker(t)
			pk := fmt.Sprintf("cap%d", n)
			start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
			cfg := devsim.Config{URLs: []string{url}, ProductKey: pk, Devices: 2, Payloads: 60, Seed: 11, Start: start}
			if tc.generic {
				cfg.CommandTopic = "plc/" + pk + "/{asset}/set/{point}"
			}
			rec := record(t, url, "/sys/"+pk+"/+/thing/measurepoint/post")
			s, err := devsim.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			stop, err := s.Answer(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer stop()
			if _, err := s.Run(ctx); err != nil { // 30 readings per turbine, uncapped
				t.Fatal(err)
			}
			rec.wait(t, 60)

			client := mqtt.ClientOptions{URLs: []string{url}, ClientID: "dl-" + pk, CleanSession: true}
			var dl interface {
				Start(context.Context) error
				Send(context.Context, command.Command) (command.Command, error)
				Tracker() *command.Tracker
				Close() error
			}
			if tc.generic {
				dl, err = mqtt.NewJSONDownlink(mqtt.JSONDownlinkOptions{Client: client, Topic: cfg.CommandTopic})
			} else {
				dl, err = mqtt.NewDownlink(mqtt.DownlinkOptions{Client: client})
			}
			if err != nil {
				t.Fatal(err)
			}
			defer dl.Close()
			if err := dl.Start(ctx); err != nil {
				t.Fatal(err)
			}
			c, err := dl.Send(ctx, command.Command{Product: pk, Asset: "T0001", Service: tc.service, Inputs: tc.inputs})
			if err != nil {
				t.Fatal(err)
			}
			if c, err = dl.Tracker().Wait(ctx, c.ID); err != nil || c.Status != command.Acked {
				t.Fatalf("command %s: %v", c.Status, err)
			}
			if got := s.SetPoints("T0001")[windfarm.PowerLimitPoint]; got != limit {
				t.Errorf("SetPoints power_limit = %v, want %v", got, limit)
			}
			if _, err := s.Run(ctx); err != nil { // 30 more readings per turbine
				t.Fatal(err)
			}
			topics, bodies := rec.wait(t, 60) // all 120 posts
			posts := decodePosts(t, topics, bodies)

			// The same farm, model and sim source alike, with the limit set
			// after the 30th reading of T0001.
			model := windfarm.New(windfarm.Config{Turbines: 2, Start: start, Seed: 11})
			farm := sim.NewFarm(sim.Config{Turbines: 2, Start: start, Seed: 11})
			var want, viaSim windfarm.Reading
			seen := map[string]int{}
			above := 0
			for _, p := range posts {
				i := map[string]int{"T0001": 0, "T0002": 1}[p.device]
				if p.device == "T0001" && seen[p.device] == 30 {
					model.SetPowerLimit(0, limit)
					farm.SetPowerLimit(0, limit)
				}
				seen[p.device]++
				model.Next(i, &want)
				farm.Next(i, &viaSim)
				if p.values != want.Values || p.time != want.Time || viaSim.Values != want.Values {
					t.Fatalf("%s reading %d:\n device %v\n model  %v\n sim    %v", p.device, seen[p.device], p.values, want.Values, viaSim.Values)
				}
				capped := p.device == "T0001" && seen[p.device] > 30
				if capped && p.values[windfarm.Power] > limit {
					t.Errorf("%s reading %d: power %v above the limit %v", p.device, seen[p.device], p.values[windfarm.Power], limit)
				}
				if !capped && p.values[windfarm.Power] > limit {
					above++
				}
			}
			if seen["T0001"] != 60 || seen["T0002"] != 60 {
				t.Errorf("readings per device %v", seen)
			}
			if above < 10 {
				t.Errorf("only %d uncapped readings above %v kW: the test proves nothing", above, limit)
			}
		})
	}
}
