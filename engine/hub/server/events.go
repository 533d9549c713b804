package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
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

// txStore is a Store that writes many records in one transaction
// (*store.Store).
type txStore interface {
	InTx(ctx context.Context, f func(*store.Store) error) error
}

// InsertRows records the rows, those of each edge in order, in one
// transaction when the store has them: a commit waits for the disk, and
// one per row held the consumer to about 100 rows a second, so that one
// edge sending a few hundred rows a second kept every other edge's
// heartbeats waiting until they read offline. The rows are written
// grouped by edge, so instances writing batches at once take the edges'
// locks in one order. A row that can never be recorded fails the call
// (nothing of it is committed) with a *store.RowError naming it, so the
// ingest terminates its message and writes the others again (every
// record is idempotent). Edges whose heartbeat was recorded are then
// given the releases they joined (catchUp), after the commit, where the
// heartbeat's labels are seen.
func (e *edgeEvents) InsertRows(ctx context.Context, rows []store.Row) (store.Inserted, error) {
	order := make([]int, len(rows))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return rows[order[a]].Edge < rows[order[b]].Edge })
	var (
		beat []string
		err  error
	)
	if ts, ok := e.st.(txStore); ok {
		err = ts.InTx(ctx, func(tx *store.Store) error {
			var rerr error
			beat, rerr = e.record(ctx, tx, rows, order)
			return rerr
		})
	} else {
		beat, err = e.record(ctx, e.st, rows, order)
	}
	if err != nil {
		return store.Inserted{}, err
	}
	if e.hub != nil {
		for _, edge := range beat {
			// A heartbeat of an edge that is new, or whose labels
			// changed, may put it into a release made before: the
			// message is delivered again until the release reached it.
			if err := e.hub.catchUp(ctx, edge); err != nil {
				return store.Inserted{}, err
			}
		}
	}
	return store.Inserted{New: int64(len(rows))}, nil
}

// record records rows in the given order through st, and returns the
// edges whose heartbeat it recorded, each once. Of the heartbeats of one
// edge only the newest is recorded whole and the oldest widens its first
// seen time: what the others would record, the newest replaces (a
// thousand heartbeats of one edge in a batch cost two writes).
func (e *edgeEvents) record(ctx context.Context, st Store, rows []store.Row, order []int) ([]string, error) {
	type pick struct{ newest, oldest int }
	picks := map[string]*pick{}
	hbs := map[int]store.HeartbeatInfo{}
	for _, i := range order {
		r := rows[i]
		if r.Stream != protocol.HeartbeatStream {
			continue
		}
		hb, err := heartbeatOf(r)
		if err != nil {
			return nil, fmt.Errorf("edge event %s: %w", r.MsgID, &store.RowError{Index: i, Err: err})
		}
		hbs[i] = hb
		p := picks[r.Edge]
		if p == nil {
			picks[r.Edge] = &pick{newest: i, oldest: i}
			continue
		}
		if !hb.At.Before(hbs[p.newest].At) {
			p.newest = i
		}
		if hb.At.Before(hbs[p.oldest].At) {
			p.oldest = i
		}
	}
	var beat []string
	for _, i := range order {
		r := rows[i]
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
					b, berr := st.BundleByDigest(ctx, file)
					switch {
					case berr == nil:
						rep.Bundle, rep.Version = b.Name, b.Version
					case !errors.Is(berr, store.ErrNotFound):
						return nil, berr
					}
				}
				if err = st.RecordReport(ctx, r.Edge, rep); err != nil && !store.IsDataError(err) {
					return nil, err
				}
			}
		case protocol.HeartbeatStream:
			hb, p := hbs[i], picks[r.Edge]
			switch i {
			case p.newest:
				if err = st.RecordHeartbeat(ctx, r.Edge, hb); err != nil && !store.IsDataError(err) {
					return nil, err
				}
				if err == nil {
					beat = append(beat, r.Edge)
				}
			case p.oldest:
				// The newest's labels: both times may be clamped to
				// the hub's now, and the older must not win then.
				if err = st.Heartbeat(ctx, r.Edge, hbs[p.newest].Labels, hb.At); err != nil && !store.IsDataError(err) {
					return nil, err
				}
			}
		case protocol.ControlStream:
			if id, _ := r.Values[protocol.ColID].(string); id == "" {
				// An audit entry of no command: a lease event.
				var le store.LeaseEvent
				if le, err = leaseEventOf(r); err == nil {
					if err = st.RecordLeaseEvent(ctx, le); err != nil && !store.IsDataError(err) {
						return nil, err
					}
				}
				break
			}
			var c store.Command
			if c, err = commandOf(r); err == nil {
				if err = st.RecordCommand(ctx, c); err != nil && !store.IsDataError(err) {
					return nil, err
				}
			}
		default:
			err = fmt.Errorf("stream %q is none of %s, %s, %s", r.Stream, protocol.ReportStream, protocol.HeartbeatStream, protocol.ControlStream)
		}
		if err != nil {
			return nil, fmt.Errorf("edge event %s: %w", r.MsgID, &store.RowError{Index: i, Err: err})
		}
	}
	return beat, nil
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
	// What the store would refuse is refused here too: of a batch's
	// heartbeats of one edge only the newest reaches the store whole.
	if y := hb.At.Year(); y < 1 || y > 9999 {
		return hb, fmt.Errorf("time %s is outside the years 1 to 9999", hb.At.Format(time.RFC3339))
	}
	texts := []string{hb.Bundle, hb.Software}
	for k, v := range hb.Labels {
		texts = append(texts, k, v)
	}
	for _, p := range hb.Running {
		texts = append(texts, p.Pipeline, p.State)
	}
	for _, t := range texts {
		if err := checkText(t); err != nil {
			return hb, err
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
