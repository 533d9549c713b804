package control_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/control"
)

// TestQueuedBoundedPerAsset: while the device link is down, commands for
// other points of one asset queue up to MaxQueued; the next is rejected
// with the reason, another asset's command still passes, and once the
// queue drains the asset takes commands again.
func TestQueuedBoundedPerAsset(t *testing.T) {
	clock := command.NewManualClock(t0)
	dev := newDevice(false)
	a, err := control.Open(control.Options{Dir: t.TempDir(), Transport: dev, Clock: clock, Timeout: 10 * time.Second, MaxQueued: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	dev.a = a
	ctx := context.Background()
	point := func(asset string, i int) control.Command {
		return control.Command{Product: "pk", Asset: asset, Service: command.SetPoints, Origin: "cloud",
			Inputs: map[string]any{fmt.Sprint("p", i): float64(i)}}
	}
	var ids []string
	for i := range 3 {
		rec, err := a.Submit(ctx, point("A", i))
		if err != nil {
			t.Fatalf("command %d: %v", i, err)
		}
		ids = append(ids, rec.ID)
	}
	rec, err := a.Submit(ctx, point("A", 3))
	if !errors.Is(err, control.ErrRejected) || rec.Status != command.Rejected || !strings.Contains(rec.Reason, "already queued for asset A") {
		t.Fatalf("past the bound: %s %q %v, want rejected", rec.Status, rec.Reason, err)
	}
	other, err := a.Submit(ctx, point("B", 0))
	if err != nil {
		t.Fatalf("another asset: %v", err)
	}
	ids = append(ids, other.ID)
	dev.Up()
	for _, id := range ids {
		if r := wait(t, a, id); r.Status != command.Acked {
			t.Fatalf("%s: %s", id, r.Status)
		}
	}
	if _, err := a.Submit(ctx, point("A", 3)); err != nil {
		t.Fatalf("after the queue drained: %v", err)
	}
}
