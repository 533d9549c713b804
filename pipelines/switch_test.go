package pipelines_test

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	natsgo "github.com/nats-io/nats.go"

	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/bundle"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
)

// switchRelease is a release of three pipelines, each windowing one feed
// into a buffered NATS sink: a simulated farm, devices posting to the
// machine's Mosquitto and devices posting to a broker embedded in the
// engine. Every pipeline also sends its raw rows, so that the test can
// count them.
const switchRelease = `
name: {{NAME}}
batch: {size: 64, linger: 5ms}
{{CHECKPOINT}}
sources:
  feed: {{SOURCE}}
steps:
  stats:
    type: window
    input: feed
    size: 10s
    lateness: 1h
    aggregates: {power: [sum]}
sinks:
  rows:
    type: nats
    input: feed
    url: {{URL}}
    subject: {{SUBJECT}}.rows
    stream: {{STREAM}}_ROWS
    encoding: json_batch
    batch_rows: {{BATCH}}
    duplicate_window: 30m
    forward: {retry_min: 20ms, retry_max: 200ms, publish_timeout: 2s, drain_timeout: 5s}
  windows:
    type: nats
    input: stats
    url: {{URL}}
    subject: {{SUBJECT}}.windows
    stream: {{STREAM}}_WIN
    encoding: json_batch
    duplicate_window: 30m
    forward: {retry_min: 20ms, retry_max: 200ms, publish_timeout: 2s, drain_timeout: 5s}
`

func mqttSourceYAML(url, product string, embedded string) string {
	broker := ""
	if embedded != "" {
		broker = fmt.Sprintf(", broker: {embedded: true, listen: %q, allow_anonymous: true}", embedded)
	}
	return fmt.Sprintf(`{type: mqtt, urls: [%q], client_id: %q, topics: ["/sys/%s/+/thing/measurepoint/post"], qos: 1, format: enos, schema: {key: asset, fields: {power: float64}}%s}`,
		url, "sw-"+product, product, broker)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// devices publishes n readings per device, one every event-time second,
// to broker under product, at QoS 1; power is the reading's index.
func publishDevices(t *testing.T, broker, product string, devices, n int, pace time.Duration) error {
	opts := paho.NewClientOptions().AddBroker(broker).SetClientID("pub-" + product).SetCleanSession(true).SetConnectRetry(true).SetConnectRetryInterval(50 * time.Millisecond).SetAutoReconnect(true)
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return fmt.Errorf("connect %s: %v", broker, tok.Error())
	}
	defer c.Disconnect(100)
	base := time.Now().Add(-time.Hour).Truncate(time.Minute).UnixMilli()
	for i := range n {
		for d := range devices {
			payload := fmt.Sprintf(`{"id":"%d","version":"1.0","method":"thing.measurepoint.post","params":{"measurepoints":{"power":%d},"time":%d}}`,
				i, i, base+int64(i)*1000)
			tok := c.Publish(fmt.Sprintf("/sys/%s/dev%d/thing/measurepoint/post", product, d), 1, false, payload)
			if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				return fmt.Errorf("publish: %v", tok.Error())
			}
		}
		time.Sleep(pace)
	}
	return nil
}

