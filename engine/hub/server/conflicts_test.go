package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/outbound"
)

// TestConflictsInHealthAndMetrics: rows of an edge that sent stored
// sequences again with other values (its buffer was reset) are counted in
// /v1/health and /metrics of the instance that kept them.
func TestConflictsInHealthAndMetrics(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	_, js := e.connect()
	schema, t0 := statsSchema(), statsT0
	rows := func(v float64) []enginetest.Row {
		out := make([]enginetest.Row, 12)
		for i := range out {
			out[i] = enginetest.Row{t0.Add(time.Duration(i) * time.Second), "A", v + float64(i)}
		}
		return out
	}
	publish(t, js, "sluice.e0.data.stats", encode(t, "e0", "stats", schema, 1, rows(0)...))
	waitFor(t, 30*time.Second, "rows stored", func() error {
		if d, _ := in.hub.Stats(); d.Rows != 12 {
			return fmt.Errorf("%d rows", d.Rows)
		}
		return nil
	})
	// The same sequences with other values, batched (ids other than the
	// first life's, which the broker would drop within its window).
	rec := enginetest.Record(nil, schema, rows(500)...)
	defer rec.Release()
	en := outbound.Encoder{Encoding: outbound.JSONBatch, Edge: "e0", Stream: "stats", BatchRows: 12}
	msgs, err := en.Encode(outbound.Entry{Rec: rec, First: 1, Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	publish(t, js, "sluice.e0.data.stats", msgs)
	waitFor(t, 30*time.Second, "conflicts in health", func() error {
		h, err := in.client.Health(context.Background())
		if err != nil {
			return err
		}
		if h.Data.Conflicts != 12 || h.Edge.Conflicts != 0 {
			return fmt.Errorf("health %+v", h)
		}
		return nil
	})
	req, _ := http.NewRequest(http.MethodGet, "http://"+in.api.Addr()+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "sluice_hub_ingest_conflicts_total{consumer=\"data\"} 12\n") {
		t.Fatalf("metrics:\n%s", body)
	}
}
