// Package uplink is the edge's way back to the hub: it sends the edge's
// apply reports and heartbeats through the same durable buffer and
// forwarder as data (engine/forward), so that what the edge reports while
// the hub is unreachable arrives after the outage with its original time,
// flagged backfill, and nothing stored is lost by a crash
// (docs/format/hub-protocol.md, section 5).
//
// Three buffered sinks publish over the edge's NATS connection:
//
//   - reports: one row per apply report (protocol.ReportSchema), stream
//     protocol.ReportStream, subject protocol.ReportsSubject(edge), buffer
//     <dir>/reports. Its quota holds new reports back when full (none is
//     dropped).
//   - control: one row per command record of the edge's arbiter after a
//     transition (protocol.ControlSchema), stream protocol.ControlStream,
//     subject protocol.ControlSubject(edge), buffer <dir>/control. The hub
//     keeps, of each record, the row of the highest version.
//   - heartbeats: one row per heartbeat (protocol.HeartbeatSchema), stream
//     protocol.HeartbeatStream, subject protocol.HeartbeatSubject(edge),
//     buffer <dir>/heartbeat. Its small quota drops the oldest heartbeats
//     when full, so a month offline never fills the disk.
//
// The agent writes a report to its reports.jsonl before the uplink stores
// it (agent.Options.OnReport). A cursor file, <dir>/reports.cursor, names
// the last agent report the reports buffer holds; at Open the uplink
// stores again every report of reports.jsonl after it (all of them when
// the cursor is missing or names none of them). A crash between the two
// writes therefore repeats a report rather than losing it: the hub
// deduplicates reports by (edge, time, bundle, version, outcome).
//
// The edge never creates the JetStream stream protocol.EdgeStream: the hub
// owns it (subjects protocol.EdgeSubjects). Until it exists, publishes
// fail and the rows wait in the buffers.
package uplink

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/buffer/disk"
	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/forward"
	"github.com/sluice-edge/sluice/engine/hub/hubsync"
	"github.com/sluice-edge/sluice/engine/hub/protocol"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/spec"
)

// Defaults of Options.
const (
	DefaultReportsMaxBytes   = 64 << 20
	DefaultHeartbeatMaxBytes = 1 << 20
	DefaultControlMaxBytes   = 32 << 20
	DefaultPublishTimeout    = 10 * time.Second
	DefaultWriteTimeout      = 5 * time.Second
	// DefaultDrainTimeout bounds how long Close keeps publishing: reports
	// and heartbeats are small, and what is left is sent at the next
	// start.
	DefaultDrainTimeout = 2 * time.Second
	// maxPending bounds the reports kept in memory while the reports
	// buffer refuses them; those past it are sent from reports.jsonl at
	// the next start.
	maxPending = 1024
	// maxReasonBytes bounds the reason of a refused hub release.
	maxReasonBytes = 2048
)

// Names under Options.Dir.
const (
	ReportsDir   = "reports"
	HeartbeatDir = "heartbeat"
	ControlDir   = "control"
	CursorFile   = "reports.cursor"
)

// Options configure an Uplink. JS, Edge and Dir are required.
type Options struct {
	// JS is the edge's JetStream context; its connection may be down.
	JS jetstream.JetStream
	// Edge is the edge id (protocol.CheckEdgeID).
	Edge string
	// Dir holds the buffers and the cursor (<data_dir>/hub).
	Dir string
	// AgentDir is the agent's state directory, whose reports.jsonl Open
	// reads to store what the last run did not; "" skips it.
	AgentDir string
	// MaxReportBytes is the agent's rotation size of reports.jsonl
	// (default agent.DefaultMaxReportBytes).
	MaxReportBytes int64
	// ReportsMaxBytes and HeartbeatMaxBytes are the buffers' quotas.
	ReportsMaxBytes, HeartbeatMaxBytes int64
	// ControlMaxBytes is the quota of the command records' buffer
	// (default DefaultControlMaxBytes); when full, new records wait.
	ControlMaxBytes int64
	// PublishTimeout bounds one publish (default DefaultPublishTimeout).
	PublishTimeout time.Duration
	// WriteTimeout bounds how long Report waits for room in a full
	// reports buffer (default DefaultWriteTimeout).
	WriteTimeout time.Duration
	// RetryMin and RetryMax bound the forwarders' backoff (defaults as
	// engine/forward's).
	RetryMin, RetryMax time.Duration
	// DrainTimeout is how long Close keeps publishing (0:
	// DefaultDrainTimeout; negative: not at all).
	DrainTimeout time.Duration
	// IdleSeal is the buffers' idle seal (default as engine/buffer's).
	IdleSeal time.Duration
	// Log receives what the uplink does (default: discarded).
	Log *slog.Logger
	// Counters receives the sinks' counters (default: private).
	Counters *engine.Counters
	// OnDelivered, when set, is called after every confirmed publish of
	// either sink (tests use it).
	OnDelivered func(stream string, d forward.Delivery)
}

