package controlapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/control"
	"github.com/sluice-edge/sluice/engine/control/controlapi"
	"github.com/sluice-edge/sluice/engine/control/controlclient"
)

const token = "test-token-0123456789"

// device acknowledges commands unless silent.
type device struct {
	tracker *command.Tracker
	silent  bool
}

func (d *device) Ready(context.Context) error { return nil }
func (d *device) Deliver(_ context.Context, c control.Record) error {
	if !d.silent {
		go d.tracker.Reply(c.ID, c.Target(), 200, "ok", nil)
	}
	return nil
}

func serve(t *testing.T, silent bool) (string, *control.Arbiter) {
	t.Helper()
	dev := &device{silent: silent}
	a, err := control.Open(control.Options{Dir: t.TempDir(), Transport: dev, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	dev.tracker = a.Tracker()
	srv, err := controlapi.Listen("127.0.0.1:0", token, a, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(time.Second); a.Close() })
	return "http://" + srv.Addr(), a
}

func call(t *testing.T, method, url, tok, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAPI(t *testing.T) {
	base, _ := serve(t, false)
	cmds := base + controlapi.CommandsPath
	ok := `{"product":"pk","asset":"T1","origin":"cloud","inputs":{"power_setpoint":1500},"expire_in":"5m"}`
	cases := []struct {
		name, method, url, tok, body string
		code                         int
		contains                     string
	}{
		{"no token", "POST", cmds, "", ok, 401, "unauthorized"},
		{"wrong token", "POST", cmds, "nope", ok, 401, "unauthorized"},
		{"submit", "POST", cmds, token, ok, 200, `"status": "queued"`},
		{"own id", "POST", cmds, token, `{"id":"cmd-1","product":"pk","asset":"T1","origin":"cloud","inputs":{"p":1}}`, 200, `"id": "cmd-1"`},
		{"id in use", "POST", cmds, token, `{"id":"cmd-1","product":"pk","asset":"T1","origin":"cloud","inputs":{"p":1}}`, 400, "already in use"},
		{"bad json", "POST", cmds, token, `{"asset":`, 400, "body"},
		{"unknown field", "POST", cmds, token, `{"asset":"T1","origin":"cloud","inputs":{"p":1},"evil":1}`, 400, "unknown field"},
		{"trailing data", "POST", cmds, token, ok + ok, 400, "after the JSON"},
		// A field or an input named twice: the arbiter would take the last,
		// a proxy, a log or a reviewer may read the first.
		{"repeated field", "POST", cmds, token, `{"product":"pk","asset":"T1","asset":"T2","origin":"cloud","inputs":{"p":1}}`, 400, "twice"},
		{"repeated input", "POST", cmds, token, `{"product":"pk","asset":"T1","origin":"cloud","inputs":{"p":1,"p":900}}`, 400, "twice"},
		{"repeated lease field", "POST", base + controlapi.LeasesPath, token, `{"asset":"T1","holder":"h","holder":"g","origin":"local","for":"1m"}`, 400, "twice"},
		{"huge body", "POST", cmds, token, `{"asset":"` + strings.Repeat("a", 100<<10) + `"}`, 400, "body"},
		{"absurd expiry", "POST", cmds, token, `{"asset":"T1","origin":"cloud","inputs":{"p":1},"expire_in":"8760000h"}`, 400, "expire"},
		{"far expiry", "POST", cmds, token, `{"asset":"T1","origin":"cloud","inputs":{"p":1},"expiry":"2999-01-01T00:00:00Z"}`, 400, "ahead"},
		{"both expiries", "POST", cmds, token, `{"asset":"T1","origin":"cloud","inputs":{"p":1},"expire_in":"1m","expiry":"2999-01-01T00:00:00Z"}`, 400, "not both"},
		{"expired", "POST", cmds, token, `{"product":"pk","asset":"T1","origin":"cloud","inputs":{"p":1},"expiry":"2001-01-01T00:00:00Z"}`, 410, `"status": "expired"`},
		{"object input", "POST", cmds, token, `{"asset":"T1","origin":"cloud","inputs":{"p":{"x":1}}}`, 400, "numbers, strings or booleans"},
		{"huge number", "POST", cmds, token, `{"asset":"T1","origin":"cloud","inputs":{"p":1e999}}`, 400, "input"},
		{"cloud claims safety", "POST", cmds, token, `{"product":"pk","asset":"T1","origin":"cloud","class":"safety","inputs":{"p":1}}`, 409, "may not claim"},
		{"unknown command", "GET", cmds + "/nope", token, "", 404, "no command"},
		{"bad status filter", "GET", cmds + "?status=nonsense", token, "", 400, "unknown status"},
		{"bad limit", "GET", base + controlapi.AuditPath + "?limit=-1", token, "", 400, "limit"},
		{"bad lease duration", "POST", base + controlapi.LeasesPath, token, `{"asset":"T1","holder":"h","origin":"local","for":"forever"}`, 400, "duration"},
		{"absurd lease", "POST", base + controlapi.LeasesPath, token, `{"asset":"T1","holder":"h","origin":"local","for":"100000h"}`, 400, "lease lasts"},
		{"release unheld", "DELETE", base + controlapi.LeasesPath + "/T1?holder=h", token, "", 404, "no lease"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := call(t, tc.method, tc.url, tc.tok, tc.body)
			if code != tc.code || !strings.Contains(body, tc.contains) {
				t.Fatalf("%d %s, want %d containing %q", code, body, tc.code, tc.contains)
			}
		})
	}
}

// TestWaitsBounded: long polls are bounded in number (a ninth is answered
// 503 at once) and each in time (a timeout of a day is cut to MaxWait);
// they end when the command does.
func TestWaitsBounded(t *testing.T) {
	base, a := serve(t, true)
	code, body := call(t, "POST", base+controlapi.CommandsPath, token, `{"product":"pk","asset":"T1","origin":"cloud","inputs":{"p":1}}`)
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	var rec control.Record
	if err := json.Unmarshal([]byte(body), &rec); err != nil {
		t.Fatal(err)
	}
	waitURL := base + controlapi.CommandsPath + "/" + rec.ID + "/wait?timeout=24h"
	done := make(chan int, 8)
	// Eight long waits take every slot. A long wait that arrives while a
	// probe below holds a slot for its millisecond is refused (503) and
	// asks again, so all eight end up waiting whatever the scheduling.
	for range 8 {
		go func() {
			for {
				req, _ := http.NewRequest("GET", waitURL, nil)
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					done <- 0
					return
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusServiceUnavailable {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				done <- resp.StatusCode
				return
			}
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := call(t, "GET", base+controlapi.CommandsPath+"/"+rec.ID+"/wait?timeout=1ms", token, "")
		if code == http.StatusServiceUnavailable {
			break
		}
		if code != http.StatusAccepted || time.Now().After(deadline) {
			t.Fatalf("a ninth wait: %d %s", code, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := a.Tracker().Reply(rec.ID, rec.Target(), 200, "ok", nil); err != nil {
		t.Fatal(err)
	}
	for range 8 {
		if code := <-done; code != http.StatusOK {
			t.Fatalf("a wait ended %d", code)
		}
	}
}

func TestClientFlow(t *testing.T) {
	base, a := serve(t, true)
	c := controlclient.New(base, token, nil)
	ctx := context.Background()
	l, err := c.TakeLease(ctx, control.LeaseRequest{Asset: "T1", Holder: "hmi-1", Origin: "local:hmi", Class: control.ClassSafety, For: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.TakeLease(ctx, control.LeaseRequest{Asset: "T1", Holder: "other", Origin: "local:x", For: time.Hour}); err == nil ||
		!strings.Contains(err.Error(), "leased by hmi-1") {
		t.Fatalf("second lease: %v", err)
	}
	rec, err := c.Submit(ctx, control.Command{Product: "pk", Asset: "T1", Origin: "cloud", Inputs: map[string]any{"p": 1}})
	if rec.Status != command.Rejected || !strings.Contains(rec.Reason, "leased by hmi-1") || err == nil {
		t.Fatalf("cloud under a lease: %s %q %v", rec.Status, rec.Reason, err)
	}
	audit, err := c.Audit(ctx, control.Filter{Asset: "T1", Status: command.Rejected})
	if err != nil || len(audit) != 1 || audit[0].ID != rec.ID {
		t.Fatalf("audit: %v %v", audit, err)
	}
	if err := c.ReleaseLease(ctx, "T1", l.Holder); err != nil {
		t.Fatal(err)
	}
	rec, err = c.Submit(ctx, control.Command{Product: "pk", Asset: "T1", Origin: "cloud", Inputs: map[string]any{"p": 2}, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	// The silent device: a short wait answers 202 and the record in progress.
	wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	got, err := c.Wait(wctx, rec.ID)
	cancel()
	if err == nil || got.Status.Final() {
		t.Fatalf("wait on a silent device: %s %v", got.Status, err)
	}
	if _, err := a.Tracker().Reply(rec.ID, rec.Target(), 200, "ok", json.RawMessage(`{"applied":2}`)); err != nil {
		t.Fatal(err)
	}
	got, err = c.Wait(ctx, rec.ID)
	if err != nil || got.Status != command.Acked || got.Replied.IsZero() {
		t.Fatalf("after the reply: %+v %v", got, err)
	}
	list, err := c.List(ctx, control.Filter{Origin: "cloud"})
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %d %v", len(list), err)
	}
}

// TestSetPointOutsideThingModel: through the local API, a set-point that
// the asset's thing model refuses (ten times the power limit, text for a
// number, a point the model lacks) is answered 409 with the record,
// rejected with the point, the value, the allowed range and the model,
// and is in the audit; one within the range is queued.
func TestSetPointOutsideThingModel(t *testing.T) {
	base, a := serve(t, true)
	a.SetModels(models{"T1": {ID: "turbine", Points: map[string]control.PointSpec{
		"power_limit": {Type: control.PointFloat, Unit: "kW", Min: 0, Max: 2000}}}})
	cmds := base + controlapi.CommandsPath
	cases := []struct {
		name, inputs string
		code         int
		contains     string
	}{
		{"typo", `{"power_limit":15000}`, 409, "asset T1 (thing model turbine): power_limit = 15000 kW is outside the allowed range [0, 2000] kW"},
		{"text for a number", `{"power_limit":"1500"}`, 409, `power_limit = \"1500\": the point takes a number (kW), not text`},
		{"unknown point", `{"power_limt":1500}`, 409, `no measure point \"power_limt\" in the model (did you mean \"power_limit\"?)`},
		{"in range", `{"power_limit":1500}`, 200, `values within thing model turbine`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := call(t, "POST", cmds, token, `{"product":"pk","asset":"T1","origin":"local:hmi","inputs":`+tc.inputs+`}`)
			if code != tc.code || !strings.Contains(body, tc.contains) {
				t.Fatalf("%d %s, want %d containing %q", code, body, tc.code, tc.contains)
			}
			if tc.code != 409 {
				return
			}
			var ans controlapi.Answer
			if err := json.Unmarshal([]byte(body), &ans); err != nil || ans.Record == nil || ans.Record.Status != command.Rejected {
				t.Fatalf("answer %s: %v", body, err)
			}
			code, body = call(t, "GET", base+controlapi.AuditPath+"?id="+ans.Record.ID, token, "")
			if code != 200 || !strings.Contains(body, `"to": "rejected"`) || !strings.Contains(body, tc.contains) {
				t.Fatalf("audit: %d %s", code, body)
			}
		})
	}
}

// models is a fixed set of thing models by asset.
type models map[string]*control.ThingModel

func (m models) ThingModel(asset string) (*control.ThingModel, bool) {
	tm, ok := m[asset]
	return tm, ok
}
