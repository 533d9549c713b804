package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/sluice-edge/sluice/engine/command"
)

// Limits on what a command or a lease request may hold. A command over
// them is refused with ErrInvalid and not recorded.
const (
	MaxKeyLen    = 128  // asset, product, service, point names, idempotency keys
	MaxNameLen   = 64   // origin, class, lease holder
	MaxInputs    = 64   // inputs of one command
	MaxStringLen = 1024 // a string input, a lease's reason
)

// Options configures an Arbiter. Zero fields take their defaults.
type Options struct {
	// Dir is the directory of the durable log (required).
	Dir string
	// Transport delivers the commands (required).
	Transport Transport
	// Clock is the time source (default command.SystemClock).
	Clock command.Clock
	// Classes orders the priority classes, highest first (default
	// DefaultClasses).
	Classes []string
	// OriginClasses maps each origin to the highest class its commands
	// and leases may claim (default DefaultOriginClasses). An origin
	// missing from it cannot issue commands.
	OriginClasses map[string]string
	// Timeout is the reply timeout of commands that set none (default
	// 30s); MaxTimeout bounds the one a command sets (default 10m).
	Timeout, MaxTimeout time.Duration
	// MaxExpiry bounds how far ahead a command's expiry and a lease may
	// reach (default 24h).
	MaxExpiry time.Duration
	// MaxQueued bounds the commands waiting per asset (default 1,000);
	// MaxPending the commands not final yet (accepted, queued or sent)
	// across all assets (default 10,000). Commands past either are
	// rejected.
	MaxQueued, MaxPending int
	// MaxLeases bounds the leases in force (default 10,000); past it, a
	// lease on another asset is refused (ErrInvalid) until some lapse or
	// are released.
	MaxLeases int
	// Retain is how many finished records are kept (default 10,000),
	// AuditSize how many audit entries (default 100,000); the log is
	// compacted down to them once it grows past MaxLogBytes (default 64
	// MiB).
	Retain, AuditSize int
	MaxLogBytes       int64
	// NoSync leaves the log's writes to the operating system instead of
	// syncing each before going on: faster, but a power cut may lose the
	// last records (a kill of the process does not).
	NoSync bool
	// OnTransition, when set, sees every transition and audit event after
	// it is in the log. It must not block for long.
	OnTransition func(Transition)
	// Log receives the arbiter's own troubles; nil discards them.
	Log *slog.Logger
	// Models, when set, gives the thing models set-point commands are
	// checked against (see SetModels); nil checks none.
	Models Models
}

// Arbiter decides on every command before it reaches the transport (see
// the package documentation for the rules). It is safe for concurrent
// use.
type Arbiter struct {
	opts    Options
	tracker *command.Tracker
	store   *store
	prio    map[string]int // class -> priority, higher is more important
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	// deferSync is set while a decision is made: its log entries are
	// synced together once it is made (see Submit).
	deferSync atomic.Bool

	mu       sync.Mutex // decisions, queues
	closed   bool
	queues   map[string][]queued // asset -> commands waiting
	running  map[string]bool     // asset -> a worker sends its commands
	inflight map[string]string   // asset -> id of a sent command found on restart

	leaseMu sync.Mutex
	leases  map[string]Lease // asset -> lease (possibly lapsed)

	// idemMu guards the idempotency keys; it is taken after a.mu and
	// never held while the tracker reports a transition.
	idemMu      sync.Mutex
	idem        map[string]idemRef // origin + key -> the command that had it
	idemPruneAt int                // len(idem) at which it is pruned next

	repairMu sync.Mutex
	repairAt time.Time // no repair of the log is tried before

	models atomic.Pointer[modelsRef] // the thing models in force
}

// repairEvery spaces the attempts to rewrite a log whose append failed.
const repairEvery = time.Second

// repairLog rewrites the log from the live state once an append has
// failed (a full disk, say) and there is room again, at most once per
// repairEvery; until then, commands are refused.
func (a *Arbiter) repairLog() {
	if a.store.health() == nil {
		return
	}
	now := a.opts.Clock.Now()
	a.repairMu.Lock()
	if now.Before(a.repairAt) {
		a.repairMu.Unlock()
		return
	}
	a.repairAt = now.Add(repairEvery)
	a.repairMu.Unlock()
	if err := a.store.repair(a.snapshot); err != nil {
		a.opts.Log.Debug("control log: still cannot be written", "err", err)
		return
	}
	a.opts.Log.Warn("control log: written again after a failed write; rewritten from the live state", "dir", a.opts.Dir)
}

