package buffer_test

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/buffer/faultfs"
)

// TestBackgroundWork runs the background fsync, idle roll, sealing and TTL
// on a fake clock.
func TestBackgroundWork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := checkedMem(t)
		o := opts(faultfs.New(), mem)
		o.ManualSeal = false
		o.Fsync, o.FsyncInterval = buffer.FsyncInterval, 100*time.Millisecond
		o.IdleSeal = 10 * time.Second
		o.TTL, o.TTLBy = time.Hour, buffer.ByAge
		var drops dropLog
		o.OnDrop = drops.add
		b := mustOpen(t, "/buf", o)
		defer b.Close()
		appendN(t, b, mem, 0, 3, 10)
		if got := drain(t, b); len(got) != 0 {
			t.Fatalf("read %d rows before the interval fsync", len(got))
		}
		time.Sleep(150 * time.Millisecond)
		synctest.Wait()
		wantContiguous(t, drain(t, b), 1, 0, 30)
		if st := b.Status(); st.Segments != 0 {
			t.Fatalf("sealed before the file was idle: %+v", st)
		}
		// Idle for longer than IdleSeal: rolled and sealed.
		time.Sleep(12 * time.Second)
		synctest.Wait()
		if st := b.Status(); st.Segments != 1 || st.BacklogRows != 30 {
			t.Fatalf("after the idle period: %+v", st)
		}
		// Older than the TTL (by age): dropped and reported.
		time.Sleep(time.Hour)
		synctest.Wait()
		if st := b.Status(); st.Segments != 0 || st.DroppedRows != 30 || len(drops.drops) != 1 {
			t.Fatalf("after the TTL: %+v", st)
		}
	})
}