// Running is one pipeline of a heartbeat.
type Running struct {
	Pipeline string `json:"pipeline"`
	State    string `json:"state"`
}

// Heartbeat is what an edge says about itself at every interval.
type Heartbeat struct {
	// Time is when it was made.
	Time time.Time
	// Labels are the edge's labels.
	Labels map[string]string
	// Bundle and Version name the release the edge runs ("" and 0: none).
	Bundle  string
	Version uint64
	// Running are its pipelines and their states.
	Running []Running
	// Backlog is the rows waiting in the edge's cloud buffers.
	Backlog int64
	// Software is the engine's version.
	Software string
}

// cursor names one report of reports.jsonl.
type cursor struct {
	Time    time.Time `json:"time"`
	Bundle  string    `json:"bundle"`
	Version uint64    `json:"version"`
	Outcome string    `json:"outcome"`
}

func cursorOf(r agent.Report) cursor {
	return cursor{Time: r.Time, Bundle: r.Bundle, Version: r.Version, Outcome: r.Outcome}
}

func (c cursor) names(r agent.Report) bool {
	return c.Time.Equal(r.Time) && c.Bundle == r.Bundle && c.Version == r.Version && c.Outcome == r.Outcome
}

// item is a report waiting to be stored; fromAgent reports advance the
// cursor.
type item struct {
	rep       agent.Report
	fromAgent bool
}

// Uplink sends an edge's reports and heartbeats to the hub.
type Uplink struct {
	opts Options
	log  *slog.Logger

	reports, heartbeat, control *forward.Sink
	rschema, hschema, cschema   *engine.Schema
	ctlMu                       sync.Mutex // one command record write at a time
	nonce                       string     // random, in every Nats-Msg-Id (see publisher)

	mu      sync.Mutex // guards pending and the reports sink's writes
	pending []item
	// behind is set when a report could not be kept even in memory: the
	// cursor then stays where it is for the rest of the run, so that the
	// next start sends it from reports.jsonl.
	behind bool
	hbMu   sync.Mutex // one heartbeat write at a time
	closed bool

	stop chan struct{} // closed by Close: ends retryLoop
	done chan struct{} // closed when retryLoop returns
}

