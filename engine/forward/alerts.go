package forward

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer"
)

// Sinks whose schema is engine.AlertSchema receive the alerts raised for
// rows other sinks dropped (quota or TTL).
var (
	alertMu      sync.Mutex
	alertTargets []*Sink
)

func registerAlertTarget(s *Sink) {
	alertMu.Lock()
	alertTargets = append(alertTargets, s)
	alertMu.Unlock()
}

func unregisterAlertTarget(s *Sink) {
	alertMu.Lock()
	defer alertMu.Unlock()
	for i, t := range alertTargets {
		if t == s {
			alertTargets = append(alertTargets[:i], alertTargets[i+1:]...)
			return
		}
	}
}

// DropAlertRule is the rule name of alerts raised for dropped rows.
const DropAlertRule = "buffer_drop"

// dropped handles a drop reported by the buffer: metrics, counters and,
// when the dropped rows were not themselves alerts or statistics the
// droppable predicate protects, an alert to every alert-carrying sink.
// The buffer has already logged it and counted it in rows_dropped.
func (s *Sink) dropped(d buffer.Drop) {
	s.m.dropped.WithLabelValues(d.Reason).Add(float64(d.Rows))
	// The rule the buffer evicted by: the shared quota's, else its own.
	droppable := s.opts.Buffer.Droppable
	if q := s.opts.Buffer.Quota; q != nil {
		droppable = q.Droppable()
	}
	if droppable == nil {
		droppable = buffer.DefaultDroppable
	}
	if s.alert || !droppable(s.opts.Schema) {
		// Alerts (or protected statistics) were dropped: raising an alert
		// about it into an alert buffer could evict more alerts. Counted
		// and logged only.
		return
	}
	alertMu.Lock()
	targets := append([]*Sink(nil), alertTargets...)
	alertMu.Unlock()
	if len(targets) == 0 {
		return
	}
	rec := s.dropAlert(d)
	defer rec.Release()
	for _, t := range targets {
		// Never block the goroutine that caused the drop on a full alert
		// buffer for long.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := t.append(ctx, rec)
		cancel()
		if err != nil {
			s.log.Error("cannot raise the alert for dropped rows", "err", err, "drop", d.String())
			continue
		}
		s.ctr.dropAlerts.Add(1)
		s.m.alertsRaised.Inc()
	}
}

// dropAlert builds the alert record of a drop.
func (s *Sink) dropAlert(d buffer.Drop) arrow.RecordBatch {
	rb := engine.NewRecordBuilder(s.opts.Mem, engine.AlertSchema)
	defer rb.Release()
	now := time.Now().UnixMilli()
	asset := s.opts.Edge + "/" + s.opts.Stream
	for i, f := range engine.AlertSchema.Fields {
		switch f.Name {
		case "time", "occur_time":
			rb.Timestamp(i).Append(arrow.Timestamp(now))
		case "recover_time":
			rb.Timestamp(i).AppendNull()
		case "id":
			rb.String(i).Append(fmt.Sprintf("%s/%s/%s/%d-%d", DropAlertRule, s.opts.Edge, s.opts.Stream, d.First, d.Last))
		case "asset":
			rb.String(i).Append(asset)
		case "rule":
			rb.String(i).Append(DropAlertRule)
		case "severity":
			rb.String(i).Append("major")
		case "type":
			rb.String(i).Append("data_loss")
		case "content":
			rb.String(i).Append(fmt.Sprintf("%s buffer of %s %s", d.Reason, asset, d.String()))
		case "value":
			rb.Float64(i).Append(float64(d.Rows))
		case "state":
			rb.String(i).Append(engine.AlertRaised)
		default:
			rb.Columns[i].AppendNull()
		}
	}
	rb.RowDone()
	return rb.NewRecord()
}
