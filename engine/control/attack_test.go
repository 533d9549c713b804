package control_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/control"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

// A command repeated with its idempotency key after its record has been
// forgotten (more than Retain finished records since) is not executed
// again while its expiry is ahead: a hub that publishes an old command
// again, or a message delivered again after a flood of other commands,
// must not move the device twice. This holds after a compaction and a
// restart too.
func TestReplayAfterRetainRollsOver(t *testing.T) {
	clock := command.NewManualClock(t0)
	dev := newDevice(true)
	dir := t.TempDir()
	opts := control.Options{Dir: dir, Transport: dev, Clock: clock, Timeout: 10 * time.Second, Retain: 3, MaxLogBytes: 4096}
	openA := func() *control.Arbiter {
		t.Helper()
		a, err := control.Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		dev.mu.Lock()
		dev.a = a
		dev.mu.Unlock()
		return a
	}
	a := openA()
	defer func() { a.Close() }()
	ctx := context.Background()
	c := setPoint("cloud:hub", "T1", 1)
	c.ID, c.IdempotencyKey, c.Expiry = "hub-1", "hub-1", t0.Add(time.Hour)
	first, err := a.Submit(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	wait(t, a, first.ID)
	// Finished records push it out of the kept ones.
	roll := func(n int) {
		for i := range n {
			o := setPoint("cloud", fmt.Sprint("T", i), 2)
			o.Class = control.ClassSafety // rejected at once: a finished record
			if _, err := a.Submit(ctx, o); !errors.Is(err, control.ErrRejected) {
				t.Fatalf("filler: %v", err)
			}
		}
	}
	roll(20)
	if _, ok := a.Get(first.ID); ok {
		t.Fatal("the first record is still kept; the test needs it forgotten")
	}
	replay := func(when string) {
		t.Helper()
		rec, err := a.Submit(ctx, c)
		if err == nil {
			wait(t, a, rec.ID)
		}
		if got := dev.received(); len(got) != 1 {
			t.Fatalf("%s: the device received %v (replay answered %s %v): executed twice", when, got, rec.Status, err)
		}
		if !errors.Is(err, control.ErrInvalid) {
			t.Fatalf("%s: replay answered %s %v, want ErrInvalid", when, rec.Status, err)
		}
	}
	replay("after the rollover")
	// After a restart (the log compacted meanwhile, so the forgotten
	// record is no longer in it).
	roll(20)
	a.Close()
	if b, err := os.ReadFile(filepath.Join(dir, "control.log")); err != nil || !strings.Contains(string(b), `"key":"hub-1"`) || strings.Contains(string(b), `"rec":{"id":"hub-1"`) {
		t.Fatalf("the compacted log should hold hub-1's key and not its record (%v)", err)
	}
	a = openA()
	replay("after a restart")
	// Once its expiry has passed, the key may go: a repetition is expired.
	clock.Advance(2 * time.Hour)
	roll(20)
	if rec, err := a.Submit(ctx, c); !errors.Is(err, control.ErrExpired) && !errors.Is(err, control.ErrInvalid) {
		t.Fatalf("after the expiry: %s %v", rec.Status, err)
	}
	if got := dev.received(); len(got) != 1 {
		t.Fatalf("the device received %v", got)
	}
}

// Commands for many assets while the link to the devices is down (a flood
// from a hostile hub or a careless script naming a new asset in each)
// are bounded in total, not only per asset: past MaxPending, commands are
// rejected, so that neither the records in memory, the log nor the
// workers (one per asset with commands) grow without bound.
func TestPendingBoundedAcrossAssets(t *testing.T) {
	clock := command.NewManualClock(t0)
	dev := newDevice(false)
	a, err := control.Open(control.Options{Dir: t.TempDir(), Transport: dev, Clock: clock, Timeout: 10 * time.Second, MaxPending: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	dev.a = a
	ctx := context.Background()
	var ids []string
	for i := range 5 {
		rec, err := a.Submit(ctx, setPoint("cloud", fmt.Sprint("A", i), 1))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, rec.ID)
	}
	// A newer command for the same point supersedes a queued one: it
	// adds nothing and passes.
	rec, err := a.Submit(ctx, setPoint("cloud", "A0", 2))
	if err != nil {
		t.Fatalf("superseding at the bound: %v", err)
	}
	ids[0] = rec.ID
	rec, err = a.Submit(ctx, setPoint("cloud", "A5", 1))
	if !errors.Is(err, control.ErrRejected) || rec.Status != command.Rejected {
		t.Fatalf("past the bound: %s %v, want rejected", rec.Status, err)
	}
	dev.Up()
	for _, id := range ids {
		if r := wait(t, a, id); r.Status != command.Acked {
			t.Fatalf("%s: %s", id, r.Status)
		}
	}
	// Room again.
	if _, err := a.Submit(ctx, setPoint("cloud", "A5", 1)); err != nil {
		t.Fatal(err)
	}
}

// The disk holding the control log fills up: commands are refused (an
// error to the issuer, never delivered) while it is full; once there is
// room again the log is rewritten from the live state and commands pass
// again without a restart; after a restart the log reads whole and no
// command has been delivered twice, nor one whose issuer had an error.
func TestFullDiskRecovers(t *testing.T) {
	mnt := enginetest.Tmpfs(t, 1<<20)
	dir := filepath.Join(mnt, "control")
	clock := command.NewManualClock(t0)
	dev := newDevice(true)
	a := open(t, dir, clock, dev)
	defer func() { a.Close() }()
	ctx := context.Background()
	first, err := a.Submit(ctx, setPoint("cloud", "T1", 1))
	if err != nil {
		t.Fatal(err)
	}
	wait(t, a, first.ID)
	filler := enginetest.Fill(t, mnt, 0)
	refused := map[string]bool{}
	for i := range 500 {
		rec, err := a.Submit(ctx, setPoint("cloud", fmt.Sprint("F", i), 1))
		if err != nil {
			if rec.ID != "" {
				refused[rec.ID] = true
			}
			if len(refused) >= 3 {
				break
			}
			continue
		}
		wait(t, a, rec.ID)
	}
	if len(refused) == 0 {
		t.Fatal("no command was refused on a full disk")
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Second)
	rec, err := a.Submit(ctx, setPoint("cloud", "T2", 1))
	if err != nil {
		t.Fatalf("with room again: %v", err)
	}
	if r := wait(t, a, rec.ID); r.Status != command.Acked {
		t.Fatalf("with room again: %s %s", r.Status, r.Reason)
	}
	a.Close()
	before := dev.received()
	a = open(t, dir, clock, dev)
	if r, ok := a.Get(rec.ID); !ok || r.Status != command.Acked {
		t.Fatalf("after a restart: %s is %v %s", rec.ID, ok, r.Status)
	}
	for _, r := range a.List(control.Filter{}) {
		if !r.Status.Final() {
			t.Errorf("after a restart %s is %s", r.ID, r.Status)
		}
	}
	a.Close()
	got := dev.received()
	seen := map[string]bool{}
	for _, id := range got {
		if seen[id] || refused[id] {
			t.Errorf("%s delivered twice or though refused: %v", id, got)
		}
		seen[id] = true
	}
	if len(got) != len(before) {
		t.Errorf("delivered after the restart: %v, before %v", got, before)
	}
}

// The engine stops while the disk is full (the log could not be written
// further): after the restart with room again, no command whose issuer
// had an error is executed, even if the first of its entries reached the
// log.
func TestFullDiskThenRestart(t *testing.T) {
	mnt := enginetest.Tmpfs(t, 1<<20)
	dir := filepath.Join(mnt, "control")
	clock := command.NewManualClock(t0)
	dev := newDevice(false) // commands wait in the queue
	a := open(t, dir, clock, dev)
	ctx := context.Background()
	// The log holds a page with room: the disk fills while its frames
	// fill it, in the middle of a decision.
	c0, err := a.Submit(ctx, setPoint("cloud", "T0", 1))
	if err != nil {
		t.Fatal(err)
	}
	filler := enginetest.Fill(t, mnt, 0)
	refused := map[string]bool{}
	queued := []string{c0.ID}
	for i := range 2000 {
		c := setPoint("cloud", fmt.Sprint("F", i), 1)
		c.ID = fmt.Sprint("cmd-", i)
		rec, err := a.Submit(ctx, c)
		if err != nil {
			refused[c.ID] = true
			if len(refused) >= 3 {
				break
			}
			continue
		}
		queued = append(queued, rec.ID)
	}
	if len(refused) == 0 {
		t.Fatal("no command was refused on a full disk")
	}
	t.Logf("%d queued, refused %v", len(queued), refused)
	a.Close()
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	dev.Up()
	a = open(t, dir, clock, dev)
	defer a.Close()
	for _, id := range queued {
		wait(t, a, id)
	}
	for id := range refused {
		if r, ok := a.Get(id); ok && !r.Status.Final() {
			r = wait(t, a, id)
			if r.Status == command.Acked {
				t.Errorf("%s, refused to its issuer, was executed after the restart", id)
			}
		}
	}
	for _, id := range dev.received() {
		if refused[id] {
			t.Errorf("%s, refused to its issuer, was delivered after the restart", id)
		}
	}
}

// A careless script taking a lease on every asset it knows (or a new
// asset name each time) does not grow the leases without bound: at most
// MaxLeases are in force, lapsed ones are forgotten.
func TestLeasesBounded(t *testing.T) {
	clock := command.NewManualClock(t0)
	dev := newDevice(true)
	a, err := control.Open(control.Options{Dir: t.TempDir(), Transport: dev, Clock: clock, MaxLeases: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()
	take := func(asset string) error {
		_, err := a.TakeLease(ctx, control.LeaseRequest{Asset: asset, Holder: "script", Origin: "local:script", For: time.Minute})
		return err
	}
	for i := range 3 {
		if err := take(fmt.Sprint("A", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := take("A0"); err != nil {
		t.Fatalf("renewing at the bound: %v", err)
	}
	if err := take("A3"); !errors.Is(err, control.ErrInvalid) {
		t.Fatalf("past the bound: %v, want ErrInvalid", err)
	}
	clock.Advance(2 * time.Minute)
	for i := range 3 {
		if err := take(fmt.Sprint("B", i)); err != nil {
			t.Fatalf("once the others lapsed: %v", err)
		}
	}
}