// Open opens the buffers under opts.Dir, starts their forwarders and
// stores the agent reports the last run did not (see the package
// documentation). It does not wait for the hub.
func Open(opts Options) (*Uplink, error) {
	if err := protocol.CheckEdgeID(opts.Edge); err != nil {
		return nil, fmt.Errorf("uplink: %w", err)
	}
	if opts.JS == nil || opts.Dir == "" {
		return nil, errors.New("uplink: JetStream and a directory are required")
	}
	if opts.MaxReportBytes <= 0 {
		opts.MaxReportBytes = agent.DefaultMaxReportBytes
	}
	if opts.ReportsMaxBytes <= 0 {
		opts.ReportsMaxBytes = DefaultReportsMaxBytes
	}
	if opts.HeartbeatMaxBytes <= 0 {
		opts.HeartbeatMaxBytes = DefaultHeartbeatMaxBytes
	}
	if opts.ControlMaxBytes <= 0 {
		opts.ControlMaxBytes = DefaultControlMaxBytes
	}
	if opts.PublishTimeout <= 0 {
		opts.PublishTimeout = DefaultPublishTimeout
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	if opts.DrainTimeout == 0 {
		opts.DrainTimeout = DefaultDrainTimeout
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Counters == nil {
		opts.Counters = engine.NewCounters()
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("uplink: %w", err)
	}
	var nonce [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("uplink: %w", err)
	}
	u := &Uplink{opts: opts, log: opts.Log.With("edge", opts.Edge), rschema: protocol.ReportSchema(), hschema: protocol.HeartbeatSchema(),
		cschema: protocol.ControlSchema(), nonce: hex.EncodeToString(nonce[:])}
	rsub, err := protocol.ReportsSubject(opts.Edge)
	if err != nil {
		return nil, fmt.Errorf("uplink: %w", err)
	}
	hsub, err := protocol.HeartbeatSubject(opts.Edge)
	if err != nil {
		return nil, fmt.Errorf("uplink: %w", err)
	}
	u.reports, err = u.sink(rsub, protocol.ReportsSubject, protocol.ReportStream, ReportsDir, u.rschema, buffer.Options{
		MaxBytes: opts.ReportsMaxBytes, Policy: buffer.RejectNew, SegmentBytes: segmentBytes(opts.ReportsMaxBytes),
	})
	if err != nil {
		return nil, err
	}
	u.heartbeat, err = u.sink(hsub, protocol.HeartbeatSubject, protocol.HeartbeatStream, HeartbeatDir, u.hschema, buffer.Options{
		MaxBytes: opts.HeartbeatMaxBytes, Policy: buffer.DropOldest, SegmentBytes: segmentBytes(opts.HeartbeatMaxBytes),
	})
	if err != nil {
		_ = u.reports.Close(context.Background())
		return nil, err
	}
	csub, err := protocol.ControlSubject(opts.Edge)
	if err != nil {
		return nil, fmt.Errorf("uplink: %w", err)
	}
	u.control, err = u.sink(csub, protocol.ControlSubject, protocol.ControlStream, ControlDir, u.cschema, buffer.Options{
		MaxBytes: opts.ControlMaxBytes, Policy: buffer.RejectNew, SegmentBytes: segmentBytes(opts.ControlMaxBytes),
	})
	if err != nil {
		_ = u.reports.Close(context.Background())
		_ = u.heartbeat.Close(context.Background())
		return nil, err
	}
	if opts.AgentDir != "" {
		if err := u.catchUp(); err != nil {
			u.log.Error("uplink: storing the reports of reports.jsonl the hub may not have", "err", err)
		}
	}
	u.stop, u.done = make(chan struct{}), make(chan struct{})
	go u.retryLoop()
	return u, nil
}

// retryInterval is how often reports the full buffer refused are tried
// again.
const retryInterval = time.Second

// retryLoop stores the reports the full buffer refused once it has room
// (the forwarder frees it as the hub confirms), without waiting for the
// next report.
func (u *Uplink) retryLoop() {
	defer close(u.done)
	t := time.NewTicker(retryInterval)
	defer t.Stop()
	for {
		select {
		case <-u.stop:
			return
		case <-t.C:
		}
		u.mu.Lock()
		if !u.closed && len(u.pending) > 0 {
			_ = u.flushLocked()
		}
		u.mu.Unlock()
	}
}

// segmentBytes sizes the write-ahead log files of a buffer of quota q:
// small enough that dropping or reclaiming one frees a fraction of it.
func segmentBytes(q int64) int64 {
	return min(max(q/16, 16<<10), buffer.DefaultSegmentBytes)
}

func (u *Uplink) sink(subject string, subjectOf func(string) (string, error), stream, dir string, schema *engine.Schema, bo buffer.Options) (*forward.Sink, error) {
	pub := &outbound.Publisher{
		Publisher: &publisher{js: u.opts.JS, timeout: u.opts.PublishTimeout, subject: subjectOf, nonce: u.nonce},
		Topic:     subject,
		Encoding:  outbound.JSON,
		Permanent: permanent,
	}
	bo.IdleSeal = u.opts.IdleSeal
	fo := forward.Options{
		Schema:       schema,
		Edge:         u.opts.Edge,
		Stream:       stream,
		Dir:          filepath.Join(u.opts.Dir, dir),
		Buffer:       bo,
		Mode:         forward.FIFO,
		RetryMin:     u.opts.RetryMin,
		RetryMax:     u.opts.RetryMax,
		DrainTimeout: u.opts.DrainTimeout,
		// A report or heartbeat the broker refuses for good (too
		// large for the server, not permitted) is tried this often
		// before it goes to the buffer's dead letters.
		MaxAttempts:    forward.DefaultMaxAttempts,
		PublishTimeout: u.opts.PublishTimeout + time.Second,
		Labels:         map[string]string{"pipeline": "hub", "sink": dir},
		Log:            u.opts.Log,
		Counters:       u.opts.Counters,
	}
	if f := u.opts.OnDelivered; f != nil {
		fo.OnDelivered = func(d forward.Delivery) { f(stream, d) }
	}
	s, err := forward.New(pub, fo)
	if err != nil {
		return nil, fmt.Errorf("uplink: %s: %w", stream, err)
	}
	return s, nil
}

// catchUp stores the reports of reports.jsonl after the cursor.
func (u *Uplink) catchUp() error {
	reps, err := agent.ReadReports(u.opts.AgentDir, u.opts.MaxReportBytes)
	if err != nil {
		return err
	}
	from := 0
	if c, ok := u.readCursor(); ok {
		for i := len(reps) - 1; i >= 0; i-- {
			if c.names(reps[i]) {
				from = i + 1
				break
			}
		}
	}
	if n := len(reps) - from; n > 0 {
		u.log.Info("uplink: storing reports the hub may not have", "reports", n)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, r := range reps[from:] {
		u.pending = append(u.pending, item{rep: r, fromAgent: true})
	}
	return u.flushLocked()
}

// Report stores an agent report for the hub; it is the agent's
// Options.OnReport. When the reports buffer is full it waits up to
// Options.WriteTimeout, then keeps the report in memory, in order, and
// tries again every second and with every later report (should the engine
// stop first, the next start sends it from reports.jsonl).
func (u *Uplink) Report(r agent.Report) error {
	return u.add(item{rep: r, fromAgent: true})
}

// Refused stores the "rejected" report of a desired release the edge
// refused before its bundle reached the agent (a digest or size that does
// not match, a bundle over max_bundle_bytes, a link): reason says why.
// Such reports are not in reports.jsonl; one lost to a crash is made again,
// since a restarted edge tries the record once more.
func (u *Uplink) Refused(d protocol.Desired, reason error, now time.Time) error {
	why := reason.Error()
	why = clipReason(why)
	r := agent.Report{
		Time: now.UTC(), Bundle: d.Bundle, Version: d.Version, Outcome: agent.Rejected,
		Reason: "hub release " + d.ReleaseID + ": " + why, File: d.Digest,
	}
	return u.add(item{rep: r})
}

// Outcome is a hubsync.Options.OnOutcome: a desired release refused for
// good before its bundle reached the agent (Err set, no Retry) becomes a
// "rejected" report (Refused). The agent's own reports come through
// Report.
func (u *Uplink) Outcome(o hubsync.Outcome) {
	if o.Err == nil || o.Retry || o.Report != nil {
		return
	}
	if err := u.Refused(o.Desired, o.Err, time.Now()); err != nil {
		u.log.Warn("uplink: the refusal of a hub release is not reported", "release", o.Desired.String(), "err", err)
	}
}

func (u *Uplink) add(it item) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return errors.New("uplink: closed")
	}
	if len(u.pending) >= maxPending {
		// reports.jsonl keeps it: the next start sends it.
		u.behind = true
		u.log.Error("uplink: the reports buffer has refused reports for a while; this one is sent at the next start", "report", it.rep.String())
		return errors.New("uplink: reports buffer full")
	}
	u.pending = append(u.pending, it)
	return u.flushLocked()
}

// flushLocked stores the pending reports in order; it stops at the first
// that cannot be stored.
func (u *Uplink) flushLocked() error {
	for len(u.pending) > 0 {
		it := u.pending[0]
		ctx, cancel := context.WithTimeout(context.Background(), u.opts.WriteTimeout)
		err := u.reports.Write(ctx, engine.Batch{Rec: u.reportRecord(it.rep)})
		cancel()
		if err != nil {
			u.log.Warn("uplink: could not store a report; kept and tried again", "report", it.rep.String(), "waiting", len(u.pending), "err", err)
			return fmt.Errorf("uplink: storing a report: %w", err)
		}
		u.pending = u.pending[1:]
		if it.fromAgent && !u.behind {
			if err := u.writeCursor(cursorOf(it.rep)); err != nil {
				// The next start sends again what follows the old
				// cursor: repeats, not losses.
				u.log.Warn("uplink: could not write the reports cursor", "err", err)
			}
		}
	}
	u.pending = nil
	return nil
}

// Heartbeat stores a heartbeat. The heartbeat buffer drops its oldest rows
// when full, so this waits only for a full disk (up to WriteTimeout).
func (u *Uplink) Heartbeat(hb Heartbeat) error {
	rec, err := u.heartbeatRecord(hb)
	if err != nil {
		return err
	}
	u.hbMu.Lock()
	defer u.hbMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), u.opts.WriteTimeout)
	defer cancel()
	if err := u.heartbeat.Write(ctx, engine.Batch{Rec: rec}); err != nil {
		return fmt.Errorf("uplink: storing a heartbeat: %w", err)
	}
	return nil
}

