package server_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/hub/protocol"
	"github.com/sluice-edge/sluice/engine/hub/server"
	"github.com/sluice-edge/sluice/engine/hub/store"
)

// TestReleaseReachesEdgesThatJoinLater: a release to a label or to all
// reaches an edge that first appears after it was made, and an edge whose
// labels change to match it; an edge whose desired record names a newer
// release keeps that one, and its entry reads superseded.
func TestReleaseReachesEdgesThatJoinLater(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	ctx := context.Background()
	_, js := e.connect()
	kv, err := js.KeyValue(ctx, protocol.DesiredBucket)
	if err != nil {
		t.Fatal(err)
	}
	desired := func(edge string) string {
		key, err := protocol.DesiredKey(edge)
		if err != nil {
			t.Fatal(err)
		}
		en, err := kv.Get(ctx, key)
		if err != nil {
			return err.Error()
		}
		d, err := protocol.DecodeDesired(en.Value())
		if err != nil {
			t.Fatal(err)
		}
		return d.ReleaseID
	}
	early := e.edge("early", `{"site":"a"}`)
	early.heartbeat(time.Now().UTC())
	early.run()
	waitFor(t, 10*time.Second, "edge early online", func() error {
		es, err := in.client.Edges(ctx)
		if err != nil || len(es) != 1 {
			return fmt.Errorf("edges %+v %v", es, err)
		}
		return nil
	})
	b1 := e.build("wf", 1, e.key)
	relA, err := in.client.Release(ctx, bytes.NewReader(b1), int64(len(b1)), server.Target{Kind: store.TargetLabel, Selector: "site=a"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "early applied", func() error {
		if got, _ := states(t, in.client, relA.ID); got != "early=applied " {
			return errors.New(got)
		}
		return nil
	})

	// An edge of the label that first appears now.
	late := e.edge("late", `{"site":"a"}`)
	late.run()
	late.heartbeat(time.Now().UTC())
	waitFor(t, 20*time.Second, "late edge of the label applied", func() error {
		if got, _ := states(t, in.client, relA.ID); got != "early=applied late=applied " {
			return fmt.Errorf("%s (desired record of late: %s)", got, desired("late"))
		}
		return nil
	})

	// An edge of another label, whose labels then change to match.
	mover := e.edge("mover", `{"site":"b"}`)
	mover.run()
	mover.heartbeat(time.Now().UTC())
	waitFor(t, 10*time.Second, "mover online", func() error {
		d, err := in.client.Edge(ctx, "mover")
		if err != nil || !d.Online {
			return fmt.Errorf("%+v %v", d, err)
		}
		return nil
	})
	if got := desired("mover"); got != jetstreamKeyNotFound {
		t.Fatalf("an edge no release targets has desired record %s", got)
	}
	mover.labels = `{"site":"a"}`
	mover.heartbeat(time.Now().UTC())
	waitFor(t, 20*time.Second, "edge whose labels changed applied", func() error {
		if got, _ := states(t, in.client, relA.ID); got != "early=applied late=applied mover=applied " {
			return fmt.Errorf("%s (desired record of mover: %s)", got, desired("mover"))
		}
		return nil
	})

	// A newer release to all, then an edge moves to a label whose release
	// is older: its desired record keeps the newest release.
	b2 := e.build("wf", 2, e.key)
	relAll, err := in.client.Release(ctx, bytes.NewReader(b2), int64(len(b2)), server.Target{Kind: store.TargetAll})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "release to all applied", func() error {
		if got, _ := states(t, in.client, relAll.ID); got != "early=applied late=applied mover=applied " {
			return errors.New(got)
		}
		return nil
	})
	newcomer := e.edge("newcomer", `{"site":"c"}`)
	newcomer.run()
	newcomer.heartbeat(time.Now().UTC())
	waitFor(t, 20*time.Second, "newcomer gets the release to all", func() error {
		if got, _ := states(t, in.client, relAll.ID); got != "early=applied late=applied mover=applied newcomer=applied " {
			return fmt.Errorf("%s (desired record of newcomer: %s)", got, desired("newcomer"))
		}
		return nil
	})
	if got, _ := states(t, in.client, relA.ID); got != "early=applied late=applied mover=applied " {
		t.Fatalf("the older label release took in a newcomer of another label: %s", got)
	}
	// Two label releases, the newer one to the newcomer's label; then the
	// newcomer moves to the older one's label. Its desired record keeps
	// the newest release, and the older one lists it superseded.
	b3 := e.build("wf", 3, e.key)
	relD, err := in.client.Release(ctx, bytes.NewReader(b3), int64(len(b3)), server.Target{Kind: store.TargetLabel, Selector: "site=d"})
	if err != nil {
		t.Fatal(err)
	}
	b4 := e.build("wf", 4, e.key)
	relC, err := in.client.Release(ctx, bytes.NewReader(b4), int64(len(b4)), server.Target{Kind: store.TargetLabel, Selector: "site=c"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "newcomer applies the release to its label", func() error {
		if got, _ := states(t, in.client, relC.ID); got != "newcomer=applied " {
			return errors.New(got)
		}
		return nil
	})
	newcomer.labels = `{"site":"d"}`
	newcomer.heartbeat(time.Now().UTC())
	waitFor(t, 20*time.Second, "older label release superseded for the newcomer", func() error {
		_, v := states(t, in.client, relD.ID)
		if len(v.Edges) != 1 || v.Edges[0].Edge != "newcomer" || v.Edges[0].State != store.ReleaseRejected ||
			v.Edges[0].Reason != "superseded by release "+relC.ID {
			return fmt.Errorf("%+v", v.Edges)
		}
		return nil
	})
	for edge, want := range map[string]string{"early": relAll.ID, "late": relAll.ID, "mover": relAll.ID, "newcomer": relC.ID} {
		if got := desired(edge); got != want {
			t.Errorf("desired record of %s names %s, want %s", edge, got, want)
		}
	}
	if got, _ := states(t, in.client, relA.ID); got != "early=applied late=applied mover=applied " {
		t.Errorf("release %s: %s", relA.ID, got)
	}
}

// jetstreamKeyNotFound is the text of a missing key's error.
var jetstreamKeyNotFound = "nats: key not found"
