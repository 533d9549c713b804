package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/sluice-edge/sluice/engine/bundle"
	"github.com/sluice-edge/sluice/engine/hub/ingest"
	"github.com/sluice-edge/sluice/engine/hub/protocol"
	"github.com/sluice-edge/sluice/engine/hub/store"
	"github.com/sluice-edge/sluice/engine/outbound"
)

// Bounds of what a report or heartbeat row may hold.
const (
	maxLabels    = protocol.MaxLabels // what an edge may have
	maxPipelines = bundle.MaxFiles    // a release has at most one pipeline a file
)

// edgeEvents is the ingest.Store of the edge-event consumer: it turns
// report rows into apply reports, heartbeat rows into heartbeats and
// control rows into command records.
type edgeEvents struct {
	st  Store
	hub *Hub // gives an edge the release it should have (catchUp)
}

// InsertRows records each row in order. A row that can never be recorded
// fails the call with a *store.RowError naming it, so the ingest
// terminates its message and writes the others again (every record is
// idempotent).
func (e *edgeEvents) InsertRows(ctx context.Context, rows []store.Row) (store.Inserted, error) {
	for i, r := range rows {
		var err error
		switch r.Stream {
		case protocol.ReportStream:
			var (
				rep  store.Report
				file string
			)
			if rep, file, err = reportOf(r); err == nil {
				if rep.Bundle == "" && protocol.CheckDigest(file) == nil {
					// A bundle refused before its manifest was read (a
					// bad signature) is named by the digest hubsync gave
					// as its file: the hub knows what it released there.
					b, berr := e.st.BundleByDigest(ctx, file)
					switch {
					case berr == nil:
						rep.Bundle, rep.Version = b.Name, b.Version
					case !errors.Is(berr, store.ErrNotFound):
						return store.Inserted{}, berr
					}
				}
				if err = e.st.RecordReport(ctx, r.Edge, rep); err != nil && !store.IsDataError(err) {
					return store.Inserted{}, err
				}
			}
		case protocol.HeartbeatStream:
			var hb store.HeartbeatInfo
			if hb, err = heartbeatOf(r); err == nil {
				if err = e.st.RecordHeartbeat(ctx, r.Edge, hb); err != nil && !store.IsDataError(err) {
					return store.Inserted{}, err
				}
				if err == nil && e.hub != nil {
					// A heartbeat of an edge that is new, or whose
					// labels changed, may put it into a release made
					// before: the message is delivered again until the
					// release reached it.
					if err := e.hub.catchUp(ctx, r.Edge); err != nil {
						return store.Inserted{}, err
					}
				}
			}
		case protocol.ControlStream:
			if id, _ := r.Values[protocol.ColID].(string); id == "" {
				// An audit entry of no command: a lease event.
				var le store.LeaseEvent
				if le, err = leaseEventOf(r); err == nil {
					if err = e.st.RecordLeaseEvent(ctx, le); err != nil && !store.IsDataError(err) {
						return store.Inserted{}, err
					}
				}
				break
			}
			var c store.Command
			if c, err = commandOf(r); err == nil {
				if err = e.st.RecordCommand(ctx, c); err != nil && !store.IsDataError(err) {
					return store.Inserted{}, err
				}
			}
		default:
			err = fmt.Errorf("stream %q is none of %s, %s, %s", r.Stream, protocol.ReportStream, protocol.HeartbeatStream, protocol.ControlStream)
		}
		if err != nil {
			return store.Inserted{}, fmt.Errorf("edge event %s: %w", r.MsgID, &store.RowError{Index: i, Err: err})
		}
	}
	return store.Inserted{New: int64(len(rows))}, nil
}

// ApplyAlert refuses: checkEdge keeps alert records off the edge stream.
func (e *edgeEvents) ApplyAlert(context.Context, store.AlertRecord, string) error {
	return errors.New("edge events: alert records do not travel on the edge stream")
}

// checkEdge ties an edge-stream message to its subject: the subject's edge
// is the message's, reports come on reports as rows of ReportStream and
// heartbeats on heartbeat as rows of HeartbeatStream.
func checkEdge(subject string, d *ingest.Decoded) error {
	edge, stream, err := msgOrigin(subject, d)
	if err != nil {
		return err
	}
	want := map[string]string{"sluice." + edge + ".reports": protocol.ReportStream,
		"sluice." + edge + ".heartbeat": protocol.HeartbeatStream,
		"sluice." + edge + ".control":   protocol.ControlStream}[subject]
	if stream != want || len(d.Alerts) > 0 {
		return fmt.Errorf("stream %q does not travel on subject %q", stream, subject)
	}
	return nil
}

// checkData ties a data or alert message to its subject's edge.
func checkData(subject string, d *ingest.Decoded) error {
	_, _, err := msgOrigin(subject, d)
	return err
}

