package forward_test

import (
	"testing"

	"github.com/sluice-edge/sluice/engine/forward"
)

// TestParseMaxBytes: the max_bytes forms docs/forwarding.md lists, and the
// values it refuses.
func TestParseMaxBytes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want forward.MaxBytes
		bad  bool
	}{
		{in: "auto", want: forward.MaxBytes{Share: forward.DefaultDiskShare, Auto: true}},
		{in: "", want: forward.MaxBytes{Share: forward.DefaultDiskShare, Auto: true}},
		{in: "unlimited", want: forward.MaxBytes{}},
		{in: "0", want: forward.MaxBytes{}},
		{in: "10737418240", want: forward.MaxBytes{Bytes: 10737418240}},
		{in: "10GiB", want: forward.MaxBytes{Bytes: 10 << 30}},
		{in: "500MB", want: forward.MaxBytes{Bytes: 500e6}},
		{in: "1.5 KiB", want: forward.MaxBytes{Bytes: 1536}},
		{in: "30%", want: forward.MaxBytes{Share: 0.3}},
		{in: "100%", want: forward.MaxBytes{Share: 1}},
		{in: "0%", bad: true},
		{in: "101%", bad: true},
		{in: "-5MB", bad: true},
		{in: "10 parsecs", bad: true},
		{in: "99999999999TiB", bad: true},
		{in: "NaN", bad: true},
	} {
		got, err := forward.ParseMaxBytes(tc.in)
		if (err != nil) != tc.bad || (!tc.bad && got != tc.want) {
			t.Errorf("ParseMaxBytes(%q) = %+v, %v; want %+v (bad %v)", tc.in, got, err, tc.want, tc.bad)
		}
	}
}
