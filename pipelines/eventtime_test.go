package pipelines_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/sluice-edge/sluice/pipelines"
)

// mosquittoURL returns the machine's Mosquitto, skipping the test when it
// is unreachable.
func mosquittoURL(t *testing.T) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", "127.0.0.1:1883", time.Second)
	if err != nil {
		t.Skipf("Mosquitto is not reachable at 127.0.0.1:1883 (%v): start it to run this test", err)
	}
	_ = c.Close()
	return "tcp://127.0.0.1:1883"
}

// TestFarFuturePostSilencesNobody: one post dated 9999-12-31 from a device
// nobody knows used to move the watermark so that every later row of every
// device was late: no statistics, no alerts. Now the pipeline's event_time
// bound sends that row to the source's errors port with the reason, and the
// other devices' statistics and alerts go on; a post dated int64-max (which
// used to crash the engine) is refused by the decoder.
func TestFarFuturePostSilencesNobody(t *testing.T) {
	url := mosquittoURL(t)
	prefix := fmt.Sprintf("/sys/evt%d", time.Now().UnixNano())
	yaml := fmt.Sprintf(`
name: farm
%ssteps:
  stats:
    type: window
    input: devices
    size: 10s
    lateness: 2s
    aggregates: {temp: [max]}
  hot:
    type: alert
    input: stats
    rules:
      - {name: overheat, expr: temp_max > 90, severity: critical, type: temperature, content: "{{.asset}} at {{.temp_max}}"}
sinks:
  stats_out: {type: file, input: stats, path: stats.jsonl}
  alerts_out: {type: file, input: hot, path: alerts.jsonl}
  rejected: {type: file, input: devices.errors, path: rejected.jsonl}
  late: {type: file, input: stats.late, path: late.jsonl}
`, devicesOver(url, prefix))
	dir, ps, stop := startPipelines(t, yaml)
	pub := mqttPublisher(t, url)
	publish := func(device string, ms int64, temp float64) {
		t.Helper()
		pub(prefix+"/"+device+"/thing/measurepoint/post", fmt.Sprintf(`{"id":"1","params":{"measurepoints":{"temp":%g},"time":%d}}`, temp, ms), false)
	}
	// Wait until the source is subscribed: a probe post is seen as a row.
	base := time.Now().Add(-2 * time.Minute).Truncate(10 * time.Second).UnixMilli()
	waitFor(t, 20*time.Second, "the probe post", func() bool {
		publish("probe", base, 20)
		return pipelines.SourceRows(ps) > 0
	})
	// Probes sent before the subscription took effect are lost; those after
	// are counted here, but for at most one still on its way.
	probes := pipelines.SourceRows(ps)
	for sec := int64(0); sec < 60; sec++ {
		ts := base + sec*1000
		for _, d := range []string{"T1", "T2", "T3"} {
			temp := 50.0
			if d == "T2" && sec >= 40 {
				temp = 99 // overheating after the hostile posts
			}
			publish(d, ts, temp)
		}
		if sec == 20 {
			publish("evil", 253402214400000, 1)     // 9999-12-31
			publish("evil", 9223372036854775807, 1) // int64 max
		}
	}
	// Let the last posts arrive, then stop: the drain flushes the windows.
	// Every reading and the 9999 post (the int64 one is refused by the
	// decoder) arrive: the broker acknowledged them all. (A probe still on
	// its way could stand for the last reading: the last window holds nine
	// more.)
	waitFor(t, 20*time.Second, "every post", func() bool { return pipelines.SourceRows(ps) >= probes+60*3+1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	stats := readLines(t, filepath.Join(dir, "stats.jsonl"))
	perDevice := map[string]int{}
	for _, l := range stats {
		var row struct{ Asset string }
		if err := json.Unmarshal([]byte(l), &row); err != nil {
			t.Fatal(err)
		}
		perDevice[row.Asset]++
	}
	for _, d := range []string{"T1", "T2", "T3"} {
		if perDevice[d] != 6 {
			t.Errorf("%s has %d windows, want 6 (one a 10 s over a minute): %v", d, perDevice[d], perDevice)
		}
	}
	if perDevice["evil"] != 0 {
		t.Errorf("the far-future post opened a window")
	}
	if late := readLines(t, filepath.Join(dir, "late.jsonl")); len(late) != 0 {
		t.Errorf("%d rows went late, want none:\n%s", len(late), strings.Join(late, "\n"))
	}
	rejected := readLines(t, filepath.Join(dir, "rejected.jsonl"))
	if len(rejected) != 1 || !strings.Contains(rejected[0], "9999-12-31T00:00:00.000Z") || !strings.Contains(rejected[0], "ahead of the engine clock") {
		t.Errorf("errors port: %q, want the 9999-12-31 row with its reason", rejected)
	}
	alerts := readLines(t, filepath.Join(dir, "alerts.jsonl"))
	if len(alerts) == 0 || !strings.Contains(alerts[0], `"asset":"T2"`) || !strings.Contains(alerts[0], "raised") {
		t.Errorf("alerts %q, want T2 raised", alerts)
	}
	var future int64
	for _, b := range ps[0].Components {
		if b.Def.Name == "devices" {
			future = b.Counters.Snapshot()["future_time_rows"]
		}
	}
	if future != 1 {
		t.Errorf("future_time_rows = %d, want 1", future)
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil // a file sink creates its file with its first row
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// TestRetainedInt64PostDoesNotCrash: an EnOS post dated 9223372036854775807,
// published retained, used to crash the engine with "out of memory" at every
// start (a hopping window allocated without end). Now the decoder refuses
// it with the reason, and the pipeline computes the other devices'
// statistics; the heap stays small.
func TestRetainedInt64PostDoesNotCrash(t *testing.T) {
	url := mosquittoURL(t)
	prefix := fmt.Sprintf("/sys/ret%d", time.Now().UnixNano())
	pub := mqttPublisher(t, url)
	for i, ts := range []string{"9223372036854775807", "-9223372036854775808"} {
		topic := fmt.Sprintf("%s/evil%d/thing/measurepoint/post", prefix, i)
		pub(topic, `{"id":"1","params":{"measurepoints":{"temp":1},"time":`+ts+`}}`, true)
		t.Cleanup(func() { pub(topic, "", true) }) // remove the retained post
	}
	dir, ps, stop := startPipelines(t, fmt.Sprintf(`
name: retained
%ssteps:
  stats: {type: window, input: devices, kind: hopping, size: 1m, step: 10s, aggregates: {temp: [max]}}
sinks:
  out: {type: file, input: stats, path: stats.jsonl}
`, devicesOver(url, prefix)))
	waitFor(t, 20*time.Second, "the retained posts to be refused", func() bool {
		return ps[0].Components[0].Counters.Snapshot()["bad_payloads"] >= 2
	})
	base := time.Now().Add(-time.Minute).Truncate(time.Minute).UnixMilli()
	for sec := int64(0); sec < 30; sec++ {
		pub(prefix+"/T1/thing/measurepoint/post", fmt.Sprintf(`{"id":"1","params":{"measurepoints":{"temp":%d},"time":%d}}`, sec, base+sec*1000), false)
	}
	waitFor(t, 20*time.Second, "every post", func() bool { return pipelines.SourceRows(ps) >= 30 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	if ms.HeapAlloc > 256<<20 {
		t.Errorf("heap %d MiB after the run, want under 256 MiB", ms.HeapAlloc>>20)
	}
	if n := len(readLines(t, filepath.Join(dir, "stats.jsonl"))); n == 0 {
		t.Error("no statistics for T1")
	}
}

// startPipelines loads and runs the pipeline file holding body (in its own
// directory, with a data directory in it) until the returned stop is
// called; stop cancels the run and returns its error once it drained.
func startPipelines(t *testing.T, body string) (dir string, ps []*pipelines.Pipeline, stop func() error) {
	t.Helper()
	dir = t.TempDir()
	file := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	defs, errs := pipelines.Load([]string{file}, func(string) (string, bool) { return "", false })
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	ps, errs = pipelines.BuildAll(defs, pipelines.Options{DataDir: filepath.Join(dir, "data")})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pipelines.RunAll(ctx, ps) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return dir, ps, stop
}

// mqttPublisher connects to url and returns a function that publishes at
// QoS 1 and waits for the broker's acknowledgement.
func mqttPublisher(t *testing.T, url string) func(topic, payload string, retained bool) {
	t.Helper()
	opts := paho.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("pub-%d", time.Now().UnixNano())).SetCleanSession(true)
	cl := paho.NewClient(opts)
	if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	t.Cleanup(func() { cl.Disconnect(100) })
	return func(topic, payload string, retained bool) {
		t.Helper()
		tok := cl.Publish(topic, 1, retained, payload)
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
}

// devicesOver is the batch policy and the EnOS source "devices" of the
// event-time scenarios: temperatures of devices posting under prefix.
func devicesOver(url, prefix string) string {
	return fmt.Sprintf(`batch: {size: 16, linger: 5ms}
sources:
  devices:
    type: mqtt
    urls: [%q]
    topics: ["%s/+/thing/measurepoint/post"]
    qos: 1
    format: enos
    schema: {key: asset, fields: {temp: float64}}
`, url, prefix)
}