// CommandRecord stores a command record of the edge's arbiter for the hub
// (stream protocol.ControlStream): the record as it is after its latest
// transition, with its last audit entries (at most
// protocol.MaxRecordAudit, the newest kept). When the buffer is full it waits up to WriteTimeout and
// returns an error; the caller keeps the record and tries again. The
// device's output is left out when the record would exceed
// protocol.MaxRecordBytes; a reason that would is shortened.
func (u *Uplink) CommandRecord(rec command.Command, audit []command.Transition) error {
	if len(audit) > protocol.MaxRecordAudit {
		audit = audit[len(audit)-protocol.MaxRecordAudit:]
	}
	if audit == nil {
		audit = []command.Transition{}
	}
	for i := range audit {
		if len(audit[i].Reason) > maxReasonBytes {
			audit[i].Reason = clipReason(audit[i].Reason)
		}
	}
	aj, err := json.Marshal(audit)
	if err != nil {
		return fmt.Errorf("uplink: command record %s: audit: %w", rec.ID, err)
	}
	data, err := json.Marshal(rec)
	if err == nil && len(data) > protocol.MaxRecordBytes {
		rec.Output = nil
		rec.Reason = clipReason(rec.Reason)
		data, err = json.Marshal(rec)
	}
	if err != nil {
		return fmt.Errorf("uplink: command record %s: %w", rec.ID, err)
	}
	if len(data) > protocol.MaxRecordBytes {
		return fmt.Errorf("uplink: command record %s: %d bytes, more than %d", rec.ID, len(data), protocol.MaxRecordBytes)
	}
	return u.writeControl(rec.Updated, rec.ID, int64(min(rec.Version, 1<<63-1)), string(rec.Status), string(data), string(aj), "a command record")
}