// streamRows reads a JetStream stream of json_batch messages and returns
// its rows by row identity (seq), the count of identities stored twice.
func streamRows(t *testing.T, js natsgo.JetStreamContext, stream string) (map[uint64]map[string]any, int) {
	t.Helper()
	info, err := js.StreamInfo(stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	rows := map[uint64]map[string]any{}
	twice := 0
	for q := info.State.FirstSeq; q <= info.State.LastSeq && info.State.Msgs > 0; q++ {
		m, err := js.GetMsg(stream, q)
		if err != nil {
			t.Fatal(err)
		}
		var p struct {
			Rows []map[string]any `json:"rows"`
		}
		if err := json.Unmarshal(m.Data, &p); err != nil {
			t.Fatal(err)
		}
		for _, r := range p.Rows {
			seq := uint64(r["seq"].(float64))
			if _, ok := rows[seq]; ok {
				twice++
			}
			rows[seq] = r
		}
	}
	return rows, twice
}

// TestSwitchUnderLoad applies a signed bundle through the edge agent
// (verify, unpack, dry-run, switch, persist) over a running release of
// three pipelines while a
// simulated farm and devices on two MQTT brokers (the machine's Mosquitto
// and one embedded in the engine) feed them: the simulated and Mosquitto
// pipelines change only a sink (their sources keep running, their windows
// keep their state), the embedded one changes its window (which starts
// fresh). Afterwards no row is lost or stored twice, and the windows that
// kept their state give exactly the results of an uninterrupted run.
func TestSwitchUnderLoad(t *testing.T) { switchUnderLoad(t, "") }

// TestSwitchUnderLoadCheckpointed is TestSwitchUnderLoad with pipelines
// that take checkpoints: the switch hands over running sources (behind
// their ingest logs), open windows and held sinks, and the new graphs
// checkpoint what they took over; every reading is delivered once and every
// window emitted once with the sums of its rows. The stop at the end keeps
// the open windows in the last checkpoint instead of flushing them.
func TestSwitchUnderLoadCheckpointed(t *testing.T) {
	switchUnderLoad(t, "checkpoint: {interval: 50ms}")
}

func switchUnderLoad(t *testing.T, checkpoint string) {
	if testing.Short() {
		t.Skip("switch under load")
	}
	mosquitto := "tcp://127.0.0.1:1883"
	needMosquitto(t)
	nats := enginetest.NewNATSServer(t)
	nats.Start()
	sfx := outboundtest.Suffix()
	dir := t.TempDir()
	embedded := freeAddr(t)
	const devices, readings = 4, 300

	type pipe struct{ name, source string }
	pipes := []pipe{
		{"simfarm", `{type: sim, turbines: 4, interval: 1s, rows: 600, rate: 800, faults: 0}`},
		{"mosq", mqttSourceYAML(mosquitto, "mosq"+sfx, "")},
		{"embedded", mqttSourceYAML("tcp://"+embedded, "emb"+sfx, embedded)},
	}
	pub, key, err := bundle.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	write := func(version string, change func(name, y string) string) string {
		rd := filepath.Join(dir, version, "pipelines")
		if err := os.MkdirAll(rd, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, p := range pipes {
			y := strings.NewReplacer("{{NAME}}", p.name, "{{SOURCE}}", p.source, "{{URL}}", nats.URL(),
				"{{SUBJECT}}", "sw"+sfx+"."+p.name, "{{STREAM}}", strings.ToUpper("SW"+sfx+p.name), "{{BATCH}}", "64",
				"{{CHECKPOINT}}", checkpoint).Replace(switchRelease)
			y = change(p.name, y)
			if err := os.WriteFile(filepath.Join(rd, p.name+".yaml"), []byte(y), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		// Released as a signed bundle.
		out := filepath.Join(dir, version+".bundle")
		buildBundle(t, out, filepath.Join(dir, version), "farm", map[string]uint64{"v1": 1, "v2": 2}[version], key)
		return out
	}
	v1 := write("v1", func(_, y string) string { return y })
	v2 := write("v2", func(name, y string) string {
		if name == "embedded" && checkpoint == "" {
			// A new window schema: with held output the old rows may not
			// all have left when the new sink opens the buffer, which a
			// new schema refuses (deliver or export them first).
			return strings.Replace(y, "aggregates: {power: [sum]}", "aggregates: {power: [sum, max]}", 1)
		}
		return strings.Replace(y, "batch_rows: 64", "batch_rows: 32", 1)
	})

	rt, a := startAgent(t, dir, "edge-sw", pub)
	if rep, err := a.Apply(v1); err != nil || rep.Outcome != agent.Applied {
		t.Fatalf("apply v1: %v %v", rep, err)
	}
	// Publish once both MQTT sources have subscribed, while the release
	// switches.
	waitFeedsSubscribed(t, rt, 2)
	var wg sync.WaitGroup
	pubErr := make([]error, 2)
	for i, target := range []struct{ url, product string }{{mosquitto, "mosq" + sfx}, {"tcp://" + embedded, "emb" + sfx}} {
		wg.Go(func() {
			pubErr[i] = publishDevices(t, target.url, target.product, devices, readings, 3*time.Millisecond)
		})
	}
	time.Sleep(400 * time.Millisecond)
	applyStart := time.Now()
	rep, err := a.Apply(v2)
	if err != nil || rep.Outcome != agent.Applied {
		t.Fatalf("apply v2: %v %v", rep, err)
	}
	t.Logf("%s in %v: %s", rep, time.Since(applyStart), rep.Steps)
	for _, want := range []string{
		"simfarm changed (feed: kept running, stats: kept state, rows: started fresh, windows: kept open)",
		"mosq changed (feed: kept running, stats: kept state, rows: started fresh, windows: kept open)",
		map[bool]string{
			true:  "embedded changed (feed: kept running, stats: started fresh, rows: kept open, windows: started fresh)",
			false: "embedded changed (feed: kept running, stats: kept state, rows: started fresh, windows: kept open)",
		}[checkpoint == ""],
	} {
		if !strings.Contains(rep.Steps, want) {
			t.Errorf("switch report %q lacks %q", rep.Steps, want)
		}
	}
	wg.Wait()
	for _, err := range pubErr {
		if err != nil {
			t.Fatal(err)
		}
	}
	// The simulated farm ends by itself; the MQTT feeds end when every
	// published reading arrived. Every pipeline's rows are delivered
	// before the stop: a stop leaves in the buffer what its sink could
	// not send within drain_timeout (on a loaded machine, a third of the
	// simulated farm's rows).
	nc, err := natsgo.Connect(nats.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := nc.JetStream()
	deadline := time.Now().Add(60 * time.Second)
	for _, p := range []string{"mosq", "embedded", "simfarm"} {
		stream := strings.ToUpper("SW" + sfx + p + "_ROWS")
		want := devices * readings
		if p == "simfarm" {
			want = 4 * 600
		}
		for {
			info, err := js.StreamInfo(stream)
			if err == nil && info.State.Msgs > 0 {
				rows, _ := streamRows(t, js, stream)
				if len(rows) >= want {
					break
				}
			}
			if time.Now().After(deadline) {
				for _, pp := range rt.Pipelines() {
					for _, b := range pp.Components {
						t.Logf("%s/%s: %v", pp.Def.Name, b.Def.Name, b.Counters.Snapshot())
					}
				}
				rows, twice := streamRows(t, js, stream)
				t.Fatalf("%s: %d of %d readings arrived (%d twice)", p, len(rows), want, twice)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// The simulated farm ends by itself.
	for {
		finished := false
		for _, st := range rt.Status() {
			if st.Name == "simfarm" {
				finished = st.State == "finished"
			}
		}
		if finished {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the simulated farm did not finish: %+v", rt.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := rt.Stop(); err != nil {
		t.Fatal(err)
	}

	for _, p := range pipes {
		prefix := strings.ToUpper("SW" + sfx + p.name)
		rows, twice := streamRows(t, js, prefix+"_ROWS")
		var wins map[uint64]map[string]any
		var winTwice int
		if _, err := js.StreamInfo(prefix + "_WIN"); err == nil || checkpoint == "" {
			// With checkpoints the stop keeps open windows open: the
			// readings of a few seconds may close none.
			wins, winTwice = streamRows(t, js, prefix+"_WIN")
		}
		want := devices * readings
		if p.name == "simfarm" {
			want = 4 * 600
		}
		// Each reading once, by identity and by (asset, time).
		readingsSeen := map[string]bool{}
		perWindow := map[string]float64{}
		perWindowN := map[string]int{}
		for _, r := range rows {
			k := fmt.Sprint(r["assetId"], "@", r["time"])
			if readingsSeen[k] {
				t.Errorf("%s: reading %s stored under two identities", p.name, k)
			}
			readingsSeen[k] = true
			ts := int64(r["time"].(float64))
			wk := fmt.Sprint(r["assetId"], "@", ts-ts%10000)
			perWindow[wk] += r["measurepoints"].(map[string]any)["power"].(float64)
			perWindowN[wk]++
		}
		if len(rows) != want || twice != 0 || winTwice != 0 {
			t.Errorf("%s: %d rows of %d, %d identities stored twice (windows: %d)", p.name, len(rows), want, twice, winTwice)
		}
		// Window results: every window's count and sum equal those of the
		// raw rows (what an uninterrupted run gives), each window once,
		// except for the changed window step, whose windows open at the
		// switch were flushed early and started again.
		got := map[string]int{}
		counted := 0
		for _, w := range wins {
			mp, _ := w["measurepoints"].(map[string]any)
			ts, ok := w["time"].(float64)
			if !ok || mp == nil {
				t.Fatalf("%s: a window row without time (window_start) or values: %v", p.name, w)
			}
			start := int64(ts)
			wk := fmt.Sprint(w["assetId"], "@", start)
			got[wk]++
			n := int(mp["count"].(float64))
			counted += n
			if p.name == "embedded" && checkpoint == "" {
				continue
			}
			if got[wk] > 1 {
				t.Errorf("%s: window %s emitted twice", p.name, wk)
			}
			if sum := mp["power_sum"].(float64); n != perWindowN[wk] || math.Abs(sum-perWindow[wk]) > 1e-9*math.Max(1, math.Abs(sum)) {
				t.Errorf("%s: window %s count %d sum %v, the rows give %d and %v", p.name, wk, n, mp["power_sum"], perWindowN[wk], perWindow[wk])
			}
		}
		if counted != want && checkpoint == "" {
			t.Errorf("%s: the windows counted %d rows, want %d", p.name, counted, want)
		}
		if counted > want {
			t.Errorf("%s: the windows counted %d rows, more than the %d there are", p.name, counted, want)
		}
		t.Logf("%s: %d rows, %d window rows", p.name, len(rows), len(wins))
	}
}
