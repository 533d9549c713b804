package hubcontrol_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-edge/sluice/connectors/devsim"
	"github.com/sluice-edge/sluice/connectors/mqtt"
	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/control"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/hub/hubcontrol"
	"github.com/sluice-edge/sluice/engine/hub/ingest"
	"github.com/sluice-edge/sluice/engine/hub/server"
	"github.com/sluice-edge/sluice/engine/hub/store"
	"github.com/sluice-edge/sluice/engine/hub/uplink"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
)

const (
	testToken = "0123456789abcdef0123456789abcdef"
	mosquitto = "tcp://127.0.0.1:1883"
	waitFor   = 30 * time.Second
)

var seq atomic.Int64

func suffix() string { return fmt.Sprintf("%d%d", os.Getpid(), seq.Add(1)) }

// world is a hub (its own nats-server, a PostgreSQL schema of its own,
// the API) and one edge (arbiter, EnOS downlink to Mosquitto, uplink,
// command follower) whose NATS link runs through a proxy the test cuts;
// the devices are simulated turbines that answer commands.
type world struct {
	t       *testing.T
	nats    *enginetest.NATSServer
	link    *enginetest.Proxy
	client  *server.Client
	js      jetstream.JetStream // the hub's
	sim     *devsim.Sim
	pk      string
	edgeID  string
	edgeDir string
	edge    *edge
}