// msgOrigin returns the edge and stream of a message whose id names the
// edge its subject names.
func msgOrigin(subject string, d *ingest.Decoded) (edge, stream string, err error) {
	edge, stream, _, _, _, err = outbound.ParseID(d.MsgID)
	if err != nil {
		return "", "", err
	}
	if se := protocol.SubjectEdge(subject); se == "" || se != edge {
		return "", "", fmt.Errorf("edge %q sent on subject %q", edge, subject)
	}
	return edge, stream, nil
}

// reportOf reads an apply report and its file from a row of
// protocol.ReportSchema.
func reportOf(r store.Row) (store.Report, string, error) {
	var rep store.Report
	if r.Time.IsZero() {
		return rep, "", errors.New("report without a time")
	}
	rep.Time = r.Time
	v := values(r.Values)
	rep.Bundle = v.str(protocol.ColBundle)
	rep.Version = v.uint(protocol.ColVersion)
	rep.Outcome = v.str(protocol.ColOutcome)
	rep.Reason = v.str(protocol.ColReason)
	rep.Location = v.str(protocol.ColLocation)
	rep.Steps = v.str(protocol.ColSteps)
	file := v.str(protocol.ColFile)
	if err := v.err(); err != nil {
		return rep, "", err
	}
	if rep.Outcome != store.Applied && rep.Outcome != store.Rejected {
		return rep, "", fmt.Errorf("outcome %.40q, want applied or rejected", rep.Outcome)
	}
	// The agent keeps longer reasons and steps than the store holds:
	// they are shortened, not refused (a refused report would leave its
	// release pending forever).
	rep.Reason, rep.Location, rep.Steps = clip(rep.Reason), clip(rep.Location), clip(rep.Steps)
	return rep, file, nil
}

// clip shortens text longer than the store's bound (ingest.ClipText).
func clip(s string) string { return ingest.ClipText(s, store.DefaultMaxTextBytes) }

// heartbeatOf reads a heartbeat from a row of protocol.HeartbeatSchema.
func heartbeatOf(r store.Row) (store.HeartbeatInfo, error) {
	var hb store.HeartbeatInfo
	if r.Time.IsZero() {
		return hb, errors.New("heartbeat without a time")
	}
	hb.At = r.Time
	v := values(r.Values)
	labels := v.str(protocol.ColLabels)
	hb.Bundle = v.str(protocol.ColBundle)
	hb.Version = v.uint(protocol.ColVersion)
	running := v.str(protocol.ColRunning)
	backlog := v.uint(protocol.ColBacklog)
	hb.Software = v.str(protocol.ColSoftware)
	if err := v.err(); err != nil {
		return hb, err
	}
	hb.Backlog = int64(min(backlog, math.MaxInt64))
	if labels != "" {
		if err := json.Unmarshal([]byte(labels), &hb.Labels); err != nil {
			return hb, fmt.Errorf("labels: %w", err)
		}
		if len(hb.Labels) > maxLabels {
			return hb, fmt.Errorf("%d labels, more than %d", len(hb.Labels), maxLabels)
		}
	}
	if running != "" {
		if err := json.Unmarshal([]byte(running), &hb.Running); err != nil {
			return hb, fmt.Errorf("running: %w", err)
		}
		if len(hb.Running) > maxPipelines {
			return hb, fmt.Errorf("%d pipelines, more than %d", len(hb.Running), maxPipelines)
		}
	}
	return hb, nil
}

// checkText refuses text the store would refuse: NUL, invalid UTF-8,
// longer than the store's default bound.
func checkText(s string) error {
	switch {
	case len(s) > store.DefaultMaxTextBytes:
		return fmt.Errorf("text of %d bytes, more than %d", len(s), store.DefaultMaxTextBytes)
	case strings.IndexByte(s, 0) >= 0 || !utf8.ValidString(s):
		return errors.New("text with a NUL byte or invalid UTF-8")
	}
	return nil
}

// reader reads typed columns of a row, remembering the first error.
type reader struct {
	v   map[string]any
	bad error
}

func values(v map[string]any) *reader { return &reader{v: v} }

func (r *reader) fail(col string, x any) {
	if r.bad == nil {
		r.bad = fmt.Errorf("column %s: unexpected %T", col, x)
	}
}

func (r *reader) err() error { return r.bad }

// str is a string column; "" when absent or null.
func (r *reader) str(col string) string {
	switch x := r.v[col].(type) {
	case nil:
		return ""
	case string:
		return x
	default:
		r.fail(col, x)
		return ""
	}
}

// uint is a non-negative integer column; 0 when absent or null.
func (r *reader) uint(col string) uint64 {
	switch x := r.v[col].(type) {
	case nil:
		return 0
	case json.Number:
		n, err := x.Int64()
		if err == nil && n >= 0 {
			return uint64(n)
		}
	case int64:
		if x >= 0 {
			return uint64(x)
		}
	case float64:
		// float64(math.MaxInt64) is 2^63, one past it: the bound is
		// strict.
		if x >= 0 && x < 1<<63 && x == math.Trunc(x) {
			return uint64(x)
		}
	}
	r.fail(col, r.v[col])
	return 0
}
