// Package server is the hub process: it creates the JetStream resources of
// the hub protocol, ingests what edges send (data and alerts, reports and
// heartbeats) into the store exactly once, releases bundles to edges and
// serves the hub's HTTP JSON API.
//
// Every instance runs the same code over the same NATS and PostgreSQL:
// the consumers are durable and shared, every write is idempotent, and
// jobs that must run once (the janitor) run under a PostgreSQL advisory
// lock. An instance keeps no state of its own.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/bundle"
	"github.com/sluice-edge/sluice/engine/hub/ingest"
	"github.com/sluice-edge/sluice/engine/hub/protocol"
	"github.com/sluice-edge/sluice/engine/hub/store"
)

// Names of the durable consumers every instance shares.
const (
	DataDurable = "sluice-hub-data"
	EdgeDurable = "sluice-hub-edge"
)

// maxReleasesAtOnce bounds the releases one instance runs at once; more
// wait.
const maxReleasesAtOnce = 4

// Defaults of Options.
const (
	DefaultJanitorEvery = time.Minute
	DefaultBundleGrace  = time.Hour
)

// Store is the hub's state; *store.Store is one.
type Store interface {
	ingest.Store
	RecordHeartbeat(ctx context.Context, edge string, hb store.HeartbeatInfo) error
	Heartbeat(ctx context.Context, edge string, labels map[string]string, at time.Time) error
	RecordReport(ctx context.Context, edge string, r store.Report) error
	InsertCommand(ctx context.Context, c store.Command) error
	RecordCommand(ctx context.Context, c store.Command) error
	RecordLeaseEvent(ctx context.Context, e store.LeaseEvent) error
	LeaseEventsAfter(ctx context.Context, edge, asset string, after *store.LeaseEventKey, limit int, f func(store.LeaseEvent) bool) error
	FailIssued(ctx context.Context, edge, id, reason string, at time.Time) error
	GetCommand(ctx context.Context, edge, id string) (store.Command, error)
	CommandsAfter(ctx context.Context, f store.CommandFilter, after *store.CommandKey, limit int, each func(store.Command) bool) error
	RegisterEdge(ctx context.Context, edge string) error
	EdgesAfter(ctx context.Context, after string, limit int, f func(store.Edge) bool) error
	EdgeStatus(ctx context.Context, edge string) (store.EdgeStatus, error)
	PutBundle(ctx context.Context, b store.Bundle) error
	BundleByDigest(ctx context.Context, digest string) (store.Bundle, error)
	CreateRelease(ctx context.Context, r store.Release) (int64, []string, error)
	SetReleaseEdgeState(ctx context.Context, id int64, edge, state, reason string, at time.Time) error
	Supersede(ctx context.Context, edge string, id int64, reason string, at time.Time) error
	DueRelease(ctx context.Context, edge string) (store.Due, bool, error)
	JoinRelease(ctx context.Context, id int64, edge, state, reason string, at time.Time) error
	GetRelease(ctx context.Context, id int64) (store.ReleaseInfo, error)
	ReleaseStatusAfter(ctx context.Context, id int64, after string, limit int) ([]store.ReleaseEdge, error)
	ReleasesBefore(ctx context.Context, before int64, limit int) ([]store.ReleaseInfo, error)
	ReleaseSummaries(ctx context.Context, ids []int64, maxEdges int) (map[int64]store.ReleaseSummary, error)
	TransitionsBefore(ctx context.Context, edge, id string, after *store.TransitionKey, limit int, f func(store.Transition) bool) error
	AlertsAfter(ctx context.Context, activeOnly bool, asset string, after *store.AlertKey, limit int, f func(store.Alert) bool) error
	TryLead(ctx context.Context, name string) (*store.Leader, error)
}