// AuditEvent stores an audit entry of the edge's arbiter that belongs to
// no command (a lease taken, renewed, taken over, refused or released)
// for the hub, in the command records' buffer: a row of
// protocol.ControlSchema with an empty id and status, the entry's Seq as
// its version and the entry alone in its audit. Like CommandRecord it
// waits up to WriteTimeout for room and returns an error then.
func (u *Uplink) AuditEvent(tr command.Transition) error {
	if tr.ID != "" {
		return fmt.Errorf("uplink: audit entry %d names command %s: send the record", tr.Seq, tr.ID)
	}
	tr.Reason = clipReason(tr.Reason)
	aj, err := json.Marshal([]command.Transition{tr})
	if err != nil {
		return fmt.Errorf("uplink: audit entry %d: %w", tr.Seq, err)
	}
	return u.writeControl(tr.At, "", int64(min(tr.Seq, 1<<63-1)), "", "", string(aj), "an audit entry")
}

// clipReason cuts a reason of more than maxReasonBytes to that many
// (whole characters) and an ellipsis.
func clipReason(s string) string {
	if len(s) <= maxReasonBytes {
		return s
	}
	return strings.ToValidUTF8(s[:maxReasonBytes], "") + "…"
}

// writeControl stores a row of protocol.ControlSchema in the command
// records' buffer (at zero is now), waiting up to WriteTimeout for room;
// what names the row in the error.
func (u *Uplink) writeControl(at time.Time, id string, version int64, status, record, audit, what string) error {
	b := array.NewRecordBuilder(memory.DefaultAllocator, u.cschema.Arrow())
	defer b.Release()
	set := func(name string, v any) { appendValue(b.Field(u.cschema.Index(name)), v) }
	if at.IsZero() {
		at = time.Now()
	}
	set(protocol.ColTime, at)
	set(protocol.ColID, id)
	set(protocol.ColVersion, version)
	set(protocol.ColStatus, status)
	set(protocol.ColRecord, record)
	set(protocol.ColAudit, audit)
	row := b.NewRecordBatch()
	u.ctlMu.Lock()
	defer u.ctlMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), u.opts.WriteTimeout)
	defer cancel()
	if err := u.control.Write(ctx, engine.Batch{Rec: row}); err != nil {
		return fmt.Errorf("uplink: storing %s: %w", what, err)
	}
	return nil
}

// ControlLeft returns what the command records' buffer holds undelivered.
func (u *Uplink) ControlLeft() forward.Left { return u.control.Left() }

// Left returns what the two buffers hold undelivered.
func (u *Uplink) Left() (reports, heartbeat forward.Left) {
	return u.reports.Left(), u.heartbeat.Left()
}

