package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestBufferScenario(t *testing.T) {
	r, err := Run(context.Background(), Options{Turbines: 10, Rows: 3000, Scenarios: []string{Buffer}})
	if err != nil {
		t.Fatal(err)
	}
	b := r.Buffer
	if b == nil || b.Rows != 3000 || len(b.Spill) != 2 || len(b.Drain) != 2 {
		t.Fatalf("buffer result: %+v", b)
	}
	if b.SegmentBytes <= 0 || b.JSONBytes <= b.SegmentBytes || b.SegmentVsJSON <= 0 {
		t.Fatalf("sizes: %+v", b)
	}
	for _, d := range b.Drain {
		if d.Messages != 3 { // 3,000 rows in blocks of 1,024
			t.Errorf("%s: %d messages", d.Encoding, d.Messages)
		}
	}
	var out bytes.Buffer
	if err := r.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"spill fsync", "segments/json", "drain to JetStream"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}