// edge is one run of the edge.
type edge struct {
	a      *control.Arbiter
	dl     *mqtt.Downlink
	nc     *natsgo.Conn
	up     *uplink.Uplink
	cancel context.CancelFunc
	done   chan struct{}
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{t: t, pk: "hc" + suffix(), edgeID: "edge-" + suffix(), edgeDir: t.TempDir()}
	dsn := outboundtest.PostgresDSN(t)
	w.nats = enginetest.NewNATSServer(t)
	w.nats.Start()
	schema := "hubcontrol_test_" + suffix()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = db.Exec("DROP SCHEMA IF EXISTS " + schema + " CASCADE"); db.Close() })
	st, err := store.Open(context.Background(), dsn, store.Options{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	nc, err := natsgo.Connect(w.nats.URL(), natsgo.MaxReconnects(-1), natsgo.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	w.js = js
	h, err := server.New(js, st, server.Options{Ingest: ingest.Options{FetchWait: 100 * time.Millisecond}, JanitorEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = h.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	api, err := server.Listen("127.0.0.1:0", testToken, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.Close() })
	if w.client, err = server.NewClient("http://"+api.Addr(), testToken); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.client.Close)
	w.link = enginetest.NewProxy(t, strings.TrimPrefix(w.nats.URL(), "nats://"))

	w.sim, err = devsim.New(devsim.Config{URLs: []string{mosquitto}, ClientID: "dev-" + w.pk, ProductKey: w.pk, Devices: 4})
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithTimeout(context.Background(), waitFor)
	defer acancel()
	stop, err := w.sim.Answer(actx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return w
}

// arbiterSource reads the arbiter's records for Records.
type arbiterSource struct{ a *control.Arbiter }

func (s arbiterSource) Get(id string) (command.Command, bool) { return s.a.Get(id) }
func (s arbiterSource) Audit(id string) []command.Transition {
	return s.a.Audit(control.Filter{ID: id, Limit: 32})
}
func (s arbiterSource) Since(v uint64) []command.Command {
	return s.a.Tracker().List(func(c *command.Command) bool { return c.Version > v })
}
func (s arbiterSource) Events(after uint64) []command.Transition {
	return slices.DeleteFunc(s.a.Tracker().AuditAfter(after), func(tr command.Transition) bool { return tr.ID != "" })
}

// startEdge opens the edge on its data directory and follows the hub's
// commands; beforeAck is Options.BeforeAck.
func (w *world) startEdge(beforeAck func(control.Record) bool) *edge {
	t := w.t
	t.Helper()
	e := &edge{done: make(chan struct{})}
	late := &control.LateTransport{}
	var err error
	// As on an edge, the records are read from the arbiter (Poll), not
	// pushed by its OnTransition.
	e.a, err = control.Open(control.Options{Dir: filepath.Join(w.edgeDir, "control"), Transport: late, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e.dl, err = mqtt.NewDownlink(mqtt.DownlinkOptions{Tracker: e.a.Tracker(), Client: mqtt.ClientOptions{
		URLs: []string{mosquitto}, ClientID: "ctl-" + w.edgeID, CleanSession: true}})
	if err != nil {
		t.Fatal(err)
	}
	late.Set(e.dl)
	e.nc, err = natsgo.Connect("nats://"+w.link.Addr(), natsgo.MaxReconnects(-1), natsgo.ReconnectWait(50*time.Millisecond),
		natsgo.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(e.nc)
	e.up, err = uplink.Open(uplink.Options{JS: js, Edge: w.edgeID, Dir: filepath.Join(w.edgeDir, "hub"),
		RetryMin: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r := hubcontrol.NewRecords(arbiterSource{e.a}, e.up, hubcontrol.RecordsOptions{Cursor: filepath.Join(w.edgeDir, "hub", "control.cursor")})
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go func() {
		defer close(e.done)
		go r.Run(ctx)
		_ = hubcontrol.Follow(ctx, js, w.edgeID, e.a, hubcontrol.Options{AckWait: time.Second, FetchWait: 200 * time.Millisecond,
			BeforeAck: beforeAck, OnRefused: func(c command.Command, audit []command.Transition) { _ = e.up.CommandRecord(c, audit) }})
	}()
	w.edge = e
	t.Cleanup(e.stop)
	return e
}

// stop ends the edge's run; later calls do nothing.
func (e *edge) stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	<-e.done
	e.cancel = nil
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = e.up.Close(ctx)
	_ = e.a.Close()
	_ = e.dl.Close()
	e.nc.Close()
}

// issue issues a set-point of power_limit for asset from the hub.
func (w *world) issue(asset string, limit float64, expireIn string) server.CommandView {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	v, err := w.client.IssueCommand(ctx, server.CommandRequest{Edge: w.edgeID, Product: w.pk, Asset: asset,
		Inputs: map[string]any{"power_limit": limit}, ExpireIn: expireIn})
	if err != nil {
		w.t.Fatal(err)
	}
	if v.Status != store.CommandIssued || v.Origin != "cloud:hub" || v.Expiry == nil {
		w.t.Fatalf("issued: %+v", v)
	}
	return v
}

// final waits for the hub to show the command with a final status (a
// command of the edge's own is unknown to the hub until it arrives).
func (w *world) final(t *testing.T, id string) server.CommandView {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for {
		v, err := w.client.WaitCommand(ctx, w.edgeID, id, 50*time.Millisecond)
		var ae *server.APIError
		if errors.As(err, &ae) && ae.Code == http.StatusNotFound && ctx.Err() == nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatalf("command %s at the hub: %v (%+v)", id, err, v)
		}
		return v
	}
}

// TestLeaseEventsToHub: the arbiter's lease events (taken, renewed,
// refused, taken over, released: audit entries of no command) reach the
// hub through the control uplink, through a cut link and a restart of the
// edge, each stored once, and GET /v1/edges/{id}/leases lists them newest
// first, page after page.
func TestLeaseEventsToHub(t *testing.T) {
	w := newWorld(t)
	e := w.startEdge(nil)
	ctx := context.Background()
	take := func(holder, origin, class string) {
		t.Helper()
		if _, err := e.a.TakeLease(ctx, control.LeaseRequest{Asset: "T0002", Holder: holder, Origin: origin, Class: class, For: time.Hour}); err != nil &&
			!errors.Is(err, control.ErrLeased) {
			t.Fatal(err)
		}
	}
	take("hmi-1", "local:hmi", control.ClassOperator)
	take("hmi-1", "local:hmi", control.ClassOperator) // renewed
	take("ops-1", "local:hmi", control.ClassOperator) // refused
	w.link.Down()
	take("plc-1", "local:plc", control.ClassSafety) // taken over, while the link is down
	e.stop()
	e = w.startEdge(nil)
	w.link.Up()
	if err := e.a.ReleaseLease(ctx, "T0002", "plc-1"); err != nil {
		t.Fatal(err)
	}
	want := []string{"lease released by plc-1", "lease taken over from hmi-1", "lease refused to ops-1", "lease renewed by hmi-1", "lease taken by hmi-1"}
	var got []server.LeaseEventView
	deadline := time.Now().Add(waitFor)
	for {
		got = got[:0]
		after := ""
		for {
			page, next, err := w.client.LeaseEventsPage(ctx, w.edgeID, "T0002", after, 2)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, page...)
			if next == "" {
				break
			}
			after = next
		}
		if len(got) >= len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lease events at the hub: %+v", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(got) != len(want) {
		t.Fatalf("%d lease events at the hub, want %d: %+v", len(got), len(want), got)
	}
	for i, ev := range got {
		if !strings.HasPrefix(ev.Reason, want[i]) || ev.Edge != w.edgeID || ev.Asset != "T0002" || ev.Seq == 0 ||
			i > 0 && ev.Seq >= got[i-1].Seq {
			t.Errorf("lease event %d at the hub: %+v, want %q", i, ev, want[i])
		}
	}
	if page, _, err := w.client.LeaseEventsPage(ctx, w.edgeID, "T9999", "", 0); err != nil || len(page) != 0 {
		t.Errorf("lease events of another asset: %+v %v", page, err)
	}
}

func TestCommandFromHub(t *testing.T) {
	w := newWorld(t)
	e := w.startEdge(nil)
	ctx := context.Background()

	t.Run("a local safety lease blocks a cloud set-point from the hub", func(t *testing.T) {
		if _, err := e.a.TakeLease(ctx, control.LeaseRequest{Asset: "T0001", Holder: "hmi-1", Origin: "local:hmi",
			Class: control.ClassSafety, For: time.Hour}); err != nil {
			t.Fatal(err)
		}
		v := w.issue("T0001", 100, "1m")
		got := w.final(t, v.ID)
		if got.Status != string(command.Rejected) || !strings.Contains(got.Reason, "leased by hmi-1 (class safety)") || got.Version == 0 {
			t.Fatalf("at the hub: %+v", got)
		}
		audit := e.a.Audit(control.Filter{ID: v.ID})
		if len(audit) == 0 || audit[len(audit)-1].To != command.Rejected {
			t.Fatalf("edge audit: %+v", audit)
		}
		// The hub has the edge's audit of the command too.
		if n := len(got.Audit); n < 2 || got.Audit[0].To != command.Accepted || got.Audit[n-1].To != command.Rejected ||
			!strings.Contains(got.Audit[n-1].Reason, "leased by hmi-1") {
			t.Fatalf("audit at the hub: %+v", got.Audit)
		}
		if _, ok := w.sim.SetPoints("T0001")["power_limit"]; ok {
			t.Fatal("the leased turbine got the set-point")
		}
	})

	t.Run("a command reaching the device ends acked at the hub", func(t *testing.T) {
		start := time.Now()
		v := w.issue("T0002", 150, "1m")
		got := w.final(t, v.ID)
		t.Logf("issued to acked at the hub in %v (polled every 50 ms)", time.Since(start).Round(time.Millisecond))
		if got.Status != string(command.Acked) || got.Inputs["power_limit"] != 150.0 || got.Class != control.ClassCloud {
			t.Fatalf("at the hub: %+v", got)
		}
		if kW := w.sim.SetPoints("T0002")["power_limit"]; kW != 150 {
			t.Fatalf("device power_limit %v, want 150", kW)
		}
	})

	t.Run("a set-point outside the asset's thing model is rejected at the edge, the hub sees why", func(t *testing.T) {
		e.a.SetModels(thingModels{"T0002": {ID: "turbine", Points: map[string]control.PointSpec{
			"power_limit": {Type: control.PointFloat, Unit: "kW", Min: 0, Max: 2000}}}})
		defer e.a.SetModels(nil)
		before := w.sim.SetPoints("T0002")["power_limit"]
		v := w.issue("T0002", 15000, "1m")
		got := w.final(t, v.ID)
		want := "asset T0002 (thing model turbine): power_limit = 15000 kW is outside the allowed range [0, 2000] kW"
		if got.Status != string(command.Rejected) || !strings.Contains(got.Reason, want) {
			t.Fatalf("at the hub: %+v", got)
		}
		if n := len(got.Audit); n < 2 || got.Audit[n-1].To != command.Rejected || !strings.Contains(got.Audit[n-1].Reason, want) {
			t.Fatalf("audit at the hub: %+v", got.Audit)
		}
		if kW := w.sim.SetPoints("T0002")["power_limit"]; kW != before {
			t.Fatalf("device power_limit %v, was %v", kW, before)
		}
	})

	t.Run("hostile messages on the edge's subject are refused, reported and never executed", func(t *testing.T) {
		before := w.sim.Stats().Commands
		now := time.Now().UTC()
		msg := func(id, edge, extra string) []byte {
			return fmt.Appendf(nil, `{"id":%q,"edge":%q,"product":%q,"asset":"T0002","inputs":{"power_limit":1}%s,"issued":%q,"expiry":%q}`,
				id, edge, w.pk, extra, now.Format(time.RFC3339Nano), now.Add(time.Minute).Format(time.RFC3339Nano))
		}
		cases := []struct {
			id, data, why string
			recorded      bool // refused by the arbiter, with a record
		}{
			{"c-evil-1", string(msg("c-evil-1", w.edgeID, `,"lease":"hmi-1"`)), "unknown field", false},
			{"c-evil-2", string(msg("c-evil-2", "other-edge", "")), "for edge", false},
			{"c-evil-3", strings.Replace(string(msg("c-evil-3", w.edgeID, "")), `"power_limit":1`, `"power_limit":{"x":1}`, 1), "inputs are numbers", false},
			// An input named twice: the edge would set the last value, a
			// reader of the message (a console, an audit) may show the first.
			{"c-evil-4", strings.Replace(string(msg("c-evil-4", w.edgeID, "")), `"power_limit":1`, `"power_limit":1,"power_limit":900`, 1), "appears twice", false},
			{"c-evil-5", strings.Replace(string(msg("c-evil-5", w.edgeID, "")), `"power_limit":1`, `"power_limit":1e400`, 1), "not a finite number", false},
			{"c-evil-6", strings.Replace(string(msg("c-evil-6", w.edgeID, "")), `"T0002"`, `"T\u202e0002"`, 1), "holds", false},
			{"c-evil-7", strings.Replace(string(msg("c-evil-7", w.edgeID, "")), `"power_limit":1`, `"power_limit":`+strings.Repeat("[", 5000)+strings.Repeat("]", 5000), 1), "inputs are numbers", false},
			// A class above the hub's: recorded and rejected by the arbiter.
			{"c-evil-8", string(msg("c-evil-8", w.edgeID, `,"class":"safety"`)), "may not claim", true},
		}
		subject := "sluice." + w.edgeID + ".commands"
		for _, c := range cases {
			if _, err := w.js.Publish(ctx, subject, []byte(c.data)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := w.js.Publish(ctx, subject, []byte(`not json`)); err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			got := w.final(t, c.id)
			if got.Status != string(command.Rejected) || !c.recorded && !strings.Contains(got.Reason, "refused by the edge") || !strings.Contains(got.Reason, c.why) {
				t.Errorf("%s at the hub: %+v", c.id, got)
			}
			if _, ok := e.a.Get(c.id); ok != c.recorded {
				t.Errorf("%s reached the arbiter", c.id)
			}
		}
		// A valid command after them is still executed.
		v := w.issue("T0002", 160, "1m")
		if got := w.final(t, v.ID); got.Status != string(command.Acked) {
			t.Fatalf("after hostile messages: %+v", got)
		}
		if n := w.sim.Stats().Commands - before; n != 1 {
			t.Fatalf("the device got %d commands, want 1", n)
		}
	})

	t.Run("local commands reach the hub too", func(t *testing.T) {
		rec, err := e.a.Submit(ctx, control.Command{Product: w.pk, Asset: "T0001", Origin: "local:hmi", Lease: "hmi-1",
			Inputs: map[string]any{"power_limit": 90.0}})
		if err != nil {
			t.Fatal(err)
		}
		got := w.final(t, rec.ID)
		if got.Status != string(command.Acked) || got.Origin != "local:hmi" || got.Class != control.ClassSafety {
			t.Fatalf("at the hub: %+v", got)
		}
		list, err := w.client.Commands(ctx, server.CommandFilter{Edge: w.edgeID, Asset: "T0001"})
		if err != nil || len(list) != 2 || list[0].ID != rec.ID {
			t.Fatalf("listing: %v %+v", err, list)
		}
	})

	t.Run("a command issued while the edge is offline expires at the edge, never reaching the device", func(t *testing.T) {
		w.link.Down()
		before := w.sim.Stats().Commands
		v := w.issue("T0003", 120, "2s")
		// The link comes back well after the command's deadline.
		time.Sleep(5 * time.Second)
		if got, err := w.client.Command(ctx, w.edgeID, v.ID); err != nil || got.Status != store.CommandIssued {
			t.Fatalf("while offline: %v %+v", err, got)
		}
		w.link.Up()
		got := w.final(t, v.ID)
		if got.Status != string(command.Expired) || !strings.Contains(got.Reason, "expired") {
			t.Fatalf("at the hub: %+v", got)
		}
		if _, ok := w.sim.SetPoints("T0003")["power_limit"]; ok || w.sim.Stats().Commands != before {
			t.Fatalf("the device got the expired command: %v", w.sim.SetPoints("T0003"))
		}
	})
}

func TestCommandRedeliveryExecutesOnce(t *testing.T) {
	w := newWorld(t)
	// The first run decides and then stops before it acks, as a crash
	// would.
	decided := make(chan control.Record, 1)
	e := w.startEdge(func(rec control.Record) bool {
		select {
		case decided <- rec:
		default:
		}
		return false
	})
	v := w.issue("T0004", 140, "1m")
	var first control.Record
	select {
	case first = <-decided:
	case <-time.After(waitFor):
		t.Fatal("the edge did not decide")
	}
	if first.ID != v.ID || first.IdempotencyKey != v.ID {
		t.Fatalf("record %+v", first)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if rec, err := e.a.Wait(ctx, v.ID); err != nil || rec.Status != command.Acked {
		t.Fatalf("%v %+v", err, rec)
	}
	e.stop()

	// The restarted edge is handed the message again (it was never
	// acked): the arbiter knows the id and does not run it again.
	e = w.startEdge(nil)
	got := w.final(t, v.ID)
	if got.Status != string(command.Acked) {
		t.Fatalf("at the hub: %+v", got)
	}
	deadline := time.Now().Add(waitFor)
	for {
		audit := e.a.Audit(control.Filter{ID: v.ID})
		sent, again := 0, 0
		for _, tr := range audit {
			if tr.To == command.Sent {
				sent++
			}
			if strings.Contains(tr.Reason, "same idempotency key") {
				again++
			}
		}
		if sent != 1 {
			t.Fatalf("sent %d times: %+v", sent, audit)
		}
		if again > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no redelivery seen: %+v", audit)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := w.sim.Stats().Commands; n != 1 {
		t.Fatalf("the device got %d commands, want 1", n)
	}
}

// thingModels is a fixed set of thing models by asset.
type thingModels map[string]*control.ThingModel

func (m thingModels) ThingModel(asset string) (*control.ThingModel, bool) {
	tm, ok := m[asset]
	return tm, ok
}
