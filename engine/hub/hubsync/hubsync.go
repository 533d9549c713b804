// Package hubsync is the edge's side of a release from the hub: it watches
// the edge's desired-release key in NATS JetStream KV, fetches the bundle
// the latest record names from the object store, and streams it into the
// edge agent, which verifies and applies it (docs/format/hub-protocol.md).
//
// hubsync never trusts the hub: the record is decoded strictly, the object
// must match the record's size and digest, and the agent checks the
// bundle's signature with its own keys. Only the latest record is applied:
// records that arrive while the edge is busy or offline are skipped for the
// newest.
package hubsync

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/hub/protocol"
)

// Importer applies a bundle read from r; file names it in the report.
// *agent.Agent satisfies it.
type Importer interface {
	Import(r io.Reader, file string) (agent.Report, error)
}

// Defaults of Options.
const (
	DefaultMinBackoff   = time.Second
	DefaultMaxBackoff   = time.Minute
	DefaultResync       = 30 * time.Second
	DefaultFetchTimeout = 10 * time.Minute
)

// Outcome is what became of one desired record.
type Outcome struct {
	// Desired is the record.
	Desired protocol.Desired
	// Report is the agent's report when the bundle reached it.
	Report *agent.Report
	// Err says why the bundle did not reach the agent (or the agent
	// failed); nil with a Report.
	Err error
	// Retry is true when the record will be tried again.
	Retry bool
}

// Options configure Sync. Current is required.
type Options struct {
	// Current returns the release the edge runs ("" and 0 for none).
	Current func() (name string, version uint64)
	// MaxBundleBytes bounds a bundle (default agent.DefaultMaxBundleBytes).
	MaxBundleBytes int64
	// MinBackoff and MaxBackoff bound the wait between retries; it
	// doubles from MinBackoff up to MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// Resync is how often the key is read again besides the watch, in
	// case a watch lost its consumer in a broker restart.
	Resync time.Duration
	// FetchTimeout bounds the fetch and import of one bundle.
	FetchTimeout time.Duration
	// Log receives what Sync does (default: discarded).
	Log *slog.Logger
	// OnOutcome, when set, is called after every attempt at a record.
	OnOutcome func(Outcome)
}

// AgentCurrent returns an Options.Current of a.
func AgentCurrent(a *agent.Agent) func() (string, uint64) {
	return func() (string, uint64) {
		if c := a.Current(); c != nil {
			return c.Name, c.Version
		}
		return "", 0
	}
}

// errRefused marks a record that will not be tried again.
var errRefused = errors.New("refused")

// syncer is one run of Sync.
type syncer struct {
	js   jetstream.JetStream
	edge string
	key  string
	imp  Importer
	opts Options

	// doneRev and doneVal are the revision and value of the last entry
	// handled for good (applied, rejected, refused or ignored). The value
	// is compared too: a bucket made anew counts revisions from 1 again.
	doneRev uint64
	doneVal []byte
}

// isNew reports whether e was not handled for good yet.
func (s *syncer) isNew(e jetstream.KeyValueEntry) bool {
	return e.Revision() != s.doneRev || !bytes.Equal(e.Value(), s.doneVal)
}

// finish marks e handled for good.
func (s *syncer) finish(e jetstream.KeyValueEntry) {
	s.doneRev, s.doneVal = e.Revision(), bytes.Clone(e.Value())
}

