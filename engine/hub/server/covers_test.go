package server

import "testing"

func TestCovers(t *testing.T) {
	for _, tc := range []struct {
		f, s string
		want bool
	}{
		{"sluice.*.data.>", "sluice.e1.data.stats", true},
		{"sluice.*.data.>", "sluice.e1.data.a.b", true},
		{"sluice.*.data.>", "sluice.*.data.>", true},
		{"sluice.*.data.>", "sluice.e1.data", false},
		{"sluice.*.data.>", "sluice.>", false},
		{"sluice.*.alerts", "sluice.e1.alerts", true},
		{"sluice.*.alerts", "sluice.*.alerts", true},
		{"sluice.e1.alerts", "sluice.*.alerts", false},
		{"sluice.*.alerts", "sluice.e1.alerts.x", false},
		{"sluice.*.alerts", "other.e1.alerts", false},
	} {
		if got := covers(tc.f, tc.s); got != tc.want {
			t.Errorf("covers(%q, %q) = %v", tc.f, tc.s, got)
		}
	}
}
