package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-edge/sluice/engine/bundle"
	"github.com/sluice-edge/sluice/engine/hub/protocol"
	"github.com/sluice-edge/sluice/engine/hub/store"
)

// Errors of a release the caller caused; every other error is the hub's.
var (
	// ErrTooLarge: the bundle is larger than Options.MaxBundleBytes.
	ErrTooLarge = errors.New("bundle too large")
	// ErrBadBundle: the bundle cannot be read, does not match its
	// manifest, or its signature does not verify with the trusted keys.
	ErrBadBundle = errors.New("bad bundle")
	// ErrBadTarget: the target is not an edge id, a key=value label or
	// all.
	ErrBadTarget = errors.New("bad target")
	// ErrBody: the bundle could not be read to its end (the client went
	// away or sent a broken body).
	ErrBody = errors.New("reading the bundle")
)

// maxLabelBytes bounds a label selector.
const maxLabelBytes = 256

// Target chooses the edges of a release.
type Target struct {
	// Kind is store.TargetEdge, store.TargetLabel or store.TargetAll.
	Kind string
	// Selector is the edge id (TargetEdge) or "key=value" (TargetLabel).
	Selector string
}

// String names the target: "edge e1", "label site=a", "all".
func (t Target) String() string {
	if t.Kind == store.TargetAll {
		return "all"
	}
	return t.Kind + " " + t.Selector
}

// Check refuses a target that names no edge id, no key=value label, or
// an unknown kind.
func (t Target) Check() error {
	switch t.Kind {
	case store.TargetEdge:
		if err := protocol.CheckEdgeID(t.Selector); err != nil {
			return fmt.Errorf("%w: %w", ErrBadTarget, err)
		}
	case store.TargetLabel:
		k, _, ok := strings.Cut(t.Selector, "=")
		if !ok || k == "" || len(t.Selector) > maxLabelBytes || !utf8.ValidString(t.Selector) ||
			strings.ContainsFunc(t.Selector, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return fmt.Errorf("%w: label selector %.80q: want key=value, at most %d bytes of text", ErrBadTarget, t.Selector, maxLabelBytes)
		}
	case store.TargetAll:
		if t.Selector != "" {
			return fmt.Errorf("%w: all takes no selector", ErrBadTarget)
		}
	default:
		return fmt.Errorf("%w: %.20q, want edge, label or all", ErrBadTarget, t.Kind)
	}
	return nil
}

// ReleaseID is the id of a release in desired records: "r" and the
// store's id.
func ReleaseID(id int64) string { return "r" + strconv.FormatInt(id, 10) }

// ParseReleaseID reads "r12" or "12".
func ParseReleaseID(s string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimPrefix(s, "r"), 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("release id %.40q: want r and a positive number", s)
	}
	return n, nil
}

// Released is what Release did.
type Released struct {
	ID      int64
	Bundle  string
	Version uint64
	Digest  string
	Size    int64
	Signer  string
	Target  Target
	// At is when it was released.
	At time.Time
	// Edges are the first targeted edges (at most 100, by edge) and
	// their states; Counts counts every targeted edge by state.
	Edges  []store.ReleaseEdge
	Counts map[string]int
}

