package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func TestForwardScenario(t *testing.T) {
	r, err := Run(context.Background(), Options{Turbines: 10, Rows: 3000, Scenarios: []string{Forward}})
	if err != nil {
		t.Fatal(err)
	}
	f := r.Forward
	if f == nil || f.Rows != 3000 || f.BatchRows != 1024 || len(f.Runs) != 2 {
		t.Fatalf("forward result: %+v", f)
	}
	for _, d := range f.Runs {
		// Every backlog row and every live row is confirmed; timing is
		// reported, never asserted.
		if d.PublishedLive+d.PublishedBacklog != f.Rows+d.LiveRows {
			t.Errorf("%s: published %d live + %d backlog rows, want %d", d.Encoding, d.PublishedLive, d.PublishedBacklog, f.Rows+d.LiveRows)
		}
		if d.PublishedBacklog < f.Rows || d.RowsPerSec <= 0 || d.LiveLatency.Count > d.LiveBatches {
			t.Errorf("%s: %+v", d.Encoding, d)
		}
	}
	var out bytes.Buffer
	if err := r.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"forward: backlog of 3,000 readings", "arrow", "json_batch", "live-p99"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := r.WriteJSON(&out); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Forward *ForwardResult `json:"forward"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil || doc.Forward == nil || len(doc.Forward.Runs) != 2 {
		t.Fatalf("JSON forward: %v %+v", err, doc.Forward)
	}
}
