package window

import (
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
)

// LateAlertRule is the rule of the alert a window step raises while a large
// share of its rows arrive after their windows closed.
const LateAlertRule = "late_rows"

// lateBlock is how many rows with an event time the late share is measured
// over.
const lateBlock = 1000

// lateWatch raises an engine alert when the share of late rows in a block
// reaches a threshold, and clears it once the share falls below half of
// it. A block is the batches that bring the count of rows to lateBlock or
// more: blocks count rows, not time, but a batch is never split, so how the
// input is batched can move the block boundaries.
type lateWatch struct {
	threshold  float64 // 0: off
	rows, late int64   // of the current block
	raised     bool
	since      time.Time
	asset      string
	shared     *engine.Shared
	mem        memory.Allocator
	log        *slog.Logger
	now        func() time.Time
	// leaders names the keys the watermark follows, for the alert.
	leaders func() string
}

// observe counts a batch's rows with an event time and its late rows.
func (w *lateWatch) observe(rows, late int) {
	if w.threshold <= 0 {
		return
	}
	w.rows += int64(rows)
	w.late += int64(late)
	if w.rows < lateBlock {
		return
	}
	share := float64(w.late) / float64(w.rows)
	total, lateRows := w.rows, w.late
	w.rows, w.late = 0, 0
	switch {
	case !w.raised && share >= w.threshold:
		w.raised, w.since = true, w.now()
		w.raise(engine.EngineAlert{
			State: engine.AlertRaised, Occur: w.since, Value: share,
			Content: fmt.Sprintf("%.0f%% of the rows of %s arrived after their windows closed (%d of %d); the watermark follows %s: their clocks may run ahead, or the others' clocks or link lag; the rows are on the late port", share*100, w.asset, lateRows, total, w.leaders()),
		})
	case w.raised && share < w.threshold/2:
		w.raised = false
		w.raise(engine.EngineAlert{
			State: engine.AlertCleared, Occur: w.since, Recover: w.now(), Value: share,
			Content: fmt.Sprintf("rows of %s arrive on time again (%d late of the last %d)", w.asset, lateRows, total),
		})
	}
}

func (w *lateWatch) raise(a engine.EngineAlert) {
	a.ID = engine.EngineAlertID(LateAlertRule, w.asset, strconv.FormatInt(w.since.UnixMilli(), 10))
	a.Asset, a.Rule, a.Severity, a.Type = w.asset, LateAlertRule, "warning", "data_quality"
	w.log.Warn(a.Content, "alert", a.State)
	if engine.RaiseAlert(w.shared, w.mem, a) == 0 {
		w.log.Warn("no sink carries engine alerts: the late_rows alert stays in the log only")
	}
}