// Release releases the bundle read from r to the edges of t: it reads at
// most Options.MaxBundleBytes into a temporary file while hashing them,
// reads the manifest (and verifies the signature when the hub has
// trusted keys), puts the bundle into the object store by digest, records
// it and the release, and writes the desired record of every targeted
// edge. An edge id the hub never heard of is registered, so that the
// release reaches it when it appears; label and all target the edges
// known now, and an edge that matches later (it first appears, or its
// labels change) is given the newest release that targets it by its next
// heartbeat (catchUp). by names who released it.
func (h *Hub) Release(ctx context.Context, r io.Reader, t Target, by string) (*Released, error) {
	if err := t.Check(); err != nil {
		return nil, err
	}
	kv, objects := h.resources()
	if kv == nil {
		return nil, errors.New("hub: release before the hub's resources exist")
	}
	select {
	case h.releases <- struct{}{}:
		defer func() { <-h.releases }()
	case <-ctx.Done():
		return nil, fmt.Errorf("hub: release: %w", ctx.Err())
	}
	f, err := os.CreateTemp(h.opts.TempDir, ".sluice-hub-release-*")
	if err != nil {
		return nil, fmt.Errorf("hub: release: %w", err)
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	sum := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, sum), io.LimitReader(r, h.opts.MaxBundleBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBody, err)
	}
	if n > h.opts.MaxBundleBytes {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, h.opts.MaxBundleBytes)
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: empty", ErrBadBundle)
	}
	digest := protocol.DigestPrefix + hex.EncodeToString(sum.Sum(nil))
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("hub: release: %w", err)
	}
	var b *bundle.Bundle
	if h.opts.Trust != nil {
		b, err = bundle.Verify(f, h.opts.Trust)
	} else {
		b, err = bundle.Inspect(f, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadBundle, err)
	}
	if b == nil || b.Manifest == nil {
		return nil, fmt.Errorf("%w: no manifest", ErrBadBundle)
	}
	switch b.Status {
	case bundle.SigBad:
		return nil, fmt.Errorf("%w: signature: %w", ErrBadBundle, b.SigErr)
	case bundle.SigUnsigned:
		return nil, fmt.Errorf("%w: unsigned (edges apply signed bundles only)", ErrBadBundle)
	}
	m := b.Manifest
	if err := putObject(ctx, objects, f, digest, n); err != nil {
		return nil, err
	}
	now := h.opts.Now().UTC()
	if err := h.st.PutBundle(ctx, store.Bundle{Name: m.Name, Version: m.Version, Digest: digest, Size: n, Created: now, Signer: b.KeyID()}); err != nil {
		return nil, err
	}
	if t.Kind == store.TargetEdge {
		if err := h.st.RegisterEdge(ctx, t.Selector); err != nil {
			return nil, err
		}
	}
	id, edges, err := h.st.CreateRelease(ctx, store.Release{Bundle: m.Name, Version: m.Version, Target: t.Kind, Selector: t.Selector, By: by, At: now})
	if err != nil {
		return nil, err
	}
	d := protocol.Desired{Bundle: m.Name, Version: m.Version, Digest: digest, Size: n, ReleasedAt: now, ReleaseID: ReleaseID(id)}
	val, err := d.Encode()
	if err != nil {
		return nil, fmt.Errorf("hub: release %d: %w", id, err)
	}
	for _, e := range edges {
		key, err := protocol.DesiredKey(e)
		if err != nil {
			// An edge id recorded by a heartbeat is a subject token, so
			// this does not happen; skip it rather than fail the rest.
			h.log.Warn("hub: release: edge id is not a key", "edge", e, "err", err)
			continue
		}
		newer, err := writeDesired(ctx, kv, key, id, val)
		if err != nil {
			return nil, fmt.Errorf("hub: release %d: desired record of %s: %w", id, e, err)
		}
		// Whichever release holds the key, the others pending for this
		// edge never reach it.
		if newer != 0 {
			err = h.st.SetReleaseEdgeState(ctx, id, e, store.ReleaseRejected, "superseded by release "+ReleaseID(newer), now)
		} else {
			err = h.st.Supersede(ctx, e, id, "superseded by release "+ReleaseID(id), now)
		}
		if err != nil {
			return nil, err
		}
	}
	h.log.Info("hub: released", "release", ReleaseID(id), "bundle", m.Name, "version", m.Version, "digest", digest,
		"target", t.String(), "edges", len(edges))
	sums, err := h.st.ReleaseSummaries(ctx, []int64{id}, maxListedEdges)
	if err != nil {
		return nil, err
	}
	return &Released{ID: id, Bundle: m.Name, Version: m.Version, Digest: digest, Size: n, Signer: b.KeyID(), Target: t, At: now,
		Edges: sums[id].Edges, Counts: sums[id].Counts}, nil
}

