package bench

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	ChildMain() // the mqtt scenario starts this test binary as its child processes
	os.Exit(m.Run())
}

// TestMQTTScenario runs the mqtt scenario small, against the embedded
// broker in a process of its own: at QoS 1 every payload published at a
// low rate reaches the engine and the plain subscriber (and those still
// unacknowledged when the publishers stop may as well), every process
// reports the CPU it spent, and the lossless ceiling is that rate.
func TestMQTTScenario(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r, err := Run(ctx, Options{Turbines: 50, Scenarios: []string{MQTT},
		MQTT: MQTTOptions{Rates: []float64{500}, QoS: []int{0, 1}, Seconds: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	m := r.MQTT
	if m == nil || len(m.Rates) != 2 || len(r.Results) != 0 || m.Broker != "embedded" {
		t.Fatalf("mqtt result: %+v, %d results", m, len(r.Results))
	}
	for _, x := range m.Rates {
		if x.Published == 0 || x.Engine == 0 || x.Plain == 0 || x.EngineUS <= 0 || x.PlainUS <= 0 || x.BrokerUS <= 0 || x.EngineRSS <= 0 {
			t.Errorf("qos %d: %+v", x.QoS, x)
		}
		// Published counts the posts the broker acknowledged: those still
		// unacknowledged when the publishers stop may arrive as well.
		if x.QoS == 1 && (x.Engine < x.Published || x.Plain < x.Published) {
			t.Errorf("qos 1: published %d, the engine received %d, the plain subscriber %d", x.Published, x.Engine, x.Plain)
		}
	}
	if c := m.Ceiling["qos1"]; c != m.Rates[1].Offered || c <= 0 {
		t.Errorf("ceiling: %v", m.Ceiling)
	}
	var out bytes.Buffer
	if err := r.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "lossless ceiling at qos1: ") {
		t.Errorf("table:\n%s", out.String())
	}
}

// TestMQTTOptions: rates, QoS levels and connections out of range are
// refused.
func TestMQTTOptions(t *testing.T) {
	for _, o := range []MQTTOptions{{Rates: []float64{0}}, {Rates: []float64{-1}}, {QoS: []int{2}}, {Seconds: -time.Second}, {Connections: 65}} {
		if _, err := o.normalize(); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}
