package spec

import "testing"

// WithDefaults puts back the defaults of the fields holding the given
// positions, and leaves the original configuration alone.
func TestWithDefaults(t *testing.T) {
	c := mustParse(t, demoSpec(), "path: /x\nbatch_size: 7\nmode: truncate\nheaders: {a: 1, b: 2}\n")
	for _, tc := range []struct {
		name  string
		at    []Pos
		batch int64
		mode  string
		path  string
	}{
		{"nothing", nil, 7, "truncate", "/x"},
		{"at the value", []Pos{c.Pos("batch_size")}, 1024, "truncate", "/x"},
		{"inside the value", []Pos{{File: c.File(), Line: 3, Col: 9}}, 7, "append", "/x"},
		{"inside a nested value", []Pos{{File: c.File(), Line: 4, Col: 16}}, 7, "truncate", "/x"},
		{"required field, no default", []Pos{c.Pos("path")}, 7, "truncate", ""},
		{"another file", []Pos{{File: "other.yaml", Line: 2, Col: 13}}, 7, "truncate", "/x"},
	} {
		d := c.WithDefaults(tc.at)
		if d.Int("batch_size") != tc.batch || d.String("mode") != tc.mode || d.String("path") != tc.path {
			t.Errorf("%s: batch_size %d mode %q path %q, want %d %q %q", tc.name, d.Int("batch_size"), d.String("mode"), d.String("path"), tc.batch, tc.mode, tc.path)
		}
	}
	if c.Int("batch_size") != 7 || c.String("path") != "/x" {
		t.Fatal("the original changed")
	}
	if (*Config)(nil).WithDefaults([]Pos{{Line: 1}}) != nil {
		t.Fatal("nil config")
	}
}
