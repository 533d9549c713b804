package mqtt

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"
)

// TestCutUTF8 checks the one cut of long text the source and the broker
// share: at most n bytes, on a character boundary.
func TestCutUTF8(t *testing.T) {
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"abcdef", 3, "abc"},
		{"aé", 2, "a"}, // é is two bytes: not cut in half
		{"ééé", 5, "éé"},
		{"", 0, ""},
	} {
		if got := cutUTF8(tc.s, tc.n); got != tc.want {
			t.Errorf("cutUTF8(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
}

// TestLastErrorCut: the last error a device table keeps is cut to
// maxReasonBytes, as docs/mqtt.md says, and stays valid UTF-8.
func TestLastErrorCut(t *testing.T) {
	d := newDevices(0, 0, 0, 0, new(atomic.Int64))
	s := d.get("T1")
	d.fail(s, strings.Repeat("é", 1024), time.Now())
	got := s.lastErr.Load().reason
	if len(got) > maxReasonBytes || len(got) < maxReasonBytes-1 || !utf8.ValidString(got) {
		t.Fatalf("last error of %d bytes (valid UTF-8: %v), want at most %d", len(got), utf8.ValidString(got), maxReasonBytes)
	}
}
