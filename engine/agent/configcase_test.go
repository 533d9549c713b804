package agent

import (
	"strings"
	"testing"
)

// sectionCase is one row of a table over a sluice.yaml section: yaml is
// added to a minimal config; err, when set, is a fragment the errors must
// hold, else the section parses to want.
type sectionCase[T comparable] struct {
	name, yaml string
	want       T
	err        string
}

// testSection runs the table, reading the parsed section with get.
func testSection[T comparable](t *testing.T, section string, tests []sectionCase[T], get func(*Config) T) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, errs := ParseConfig("sluice.yaml", []byte("edge: e1\ntrust: k.pub\n"+tt.yaml))
			if tt.err != "" {
				if len(errs) == 0 || !strings.Contains(errs.Error(), tt.err) {
					t.Fatalf("errors %v, want %q", errs, tt.err)
				}
				return
			}
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			if got := get(cfg); got != tt.want {
				t.Errorf("%s %+v, want %+v", section, got, tt.want)
			}
		})
	}
}
