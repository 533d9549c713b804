// Package command tracks commands sent to devices: each command's record
// (target, inputs, priority, expiry) and its status from acceptance to a
// final outcome, with timestamps, reply timeouts and an audit of every
// transition.
//
// A command moves through these states:
//
//	accepted --> [queued] --> sent --> acked      (the device replied with success)
//	    |           |           |----> failed     (the device replied with an error, or sending failed)
//	    |           |           '----> timeout    (no reply within the command's timeout)
//	    |           |--> rejected                 (refused before sending)
//	    |           |--> failed                   (could not be sent)
//	    |           |--> expired                  (its expiry passed before it was sent)
//	    |           '--> superseded               (a newer command replaced it before it was sent)
//	    '--> (the same final states from accepted)
//
// acked, failed, rejected, timeout, expired and superseded are final. A
// reply that arrives after a final state is recorded in the audit but does
// not change the status.
//
// The Tracker knows nothing of transports: the component that delivers
// commands (for example the MQTT downlink) reports Sent, Reply and Fail.
// Time comes from a Clock, so tests drive timeouts with a ManualClock.
package command

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Status is the state of a command.
type Status string

// Command states.
const (
	Accepted Status = "accepted"
	Rejected Status = "rejected"
	Sent     Status = "sent"
	Acked    Status = "acked"
	Failed   Status = "failed"
	Timeout  Status = "timeout"
	// Queued: accepted and waiting for its turn to be sent.
	Queued Status = "queued"
	// Expired: its expiry passed before it was sent; it never will be.
	Expired Status = "expired"
	// Superseded: a newer command for the same target replaced it before
	// it was sent.
	Superseded Status = "superseded"
)

// Statuses lists every status, in the order of the life of a command.
var Statuses = []Status{Accepted, Queued, Sent, Acked, Failed, Timeout, Rejected, Expired, Superseded}

// Known reports whether s is one of Statuses.
func (s Status) Known() bool { return slices.Contains(Statuses, s) }

// Final reports whether no further transition can happen.
func (s Status) Final() bool {
	switch s {
	case Rejected, Acked, Failed, Timeout, Expired, Superseded:
		return true
	}
	return false
}

// unsent reports whether a command in status s is not yet sent: accepted
// or queued.
func (s Status) unsent() bool { return s == Accepted || s == Queued }

// SetPoints is the Service of a command that sets measure points; its
// Inputs map point names to values.
const SetPoints = "measurepoint.set"

// Command is one command and everything known about its progress.
type Command struct {
	// ID identifies the command; it is also the id of the message that
	// carries it to the device, so that the device's reply can be matched.
	ID string `json:"id"`
	// Product and Asset name the target device (for EnOS devices, the
	// product key and the device key).
	Product string `json:"product,omitempty"`
	Asset   string `json:"asset"`
	// Service is the service invoked on the device; SetPoints sets measure
	// points.
	Service string `json:"service"`
	// Inputs are the service's inputs (for SetPoints, point -> value). They
	// must be representable in JSON.
	Inputs map[string]any `json:"inputs,omitempty"`
	// Priority orders competing commands; higher is more important.
	Priority int `json:"priority"`
	// Origin says who issued the command (for example "cloud" or
	// "local:hmi").
	Origin string `json:"origin,omitempty"`
	// Class is the priority class the command was issued in (for example
	// "safety" or "cloud"); an arbiter sets Priority from it.
	Class string `json:"class,omitempty"`
	// Lease names the lease holder the command is issued under, if any.
	Lease string `json:"lease,omitempty"`
	// IdempotencyKey, when set, makes repeated submissions of the same
	// command execute once.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// Requested is when the issuer says it requested the command (EnOS's
	// gmtServiceRequest); zero when the issuer gave none.
	Requested time.Time `json:"requested,omitzero"`
	// Timeout is how long to wait for the device's reply once sent; zero
	// takes the tracker's default.
	Timeout time.Duration `json:"timeout"`
	// Expiry, when set, is the time after which the command must no
	// longer be sent.
	Expiry time.Time `json:"expiry,omitzero"`

	// Status is the current state.
	Status Status `json:"status"`
	// Reason explains a rejected, failed or timed-out command, or carries
	// the device's reply message.
	Reason string `json:"reason,omitempty"`
	// Code is the code of the device's reply (0 until one arrives).
	Code int `json:"code,omitempty"`
	// Output is the data of the device's reply.
	Output json.RawMessage `json:"output,omitempty"`
	// Created, Sent and Done are when the command was accepted (the
	// edge's answer to the issuer, EnOS's gmtServiceReply), sent and
	// reached a final state; Replied is when the device's reply arrived
	// (gmtDeviceReply); Updated is the time of the last transition.
	Created time.Time `json:"created"`
	Sent    time.Time `json:"sent,omitzero"`
	Replied time.Time `json:"replied,omitzero"`
	Done    time.Time `json:"done,omitzero"`
	Updated time.Time `json:"updated"`
	// Version is the sequence number of the command's last transition:
	// of two copies of a command, the one with the higher Version is the
	// newer.
	Version uint64 `json:"version"`
}

