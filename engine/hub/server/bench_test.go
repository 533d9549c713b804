package server_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/hub/server"
	"github.com/sluice-edge/sluice/engine/hub/store"
)

// BenchmarkReleaseApplied measures the time from a release to all of ten
// edges until every one of them reported it applied: the bundle's upload
// and storage, the desired records, each edge's fetch and verification,
// its report through the edge stream and the hub's write.
func BenchmarkReleaseApplied(b *testing.B) {
	e := newEnv(b)
	in := e.start()
	ctx := context.Background()
	const edges = 10
	for i := range edges {
		s := e.edge(fmt.Sprintf("e%02d", i), `{"site":"a"}`)
		s.heartbeat(time.Now().UTC())
		s.run()
	}
	waitFor(b, 20*time.Second, "edges known", func() error {
		es, err := in.client.Edges(ctx)
		if err != nil || len(es) != edges {
			return fmt.Errorf("%d edges (%v)", len(es), err)
		}
		return nil
	})
	bundles := make([][]byte, 0, 64)
	var total time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		for len(bundles) <= i {
			bundles = append(bundles, e.build("wf", uint64(len(bundles)+1), e.key))
		}
		b.StartTimer()
		start := time.Now()
		rel, err := in.client.Release(ctx, bytes.NewReader(bundles[i]), int64(len(bundles[i])), server.Target{Kind: store.TargetAll})
		if err != nil {
			b.Fatal(err)
		}
		for {
			v, err := in.client.ReleaseStatus(ctx, rel.ID)
			if err != nil {
				b.Fatal(err)
			}
			if v.Counts[store.ReleaseApplied] == edges {
				break
			}
			if v.Counts[store.ReleaseRejected] > 0 || time.Since(start) > time.Minute {
				b.Fatalf("release %s: %+v", rel.ID, v.Counts)
			}
			time.Sleep(5 * time.Millisecond)
		}
		total += time.Since(start)
	}
	b.ReportMetric(total.Seconds()*1000/float64(b.N), "ms/release")
}