// Options configure a Hub.
type Options struct {
	// Replicas of the JetStream resources the hub creates (1 for a single
	// server).
	Replicas int
	// Trust, when set, is the keys a released bundle's signature must
	// verify with; without it any well-formed bundle is released (the
	// edges verify signatures in any case).
	Trust *bundle.Trust
	// MaxBundleBytes bounds a released bundle (protocol.MaxBundleBytes
	// when zero or more).
	MaxBundleBytes int64
	// TempDir holds a bundle while it is released (os.TempDir when
	// empty).
	TempDir string
	// JanitorEvery is how often the janitor runs; BundleGrace how old an
	// object no desired record names must be before it is deleted.
	JanitorEvery time.Duration
	BundleGrace  time.Duration
	// Ingest tunes both consumers (Stream, Durable and Check are set by
	// the hub).
	Ingest ingest.Options
	// Log receives the hub's events (default: discard).
	Log *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Hub is one hub instance.
type Hub struct {
	js   jetstream.JetStream
	st   Store
	opts Options
	log  *slog.Logger

	kv      jetstream.KeyValue
	objects jetstream.ObjectStore

	data, edge *ingest.Ingest

	// releases bounds the releases in progress (each holds a temporary
	// file of up to MaxBundleBytes).
	releases chan struct{}

	mu     sync.Mutex
	leader bool // this instance ran the janitor last (under mu, as kv and objects)
}

// New returns a Hub; Ensure creates its JetStream resources and Run runs
// it.
func New(js jetstream.JetStream, st Store, opts Options) (*Hub, error) {
	if opts.JanitorEvery <= 0 {
		opts.JanitorEvery = DefaultJanitorEvery
	}
	if opts.BundleGrace <= 0 {
		opts.BundleGrace = DefaultBundleGrace
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxBundleBytes <= 0 || opts.MaxBundleBytes > protocol.MaxBundleBytes {
		opts.MaxBundleBytes = protocol.MaxBundleBytes
	}
	if opts.TempDir == "" {
		opts.TempDir = os.TempDir()
	}
	h := &Hub{js: js, st: st, opts: opts, log: opts.Log, releases: make(chan struct{}, maxReleasesAtOnce)}
	iopts := opts.Ingest
	iopts.Log = opts.Log
	iopts.Stream, iopts.Durable, iopts.FilterSubjects, iopts.Check = protocol.DataStream, DataDurable, nil, checkData
	var err error
	if h.data, err = ingest.New(js, st, iopts); err != nil {
		return nil, err
	}
	iopts.Stream, iopts.Durable, iopts.Check = protocol.EdgeStream, EdgeDurable, checkEdge
	if h.edge, err = ingest.New(js, &edgeEvents{st: st, hub: h}, iopts); err != nil {
		return nil, err
	}
	return h, nil
}

// Ensure creates the hub's JetStream resources when missing: the desired
// KV bucket, the bundle object store, the edge stream, the data stream and
// the command stream.
// Several instances may call it at once. An existing stream keeps its
// configuration, but gains the hub's subjects it lacks and a duplicate
// window at least DuplicateWindow.
func (h *Hub) Ensure(ctx context.Context) error {
	kv, err := h.js.CreateKeyValue(ctx, protocol.DesiredConfig(h.opts.Replicas))
	if errors.Is(err, jetstream.ErrBucketExists) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		kv, err = h.js.KeyValue(ctx, protocol.DesiredBucket)
	}
	if err != nil {
		return fmt.Errorf("hub: kv bucket %s: %w", protocol.DesiredBucket, err)
	}
	obj, err := h.js.CreateObjectStore(ctx, protocol.BundlesConfig(h.opts.Replicas))
	if errors.Is(err, jetstream.ErrBucketExists) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		obj, err = h.js.ObjectStore(ctx, protocol.BundleBucket)
	}
	if err != nil {
		return fmt.Errorf("hub: object store %s: %w", protocol.BundleBucket, err)
	}
	for _, cfg := range []jetstream.StreamConfig{protocol.EdgeStreamConfig(h.opts.Replicas), protocol.DataStreamConfig(h.opts.Replicas),
		protocol.CommandStreamConfig(h.opts.Replicas)} {
		if err := ensureStream(ctx, h.js, cfg); err != nil {
			return err
		}
	}
	h.mu.Lock()
	h.kv, h.objects = kv, obj
	h.mu.Unlock()
	return nil
}

// resources returns the bucket and object store Ensure found; nil before.
func (h *Hub) resources() (jetstream.KeyValue, jetstream.ObjectStore) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.kv, h.objects
}

// ensureStream creates the stream of cfg, or widens an existing one to
// capture cfg's subjects with at least its duplicate window.
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) error {
	for attempt := 0; ; attempt++ {
		_, err := js.CreateStream(ctx, cfg)
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("hub: stream %s: %w", cfg.Name, err)
		}
		s, err := js.Stream(ctx, cfg.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) && attempt < 3 {
			continue // deleted meanwhile
		}
		if err != nil {
			return fmt.Errorf("hub: stream %s: %w", cfg.Name, err)
		}
		have := s.CachedInfo().Config
		update := false
		for _, sub := range cfg.Subjects {
			if slices.Contains(have.Subjects, sub) {
				continue
			}
			// A subject the hub's covers (an edge's sink made the stream
			// first with its own subject) gives way to it: JetStream
			// refuses overlapping subjects in one stream.
			have.Subjects = slices.DeleteFunc(have.Subjects, func(old string) bool { return covers(sub, old) })
			have.Subjects = append(have.Subjects, sub)
			update = true
		}
		if have.Duplicates < cfg.Duplicates {
			have.Duplicates = cfg.Duplicates
			update = true
		}
		if !update {
			return nil
		}
		if _, err := js.UpdateStream(ctx, have); err != nil {
			return fmt.Errorf("hub: update stream %s: %w", cfg.Name, err)
		}
		return nil
	}
}

