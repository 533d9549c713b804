package ops

import (
	"math"
	"testing"
	"time"
)

// Ages and durations read as people write them, not as 25582h2m0s.
func TestAge(t *testing.T) {
	const day = 24 * time.Hour
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0ms"},
		{800 * time.Millisecond, "800ms"},
		{45 * time.Second, "45s"},
		{45*time.Second + 900*time.Millisecond, "45s"},
		{time.Minute, "1m"},
		{12*time.Minute + 5*time.Second, "12m 5s"},
		{5*time.Hour + 7*time.Minute + 9*time.Second, "5h 7m"},
		{3*day + 4*time.Hour + 59*time.Minute, "3d 4h"},
		{2*day + 30*time.Minute, "2d"},
		{25582*time.Hour + 2*time.Minute, "2y 335d"},
		{365 * day, "1y"},
		{-(12*time.Minute + 5*time.Second), "-12m 5s"},
	} {
		if got := Age(c.d); got != c.want {
			t.Errorf("Age(%v) = %q, want %q", c.d, got, c.want)
		}
	}
	for _, c := range []struct {
		sec  float64
		want string
	}{
		{92097720, "2y 335d"},
		{1.5, "1s"},
		{math.NaN(), "a very long time"},
		{math.Inf(1), "a very long time"},
		{1e300, "a very long time"},
	} {
		if got := Dur(c.sec); got != c.want {
			t.Errorf("Dur(%v) = %q, want %q", c.sec, got, c.want)
		}
	}
}
