package control_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/control"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// device is a simulated device behind a transport: it is offline until
// Up, records what it receives and answers each command (unless silent)
// through the arbiter's tracker, as the MQTT downlink does.
type device struct {
	mu     sync.Mutex
	up     chan struct{}
	isUp   bool
	silent bool
	got    []string
	seen   chan string
	a      *control.Arbiter
	// aSet, when not nil, is closed once a is the arbiter being opened
	// (see open): Open may send queued commands before it returns.
	aSet chan struct{}
}

func newDevice(up bool) *device {
	d := &device{up: make(chan struct{}), seen: make(chan string, 1000)}
	if up {
		d.Up()
	}
	return d
}

func (d *device) Up() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.isUp {
		d.isUp = true
		close(d.up)
	}
}

func (d *device) Ready(ctx context.Context) error {
	select {
	case <-d.up:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *device) Deliver(ctx context.Context, c control.Record) error {
	d.mu.Lock()
	d.got = append(d.got, c.ID)
	aSet := d.aSet
	d.mu.Unlock()
	if aSet != nil {
		select {
		case <-aSet:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	d.mu.Lock()
	silent, a := d.silent, d.a
	d.mu.Unlock()
	select {
	case d.seen <- c.ID:
	default:
	}
	if !silent {
		_, _ = a.Tracker().Reply(c.ID, c.Target(), 200, "done", nil)
	}
	return nil
}

func (d *device) received() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.got)
}

type fixture struct {
	clock *command.ManualClock
	dev   *device
	a     *control.Arbiter
	dir   string
}

func open(t *testing.T, dir string, clock *command.ManualClock, dev *device) *control.Arbiter {
	t.Helper()
	// Open resumes the log's queued commands at once: the device answers
	// them to this arbiter, not to one closed before.
	aSet := make(chan struct{})
	dev.mu.Lock()
	dev.a, dev.aSet = nil, aSet
	dev.mu.Unlock()
	a, err := control.Open(control.Options{Dir: dir, Transport: dev, Clock: clock, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	dev.mu.Lock()
	dev.a = a
	dev.mu.Unlock()
	close(aSet)
	return a
}

func newFixture(t *testing.T, up bool) *fixture {
	f := &fixture{clock: command.NewManualClock(t0), dev: newDevice(up), dir: t.TempDir()}
	f.a = open(t, f.dir, f.clock, f.dev)
	t.Cleanup(func() { f.a.Close() })
	return f
}

func setPoint(origin, asset string, v float64) control.Command {
	return control.Command{Product: "pk", Asset: asset, Service: command.SetPoints, Origin: origin, Inputs: map[string]any{"power_setpoint": v}}
}

// wait waits for a record to reach a final status.
func wait(t *testing.T, a *control.Arbiter, id string) control.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := a.Wait(ctx, id)
	if err != nil {
		t.Fatalf("waiting for %s: %v (status %s)", id, err, r.Status)
	}
	return r
}

// waitStatus waits (on the real clock, for the workers) until a record
// has a status.
func waitStatus(t *testing.T, a *control.Arbiter, id string, want control.Status) control.Record {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, _ := a.Get(id)
		if r.Status == want {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %s, want %s", id, r.Status, want)
		}
		time.Sleep(time.Millisecond)
	}
}

func audited(a *control.Arbiter, id, part string) bool {
	for _, tr := range a.Audit(control.Filter{ID: id}) {
		if strings.Contains(tr.Reason, part) {
			return true
		}
	}
	return false
}

func TestLeases(t *testing.T) {
	cases := []struct {
		name      string
		lease     control.LeaseRequest
		cmd       control.Command
		rejected  bool
		mentioned string
	}{
		{"a local safety lease blocks a cloud set-point",
			control.LeaseRequest{Asset: "T1", Holder: "hmi-1", Origin: "local:hmi", Class: control.ClassSafety, For: time.Hour},
			setPoint("cloud", "T1", 2000), true, "leased by hmi-1 (class safety)"},
		{"and an operator's command",
			control.LeaseRequest{Asset: "T1", Holder: "hmi-1", Origin: "local:hmi", Class: control.ClassSafety, For: time.Hour},
			setPoint("local:scada", "T1", 2000), true, "leased by hmi-1"},
		{"the holder's own command passes",
			control.LeaseRequest{Asset: "T1", Holder: "hmi-1", Origin: "local:hmi", Class: control.ClassSafety, For: time.Hour},
			func() control.Command { c := setPoint("local:hmi", "T1", 0); c.Lease = "hmi-1"; return c }(), false, ""},
		{"a higher class passes an operator's lease",
			control.LeaseRequest{Asset: "T1", Holder: "op", Origin: "local:op", Class: control.ClassOperator, For: time.Hour},
			func() control.Command { c := setPoint("local:trip", "T1", 0); c.Class = control.ClassSafety; return c }(), false, ""},
		{"another asset is free",
			control.LeaseRequest{Asset: "T2", Holder: "hmi-1", Origin: "local:hmi", Class: control.ClassSafety, For: time.Hour},
			setPoint("cloud", "T1", 2000), false, ""},
		{"a command under a lease not held is rejected",
			control.LeaseRequest{Asset: "T2", Holder: "hmi-1", Origin: "local:hmi", For: time.Hour},
			func() control.Command { c := setPoint("local:x", "T1", 0); c.Lease = "hmi-1"; return c }(), true, "holds no lease"},
		{"a cloud command may not claim the safety class",
			control.LeaseRequest{Asset: "T2", Holder: "hmi-1", Origin: "local:hmi", For: time.Hour},
			func() control.Command { c := setPoint("cloud", "T1", 0); c.Class = control.ClassSafety; return c }(), true, "may not claim class safety"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, true)
			ctx := context.Background()
			if _, err := f.a.TakeLease(ctx, tc.lease); err != nil {
				t.Fatal(err)
			}
			rec, err := f.a.Submit(ctx, tc.cmd)
			if tc.rejected {
				if !errors.Is(err, control.ErrRejected) || rec.Status != command.Rejected {
					t.Fatalf("status %s, err %v: want rejected", rec.Status, err)
				}
				if !strings.Contains(rec.Reason, tc.mentioned) || !audited(f.a, rec.ID, tc.mentioned) {
					t.Errorf("reason %q, audit %v: want %q", rec.Reason, f.a.Audit(control.Filter{ID: rec.ID}), tc.mentioned)
				}
				if got := f.dev.received(); len(got) != 0 {
					t.Errorf("the device received %v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r := wait(t, f.a, rec.ID); r.Status != command.Acked {
				t.Errorf("status %s (%s), want acked", r.Status, r.Reason)
			}
		})
	}
}

func TestLeaseLifecycle(t *testing.T) {
	f := newFixture(t, true)
	ctx := context.Background()
	l, err := f.a.TakeLease(ctx, control.LeaseRequest{Asset: "T1", Holder: "op", Origin: "local:op", Class: control.ClassOperator, For: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	// Another operator cannot take it; safety takes it over.
	if _, err := f.a.TakeLease(ctx, control.LeaseRequest{Asset: "T1", Holder: "op2", Origin: "local:op2", Class: control.ClassOperator, For: time.Minute}); !errors.Is(err, control.ErrLeased) || !strings.Contains(err.Error(), "leased by op") {
		t.Fatalf("second operator: %v", err)
	}
	if _, err := f.a.TakeLease(ctx, control.LeaseRequest{Asset: "T1", Holder: "trip", Origin: "local:trip", Class: control.ClassSafety, For: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if err := f.a.ReleaseLease(ctx, "T1", l.Holder); !errors.Is(err, control.ErrNoLease) {
		t.Fatalf("release by a former holder: %v", err)
	}
	if err := f.a.ReleaseLease(ctx, "T1", "trip"); err != nil {
		t.Fatal(err)
	}
	if got := f.a.Leases(); len(got) != 0 {
		t.Fatalf("leases after release: %v", got)
	}
	// A lease lapses by itself.
	if _, err := f.a.TakeLease(ctx, control.LeaseRequest{Asset: "T1", Holder: "op", Origin: "local:op", For: time.Minute}); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Minute)
	rec, err := f.a.Submit(ctx, setPoint("cloud", "T1", 1))
	if err != nil {
		t.Fatalf("after the lease lapsed: %v", err)
	}
	wait(t, f.a, rec.ID)
	var reasons []string
	for _, tr := range f.a.Audit(control.Filter{Asset: "T1"}) {
		if tr.ID == "" {
			reasons = append(reasons, tr.Reason)
		}
	}
	want := []string{"lease taken by op", "lease refused to op2", "lease taken over from op", "lease released by trip", "lease taken by op"}
	if len(reasons) != len(want) {
		t.Fatalf("lease audit %q, want %d entries", reasons, len(want))
	}
	for i := range want {
		if !strings.HasPrefix(reasons[i], want[i]) {
			t.Errorf("audit %d: %q, want %q...", i, reasons[i], want[i])
		}
	}
}

func TestExpiredWhileOffline(t *testing.T) {
	f := newFixture(t, false)
	ctx := context.Background()
	c := setPoint("cloud", "T1", 1500)
	c.Expiry = t0.Add(time.Minute)
	rec, err := f.a.Submit(ctx, c)
	if err != nil || rec.Status != command.Queued {
		t.Fatalf("submit: %s %v", rec.Status, err)
	}
	f.clock.Advance(5 * time.Minute)
	f.dev.Up()
	later, err := f.a.Submit(ctx, setPoint("cloud", "T2", 1))
	if err != nil {
		t.Fatal(err)
	}
	wait(t, f.a, later.ID)
	got, _ := f.a.Get(rec.ID)
	if got.Status != command.Expired || !audited(f.a, rec.ID, "expired before it was sent") {
		t.Fatalf("status %s (%s), want expired", got.Status, got.Reason)
	}
	if slices.Contains(f.dev.received(), rec.ID) {
		t.Fatal("an expired command was executed")
	}
	// Already expired when it arrives.
	c.Expiry = t0
	rec, err = f.a.Submit(ctx, c)
	if !errors.Is(err, control.ErrExpired) || rec.Status != command.Expired {
		t.Fatalf("expired on arrival: %s %v", rec.Status, err)
	}
}

func TestNewerSupersedesQueued(t *testing.T) {
	f := newFixture(t, false)
	ctx := context.Background()
	old, err := f.a.Submit(ctx, setPoint("cloud", "T1", 1000))
	if err != nil {
		t.Fatal(err)
	}
	newer, err := f.a.Submit(ctx, setPoint("cloud", "T1", 1200))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := f.a.Get(old.ID); got.Status != command.Superseded || got.Reason != "superseded by "+newer.ID {
		t.Fatalf("older: %s %q", got.Status, got.Reason)
	}
	// A rule may not replace the cloud's queued set-point.
	rule, err := f.a.Submit(ctx, setPoint("rule:curtail", "T1", 900))
	if !errors.Is(err, control.ErrRejected) || !strings.Contains(rule.Reason, "higher class cloud") {
		t.Fatalf("lower class newer: %s %q %v", rule.Status, rule.Reason, err)
	}
	// A command for another point does not replace it.
	other := control.Command{Product: "pk", Asset: "T1", Origin: "cloud", Inputs: map[string]any{"yaw": 10.0}}
	o, err := f.a.Submit(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	f.dev.Up()
	if r := wait(t, f.a, newer.ID); r.Status != command.Acked {
		t.Fatalf("newer: %s", r.Status)
	}
	wait(t, f.a, o.ID)
	if got := f.dev.received(); !slices.Equal(got, []string{newer.ID, o.ID}) {
		t.Fatalf("the device received %v, want %v", got, []string{newer.ID, o.ID})
	}
}

func TestHigherClassFirst(t *testing.T) {
	f := newFixture(t, false)
	ctx := context.Background()
	rule, _ := f.a.Submit(ctx, control.Command{Product: "pk", Asset: "T1", Origin: "rule", Service: "reset"})
	cloud, _ := f.a.Submit(ctx, control.Command{Product: "pk", Asset: "T1", Origin: "cloud", Service: "start"})
	safety, _ := f.a.Submit(ctx, control.Command{Product: "pk", Asset: "T1", Origin: "local:trip", Service: "stop"})
	f.dev.Up()
	for _, id := range []string{rule.ID, cloud.ID, safety.ID} {
		wait(t, f.a, id)
	}
	if got, want := f.dev.received(), []string{safety.ID, cloud.ID, rule.ID}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
}

func TestNoReplyTimesOut(t *testing.T) {
	f := newFixture(t, true)
	f.dev.silent = true
	ctx := context.Background()
	rec, err := f.a.Submit(ctx, setPoint("cloud", "T1", 1))
	if err != nil {
		t.Fatal(err)
	}
	<-f.dev.seen
	waitStatus(t, f.a, rec.ID, command.Sent)
	f.clock.Advance(10 * time.Second)
	got := wait(t, f.a, rec.ID)
	if got.Status != command.Timeout {
		t.Fatalf("status %s", got.Status)
	}
	if _, err := f.a.Tracker().Reply(rec.ID, rec.Target(), 200, "late", nil); !errors.Is(err, command.ErrFinal) {
		t.Fatalf("late reply: %v", err)
	}
	if got, _ := f.a.Get(rec.ID); got.Status != command.Timeout {
		t.Fatalf("status after a late reply %s", got.Status)
	}
	if !audited(f.a, rec.ID, "late reply ignored: code 200 late") {
		t.Fatalf("the late reply is not audited: %v", f.a.Audit(control.Filter{ID: rec.ID}))
	}
}

func TestIdempotencyKey(t *testing.T) {
	f := newFixture(t, true)
	ctx := context.Background()
	c := setPoint("cloud", "T1", 1)
	c.IdempotencyKey = "opt-42"
	first, err := f.a.Submit(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	wait(t, f.a, first.ID)
	again, err := f.a.Submit(ctx, c)
	if err != nil || again.ID != first.ID || again.Status != command.Acked {
		t.Fatalf("again: %s %s %v", again.ID, again.Status, err)
	}
	// The same key from another origin is another command.
	c.Origin = "local:hmi"
	other, err := f.a.Submit(ctx, c)
	if err != nil || other.ID == first.ID {
		t.Fatalf("other origin: %s %v", other.ID, err)
	}
	wait(t, f.a, other.ID)
	if n := len(f.dev.received()); n != 2 {
		t.Fatalf("the device received %d commands, want 2", n)
	}
	if !audited(f.a, first.ID, "same idempotency key") {
		t.Fatal("the repeated submission is not audited")
	}
	// It holds across a restart.
	f.a.Close()
	f.a = open(t, f.dir, f.clock, f.dev)
	c.Origin = "cloud"
	again, err = f.a.Submit(ctx, c)
	if err != nil || again.ID != first.ID {
		t.Fatalf("after a restart: %s %v", again.ID, err)
	}
}

func TestHostileCommands(t *testing.T) {
	f := newFixture(t, true)
	long := strings.Repeat("x", 300)
	many := map[string]any{}
	for i := range 65 {
		many[fmt.Sprint("p", i)] = 1.0
	}
	cases := map[string]func(*control.Command){
		"no asset":        func(c *control.Command) { c.Asset = "" },
		"long asset":      func(c *control.Command) { c.Asset = long },
		"wildcard asset":  func(c *control.Command) { c.Asset = "T+" },
		"slash service":   func(c *control.Command) { c.Service = "a/b" },
		"no origin":       func(c *control.Command) { c.Origin = "" },
		"unknown origin":  func(c *control.Command) { c.Origin = "martian" },
		"unknown class":   func(c *control.Command) { c.Class = "god" },
		"too many inputs": func(c *control.Command) { c.Inputs = many },
		"no inputs":       func(c *control.Command) { c.Inputs = nil },
		"nested input":    func(c *control.Command) { c.Inputs = map[string]any{"p": map[string]any{}} },
		"long string":     func(c *control.Command) { c.Inputs = map[string]any{"p": long + long + long + long} },
		"long key":        func(c *control.Command) { c.IdempotencyKey = long },
		"absurd expiry":   func(c *control.Command) { c.Expiry = t0.Add(100 * 365 * 24 * time.Hour) },
		"absurd timeout":  func(c *control.Command) { c.Timeout = 1000 * time.Hour },
		"control char":    func(c *control.Command) { c.Origin = "cloud\n" },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			c := setPoint("cloud", "T1", 1)
			mutate(&c)
			rec, err := f.a.Submit(context.Background(), c)
			if !errors.Is(err, control.ErrInvalid) || rec.ID != "" {
				t.Fatalf("record %q, err %v: want ErrInvalid and no record", rec.ID, err)
			}
		})
	}
	if n := len(f.a.List(control.Filter{})); n != 0 {
		t.Fatalf("%d records of refused commands", n)
	}
}

func TestRestartResumes(t *testing.T) {
	f := newFixture(t, true)
	ctx := context.Background()
	f.dev.silent = true
	sent, _ := f.a.Submit(ctx, setPoint("cloud", "T1", 1))
	<-f.dev.seen
	waitStatus(t, f.a, sent.ID, command.Sent)
	queued, _ := f.a.Submit(ctx, setPoint("cloud", "T1", 2)) // waits behind the sent one
	rej, _ := f.a.Submit(ctx, func() control.Command { c := setPoint("cloud", "T9", 1); c.Class = "safety"; return c }())
	f.a.Close()

	// Restart with a device that answers.
	dev := newDevice(true)
	f.a = open(t, f.dir, f.clock, dev)
	for id, want := range map[string]control.Status{sent.ID: command.Sent, queued.ID: command.Queued, rej.ID: command.Rejected} {
		if got, ok := f.a.Get(id); !ok || got.Status != want {
			t.Errorf("%s after restart: %s, want %s", id, got.Status, want)
		}
	}
	// The sent command is not sent again: it times out, then the queued
	// one goes.
	f.clock.Advance(10 * time.Second)
	if got := wait(t, f.a, sent.ID); got.Status != command.Timeout {
		t.Fatalf("sent: %s", got.Status)
	}
	if got := wait(t, f.a, queued.ID); got.Status != command.Acked {
		t.Fatalf("queued: %s", got.Status)
	}
	if got := dev.received(); !slices.Equal(got, []string{queued.ID}) {
		t.Fatalf("after restart the device received %v, want only %s", got, queued.ID)
	}
	if !audited(f.a, sent.ID, "not sent again") {
		t.Error("the restart's decision is not audited")
	}
}

func TestTornLog(t *testing.T) {
	f := newFixture(t, true)
	rec, _ := f.a.Submit(context.Background(), setPoint("cloud", "T1", 1))
	wait(t, f.a, rec.ID)
	f.a.Close()
	name := filepath.Join(f.dir, "control.log")
	fh, err := os.OpenFile(name, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.Write([]byte{200, 0, 0, 0, 1, 2, 3, 4, '{', '"'}) // a torn frame
	fh.Close()
	f.a = open(t, f.dir, f.clock, f.dev)
	if got, ok := f.a.Get(rec.ID); !ok || got.Status != command.Acked {
		t.Fatalf("after a torn tail: %v %s", ok, got.Status)
	}
	rec2, err := f.a.Submit(context.Background(), setPoint("cloud", "T1", 2))
	if err != nil {
		t.Fatal(err)
	}
	wait(t, f.a, rec2.ID)
	f.a.Close()
	f.a = open(t, f.dir, f.clock, f.dev)
	if _, ok := f.a.Get(rec2.ID); !ok {
		t.Fatal("a record written after the torn tail was cut off is lost")
	}
}

func TestLogCompacts(t *testing.T) {
	dir := t.TempDir()
	clock := command.NewManualClock(t0)
	dev := newDevice(true)
	a, err := control.Open(control.Options{Dir: dir, Transport: dev, Clock: clock, Retain: 50, AuditSize: 200, MaxLogBytes: 64 << 10, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	dev.a = a
	var last string
	for i := range 2000 {
		rec, err := a.Submit(context.Background(), setPoint("cloud", fmt.Sprint("T", i%7), float64(i)))
		if err != nil {
			t.Fatal(err)
		}
		wait(t, a, rec.ID)
		last = rec.ID
	}
	fi, err := os.Stat(filepath.Join(dir, "control.log"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 256<<10 {
		t.Fatalf("log of %d bytes: not compacted", fi.Size())
	}
	a.Close()
	a = open(t, dir, clock, dev)
	defer a.Close()
	if got, ok := a.Get(last); !ok || got.Status != command.Acked {
		t.Fatalf("the last record after compaction: %v %s", ok, got.Status)
	}
}

// TestKill9 kills a process with commands in flight: after a restart every
// record is there, the one that was sent is not sent again.
func TestKill9(t *testing.T) {
	const env = "SLUICE_CONTROL_KILL_DIR"
	if dir := os.Getenv(env); dir != "" {
		killChild(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9$")
	cmd.Env = append(os.Environ(), env+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ids ") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child: %q %v", line, err)
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	cmd.Wait()
	ids := strings.Fields(strings.TrimPrefix(line, "ids "))

	clock := command.NewManualClock(time.Now())
	dev := newDevice(true)
	a := open(t, dir, clock, dev)
	defer a.Close()
	var sent []string
	for _, id := range ids {
		r, ok := a.Get(id)
		if !ok {
			t.Fatalf("record %s lost", id)
		}
		switch r.Status {
		case command.Sent:
			sent = append(sent, id)
		case command.Queued, command.Acked, command.Rejected:
		default:
			t.Errorf("%s: %s after the kill", id, r.Status)
		}
	}
	if len(sent) != 1 {
		t.Fatalf("%d records sent when killed, want 1", len(sent))
	}
	clock.Advance(time.Hour) // the sent one times out; the queued ones go
	for _, id := range ids {
		wait(t, a, id)
	}
	if slices.Contains(dev.received(), sent[0]) {
		t.Fatal("a command sent before the kill was sent again")
	}
	if got, _ := a.Get(sent[0]); got.Status != command.Timeout {
		t.Fatalf("the sent command: %s", got.Status)
	}
}

// killChild runs in the child: one command sent to a silent device, more
// queued behind it, one rejected; it prints their ids and waits to be
// killed.
func killChild(dir string) {
	dev := newDevice(true)
	dev.silent = true
	a, err := control.Open(control.Options{Dir: dir, Transport: dev, Timeout: time.Hour})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	dev.a = a
	ctx := context.Background()
	var ids []string
	first, err := a.Submit(ctx, setPoint("cloud", "T1", 1))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	ids = append(ids, first.ID)
	<-dev.seen
	for i := range 5 {
		c := control.Command{Product: "pk", Asset: "T1", Origin: "cloud", Inputs: map[string]any{fmt.Sprint("p", i): 1.0}}
		r, _ := a.Submit(ctx, c)
		ids = append(ids, r.ID)
	}
	r, _ := a.Submit(ctx, func() control.Command { c := setPoint("cloud", "T2", 1); c.Class = "safety"; return c }())
	ids = append(ids, r.ID)
	fmt.Println("ids " + strings.Join(ids, " "))
	select {}
}

func TestSecondOpenRefused(t *testing.T) {
	f := newFixture(t, true)
	if _, err := control.Open(control.Options{Dir: f.dir, Transport: newDevice(true)}); !errors.Is(err, control.ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
}

// stuck is a transport whose delivery hangs until the arbiter closes.
type stuck struct{ in chan struct{} }

func (s *stuck) Ready(context.Context) error { return nil }
func (s *stuck) Deliver(ctx context.Context, _ control.Record) error {
	close(s.in)
	<-ctx.Done()
	return ctx.Err()
}

// A command being delivered when the arbiter closes stays sent (it may
// have gone out): it is neither failed nor sent again after a reopen.
func TestCloseDuringDelivery(t *testing.T) {
	dir := t.TempDir()
	clock := command.NewManualClock(t0)
	tr := &stuck{in: make(chan struct{})}
	a, err := control.Open(control.Options{Dir: dir, Transport: tr, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := a.Submit(context.Background(), setPoint("cloud", "T1", 1))
	if err != nil {
		t.Fatal(err)
	}
	<-tr.in
	a.Close()
	dev := newDevice(true)
	a = open(t, dir, clock, dev)
	defer a.Close()
	if got, _ := a.Get(rec.ID); got.Status != command.Sent {
		t.Fatalf("after a close during delivery: %s (%s)", got.Status, got.Reason)
	}
	clock.Advance(time.Minute)
	if got := wait(t, a, rec.ID); got.Status != command.Timeout || len(dev.received()) != 0 {
		t.Fatalf("%s, delivered again %v", got.Status, dev.received())
	}
}