// covers reports whether filter matches every subject subject matches
// (subject may hold wildcards itself).
func covers(filter, subject string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, ft := range f {
		if ft == ">" {
			return len(s) > i
		}
		if i >= len(s) || s[i] == ">" {
			return false
		}
		if ft != "*" && (ft != s[i] || s[i] == "*") {
			return false
		}
	}
	return len(f) == len(s)
}

// Backoff of WaitResources and Run: the first wait, doubling up to the
// most.
const (
	retryMin = time.Second
	retryMax = 30 * time.Second
)

// WaitResources runs Ensure until it succeeds, waiting between attempts
// (from 1 s, doubling up to 30 s) while NATS or its JetStream is not
// reachable, and logs each failure. It returns ctx's error when ctx ends
// first.
func (h *Hub) WaitResources(ctx context.Context) error {
	wait := retryMin
	for attempt := 1; ; attempt++ {
		err := h.Ensure(ctx)
		if err == nil {
			if attempt > 1 {
				h.log.Info("hub: NATS JetStream resources ready", "attempts", attempt)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		h.log.Warn("hub: waiting for NATS JetStream", "err", err, "attempt", attempt, "retry_in", wait.String())
		if !engine.Sleep(ctx, wait) {
			return ctx.Err()
		}
		wait = min(2*wait, retryMax)
	}
}

// Run ensures the resources (WaitResources), then runs both consumers
// and the janitor until ctx ends, and returns nil then. When a consumer
// stops (its stream or consumer went away: NATS came back without its
// storage or without JetStream) it stops the others, re-reads the
// resources and runs them again, waiting between rounds as WaitResources
// does.
func (h *Hub) Run(ctx context.Context) error {
	wait := retryMin
	for {
		if err := h.WaitResources(ctx); err != nil {
			return nil // ctx ended
		}
		start := time.Now()
		err := h.runOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > retryMax {
			wait = retryMin
		}
		h.log.Warn("hub: re-reading the hub's resources", "err", err, "retry_in", wait.String())
		if !engine.Sleep(ctx, wait) {
			return nil
		}
		wait = min(2*wait, retryMax)
	}
}

// runOnce runs both consumers and the janitor until ctx ends (nil) or a
// consumer stops (its error).
func (h *Hub) runOnce(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 3)
	go func() { errs <- h.data.Run(ctx) }()
	go func() { errs <- h.edge.Run(ctx) }()
	go func() { h.janitorLoop(ctx); errs <- nil }()
	var first error
	for range 3 {
		if err := <-errs; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	if first == nil && ctx.Err() == nil {
		first = errors.New("hub: a consumer stopped")
	}
	return first
}

// Stats are the counters of the data and the edge-event consumers.
func (h *Hub) Stats() (data, edge ingest.Stats) { return h.data.Stats(), h.edge.Stats() }

// janitorLoop runs the janitor every JanitorEvery, when this instance
// holds the janitor's lock.
func (h *Hub) janitorLoop(ctx context.Context) {
	for {
		if err := h.Janitor(ctx); err != nil && ctx.Err() == nil {
			h.log.Warn("hub: janitor", "err", err)
		}
		if !engine.Sleep(ctx, h.opts.JanitorEvery) {
			return
		}
	}
}

// Janitor runs the janitor's work once when no other instance runs it:
// it deletes the bundle objects that no desired record names and that are
// older than BundleGrace (a release in progress puts its object before it
// writes the records).
func (h *Hub) Janitor(ctx context.Context) error {
	l, err := h.st.TryLead(ctx, "janitor")
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.leader = l != nil
	h.mu.Unlock()
	if l == nil {
		return nil
	}
	defer l.Release(context.WithoutCancel(ctx))
	kv, objects := h.resources()
	if kv == nil {
		return errors.New("janitor before the hub's resources exist")
	}
	named := map[string]bool{}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("desired keys: %w", err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("desired key %s: %w", k, err)
		}
		if d, err := protocol.DecodeDesired(e.Value()); err == nil {
			named[d.Digest] = true
		}
	}
	infos, err := objects.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("bundle objects: %w", err)
	}
	cutoff := h.opts.Now().Add(-h.opts.BundleGrace)
	for _, info := range infos {
		if named[info.Name] || info.ModTime.After(cutoff) {
			continue
		}
		// The lock may have gone with its connection: stop rather than
		// delete beside another leader.
		if err := l.Check(ctx); err != nil {
			return err
		}
		if err := objects.Delete(ctx, info.Name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			return fmt.Errorf("delete bundle %s: %w", info.Name, err)
		}
		h.log.Info("hub: deleted a bundle no edge is to run", "digest", info.Name, "size", info.Size)
	}
	return nil
}

// Leader says whether this instance held the janitor's lock at its last
// run.
func (h *Hub) Leader() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.leader
}