// Transition is one entry of the audit: a command changing state (or, when
// From equals To, an event that left the state unchanged, such as a late
// reply).
type Transition struct {
	// Seq numbers transitions in the order the tracker recorded them.
	Seq    uint64    `json:"seq"`
	ID     string    `json:"id"`
	Asset  string    `json:"asset,omitempty"`
	Origin string    `json:"origin,omitempty"`
	From   Status    `json:"from,omitempty"` // empty when the command was submitted
	To     Status    `json:"to"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}

// Errors returned by the Tracker.
var (
	ErrUnknown   = errors.New("unknown command")
	ErrDuplicate = errors.New("command id already in use")
	ErrExpired   = errors.New("command expired")
	ErrFinal     = errors.New("command already in a final state")
	// ErrMisdirected is returned for a reply from another device or
	// service than the command's.
	ErrMisdirected = errors.New("reply from another target than the command's")
)

// Options configures a Tracker. Zero fields take their defaults.
type Options struct {
	// Clock is the time source (default SystemClock).
	Clock Clock
	// Timeout is the reply timeout of commands that set none (default 30s).
	Timeout time.Duration
	// Retain is how many commands in a final state are kept for lookups
	// (default 10,000); the oldest are forgotten first. Commands still in
	// progress are always kept.
	Retain int
	// AuditSize is how many transitions the audit keeps (default 100,000).
	AuditSize int
	// OnTransition, when set, is called after each transition, outside
	// the tracker's lock. It must not block for long.
	OnTransition func(Transition)
}

// Tracker records commands and their transitions. It is safe for
// concurrent use.
type Tracker struct {
	opts   Options
	prefix string

	mu      sync.Mutex
	cmds    map[string]*entry
	final   []string // ids in a final state, oldest first
	audit   []Transition
	auditAt int // next slot of the audit ring once it is full
	seq     uint64
	nextID  uint64
	closed  bool
	replies ReplyStats
}

type entry struct {
	c       Command
	timer   Timer
	done    chan struct{}
	ignored int // replies ignored and audited
}

// ignore audits a reply to e that changes nothing, the first
// MaxIgnoredReplies times; t.mu is held.
func (t *Tracker) ignore(e *entry, now time.Time, reason string, fire []Transition) []Transition {
	if e.ignored >= MaxIgnoredReplies {
		t.replies.Unaudited++
		return fire
	}
	e.ignored++
	if e.ignored == MaxIgnoredReplies {
		reason += fmt.Sprintf(" (further ignored replies to %s are counted, not audited)", e.c.ID)
	}
	return append(fire, t.record(e, e.c.Status, e.c.Status, now, reason))
}

// New returns a tracker.
func New(opts Options) *Tracker {
	if opts.Clock == nil {
		opts.Clock = SystemClock{}
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.Retain <= 0 {
		opts.Retain = 10_000
	}
	if opts.AuditSize <= 0 {
		opts.AuditSize = 100_000
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return &Tracker{opts: opts, prefix: hex.EncodeToString(b[:]), cmds: map[string]*entry{}}
}

// Submit records a new command in state accepted and returns it. An empty
// ID is assigned one. A command whose Expiry has passed is recorded as
// timed out and ErrExpired is returned with it.
func (t *Tracker) Submit(c Command) (Command, error) {
	t.mu.Lock()
	var fire []Transition
	defer func() { t.mu.Unlock(); t.notify(fire) }()
	if t.closed {
		return c, errors.New("command tracker closed")
	}
	if c.ID == "" {
		t.nextID++
		c.ID = t.prefix + "-" + strconv.FormatUint(t.nextID, 10)
	}
	if _, dup := t.cmds[c.ID]; dup {
		return c, fmt.Errorf("%w: %q", ErrDuplicate, c.ID)
	}
	if c.Timeout <= 0 {
		c.Timeout = t.opts.Timeout
	}
	c.Inputs = maps.Clone(c.Inputs)
	c.Output = nil
	c.Code = 0
	c.Reason = ""
	now := t.opts.Clock.Now()
	c.Created, c.Sent, c.Done, c.Updated = now, time.Time{}, time.Time{}, now
	c.Status = Accepted
	e := &entry{c: c, done: make(chan struct{})}
	t.cmds[c.ID] = e
	fire = append(fire, t.record(e, "", Accepted, now, ""))
	if !c.Expiry.IsZero() {
		if !now.Before(c.Expiry) {
			fire = append(fire, t.finish(e, Expired, now, expiredReason(c.Expiry, "")))
			return e.c, fmt.Errorf("%w: %s", ErrExpired, c.ID)
		}
		t.armExpiry(e, now)
	}
	return e.c, nil
}

// armExpiry starts the timer that expires a command not yet sent; t.mu is
// held.
func (t *Tracker) armExpiry(e *entry, now time.Time) {
	id := e.c.ID
	reason := expiredReason(e.c.Expiry, "")
	e.timer = t.opts.Clock.AfterFunc(e.c.Expiry.Sub(now), func() { t.expire(id, Expired, reason) })
}

// expiredReason is the reason of a command that expired before it was
// sent; note is added inside the parentheses.
func expiredReason(expiry time.Time, note string) string {
	return "expired before it was sent (expiry " + expiry.UTC().Format(time.RFC3339Nano) + note + ")"
}

// armTimeout starts the timer that times out a sent command after d;
// t.mu is held.
func (t *Tracker) armTimeout(e *entry, d time.Duration) {
	id := e.c.ID
	reason := timeoutReason(e.c.Timeout)
	e.timer = t.opts.Clock.AfterFunc(d, func() { t.expire(id, Timeout, reason) })
}

// timeoutReason is the reason of a command that got no reply within
// timeout.
func timeoutReason(timeout time.Duration) string { return "no reply within " + timeout.String() }

// Queue records that an accepted command waits for its turn.
func (t *Tracker) Queue(id, reason string) (Command, error) {
	t.mu.Lock()
	var fire []Transition
	defer func() { t.mu.Unlock(); t.notify(fire) }()
	e, err := t.lookup(id, Accepted)
	if err != nil {
		return Command{}, err
	}
	fire = append(fire, t.move(e, Queued, t.opts.Clock.Now(), reason))
	return e.c, nil
}

// Supersede records that a command not yet sent was replaced by a newer
// one; reason names it.
func (t *Tracker) Supersede(id, reason string) (Command, error) {
	return t.finishUnsent(id, Superseded, reason, ": only a command not yet sent can be superseded")
}

// Note records in the audit an event that leaves the command's status
// unchanged (for example a repeated submission under its idempotency key).
func (t *Tracker) Note(id, reason string) error {
	t.mu.Lock()
	var fire []Transition
	defer func() { t.mu.Unlock(); t.notify(fire) }()
	e, ok := t.cmds[id]
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknown, id)
	}
	fire = append(fire, t.record(e, e.c.Status, e.c.Status, t.opts.Clock.Now(), reason))
	return nil
}

// Annotate records in the audit an event that concerns an asset rather
// than one command (for example a lease taken or released) and returns it.
func (t *Tracker) Annotate(asset, origin, reason string) Transition {
	t.mu.Lock()
	t.seq++
	tr := Transition{Seq: t.seq, Asset: asset, Origin: origin, At: t.opts.Clock.Now(), Reason: reason}
	t.appendAudit(tr)
	t.mu.Unlock()
	t.notify([]Transition{tr})
	return tr
}

// Restore puts back a command read from a durable store, in the state it
// was in, without recording a transition, and restarts its timers: a
// command not yet sent expires at its Expiry (at once if that has passed,
// which is then recorded), a sent one times out at Sent+Timeout (at once
// if that has passed). audit is the store's audit, oldest first; it
// seeds the tracker's audit and its sequence numbers when the tracker's
// own audit is empty. Restoring an id the tracker holds returns
// ErrDuplicate.
func (t *Tracker) Restore(cmds []Command, audit []Transition) error {
	t.mu.Lock()
	var fire []Transition
	defer func() { t.mu.Unlock(); t.notify(fire) }()
	if t.closed {
		return errors.New("command tracker closed")
	}
	if len(t.audit) == 0 {
		if len(audit) > t.opts.AuditSize {
			audit = audit[len(audit)-t.opts.AuditSize:]
		}
		t.audit = append(t.audit, audit...)
		for _, tr := range audit {
			t.seq = max(t.seq, tr.Seq)
		}
	}
	for _, c := range cmds {
		t.seq = max(t.seq, c.Version)
	}
	now := t.opts.Clock.Now()
	for _, c := range cmds {
		if _, dup := t.cmds[c.ID]; dup {
			return fmt.Errorf("%w: %q", ErrDuplicate, c.ID)
		}
		if c.Timeout <= 0 {
			c.Timeout = t.opts.Timeout
		}
		e := &entry{c: c, done: make(chan struct{})}
		t.cmds[c.ID] = e
		if c.Status.Final() {
			close(e.done)
			t.final = append(t.final, c.ID)
			continue
		}
		switch c.Status {
		case Accepted, Queued:
			if !c.Expiry.IsZero() {
				if !now.Before(c.Expiry) {
					fire = append(fire, t.finish(e, Expired, now, expiredReason(c.Expiry, ", found on restart")))
					continue
				}
				t.armExpiry(e, now)
			}
		case Sent:
			left := c.Sent.Add(c.Timeout).Sub(now)
			if left <= 0 {
				fire = append(fire, t.finish(e, Timeout, now, timeoutReason(c.Timeout)+" (found on restart)"))
				continue
			}
			t.armTimeout(e, left)
		}
	}
	for len(t.final) > t.opts.Retain {
		delete(t.cmds, t.final[0])
		t.final = t.final[1:]
	}
	return nil
}

// Sent records that the command was handed to the device's transport and
// starts its reply timeout.
func (t *Tracker) Sent(id string) (Command, error) {
	t.mu.Lock()
	var fire []Transition
	defer func() { t.mu.Unlock(); t.notify(fire) }()
	e, err := t.lookup(id, "")
	if err != nil {
		return Command{}, err
	}
	if !e.c.Status.unsent() {
		return e.c, fmt.Errorf("command %s is %s, not accepted or queued", id, e.c.Status)
	}
	now := t.opts.Clock.Now()
	if !e.c.Expiry.IsZero() && !now.Before(e.c.Expiry) {
		fire = append(fire, t.finish(e, Expired, now, expiredReason(e.c.Expiry, "")))
		return e.c, fmt.Errorf("%w: %s", ErrExpired, id)
	}
	if e.timer != nil {
		e.timer.Stop()
	}
	e.c.Sent = now
	fire = append(fire, t.move(e, Sent, now, ""))
	t.armTimeout(e, e.c.Timeout)
	return e.c, nil
}

// Target names the device a command is for (Product, Asset) and the
// service it invokes; for a reply, the device and service it comes from
// (for EnOS devices, read from the reply's topic).
type Target struct {
	Product, Asset, Service string
}

// Target returns the device and service the command is for.
func (c *Command) Target() Target {
	return Target{Product: c.Product, Asset: c.Asset, Service: c.Service}
}

// String writes a target as product/asset/service.
func (t Target) String() string { return t.Product + "/" + t.Asset + "/" + t.Service }

// ReplyStats counts the replies a tracker refused.
type ReplyStats struct {
	// Unknown replies named no command the tracker holds.
	Unknown int64
	// Misdirected replies named a command but came from another device
	// or service than the command's.
	Misdirected int64
	// Unaudited replies were ignored (misdirected, late, or to a command
	// not sent) after MaxIgnoredReplies of the same command had been
	// audited.
	Unaudited int64
}

// Bounds on what a device's reply leaves in a command's record and audit:
// anyone who may publish on a reply topic can send them.
const (
	// MaxReplyMessage bounds the reply's message kept as the reason.
	MaxReplyMessage = 1024
	// MaxReplyOutput bounds the reply's output kept; a larger one is
	// dropped, which the reason says.
	MaxReplyOutput = 64 << 10
	// MaxIgnoredReplies bounds the ignored replies of one command that
	// are audited; the others are counted (ReplyStats.Unaudited).
	MaxIgnoredReplies = 10
)

// Reply records the reply of the device from: code 200 acknowledges the
// command, any other code fails it with message as the reason. Only the
// command's own target may answer it: a reply from another device or
// service (a forged or misrouted reply) changes nothing, is audited and
// counted, and returns ErrMisdirected; a reply naming no command returns
// ErrUnknown and is counted. A reply to a command that already timed out
// is audited and otherwise ignored.
func (t *Tracker) Reply(id string, from Target, code int, message string, output json.RawMessage) (Command, error) {
	t.mu.Lock()
	var fire []Transition
	defer func() { t.mu.Unlock(); t.notify(fire) }()
	e, ok := t.cmds[id]
	if !ok {
		t.replies.Unknown++
		return Command{}, fmt.Errorf("%w: %q", ErrUnknown, clip(id))
	}
	now := t.opts.Clock.Now()
	if from != e.c.Target() {
		t.replies.Misdirected++
		fire = t.ignore(e, now, "reply from "+clip(from.String())+" ignored: the command is for "+e.c.Target().String(), fire)
		return e.c, fmt.Errorf("%w: %s is for %s, not %s", ErrMisdirected, id, e.c.Target(), clip(from.String()))
	}
	if e.c.Status != Sent {
		if e.c.Status.Final() {
			fire = t.ignore(e, now, fmt.Sprintf("late reply ignored: code %d %s", code, clip(message)), fire)
			return e.c, fmt.Errorf("%w: %s is %s", ErrFinal, id, e.c.Status)
		}
		// A reply can overtake the report that the command was sent.
		if !e.c.Status.unsent() {
			fire = t.ignore(e, now, fmt.Sprintf("reply to a command not sent ignored: code %d %s", code, clip(message)), fire)
			return e.c, fmt.Errorf("command %s is %s: not sent", id, e.c.Status)
		}
		e.c.Sent = now
		fire = append(fire, t.move(e, Sent, now, "reply before send was confirmed"))
	}
	e.c.Code = code
	e.c.Replied = now
	if len(message) > MaxReplyMessage {
		cut := MaxReplyMessage
		for cut > 0 && !utf8.RuneStart(message[cut]) {
			cut--
		}
		message = message[:cut] + "..."
	}
	if len(output) > MaxReplyOutput {
		message += fmt.Sprintf(" (output of %d bytes dropped, more than %d)", len(output), MaxReplyOutput)
		output = nil
	}
	e.c.Output = slices.Clone(output)
	to := Acked
	if code != 200 {
		to = Failed
	}
	fire = append(fire, t.finish(e, to, now, message))
	return e.c, nil
}

// ReplyStats returns the counts of refused replies.
func (t *Tracker) ReplyStats() ReplyStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.replies
}

// clip cuts text that came from the network to a length fit for a reason
// or an error.
func clip(s string) string {
	const n = 200
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Fail records that the command could not be delivered (or that the device
// reported a failure by other means).
func (t *Tracker) Fail(id, reason string) (Command, error) {
	t.mu.Lock()
	var fire []Transition
	defer func() { t.mu.Unlock(); t.notify(fire) }()
	e, err := t.lookup(id, "")
	if err != nil {
		return Command{}, err
	}
	fire = append(fire, t.finish(e, Failed, t.opts.Clock.Now(), reason))
	return e.c, nil
}

// Reject records that an accepted or queued command will not be sent.
func (t *Tracker) Reject(id, reason string) (Command, error) {
	return t.finishUnsent(id, Rejected, reason, ", not accepted or queued")
}

// finishUnsent ends a command not yet sent (accepted or queued) with
// status to; refusal completes the error returned for a command in
// another state, which is left as it is.
func (t *Tracker) finishUnsent(id string, to Status, reason, refusal string) (Command, error) {
	t.mu.Lock()
	var fire []Transition
	defer func() { t.mu.Unlock(); t.notify(fire) }()
	e, err := t.lookup(id, "")
	if err != nil {
		return Command{}, err
	}
	if !e.c.Status.unsent() {
		return e.c, fmt.Errorf("command %s is %s%s", id, e.c.Status, refusal)
	}
	fire = append(fire, t.finish(e, to, t.opts.Clock.Now(), reason))
	return e.c, nil
}

// Pending returns how many commands are not in a final state yet
// (accepted, queued or sent).
func (t *Tracker) Pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.cmds) - len(t.final)
}

// Get returns the command with that id.
func (t *Tracker) Get(id string) (Command, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.cmds[id]
	if !ok {
		return Command{}, false
	}
	return e.c, true
}

// List returns the commands the tracker holds that match keep (all when
// keep is nil), oldest first.
func (t *Tracker) List(keep func(*Command) bool) []Command {
	t.mu.Lock()
	out := make([]Command, 0, len(t.cmds))
	for _, e := range t.cmds {
		if keep == nil || keep(&e.c) {
			out = append(out, e.c)
		}
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b Command) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return compareIDs(a.ID, b.ID)
	})
	return out
}

// compareIDs orders ids by length first, so that generated ids sort by
// their sequence number.
func compareIDs(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Wait blocks until the command reaches a final state or ctx ends, and
// returns the command as it then is.
func (t *Tracker) Wait(ctx context.Context, id string) (Command, error) {
	t.mu.Lock()
	e, ok := t.cmds[id]
	t.mu.Unlock()
	if !ok {
		return Command{}, fmt.Errorf("%w: %q", ErrUnknown, id)
	}
	select {
	case <-e.done:
	case <-ctx.Done():
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !e.c.Status.Final() {
		return e.c, ctx.Err()
	}
	return e.c, nil
}

// Audit returns the recorded transitions of one command, or of all
// commands when id is empty, in the order they happened.
func (t *Tracker) Audit(id string) []Transition {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(t.audit)
	if id == "" {
		return append(append(make([]Transition, 0, n), t.audit[t.auditAt:]...), t.audit[:t.auditAt]...)
	}
	var out []Transition
	for i := range n {
		if tr := t.auditEntry(i); tr.ID == id {
			out = append(out, *tr)
		}
	}
	return out
}

// AuditAfter returns the audit's entries numbered above seq, oldest
// first: what a reader that has seen up to seq has not seen yet, without
// copying the rest of the audit.
func (t *Tracker) AuditAfter(seq uint64) []Transition {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(t.audit)
	i := sort.Search(n, func(i int) bool { return t.auditEntry(i).Seq > seq })
	out := make([]Transition, 0, n-i)
	for ; i < n; i++ {
		out = append(out, *t.auditEntry(i))
	}
	return out
}

// auditEntry is the i-th entry of the audit ring, oldest first (t.mu
// held).
func (t *Tracker) auditEntry(i int) *Transition {
	return &t.audit[(t.auditAt+i)%len(t.audit)]
}

// Close stops the pending timeouts. Commands in progress keep their state.
// It is idempotent.
func (t *Tracker) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for _, e := range t.cmds {
		if e.timer != nil {
			e.timer.Stop()
			e.timer = nil
		}
	}
}

// expire moves the command to state to (Expired for a command not yet
// sent, Timeout for a sent one) if it is still in a state that allows it.
func (t *Tracker) expire(id string, to Status, reason string) {
	t.mu.Lock()
	var fire []Transition
	defer func() { t.mu.Unlock(); t.notify(fire) }()
	e, ok := t.cmds[id]
	if !ok || t.closed {
		return
	}
	switch {
	case to == Expired && (e.c.Status == Accepted || e.c.Status == Queued):
	case to == Timeout && e.c.Status == Sent:
	default:
		return
	}
	e.timer = nil
	fire = append(fire, t.finish(e, to, t.opts.Clock.Now(), reason))
}

// lookup returns a command that is not final and, when want is set, in
// that state. t.mu is held.
func (t *Tracker) lookup(id string, want Status) (*entry, error) {
	e, ok := t.cmds[id]
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: %q", ErrUnknown, id)
	case e.c.Status.Final():
		return e, fmt.Errorf("%w: %s is %s", ErrFinal, id, e.c.Status)
	case want != "" && e.c.Status != want:
		return e, fmt.Errorf("command %s is %s, not %s", id, e.c.Status, want)
	}
	return e, nil
}

// move changes a command's state; t.mu is held.
func (t *Tracker) move(e *entry, to Status, now time.Time, reason string) Transition {
	from := e.c.Status
	e.c.Status, e.c.Updated = to, now
	if reason != "" {
		e.c.Reason = reason
	}
	return t.record(e, from, to, now, reason)
}

// finish moves a command to a final state, stops its timer, wakes its
// waiters and forgets the oldest final commands beyond Retain; t.mu is held.
func (t *Tracker) finish(e *entry, to Status, now time.Time, reason string) Transition {
	tr := t.move(e, to, now, reason)
	e.c.Done = now
	if e.timer != nil {
		e.timer.Stop()
		e.timer = nil
	}
	close(e.done)
	t.final = append(t.final, e.c.ID)
	for len(t.final) > t.opts.Retain {
		delete(t.cmds, t.final[0])
		t.final = t.final[1:]
	}
	return tr
}

// record appends a transition to the audit ring; t.mu is held.
func (t *Tracker) record(e *entry, from, to Status, now time.Time, reason string) Transition {
	t.seq++
	e.c.Version = t.seq
	tr := Transition{Seq: t.seq, ID: e.c.ID, Asset: e.c.Asset, Origin: e.c.Origin, From: from, To: to, At: now, Reason: reason}
	t.appendAudit(tr)
	return tr
}

// appendAudit appends a transition to the audit ring; t.mu is held.
func (t *Tracker) appendAudit(tr Transition) {
	if len(t.audit) < t.opts.AuditSize {
		t.audit = append(t.audit, tr)
	} else {
		t.audit[t.auditAt] = tr
		t.auditAt = (t.auditAt + 1) % len(t.audit)
	}
}

func (t *Tracker) notify(trs []Transition) {
	if t.opts.OnTransition == nil {
		return
	}
	for _, tr := range trs {
		t.opts.OnTransition(tr)
	}
}
