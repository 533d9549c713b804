package control_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/control"
)

// The idempotency keys kept beyond their records are bounded (10 times
// Retain, docs/control.md): past the bound, those whose expiry comes first
// are forgotten, and a repetition of one of them is taken as a new
// command, while one whose expiry comes last is still refused.
func TestForgottenKeysBounded(t *testing.T) {
	clock := command.NewManualClock(t0)
	const retain = 3
	a, err := control.Open(control.Options{Dir: t.TempDir(), Transport: newDevice(true), Clock: clock, Timeout: 10 * time.Second, Retain: retain})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()
	const n = 20 * retain // twice the bound
	keyed := func(i int) control.Command {
		c := setPoint("cloud", fmt.Sprint("T", i), 1)
		c.Class = control.ClassSafety // rejected at once: a finished record
		c.ID, c.IdempotencyKey, c.Expiry = fmt.Sprint("k-", i), fmt.Sprint("k-", i), t0.Add(time.Hour+time.Duration(i)*time.Minute)
		return c
	}
	for i := range n {
		if _, err := a.Submit(ctx, keyed(i)); !errors.Is(err, control.ErrRejected) {
			t.Fatalf("command %d: %v", i, err)
		}
	}
	if _, ok := a.Get("k-0"); ok {
		t.Fatal("the first record is still kept; the test needs it forgotten")
	}
	// The last key whose record is forgotten (its expiry among the
	// furthest ahead) is kept: refused as a repetition.
	last := n - 1 - retain
	if _, ok := a.Get(fmt.Sprint("k-", last)); ok {
		t.Fatalf("record k-%d is still kept; the test needs it forgotten", last)
	}
	if _, err := a.Submit(ctx, keyed(last)); !errors.Is(err, control.ErrInvalid) {
		t.Fatalf("repetition of key k-%d: %v, want ErrInvalid", last, err)
	}
	// The first key (expiry first) was dropped: a new command.
	if _, err := a.Submit(ctx, keyed(0)); !errors.Is(err, control.ErrRejected) {
		t.Fatalf("repetition of the first key: %v, want it decided again (ErrRejected)", err)
	}
}
