package eventtime_test

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine/eventtime"
	"github.com/sluice-edge/sluice/engine/spec"
)

// TestParseWatermark: watermark_keys and watermark_idle_rows are read
// with their defaults, and a value out of bounds gives an error naming the
// field and the bound.
func TestParseWatermark(t *testing.T) {
	s := &spec.Spec{Name: "step", Fields: []spec.Field{
		{Name: "watermark_keys", Type: spec.Int, Default: eventtime.DefaultWatermarkKeys},
		{Name: "watermark_idle_rows", Type: spec.Int, Default: eventtime.DefaultWatermarkIdleRows},
	}}
	for _, tc := range []struct {
		yaml     string
		keys     int
		idleRows int64
		errs     []string
	}{
		{"{}", eventtime.DefaultWatermarkKeys, eventtime.DefaultWatermarkIdleRows, nil},
		{"{watermark_keys: 1, watermark_idle_rows: 1}", 1, 1, nil},
		{"{watermark_keys: 16}", 16, eventtime.DefaultWatermarkIdleRows, nil},
		{"{watermark_keys: 17}", 17, eventtime.DefaultWatermarkIdleRows, []string{"watermark_keys must be between 1 and 16, got 17"}},
		{"{watermark_keys: 0, watermark_idle_rows: 0}", 0, 0, []string{"watermark_keys must be between 1 and 16, got 0", "watermark_idle_rows must be at least 1, got 0"}},
	} {
		var node yaml.Node
		if err := yaml.Unmarshal([]byte(tc.yaml), &node); err != nil {
			t.Fatal(err)
		}
		cfg, errs := s.Parse("p.yaml", node.Content[0])
		if len(errs) > 0 {
			t.Fatalf("%s: %v", tc.yaml, errs)
		}
		keys, idleRows, errs := eventtime.ParseWatermark(cfg)
		if keys != tc.keys || idleRows != tc.idleRows || len(errs) != len(tc.errs) {
			t.Errorf("%s: %d, %d, %v; want %d, %d and %d errors", tc.yaml, keys, idleRows, errs, tc.keys, tc.idleRows, len(tc.errs))
			continue
		}
		for i, want := range tc.errs {
			if !strings.Contains(errs[i].Error(), want) {
				t.Errorf("%s: error %q lacks %q", tc.yaml, errs[i], want)
			}
		}
	}
}