// catchUp gives edge the release it should run but was never given: the
// newest release that targets it now (by id, label or all) when that
// release does not list it, because the edge first appeared or its labels
// changed after the release was made. It writes the edge's desired
// record, unless the record names a newer release, and adds the edge to
// the release (pending, applied when it runs the version already, or
// rejected as superseded). The record is written before the entry, so a
// failure is repaired by the next call; both writes are idempotent.
func (h *Hub) catchUp(ctx context.Context, edge string) error {
	due, ok, err := h.st.DueRelease(ctx, edge)
	if err != nil || !ok {
		return err
	}
	kv, _ := h.resources()
	if kv == nil {
		return errors.New("hub: catching up releases before the hub's resources exist")
	}
	key, err := protocol.DesiredKey(edge)
	if err != nil {
		// An edge id recorded by a heartbeat is a subject token.
		h.log.Warn("hub: edge id is not a key", "edge", edge, "err", err)
		return nil
	}
	id := due.ID
	d := protocol.Desired{Bundle: due.Bundle, Version: due.Version, Digest: due.Digest, Size: due.Size, ReleasedAt: due.Released.UTC(), ReleaseID: ReleaseID(id)}
	val, err := d.Encode()
	if err != nil {
		return fmt.Errorf("hub: release %d: %w", id, err)
	}
	newer, err := writeDesired(ctx, kv, key, id, val)
	if err != nil {
		return fmt.Errorf("hub: release %d: desired record of %s: %w", id, edge, err)
	}
	now := h.opts.Now().UTC()
	if newer != 0 {
		return h.st.JoinRelease(ctx, id, edge, store.ReleaseRejected, "superseded by release "+ReleaseID(newer), now)
	}
	state := store.ReleasePending
	if due.Running {
		state = store.ReleaseApplied
	}
	if err := h.st.JoinRelease(ctx, id, edge, state, "", now); err != nil {
		return err
	}
	if err := h.st.Supersede(ctx, edge, id, "superseded by release "+ReleaseID(id), now); err != nil {
		return err
	}
	h.log.Info("hub: edge joined a release made before it matched", "release", ReleaseID(id), "edge", edge,
		"bundle", due.Bundle, "version", due.Version, "state", state)
	return nil
}

// writeDesired writes the desired record val of release id to key unless
// the key holds a newer release's (a higher id): releases written at once
// by several requests or instances leave the newest in every key. It
// returns the newer release's id when it held the key, 0 when val was
// written.
func writeDesired(ctx context.Context, kv jetstream.KeyValue, key string, id int64, val []byte) (int64, error) {
	for attempt := 0; ; attempt++ {
		var err error
		e, gerr := kv.Get(ctx, key)
		switch {
		case errors.Is(gerr, jetstream.ErrKeyNotFound):
			_, err = kv.Create(ctx, key, val)
		case gerr != nil:
			return 0, gerr
		default:
			if d, derr := protocol.DecodeDesired(e.Value()); derr == nil {
				if cur, perr := ParseReleaseID(d.ReleaseID); perr == nil && cur > id {
					return cur, nil
				}
			}
			_, err = kv.Update(ctx, key, val, e.Revision())
		}
		if err == nil {
			return 0, nil
		}
		// Another writer got in between: read the key again.
		var apiErr *jetstream.APIError
		if attempt < 20 && (errors.Is(err, jetstream.ErrKeyExists) ||
			errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence) {
			continue
		}
		return 0, err
	}
}

// putObject puts the bundle in f into the object store under its digest,
// unless an object of that name and size is there already.
func putObject(ctx context.Context, objects jetstream.ObjectStore, f *os.File, digest string, size int64) error {
	name, err := protocol.BundleObject(digest)
	if err != nil {
		return err
	}
	if info, err := objects.GetInfo(ctx, name); err == nil && int64(info.Size) == size && !info.Deleted {
		return nil
	} else if err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("hub: bundle object %s: %w", name, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("hub: release: %w", err)
	}
	if _, err := objects.Put(ctx, jetstream.ObjectMeta{Name: name, Description: "sluice bundle"}, f); err != nil {
		return fmt.Errorf("hub: put bundle object %s: %w", name, err)
	}
	return nil
}
