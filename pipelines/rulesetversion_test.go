package pipelines_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/sluice-edge/sluice/pipelines"
)

// alertVersions reads a file sink's alert rows: "rule state version" per
// row, version "-" when the row has none.
func alertVersions(t *testing.T, file string) []string {
	t.Helper()
	var out []string
	for _, a := range switchAlerts(t, file) {
		v := a.Version
		if v == "" {
			v = "-"
		}
		out = append(out, fmt.Sprintf("%s %s %s", a.Rule, a.State, v))
	}
	return out
}

// TestReleaseRuleSetVersions: the alerts of a rule set's rules name the
// set's version: the one its file declares, else the set's file in the
// named release it came with.
func TestReleaseRuleSetVersions(t *testing.T) {
	const rules = "model: turbine\nrules:\n  - {name: over_rated, expr: power > attr.rated_kw}\n"
	for _, c := range []struct {
		name, rules, bundle string
		version             int64
		want                string
	}{
		{"declared version", "version: turbine-2024.06\n" + rules, "farm", 7, "turbine-2024.06"},
		{"version of the release", rules, "farm", 7, "farm v7 rules/turbine.yaml"},
		{"next release", rules, "farm", 8, "farm v8 rules/turbine.yaml"},
	} {
		t.Run(c.name, func(t *testing.T) {
			files := validRelease()
			files["rules/turbine.yaml"] = c.rules
			files["data/scada.csv"] = "time,power,wind_speed\n1717200000000,2600,8\n1717200001000,1000,8\n"
			dir := writeRelease(t, files)
			r, errs := pipelines.LoadRelease(dir, env(map[string]string{"RELEASE_TEST_TOKEN": "x"}))
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			r.Name, r.Version = c.bundle, c.version
			out := filepath.Join(dir, "pipelines", "out")
			if err := os.MkdirAll(out, 0o755); err != nil {
				t.Fatal(err)
			}
			ps, errs := pipelines.BuildAll(r.Defs, pipelines.Options{DataDir: filepath.Join(dir, "data-dir"), Log: slog.New(slog.DiscardHandler)})
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			if err := pipelines.RunAll(context.Background(), ps); err != nil {
				t.Fatal(err)
			}
			got := strings.Join(alertVersions(t, filepath.Join(out, "alerts.jsonl")), "\n")
			want := "over_rated raised " + c.want + "\nover_rated cleared " + c.want
			if got != want {
				t.Errorf("alerts:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// versionSwitchPipeline reads devices posting to a broker embedded in the
// engine and raises alerts from the release's turbine rule set; EXTRA
// adds sinks. The devices post one at a time, each reading newer than the
// one before: the alert step, in event-time order, follows the most
// advanced device (watermark_keys 1), so that every reading is evaluated
// as it comes instead of waiting for another device to catch up.
const versionSwitchPipeline = `
name: m
batch: {size: 1, linger: 1ms}
sources:
  feed: {type: mqtt, urls: ["tcp://ADDR"], client_id: "rsv-CID", topics: ["/sys/PROD/+/thing/measurepoint/post"], qos: 1, format: enos, schema: {key: asset, fields: {power: float64}}, broker: {embedded: true, listen: "ADDR", allow_anonymous: true}}
steps:
  alerts: {type: alert, input: feed, include: [turbine], watermark_keys: 1}
sinks:
  out: {type: file, input: alerts, path: OUT}
EXTRA`

// TestSwitchRuleSetVersion: across release switches, alerts name the
// version of the rule set they were raised under. A switch that rebuilds
// the alert step but leaves its rule set alone hands the step's state
// over: an alert raised under release 1 clears naming release 1, and
// alerts raised after the switch name release 2. A switch that changes the
// rule set (a severity: not the rule's identity) keeps the alert raised
// under release 2 raised (docs/coordination.md); the alerts raised after
// it name release 3.
func TestSwitchRuleSetVersion(t *testing.T) {
	const rules = "rules:\n  - {name: hot, expr: power > 100, clear: power < 80}\n"
	s := newAlertSwitch(t, rules, "")
	s.post("dev0", 200)
	waitLines(t, s.out, 1)

	// Release 2 adds a sink: the pipeline is rebuilt, the alert step keeps
	// its state.
	rep := s.switchTo(2, strings.ReplaceAll(s.pipe, "EXTRA", "  raw: {type: file, input: feed, path: "+filepath.Join(s.dir, "raw.jsonl")+"}\n"), rules)
	if !strings.Contains(rep.String(), "alerts: kept state") {
		t.Fatalf("switch %q: the alert step did not keep its state", rep)
	}
	s.post("dev0", 50)  // clears the alert raised under release 1
	s.post("dev1", 200) // raises under release 2
	waitLines(t, s.out, 3)

	// Release 3 changes the rule set (a severity). The source restarts with
	// its context, and with it the embedded broker: switchTo waits for the
	// device to reconnect.
	s.switchTo(3, strings.ReplaceAll(s.pipe, "EXTRA", ""), strings.Replace(rules, "}", ", severity: major}", 1))
	s.post("dev2", 200)
	waitLines(t, s.out, 4)
	got := strings.Join(alertVersions(t, s.out), "\n")
	want := strings.Join([]string{
		"hot raised farm v1 rules/turbine.yaml",
		"hot cleared farm v1 rules/turbine.yaml",
		"hot raised farm v2 rules/turbine.yaml",
		"hot raised farm v3 rules/turbine.yaml",
	}, "\n")
	if got != want {
		t.Errorf("alerts:\n%s\nwant:\n%s", got, want)
	}
}

// versionDevice connects a device client to the embedded broker at addr.
func versionDevice(t *testing.T, addr, sfx string) paho.Client {
	t.Helper()
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("rsv-dev-" + sfx).SetCleanSession(true).
		SetConnectRetry(true).SetConnectRetryInterval(20 * time.Millisecond).SetAutoReconnect(true)
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("device connect: %v", tok.Error())
	}
	return c
}

// post publishes one power reading of device at event time ms, at QoS 1.
func post(t *testing.T, c paho.Client, product, device string, power float64, ms int64) {
	t.Helper()
	payload := fmt.Sprintf(`{"id":"1","version":"1.0","method":"thing.measurepoint.post","params":{"measurepoints":{"power":%v},"time":%d}}`, power, ms)
	tok := c.Publish(fmt.Sprintf("/sys/%s/%s/thing/measurepoint/post", product, device), 1, false, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
}
