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
