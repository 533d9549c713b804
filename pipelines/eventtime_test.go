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
	dir := t.TempDir()
	prefix := fmt.Sprintf("/sys/evt%d", time.Now().UnixNano())
	file := filepath.Join(dir, "p.yaml")
	yaml := fmt.Sprintf(`
name: farm
batch: {size: 16, linger: 5ms}
sources:
  devices:
    type: mqtt
    urls: ["%s"]
    topics: ["%s/+/thing/measurepoint/post"]
    qos: 1
    format: enos
    schema: {key: asset, fields: {temp: float64}}
steps:
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
`, url, prefix)
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	defs, errs := pipelines.Load([]string{file}, func(string) (string, bool) { return "", false })
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	ps, errs := pipelines.BuildAll(defs, pipelines.Options{DataDir: filepath.Join(dir, "data")})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pipelines.RunAll(ctx, ps) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	opts := paho.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("evt-pub-%d", time.Now().UnixNano())).SetCleanSession(true)
	cl := paho.NewClient(opts)
	if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer cl.Disconnect(100)
	publish := func(device string, ms int64, temp float64) {
		t.Helper()
		payload := fmt.Sprintf(`{"id":"1","params":{"measurepoints":{"temp":%g},"time":%d}}`, temp, ms)
		tok := cl.Publish(prefix+"/"+device+"/thing/measurepoint/post", 1, false, payload)
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	// Wait until the source is subscribed: a probe post is seen as a row.
	base := time.Now().Add(-2 * time.Minute).Truncate(10 * time.Second).UnixMilli()
	deadline := time.Now().Add(20 * time.Second)
	for pipelines.SourceRows(ps) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the pipeline never received the probe post")
		}
		publish("probe", base, 20)
		time.Sleep(50 * time.Millisecond)
	}
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
	want := int64(1 + 60*3 + 1) // at least: probe(s), the readings, the 9999 post
	for deadline := time.Now().Add(20 * time.Second); pipelines.SourceRows(ps) < want; {
		if time.Now().After(deadline) {
			t.Fatalf("only %d rows arrived", pipelines.SourceRows(ps))
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil

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
	dir := t.TempDir()
	prefix := fmt.Sprintf("/sys/ret%d", time.Now().UnixNano())
	opts := paho.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("ret-pub-%d", time.Now().UnixNano())).SetCleanSession(true)
	cl := paho.NewClient(opts)
	if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer cl.Disconnect(100)
	evil := prefix + "/evil/thing/measurepoint/post"
	for _, ts := range []string{"9223372036854775807", "-9223372036854775808"} {
		topic := evil
		if ts[0] == '-' {
			topic = prefix + "/evil2/thing/measurepoint/post"
		}
		tok := cl.Publish(topic, 1, true, `{"id":"1","params":{"measurepoints":{"temp":1},"time":`+ts+`}}`)
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
		t.Cleanup(func() { cl.Publish(topic, 1, true, "").WaitTimeout(5 * time.Second) }) // remove the retained post
	}
	file := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(file, []byte(fmt.Sprintf(`
name: retained
batch: {size: 16, linger: 5ms}
sources:
  devices:
    type: mqtt
    urls: ["%s"]
    topics: ["%s/+/thing/measurepoint/post"]
    qos: 1
    format: enos
    schema: {key: asset, fields: {temp: float64}}
steps:
  stats: {type: window, input: devices, kind: hopping, size: 1m, step: 10s, aggregates: {temp: [max]}}
sinks:
  out: {type: file, input: stats, path: stats.jsonl}
`, url, prefix)), 0o644); err != nil {
		t.Fatal(err)
	}
	defs, errs := pipelines.Load([]string{file}, func(string) (string, bool) { return "", false })
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	ps, errs := pipelines.BuildAll(defs, pipelines.Options{DataDir: filepath.Join(dir, "data")})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- pipelines.RunAll(ctx, ps) }()
	base := time.Now().Add(-time.Minute).Truncate(time.Minute).UnixMilli()
	var bad int64
	for deadline := time.Now().Add(20 * time.Second); bad < 2; {
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("the retained posts were never refused (bad_payloads %d)", bad)
		}
		time.Sleep(20 * time.Millisecond)
		bad = ps[0].Components[0].Counters.Snapshot()["bad_payloads"]
	}
	for sec := int64(0); sec < 30; sec++ {
		tok := cl.Publish(prefix+"/T1/thing/measurepoint/post", 1, false, fmt.Sprintf(`{"id":"1","params":{"measurepoints":{"temp":%d},"time":%d}}`, sec, base+sec*1000))
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	for deadline := time.Now().Add(20 * time.Second); pipelines.SourceRows(ps) < 30; {
		if time.Now().After(deadline) {
			t.Fatalf("only %d rows arrived", pipelines.SourceRows(ps))
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
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
