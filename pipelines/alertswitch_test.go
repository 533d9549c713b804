package pipelines_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	natsgo "github.com/nats-io/nats.go"

	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
	"github.com/sluice-edge/sluice/operators/alert"
	"github.com/sluice-edge/sluice/pipelines"
)

// switchAlert is one alert row of a file sink.
type switchAlert struct {
	ID      string `json:"id"`
	Asset   string `json:"asset"`
	Rule    string `json:"rule"`
	State   string `json:"state"`
	Content string `json:"content"`
	Version string `json:"rule_set_version"`
}

// switchAlerts reads the alert rows of a file sink.
func switchAlerts(t *testing.T, file string) []switchAlert {
	t.Helper()
	var out []switchAlert
	for _, l := range lines(t, file) {
		var a switchAlert
		if err := json.Unmarshal([]byte(l), &a); err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		out = append(out, a)
	}
	return out
}

// alertSwitch runs the release of versionSwitchPipeline with the rules
// given to rel, posting through an embedded broker.
type alertSwitch struct {
	t        *testing.T
	dir, out string
	pipe     string
	sfx      string
	addr     string
	rt       *pipelines.Runtime
	dev      paho.Client
	base     int64
	n        int64
}

func newAlertSwitch(t *testing.T, rules, extra string) *alertSwitch {
	t.Helper()
	s := &alertSwitch{t: t, dir: t.TempDir(), addr: freeAddr(t), sfx: fmt.Sprint(time.Now().UnixNano()), base: time.Now().UnixMilli()}
	s.out = filepath.Join(s.dir, "alerts.jsonl")
	s.pipe = strings.NewReplacer("ADDR", s.addr, "CID", s.sfx, "PROD", "p"+s.sfx, "OUT", s.out).Replace(versionSwitchPipeline)
	s.rt = pipelines.NewRuntime(pipelines.Options{DataDir: filepath.Join(s.dir, "data"), Log: slog.New(slog.DiscardHandler)})
	if err := s.rt.Start(context.Background(), s.rel(1, strings.ReplaceAll(s.pipe, "EXTRA", extra), rules)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.rt.Stop() })
	s.dev = versionDevice(t, s.addr, s.sfx)
	t.Cleanup(func() { s.dev.Disconnect(100) })
	waitSubscribed(t, s.rt)
	return s
}

// rel is release version of pipeline pipe with the rule set rules.
func (s *alertSwitch) rel(version int64, pipe, rules string) *pipelines.Release {
	s.t.Helper()
	d := writeRelease(s.t, map[string]string{"pipelines/p.yaml": pipe, "rules/turbine.yaml": rules})
	r, errs := pipelines.LoadRelease(d, os.LookupEnv)
	if len(errs) > 0 {
		s.t.Fatal(errs)
	}
	r.Name, r.Version = "farm", version
	return r
}

// post sends one reading of device, a second of event time after the
// previous one.
func (s *alertSwitch) post(device string, power float64) {
	s.t.Helper()
	s.n++
	post(s.t, s.dev, "p"+s.sfx, device, power, s.base+s.n*1000)
}

// switchTo applies release version and waits for the device to reach the
// restarted source (its embedded broker restarts with it).
func (s *alertSwitch) switchTo(version int64, pipe, rules string) *pipelines.SwitchReport {
	s.t.Helper()
	rep, err := s.rt.Switch(context.Background(), s.rel(version, pipe, rules))
	if err != nil {
		s.t.Fatal(err)
	}
	waitSubscribed(s.t, s.rt)
	outboundtest.Eventually(s.t, 20*time.Second, "the device to reconnect", s.dev.IsConnectionOpen)
	return rep
}