// Sync applies the desired releases of edge until ctx ends; it returns
// ctx's error, or an error at once for a bad edge id or options. When the
// broker or a bundle is unreachable it retries with backoff.
func Sync(ctx context.Context, js jetstream.JetStream, edge string, imp Importer, opts Options) error {
	key, err := protocol.DesiredKey(edge)
	if err != nil {
		return fmt.Errorf("hubsync: %w", err)
	}
	if js == nil || imp == nil || opts.Current == nil {
		return errors.New("hubsync: JetStream, Importer and Options.Current are required")
	}
	if opts.MaxBundleBytes <= 0 {
		opts.MaxBundleBytes = agent.DefaultMaxBundleBytes
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(DefaultMaxBackoff, opts.MinBackoff)
	}
	if opts.Resync <= 0 {
		opts.Resync = DefaultResync
	}
	if opts.FetchTimeout <= 0 {
		opts.FetchTimeout = DefaultFetchTimeout
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	s := &syncer{js: js, edge: edge, key: key, imp: imp, opts: opts}
	backoff := opts.MinBackoff
	for {
		err := s.session(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.opts.Log.Warn("hubsync: link to the hub lost; retrying", "edge", edge, "err", err, "in", backoff)
		if !engine.Sleep(ctx, backoff) {
			return ctx.Err()
		}
		backoff = min(2*backoff, opts.MaxBackoff)
	}
}

// session watches the key until the watch or the link breaks.
func (s *syncer) session(ctx context.Context) error {
	kv, err := s.js.KeyValue(ctx, protocol.DesiredBucket)
	if err != nil {
		return fmt.Errorf("opening KV bucket %s: %w", protocol.DesiredBucket, err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := kv.Watch(wctx, s.key)
	if err != nil {
		return fmt.Errorf("watching %s: %w", s.key, err)
	}
	defer w.Stop()

	resync := time.NewTicker(s.opts.Resync)
	defer resync.Stop()
	var (
		pending jetstream.KeyValueEntry // the latest record not handled yet
		retry   *time.Timer
		retryC  <-chan time.Time
		backoff = s.opts.MinBackoff
	)
	// forgetRetry drops the retry of a record a newer one replaces.
	forgetRetry := func() {
		if retry != nil {
			retry.Stop()
			retry, retryC = nil, nil
			backoff = s.opts.MinBackoff
		}
	}
	defer forgetRetry()
	for {
		if pending != nil && retryC == nil {
			// Take the newest of what has arrived before working.
			pending = s.drain(w, pending)
			again := s.handle(ctx, pending)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if again {
				retry = time.NewTimer(backoff)
				retryC = retry.C
				backoff = min(2*backoff, s.opts.MaxBackoff)
			} else {
				pending = nil
				backoff = s.opts.MinBackoff
			}
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("the watch ended")
			}
			if e != nil && s.isNew(e) && (pending == nil || e.Revision() >= pending.Revision()) {
				if pending == nil || e.Revision() > pending.Revision() {
					// A newer record replaces one being retried.
					forgetRetry()
				}
				pending = e
			}
		case <-retryC:
			retry, retryC = nil, nil
		case <-resync.C:
			e, err := kv.Get(ctx, s.key)
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound):
			case err != nil:
				return fmt.Errorf("reading %s: %w", s.key, err)
			case s.isNew(e) && (pending == nil || e.Revision() > pending.Revision()):
				forgetRetry()
				pending = e
			}
		}
	}
}

// drain returns the newest of latest and the entries already waiting in
// the watch, without blocking.
func (s *syncer) drain(w jetstream.KeyWatcher, latest jetstream.KeyValueEntry) jetstream.KeyValueEntry {
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return latest
			}
			if e != nil && e.Revision() > latest.Revision() {
				latest = e
			}
		default:
			return latest
		}
	}
}

// handle acts on one entry; it reports whether to try it again.
func (s *syncer) handle(ctx context.Context, e jetstream.KeyValueEntry) bool {
	log := s.opts.Log.With("edge", s.edge, "revision", e.Revision())
	if e.Operation() != jetstream.KeyValuePut {
		log.Info("hubsync: desired release removed; the running release stays")
		s.finish(e)
		return false
	}
	d, err := protocol.DecodeDesired(e.Value())
	if err != nil {
		log.Warn("hubsync: ignoring a desired record", "err", err)
		s.finish(e)
		return false
	}
	log = log.With("release", d.String())
	if name, v := s.opts.Current(); name == d.Bundle && v == d.Version {
		log.Info("hubsync: the desired release already runs")
		s.finish(e)
		return false
	}
	rep, err := s.fetchImport(ctx, d)
	out := Outcome{Desired: d, Err: err}
	if err == nil {
		out.Report = &rep
		log.Info("hubsync: "+rep.String(), "outcome", rep.Outcome)
		s.finish(e)
	} else if errors.Is(err, errRefused) {
		log.Warn("hubsync: refused the desired release", "err", err)
		s.finish(e)
	} else {
		out.Retry = ctx.Err() == nil
		log.Warn("hubsync: could not fetch the desired release; retrying", "err", err)
	}
	if s.opts.OnOutcome != nil && ctx.Err() == nil {
		s.opts.OnOutcome(out)
	}
	return out.Retry
}