// Buffers returns the reports and heartbeat buffers (status and tests).
func (u *Uplink) Buffers() (reports, heartbeat *buffer.Buffer) {
	return u.reports.Buffer(), u.heartbeat.Buffer()
}

// Close stores what it can of the pending reports, then closes both sinks
// after their forwarders published what they could within the drain
// timeout (bounded by ctx). Undelivered rows stay in the buffers for the
// next start.
func (u *Uplink) Close(ctx context.Context) error {
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return nil
	}
	if len(u.pending) > 0 {
		if err := u.flushLocked(); err != nil {
			u.log.Warn("uplink: reports not stored are sent from reports.jsonl at the next start", "reports", len(u.pending))
		}
	}
	u.closed = true
	u.mu.Unlock()
	close(u.stop)
	<-u.done
	var wg sync.WaitGroup
	var rerr, herr, cerr error
	wg.Add(3)
	go func() { defer wg.Done(); rerr = u.reports.Close(ctx) }()
	go func() { defer wg.Done(); herr = u.heartbeat.Close(ctx) }()
	go func() { defer wg.Done(); cerr = u.control.Close(ctx) }()
	wg.Wait()
	return errors.Join(rerr, herr, cerr)
}

func (u *Uplink) cursorPath() string { return filepath.Join(u.opts.Dir, CursorFile) }

// readCursor returns the cursor; false when there is none (or it is
// unreadable: then every kept report is sent again).
func (u *Uplink) readCursor() (cursor, bool) {
	var c cursor
	// Bounded, and a named pipe in its place is refused, not waited on.
	data, err := spec.ReadConfigFile(u.cursorPath(), 4<<10)
	if err != nil {
		return c, false
	}
	if err := json.Unmarshal(data, &c); err != nil || c.Outcome == "" {
		return c, false
	}
	return c, true
}

// writeCursor replaces the cursor file: written, synced, renamed, its
// directory synced.
func (u *Uplink) writeCursor(c cursor) error {
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return disk.WriteFileAtomic(disk.OS, u.cursorPath(), data)
}

func (u *Uplink) reportRecord(r agent.Report) arrow.RecordBatch {
	b := array.NewRecordBuilder(memory.DefaultAllocator, u.rschema.Arrow())
	defer b.Release()
	set := func(name string, v any) { appendValue(b.Field(u.rschema.Index(name)), v) }
	set(protocol.ColTime, r.Time)
	set(protocol.ColBundle, r.Bundle)
	set(protocol.ColVersion, int64(min(r.Version, 1<<63-1)))
	set(protocol.ColOutcome, r.Outcome)
	set(protocol.ColReason, r.Reason)
	set(protocol.ColLocation, r.Location)
	set(protocol.ColSteps, r.Steps)
	set(protocol.ColFile, r.File)
	return b.NewRecordBatch()
}

func (u *Uplink) heartbeatRecord(hb Heartbeat) (arrow.RecordBatch, error) {
	labels := hb.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	lj, err := json.Marshal(labels)
	if err != nil {
		return nil, fmt.Errorf("uplink: heartbeat labels: %w", err)
	}
	running := append([]Running{}, hb.Running...)
	sort.SliceStable(running, func(i, j int) bool { return running[i].Pipeline < running[j].Pipeline })
	rj, err := json.Marshal(running)
	if err != nil {
		return nil, fmt.Errorf("uplink: heartbeat pipelines: %w", err)
	}
	b := array.NewRecordBuilder(memory.DefaultAllocator, u.hschema.Arrow())
	defer b.Release()
	set := func(name string, v any) { appendValue(b.Field(u.hschema.Index(name)), v) }
	set(protocol.ColTime, hb.Time)
	set(protocol.ColLabels, string(lj))
	set(protocol.ColBundle, hb.Bundle)
	set(protocol.ColVersion, int64(min(hb.Version, 1<<63-1)))
	set(protocol.ColRunning, string(rj))
	set(protocol.ColBacklog, hb.Backlog)
	set(protocol.ColSoftware, hb.Software)
	return b.NewRecordBatch(), nil
}

// appendValue appends one value of the report and heartbeat columns.
func appendValue(b array.Builder, v any) {
	switch b := b.(type) {
	case *array.TimestampBuilder:
		b.Append(arrow.Timestamp(v.(time.Time).UnixMilli()))
	case *array.StringBuilder:
		b.Append(v.(string))
	case *array.Int64Builder:
		b.Append(v.(int64))
	}
}