// TestSwitchClearsAlertsOfChangedRules: a release that changes the rule
// of a raised alert clears that alert, with its id, in the sinks the step
// feeds, before the new step runs; the new rule raises anew under a new
// id. A release that removes the alert step or its pipeline clears the
// alerts the step had raised.
func TestSwitchClearsAlertsOfChangedRules(t *testing.T) {
	const hot = "rules:\n  - {name: hot, expr: power > 100, clear: power < 80}\n"
	changed := strings.Replace(hot, "power > 100", "power > 150", 1)
	// The alerts also go to a NATS stream, as to the hub.
	sfx := outboundtest.Suffix()
	stream, subject := "ALSW"+strings.ToUpper(sfx), "alsw."+sfx
	hub := fmt.Sprintf("  hub: {type: nats, input: alerts, url: %q, subject: %s, stream: %s, encoding: json_batch, duplicate_window: 30m, forward: {retry_min: 20ms, retry_max: 200ms, publish_timeout: 2s, drain_timeout: 5s}}\n",
		natsgo.DefaultURL, subject, stream)
	s := newAlertSwitch(t, hot, hub)
	s.post("dev0", 200)
	waitLines(t, s.out, 1)
	raised := switchAlerts(t, s.out)[0]
	if raised.State != "raised" || raised.Rule != "hot" {
		t.Fatalf("first alert %+v, want hot raised", raised)
	}

	rep := s.switchTo(2, strings.ReplaceAll(s.pipe, "EXTRA", hub), changed)
	if !strings.Contains(rep.String(), "alerts: kept state for 0 of 1 rules, 1 alert cleared") {
		t.Errorf("switch report %q", rep)
	}
	waitLines(t, s.out, 2)
	cleared := switchAlerts(t, s.out)[1]
	if cleared.State != "cleared" || cleared.ID != raised.ID || cleared.Asset != "dev0" || cleared.Version != "farm v1 rules/turbine.yaml" ||
		!strings.HasPrefix(cleared.Content, alert.RetiredPrefix+"the rule changed") {
		t.Fatalf("after the switch %+v, want the clear of %s", cleared, raised.ID)
	}
	s.post("dev0", 200) // holds under the new rule: raised anew
	waitLines(t, s.out, 3)
	again := switchAlerts(t, s.out)[2]
	if again.State != "raised" || again.ID == raised.ID || again.Version != "farm v2 rules/turbine.yaml" {
		t.Fatalf("%+v, want hot raised anew under release 2", again)
	}

	// Release 3 takes the alert step away (the sink writes the raw rows
	// elsewhere): its raised alert clears.
	raw := filepath.Join(s.dir, "raw.jsonl")
	noStep := strings.NewReplacer("  alerts: {type: alert, input: feed, include: [turbine], watermark_keys: 1}\n", "  keep: {type: filter, input: feed, expr: \"power >= 0\"}\n",
		"input: alerts, path: "+s.out, "input: keep, path: "+raw).Replace(strings.ReplaceAll(s.pipe, "EXTRA", ""))
	rep = s.switchTo(3, noStep, changed)
	if !strings.Contains(rep.String(), "alerts: removed, 1 alert cleared") {
		t.Errorf("switch report %q", rep)
	}
	waitLines(t, s.out, 4)
	gone := switchAlerts(t, s.out)[3]
	if gone.State != "cleared" || gone.ID != again.ID || !strings.HasPrefix(gone.Content, alert.RetiredPrefix+"the step was removed") {
		t.Fatalf("%+v, want the clear of %s", gone, again.ID)
	}

	// The stream got the same four rows, the clears with the ids raised.
	nc, err := natsgo.Connect(natsgo.DefaultURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := nc.JetStream()
	defer func() { _ = js.DeleteStream(stream) }()
	want := []string{raised.ID + " raised", raised.ID + " cleared", again.ID + " raised", again.ID + " cleared"}
	var got []string
	outboundtest.Eventually(t, 20*time.Second, "the alerts in the stream", func() bool {
		got = streamAlerts(t, js, stream)
		return len(got) >= len(want)
	})
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stream:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// streamAlerts reads the alert rows of a JetStream stream of json_batch
// messages: "id state" per row, in order.
func streamAlerts(t *testing.T, js natsgo.JetStreamContext, stream string) []string {
	t.Helper()
	info, err := js.StreamInfo(stream)
	if err != nil {
		return nil
	}
	var out []string
	for q := info.State.FirstSeq; q <= info.State.LastSeq && info.State.Msgs > 0; q++ {
		m, err := js.GetMsg(stream, q)
		if err != nil {
			t.Fatal(err)
		}
		var p struct {
			Rows []struct {
				Points switchAlert `json:"measurepoints"`
			} `json:"rows"`
		}
		if err := json.Unmarshal(m.Data, &p); err != nil {
			t.Fatal(err)
		}
		for _, r := range p.Rows {
			out = append(out, r.Points.ID+" "+r.Points.State)
		}
	}
	return out
}

// TestSwitchRemovedPipelineClearsAlerts: a release without the pipeline
// of an alert step clears the alerts it had raised.
func TestSwitchRemovedPipelineClearsAlerts(t *testing.T) {
	const hot = "rules:\n  - {name: hot, expr: power > 100, clear: power < 80}\n"
	s := newAlertSwitch(t, hot, "")
	s.post("dev0", 200)
	s.post("dev1", 200)
	waitLines(t, s.out, 2)
	other := "name: other\nsources:\n  farm: {type: sim, turbines: 1, interval: 1s, rate: 10, faults: 0}\nsinks:\n  out: {type: file, input: farm, path: " + filepath.Join(s.dir, "other.jsonl") + "}\n"
	rep, err := s.rt.Switch(context.Background(), s.rel(2, other, hot))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rep.String(), "m removed (alerts: removed, 2 alerts cleared)") {
		t.Errorf("switch report %q", rep)
	}
	got := switchAlerts(t, s.out)
	if len(got) != 4 {
		t.Fatalf("alerts %+v, want two raised and two cleared", got)
	}
	for i, a := range got[2:] {
		if a.State != "cleared" || a.ID != got[i].ID {
			t.Errorf("%+v, want the clear of %+v", a, got[i])
		}
	}
}

// TestSwitchKeepsAlertsOfUnchangedRules: a release that keeps a raised
// alert's rule and adds another rule rebuilds the alert step, which keeps
// the alert: a row on which it still holds does not raise it again, and
// it later clears under its id, naming the version that raised it; the
// added rule raises under the new version.
func TestSwitchKeepsAlertsOfUnchangedRules(t *testing.T) {
	const hot = "rules:\n  - {name: hot, expr: power > 100, clear: power < 80}\n"
	s := newAlertSwitch(t, hot, "")
	s.post("dev0", 200)
	waitLines(t, s.out, 1)
	raised := switchAlerts(t, s.out)[0]

	rep := s.switchTo(2, strings.ReplaceAll(s.pipe, "EXTRA", ""), hot+"  - {name: surge, expr: power > 1000}\n")
	if !strings.Contains(rep.String(), "alerts: kept state for 1 of 2 rules, out: ") {
		t.Errorf("switch report %q", rep)
	}
	s.post("dev0", 200) // still holds: not raised again
	s.post("dev0", 50)  // clears
	s.post("dev0", 2000)
	waitLines(t, s.out, 4)
	var got []string
	for _, a := range switchAlerts(t, s.out)[1:] {
		id := "new"
		if a.ID == raised.ID {
			id = "id"
		}
		got = append(got, fmt.Sprintf("%s %s %s %s", a.Rule, a.State, id, a.Version))
	}
	want := []string{
		"hot cleared id farm v1 rules/turbine.yaml",
		"hot raised new farm v2 rules/turbine.yaml",
		"surge raised new farm v2 rules/turbine.yaml",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("alerts after the switch:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