// fetchImport fetches d's bundle and streams it into the importer. An
// error wrapping errRefused is final for d; other errors are worth a retry.
func (s *syncer) fetchImport(ctx context.Context, d protocol.Desired) (agent.Report, error) {
	if d.Size > s.opts.MaxBundleBytes {
		return agent.Report{}, fmt.Errorf("%w: the bundle is %d bytes, more than max_bundle_bytes (%d)", errRefused, d.Size, s.opts.MaxBundleBytes)
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.FetchTimeout)
	defer cancel()
	obs, err := s.js.ObjectStore(ctx, protocol.BundleBucket)
	if err != nil {
		return agent.Report{}, fmt.Errorf("opening object store %s: %w", protocol.BundleBucket, err)
	}
	name, err := protocol.BundleObject(d.Digest)
	if err != nil {
		return agent.Report{}, fmt.Errorf("%w: %w", errRefused, err)
	}
	info, err := obs.GetInfo(ctx, name)
	if err != nil {
		return agent.Report{}, fmt.Errorf("bundle %s: %w", name, err)
	}
	if err := checkInfo(info, d); err != nil {
		return agent.Report{}, err
	}
	res, err := obs.Get(ctx, name)
	if err != nil {
		return agent.Report{}, fmt.Errorf("bundle %s: %w", name, err)
	}
	defer res.Close()
	if info, err := res.Info(); err != nil {
		return agent.Report{}, fmt.Errorf("bundle %s: %w", name, err)
	} else if err := checkInfo(info, d); err != nil {
		return agent.Report{}, err
	}
	// A broken link leaves the object's reader waiting: the deadline
	// closes it.
	stop := context.AfterFunc(ctx, func() { res.Close() })
	defer stop()
	r := &checked{r: res, left: d.Size, want: d.Digest, sum: sha256.New()}
	rep, err := s.imp.Import(r, name)
	switch {
	case r.err != nil:
		return agent.Report{}, fmt.Errorf("bundle %s: %w", name, r.err)
	case err != nil:
		return agent.Report{}, fmt.Errorf("importing bundle %s: %w", name, err)
	}
	return rep, nil
}

// checkInfo refuses an object that is a link, deleted, or not of d's size.
func checkInfo(info *jetstream.ObjectInfo, d protocol.Desired) error {
	switch {
	case info == nil:
		return errors.New("no object info")
	case info.Deleted:
		return fmt.Errorf("bundle %s: %w", d.Digest, jetstream.ErrObjectNotFound)
	case info.Opts != nil && info.Opts.Link != nil:
		return fmt.Errorf("%w: bundle %s is a link", errRefused, d.Digest)
	case int64(info.Size) != d.Size:
		return fmt.Errorf("%w: bundle %s is %d bytes, the desired record says %d", errRefused, d.Digest, info.Size, d.Size)
	}
	return nil
}

// checked passes exactly left bytes of r on, and fails instead of ending
// when there are more or fewer, or when they do not hash to want: the
// importer never sees a clean end of a bundle that is not the one asked for.
type checked struct {
	r    io.Reader
	left int64
	want string
	sum  hash.Hash
	err  error // the first failure; errRefused for a wrong bundle
}

func (c *checked) fail(err error) (int, error) {
	if c.err == nil {
		c.err = err
	}
	return 0, c.err
}

// Read implements io.Reader.
func (c *checked) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.left == 0 {
		// Expect the end of the object, then check the digest.
		var one [1]byte
		n, err := io.ReadFull(c.r, one[:])
		if n > 0 {
			return c.fail(fmt.Errorf("%w: the object is longer than the desired record says", errRefused))
		}
		if !errors.Is(err, io.EOF) {
			return c.fail(err)
		}
		if got := protocol.DigestPrefix + hex.EncodeToString(c.sum.Sum(nil)); got != c.want {
			return c.fail(fmt.Errorf("%w: the object's digest is %s", errRefused, got))
		}
		return 0, io.EOF
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.sum.Write(p[:n])
	c.left -= int64(n)
	if err == io.EOF {
		if c.left > 0 {
			return c.fail(fmt.Errorf("%w: the object ended %d bytes early", io.ErrUnexpectedEOF, c.left))
		}
		err = nil
	} else if err != nil {
		return c.fail(err)
	}
	return n, nil
}