// idemRef is the command an idempotency key belongs to. A key outlives
// its record (forgotten past Retain) until the command's expiry, so that
// a repetition is not executed again before its deadline.
type idemRef struct {
	id    string
	until time.Time
}

// maxForgottenKeys bounds the keys kept beyond their records: past it,
// those whose expiry comes first are dropped.
func (a *Arbiter) maxForgottenKeys() int { return 10 * a.opts.Retain }

type queued struct {
	id   string
	prio int
}

// Open opens (or creates) the arbiter's log in opts.Dir and puts back what
// it holds: every record with its status, the audit and the leases in
// force. Commands that were accepted or queued are queued again (subject
// to their expiry); a command that was sent when the process stopped is
// never sent again: it waits for the device's reply for the rest of its
// timeout and then times out.
func Open(opts Options) (*Arbiter, error) {
	if opts.Dir == "" || opts.Transport == nil {
		return nil, errors.New("control: Open needs a directory and a transport")
	}
	if opts.Clock == nil {
		opts.Clock = command.SystemClock{}
	}
	if len(opts.Classes) == 0 {
		opts.Classes = DefaultClasses
	}
	if len(opts.OriginClasses) == 0 {
		opts.OriginClasses = DefaultOriginClasses
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.MaxTimeout <= 0 {
		opts.MaxTimeout = 10 * time.Minute
	}
	if opts.MaxExpiry <= 0 {
		opts.MaxExpiry = 24 * time.Hour
	}
	if opts.MaxQueued <= 0 {
		opts.MaxQueued = 1000
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = 10_000
	}
	if opts.MaxLeases <= 0 {
		opts.MaxLeases = 10_000
	}
	if opts.Retain <= 0 {
		opts.Retain = 10_000
	}
	if opts.AuditSize <= 0 {
		opts.AuditSize = 100_000
	}
	if opts.MaxLogBytes <= 0 {
		opts.MaxLogBytes = 64 << 20
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	a := &Arbiter{opts: opts, prio: map[string]int{}, idem: map[string]idemRef{}, idemPruneAt: 2 * opts.Retain, queues: map[string][]queued{},
		running: map[string]bool{}, inflight: map[string]string{}, leases: map[string]Lease{}}
	if opts.Models != nil {
		a.SetModels(opts.Models)
	}
	for i, c := range opts.Classes {
		if _, dup := a.prio[c]; dup || c == "" {
			return nil, fmt.Errorf("control: class %q listed twice or empty", c)
		}
		a.prio[c] = len(opts.Classes) - i
	}
	for o, c := range opts.OriginClasses {
		if _, ok := a.prio[c]; !ok {
			return nil, fmt.Errorf("control: origin %q: unknown class %q", o, c)
		}
	}
	st, snap, err := openStore(opts.Dir, opts.MaxLogBytes, opts.NoSync)
	if err != nil {
		return nil, err
	}
	a.store = st
	if snap.cut > 0 {
		opts.Log.Warn("control log: a torn or corrupt frame and what followed it were cut off", "dir", opts.Dir, "bytes", snap.cut)
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.tracker = command.New(command.Options{Clock: opts.Clock, Timeout: opts.Timeout, Retain: opts.Retain,
		AuditSize: opts.AuditSize, OnTransition: a.persist})

	// Put back the log's state.
	now := opts.Clock.Now()
	recs := slices.Collect(maps.Values(snap.records))
	slices.SortFunc(recs, func(x, y Record) int {
		if c := x.Created.Compare(y.Created); c != 0 {
			return c
		}
		return strings.Compare(x.ID, y.ID)
	})
	for _, l := range snap.leases {
		if now.Before(l.Until) {
			a.leases[l.Asset] = l
		}
	}
	if err := a.tracker.Restore(recs, snap.audit); err != nil {
		st.close()
		return nil, fmt.Errorf("control: restoring the log: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, k := range snap.keys {
		if now.Before(k.Until) {
			a.idem[idemKey(k.Origin, k.Key)] = idemRef{id: k.ID, until: k.Until}
		}
	}
	for _, r := range recs {
		if r.IdempotencyKey != "" {
			a.idem[idemKey(r.Origin, r.IdempotencyKey)] = idemRef{id: r.ID, until: r.Expiry}
		}
		cur, ok := a.tracker.Get(r.ID)
		if !ok {
			continue
		}
		switch cur.Status {
		case command.Accepted:
			// Its decision stopped half-written (the process stopped in
			// its middle, or the disk was full): its issuer had no
			// answer or an error, so it is not executed.
			_, _ = a.tracker.Fail(r.ID, "found accepted but not queued after a restart: its decision was not completely written and its issuer had no answer or an error; not executed")
		case command.Queued:
			a.enqueueLocked(cur.Asset, queued{id: r.ID, prio: cur.Priority})
		case command.Sent:
			a.inflight[cur.Asset] = r.ID
			_ = a.tracker.Note(r.ID, "found sent after a restart: not sent again; waiting for the device's reply until the timeout")
		}
	}
	for asset := range a.inflight {
		a.startLocked(asset)
	}
	return a, nil
}

// Tracker returns the tracker holding the records: a transport passes the
// devices' replies to its Reply method.
func (a *Arbiter) Tracker() *command.Tracker { return a.tracker }

// Classes returns the priority classes, highest first.
func (a *Arbiter) Classes() []string { return slices.Clone(a.opts.Classes) }

func idemKey(origin, key string) string { return origin + "\x00" + key }

// persist writes a transition and the record after it to the log.
func (a *Arbiter) persist(tr Transition) {
	e := logEntry{Tr: &tr}
	if tr.ID != "" {
		if rec, ok := a.tracker.Get(tr.ID); ok {
			// Bound what came from a device.
			if len(rec.Output) > 64<<10 {
				rec.Output = nil
			}
			if len(rec.Reason) > MaxStringLen {
				rec.Reason = rec.Reason[:MaxStringLen] + "..."
			}
			e.Rec = &rec
		}
	}
	if len(tr.Reason) > MaxStringLen {
		tr.Reason = tr.Reason[:MaxStringLen] + "..."
	}
	if err := a.store.appendEntry(e, !a.deferSync.Load()); err != nil {
		if !errors.Is(err, errStoreClosed) {
			a.opts.Log.Error("control: cannot write the log", "err", err)
		}
		return
	}
	if a.store.full() {
		if err := a.store.compact(a.snapshot); err != nil {
			a.opts.Log.Error("control: cannot compact the log", "err", err)
		}
	}
	if a.opts.OnTransition != nil {
		a.opts.OnTransition(tr)
	}
}

// snapshot is the live state as log entries.
func (a *Arbiter) snapshot() []logEntry {
	var out []logEntry
	for _, tr := range a.tracker.Audit("") {
		out = append(out, logEntry{Tr: &tr})
	}
	for _, r := range a.tracker.List(nil) {
		out = append(out, logEntry{Rec: &r})
	}
	a.leaseMu.Lock()
	for _, l := range a.leases {
		out = append(out, logEntry{Lease: &l})
	}
	a.leaseMu.Unlock()
	// The keys of forgotten records whose expiry is ahead.
	now := a.opts.Clock.Now()
	a.idemMu.Lock()
	for k, ref := range a.idem {
		if !now.Before(ref.until) {
			continue
		}
		if _, ok := a.tracker.Get(ref.id); ok {
			continue
		}
		origin, key, _ := strings.Cut(k, "\x00")
		out = append(out, logEntry{Key: &keyEntry{Origin: origin, Key: key, ID: ref.id, Until: ref.until}})
	}
	a.idemMu.Unlock()
	return out
}

// remembered returns the command an idempotency key belongs to.
func (a *Arbiter) remembered(origin, key string) (idemRef, bool) {
	a.idemMu.Lock()
	defer a.idemMu.Unlock()
	ref, ok := a.idem[idemKey(origin, key)]
	return ref, ok
}

// remember keeps an idempotency key, and prunes the keys now and then:
// a key goes once its record is forgotten and its expiry has passed (or
// it had none); at most maxForgottenKeys outlive their records.
func (a *Arbiter) remember(origin, key string, ref idemRef, now time.Time) {
	a.idemMu.Lock()
	defer a.idemMu.Unlock()
	a.idem[idemKey(origin, key)] = ref
	if len(a.idem) <= a.idemPruneAt {
		return
	}
	var forgotten []string
	for k, r := range a.idem {
		if _, ok := a.tracker.Get(r.id); ok {
			continue
		}
		if !now.Before(r.until) {
			delete(a.idem, k)
			continue
		}
		forgotten = append(forgotten, k)
	}
	if extra := len(forgotten) - a.maxForgottenKeys(); extra > 0 {
		slices.SortFunc(forgotten, func(x, y string) int { return a.idem[x].until.Compare(a.idem[y].until) })
		for _, k := range forgotten[:extra] {
			delete(a.idem, k)
		}
	}
	a.idemPruneAt = max(2*a.opts.Retain, len(a.idem)+a.opts.Retain)
}

// priority returns the priority of a class, 0 if unknown.
func (a *Arbiter) priority(class string) int { return a.prio[class] }

// classFor checks the class an origin claims (or gives its default).
func (a *Arbiter) classFor(origin, class string) (string, error) {
	kind := OriginKind(origin)
	top, ok := a.opts.OriginClasses[kind]
	if !ok {
		return "", fmt.Errorf("%w: origin %q: its kind %q is none of %v", ErrInvalid, clip(origin), clip(kind), slices.Sorted(maps.Keys(a.opts.OriginClasses)))
	}
	if class == "" {
		return top, nil
	}
	p, ok := a.prio[class]
	if !ok {
		return "", fmt.Errorf("%w: unknown class %q (classes: %v)", ErrInvalid, clip(class), a.opts.Classes)
	}
	if p > a.prio[top] {
		return "", fmt.Errorf("origin %s may not claim class %s (at most %s)", kind, class, top)
	}
	return class, nil
}

// Submit decides on c (see the package documentation). It returns the
// record: queued when accepted, the earlier record for a repeated
// idempotency key, or rejected or expired with an error wrapping
// ErrRejected or ErrExpired. A malformed command returns ErrInvalid and
// is not recorded.
func (a *Arbiter) Submit(ctx context.Context, c Command) (Record, error) {
	if err := ctx.Err(); err != nil {
		return Record{}, err
	}
	a.repairLog()
	now := a.opts.Clock.Now()
	if err := a.check(&c, now); err != nil {
		return Record{}, err
	}
	class, classErr := a.classFor(c.Origin, c.Class)
	if classErr != nil && errors.Is(classErr, ErrInvalid) {
		return Record{}, classErr
	}
	c.Class = class
	c.Priority = a.priority(class)
	if classErr != nil {
		c.Class = ""
	}
	// Values: finite numbers, and within the asset's thing model.
	valueErr := nonFinite(&c)
	var note modelNote
	if valueErr == "" {
		valueErr, note = a.checkModel(&c)
	}

	// The decision's log entries are written under the lock and synced
	// once, after it, before the issuer has the answer.
	a.mu.Lock()
	a.deferSync.Store(true)
	rec, err := a.decide(c, now, classErr, valueErr, note)
	a.deferSync.Store(false)
	a.mu.Unlock()
	if serr := a.store.syncAll(); serr != nil && rec.ID != "" {
		return rec, serr
	}
	return rec, err
}

// decide applies the rules to a checked command; a.mu is held. classErr
// is why its class is refused, valueErr why its values are, note what the
// thing model check says of an accepted one.
func (a *Arbiter) decide(c Command, now time.Time, classErr error, valueErr string, note modelNote) (Record, error) {
	if a.closed {
		return Record{}, ErrClosed
	}
	if c.IdempotencyKey != "" {
		if ref, ok := a.remembered(c.Origin, c.IdempotencyKey); ok {
			if rec, ok := a.tracker.Get(ref.id); ok {
				_ = a.tracker.Note(ref.id, "submitted again with the same idempotency key: not executed again")
				return rec, nil
			}
			if now.Before(ref.until) {
				// Its record is forgotten, but it may have run: a
				// repetition before its expiry is not executed again.
				return Record{}, fmt.Errorf("%w: idempotency key %q of command %s, whose record is no longer kept, repeated before its expiry %s: not executed again",
					ErrInvalid, clip(c.IdempotencyKey), clip(ref.id), ref.until.UTC().Format(time.RFC3339))
			}
		}
	}
	if c.Timeout <= 0 {
		c.Timeout = a.opts.Timeout
	}
	c.Status, c.Reason = "", ""
	rec, err := a.tracker.Submit(c)
	if errors.Is(err, command.ErrDuplicate) {
		return Record{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err != nil && !errors.Is(err, command.ErrExpired) {
		return Record{}, fmt.Errorf("control: %w", err)
	}
	if c.IdempotencyKey != "" {
		a.remember(c.Origin, c.IdempotencyKey, idemRef{id: rec.ID, until: c.Expiry}, now)
	}
	if err != nil { // expired on arrival
		return rec, err
	}
	reject := func(reason string, cause error) (Record, error) {
		r, _ := a.tracker.Reject(rec.ID, reason)
		if cause != nil {
			return r, fmt.Errorf("%w: %w: %s", ErrRejected, cause, reason)
		}
		return r, fmt.Errorf("%w: %s", ErrRejected, reason)
	}
	if classErr != nil {
		return reject(classErr.Error(), nil)
	}
	if valueErr != "" {
		return reject(valueErr, ErrBadSetPoint)
	}
	// Leases.
	if l, ok := a.lease(c.Asset, now); ok {
		switch {
		case c.Lease == l.Holder:
		case c.Priority > a.priority(l.Class):
		default:
			return reject(fmt.Sprintf("asset %s is leased by %s (class %s) until %s", c.Asset, l.Holder, l.Class,
				l.Until.UTC().Format(time.RFC3339)), ErrLeased)
		}
	} else if c.Lease != "" {
		return reject(fmt.Sprintf("%s holds no lease on asset %s", c.Lease, c.Asset), ErrLeased)
	}
	// Newer commands supersede queued older ones of the same target.
	q := a.queues[c.Asset]
	var older []string
	for _, w := range q {
		o, ok := a.tracker.Get(w.id)
		if !ok || o.Status.Final() || !sameTarget(&o, &c) {
			continue
		}
		if o.Priority > c.Priority {
			return reject(fmt.Sprintf("queued command %s of higher class %s sets the same target", o.ID, o.Class), nil)
		}
		older = append(older, o.ID)
	}
	if len(q)-len(older) >= a.opts.MaxQueued {
		return reject(fmt.Sprintf("%d commands already queued for asset %s", len(q), c.Asset), nil)
	}
	// This one is pending already; those it supersedes will not be.
	if n := a.tracker.Pending() - 1 - len(older); n >= a.opts.MaxPending {
		return reject(fmt.Sprintf("%d commands already pending for all assets", n), nil)
	}
	for _, id := range older {
		if _, err := a.tracker.Supersede(id, "superseded by "+rec.ID); err == nil {
			a.queues[c.Asset] = slices.DeleteFunc(a.queues[c.Asset], func(w queued) bool { return w.id == id })
		}
	}
	reason := fmt.Sprintf("class %s; %d ahead for asset %s", c.Class, len(a.queues[c.Asset]), c.Asset)
	if len(older) > 0 {
		reason += "; supersedes " + strings.Join(older, ", ")
	}
	if note != "" {
		reason += "; " + string(note)
	}
	rec, err = a.tracker.Queue(rec.ID, reason)
	if err != nil {
		// Expired meanwhile (a clock moved by another goroutine).
		got, _ := a.tracker.Get(rec.ID)
		return got, err
	}
	if err := a.store.health(); err != nil {
		r, _ := a.tracker.Fail(rec.ID, "the control log cannot be written: "+err.Error())
		return r, err
	}
	a.enqueueLocked(c.Asset, queued{id: rec.ID, prio: c.Priority})
	return rec, nil
}

// sameTarget reports whether b's command replaces a's: the same device
// and service and, for set-points, every point of a is also set by b.
func sameTarget(a, b *Command) bool {
	if a.Product != b.Product || a.Asset != b.Asset || a.Service != b.Service {
		return false
	}
	if a.Service != command.SetPoints {
		return true
	}
	for p := range a.Inputs {
		if _, ok := b.Inputs[p]; !ok {
			return false
		}
	}
	return true
}

// enqueueLocked queues a command and makes sure a worker sends the
// asset's commands; a.mu is held.
func (a *Arbiter) enqueueLocked(asset string, w queued) {
	a.queues[asset] = append(a.queues[asset], w)
	a.startLocked(asset)
}

func (a *Arbiter) startLocked(asset string) {
	if a.running[asset] || a.closed {
		return
	}
	a.running[asset] = true
	a.wg.Add(1)
	go a.work(asset)
}

// work sends an asset's commands one at a time: the highest class first,
// then the oldest, each once the transport is ready and the previous one
// has a final status.
func (a *Arbiter) work(asset string) {
	defer a.wg.Done()
	for {
		a.mu.Lock()
		if id := a.inflight[asset]; id != "" {
			delete(a.inflight, asset)
			a.mu.Unlock()
			// Found sent after a restart: the transport must be up (a
			// downlink connects when asked) for its reply to be heard.
			if err := a.opts.Transport.Ready(a.ctx); err != nil {
				a.mu.Lock()
				delete(a.running, asset)
				a.mu.Unlock()
				return
			}
			_, _ = a.tracker.Wait(a.ctx, id)
			continue
		}
		a.queues[asset] = slices.DeleteFunc(a.queues[asset], func(w queued) bool {
			r, ok := a.tracker.Get(w.id)
			return !ok || r.Status.Final()
		})
		if len(a.queues[asset]) == 0 || a.closed {
			delete(a.queues, asset)
			delete(a.running, asset)
			a.mu.Unlock()
			return
		}
		a.mu.Unlock()
		if err := a.opts.Transport.Ready(a.ctx); err != nil {
			a.mu.Lock()
			delete(a.running, asset)
			a.mu.Unlock()
			return
		}
		a.mu.Lock()
		q := a.queues[asset]
		best := -1
		for i, w := range q {
			if best < 0 || w.prio > q[best].prio {
				best = i
			}
		}
		if best < 0 {
			a.mu.Unlock()
			continue
		}
		id := q[best].id
		a.queues[asset] = slices.Delete(q, best, best+1)
		a.mu.Unlock()
		// Out of the queue, nothing supersedes it any more. Recorded as
		// sent (and in the log) before it is delivered, so that it is
		// never delivered twice, whatever happens next.
		rec, err := a.tracker.Sent(id)
		if err != nil {
			continue // expired, superseded meanwhile
		}
		// Everything written so far (its being sent included) is synced
		// before it goes out.
		if err := a.store.syncAll(); err != nil {
			_, _ = a.tracker.Fail(id, "not delivered: the control log cannot be written: "+err.Error())
			continue
		}
		if err := a.opts.Transport.Deliver(a.ctx, rec); err != nil {
			if a.ctx.Err() != nil {
				// Closing: it may have gone out. It stays sent, and the
				// next Open waits for its reply (never sends it again).
				return
			}
			_, _ = a.tracker.Fail(id, "not delivered: "+err.Error())
			continue
		}
		_, _ = a.tracker.Wait(a.ctx, id)
	}
}

// lease returns the lease in force on asset.
func (a *Arbiter) lease(asset string, now time.Time) (Lease, bool) {
	a.leaseMu.Lock()
	defer a.leaseMu.Unlock()
	l, ok := a.leases[asset]
	if !ok || !now.Before(l.Until) {
		return Lease{}, false
	}
	return l, true
}

// TakeLease gives req.Holder control of req.Asset for req.For: while it
// lasts, commands for the asset from others are rejected unless their
// class is higher than the lease's. The holder renews its own lease by
// taking it again; a lease held by another is taken over only by a higher
// class (audited), otherwise ErrLeased names the holder.
func (a *Arbiter) TakeLease(ctx context.Context, req LeaseRequest) (Lease, error) {
	if err := ctx.Err(); err != nil {
		return Lease{}, err
	}
	if err := checkKey("asset", req.Asset, MaxKeyLen); err != nil {
		return Lease{}, err
	}
	if err := checkKey("holder", req.Holder, MaxNameLen); err != nil {
		return Lease{}, err
	}
	if len(req.Reason) > MaxStringLen {
		return Lease{}, fmt.Errorf("%w: reason longer than %d bytes", ErrInvalid, MaxStringLen)
	}
	if req.For <= 0 || req.For > a.opts.MaxExpiry {
		return Lease{}, fmt.Errorf("%w: a lease lasts more than 0 and at most %s", ErrInvalid, a.opts.MaxExpiry)
	}
	a.repairLog()
	class, err := a.classFor(req.Origin, req.Class)
	if err != nil {
		if !errors.Is(err, ErrInvalid) {
			err = fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		return Lease{}, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return Lease{}, ErrClosed
	}
	now := a.opts.Clock.Now()
	l := Lease{Asset: req.Asset, Holder: req.Holder, Origin: req.Origin, Class: class, Taken: now, Until: now.Add(req.For), Reason: req.Reason}
	what := "taken"
	if cur, ok := a.lease(req.Asset, now); ok {
		switch {
		case cur.Holder == req.Holder:
			what = "renewed"
			l.Taken = cur.Taken
		case a.priority(class) > a.priority(cur.Class):
			what = fmt.Sprintf("taken over from %s (class %s)", cur.Holder, cur.Class)
		default:
			a.tracker.Annotate(req.Asset, req.Origin, fmt.Sprintf("lease refused to %s (class %s): held by %s (class %s) until %s",
				req.Holder, class, cur.Holder, cur.Class, cur.Until.UTC().Format(time.RFC3339)))
			return cur, fmt.Errorf("%w: asset %s is leased by %s (class %s) until %s", ErrLeased, req.Asset, cur.Holder, cur.Class, cur.Until.UTC().Format(time.RFC3339))
		}
	}
	if err := a.roomForLease(req.Asset, now); err != nil {
		return Lease{}, err
	}
	if err := a.store.appendEntry(logEntry{Lease: &l}, true); err != nil {
		return Lease{}, err
	}
	a.leaseMu.Lock()
	a.leases[req.Asset] = l
	a.leaseMu.Unlock()
	reason := fmt.Sprintf("lease %s by %s (class %s) until %s", what, l.Holder, l.Class, l.Until.UTC().Format(time.RFC3339))
	if l.Reason != "" {
		reason += ": " + l.Reason
	}
	a.tracker.Annotate(req.Asset, req.Origin, reason)
	return l, nil
}

// roomForLease refuses a lease on a new asset once MaxLeases are in
// force, forgetting the lapsed ones first.
func (a *Arbiter) roomForLease(asset string, now time.Time) error {
	a.leaseMu.Lock()
	defer a.leaseMu.Unlock()
	if _, ok := a.leases[asset]; ok || len(a.leases) < a.opts.MaxLeases {
		return nil
	}
	for k, l := range a.leases {
		if !now.Before(l.Until) {
			delete(a.leases, k)
		}
	}
	if len(a.leases) >= a.opts.MaxLeases {
		return fmt.Errorf("%w: %d leases in force already", ErrInvalid, len(a.leases))
	}
	return nil
}

// ReleaseLease gives up holder's lease on asset.
func (a *Arbiter) ReleaseLease(ctx context.Context, asset, holder string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	a.repairLog()
	a.mu.Lock()
	defer a.mu.Unlock()
	cur, ok := a.lease(asset, a.opts.Clock.Now())
	if !ok || cur.Holder != holder {
		return fmt.Errorf("%w: %s holds no lease on asset %s", ErrNoLease, clip(holder), clip(asset))
	}
	if err := a.store.appendEntry(logEntry{Lease: &cur, Released: true}, true); err != nil {
		return err
	}
	a.leaseMu.Lock()
	delete(a.leases, asset)
	a.leaseMu.Unlock()
	a.tracker.Annotate(asset, cur.Origin, "lease released by "+holder)
	return nil
}

// Leases returns the leases in force, by asset.
func (a *Arbiter) Leases() []Lease {
	now := a.opts.Clock.Now()
	a.leaseMu.Lock()
	defer a.leaseMu.Unlock()
	var out []Lease
	for _, l := range a.leases {
		if now.Before(l.Until) {
			out = append(out, l)
		}
	}
	slices.SortFunc(out, func(x, y Lease) int { return strings.Compare(x.Asset, y.Asset) })
	return out
}

// Get returns a record.
func (a *Arbiter) Get(id string) (Record, bool) { return a.tracker.Get(id) }

// Wait blocks until the record reaches a final status or ctx ends, and
// returns it as it then is (with ctx's error if not final).
func (a *Arbiter) Wait(ctx context.Context, id string) (Record, error) {
	return a.tracker.Wait(ctx, id)
}

// Filter selects records or audit entries; zero fields select all.
type Filter struct {
	ID, Asset, Origin string
	// Status selects records in that status, or audit entries moving to
	// it.
	Status Status
	// After selects audit entries with a greater sequence number.
	After uint64
	// Limit bounds the answer to the last Limit entries (default and
	// maximum 1,000).
	Limit int
}

func (f Filter) limit() int {
	if f.Limit <= 0 || f.Limit > 1000 {
		return 1000
	}
	return f.Limit
}

// Audit returns the audit entries that f selects, oldest first.
func (a *Arbiter) Audit(f Filter) []Transition {
	all := a.tracker.Audit(f.ID)
	out := all[:0]
	for _, tr := range all {
		if tr.Seq <= f.After || f.Asset != "" && tr.Asset != f.Asset || f.Origin != "" && tr.Origin != f.Origin && OriginKind(tr.Origin) != f.Origin ||
			f.Status != "" && tr.To != f.Status {
			continue
		}
		out = append(out, tr)
	}
	if n := f.limit(); len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

// List returns the records that f selects, oldest first.
func (a *Arbiter) List(f Filter) []Record {
	out := a.tracker.List(func(c *command.Command) bool {
		return (f.ID == "" || c.ID == f.ID) && (f.Asset == "" || c.Asset == f.Asset) &&
			(f.Origin == "" || c.Origin == f.Origin || OriginKind(c.Origin) == f.Origin) && (f.Status == "" || c.Status == f.Status)
	})
	if n := f.limit(); len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

// Close stops sending, waits for the workers and closes the log. Records
// not final stay as they are in the log and are resumed by the next Open.
func (a *Arbiter) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	a.mu.Unlock()
	a.cancel()
	a.wg.Wait()
	a.tracker.Close()
	return a.store.close()
}

// check validates and bounds a command.
func (a *Arbiter) check(c *Command, now time.Time) error {
	if err := checkKey("asset", c.Asset, MaxKeyLen); err != nil {
		return err
	}
	if c.Product != "" {
		if err := checkKey("product", c.Product, MaxKeyLen); err != nil {
			return err
		}
	}
	if c.Service == "" {
		c.Service = command.SetPoints
	}
	if err := checkKey("service", c.Service, MaxKeyLen); err != nil {
		return err
	}
	if err := checkKey("origin", c.Origin, MaxNameLen); err != nil {
		return err
	}
	if c.ID != "" {
		if err := checkKey("id", c.ID, MaxKeyLen); err != nil {
			return err
		}
	}
	for name, v := range map[string]string{"class": c.Class, "lease": c.Lease} {
		if v != "" {
			if err := checkKey(name, v, MaxNameLen); err != nil {
				return err
			}
		}
	}
	if len(c.IdempotencyKey) > MaxKeyLen {
		return fmt.Errorf("%w: idempotency key longer than %d bytes", ErrInvalid, MaxKeyLen)
	}
	if len(c.Inputs) > MaxInputs {
		return fmt.Errorf("%w: %d inputs, more than %d", ErrInvalid, len(c.Inputs), MaxInputs)
	}
	if c.Service == command.SetPoints && len(c.Inputs) == 0 {
		return fmt.Errorf("%w: a set-point command sets at least one point", ErrInvalid)
	}
	for k, v := range c.Inputs {
		if err := checkKey("input name", k, MaxKeyLen); err != nil {
			return err
		}
		switch x := v.(type) {
		case bool, int, int32, int64:
		case float64:
			// NaN and ±Inf are rejected with a record (see nonFinite).
		case json.Number:
			if _, err := strconv.ParseFloat(string(x), 64); err != nil {
				return fmt.Errorf("%w: input %s: %w", ErrInvalid, k, err)
			}
		case string:
			if len(x) > MaxStringLen {
				return fmt.Errorf("%w: input %s longer than %d bytes", ErrInvalid, k, MaxStringLen)
			}
		default:
			return fmt.Errorf("%w: input %s is a %T: inputs are numbers, strings or booleans", ErrInvalid, k, v)
		}
	}
	if c.Timeout < 0 || c.Timeout > a.opts.MaxTimeout {
		return fmt.Errorf("%w: reply timeout %s out of (0, %s]", ErrInvalid, c.Timeout, a.opts.MaxTimeout)
	}
	if !c.Expiry.IsZero() && c.Expiry.After(now.Add(a.opts.MaxExpiry)) {
		return fmt.Errorf("%w: expiry %s is more than %s ahead", ErrInvalid, c.Expiry.UTC().Format(time.RFC3339), a.opts.MaxExpiry)
	}
	if ck, ok := a.opts.Transport.(Checker); ok {
		if err := ck.Check(c); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	return nil
}

// checkKey checks a name: not empty, bounded, printable, without the
// MQTT wildcards or a slash.
func checkKey(what, s string, n int) error {
	if s == "" {
		return fmt.Errorf("%w: no %s", ErrInvalid, what)
	}
	if len(s) > n {
		return fmt.Errorf("%w: %s longer than %d bytes", ErrInvalid, what, n)
	}
	for _, r := range s {
		if r == '/' || r == '+' || r == '#' || r == unicode.ReplacementChar || !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return fmt.Errorf("%w: %s %q holds %q", ErrInvalid, what, clip(s), r)
		}
	}
	return nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
