package window

import "time"

// SetLateClock sets the clock the late-rows alert of o reads.
func SetLateClock(o *Operator, now func() time.Time) { o.lateWatch.now = now }
