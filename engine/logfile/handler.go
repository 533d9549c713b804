package logfile

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
)

// Tee is a slog.Handler passing each record to every handler that
// handles its level.
type Tee []slog.Handler

// Enabled reports whether any handler handles level l.
func (t Tee) Enabled(ctx context.Context, l slog.Level) bool {
	for _, h := range t {
		if h.Enabled(ctx, l) {
			return true
		}
	}
	return false
}

// Handle passes r to every handler that handles its level; it returns
// their errors joined.
func (t Tee) Handle(ctx context.Context, r slog.Record) error {
	var errs []error
	for _, h := range t {
		if h.Enabled(ctx, r.Level) {
			if err := h.Handle(ctx, r.Clone()); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// WithAttrs returns a Tee of the handlers with attrs.
func (t Tee) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := make(Tee, len(t))
	for i, h := range t {
		out[i] = h.WithAttrs(attrs)
	}
	return out
}

// WithGroup returns a Tee of the handlers with group name.
func (t Tee) WithGroup(name string) slog.Handler {
	out := make(Tee, len(t))
	for i, h := range t {
		out[i] = h.WithGroup(name)
	}
	return out
}

// Late is a slog.Handler whose destination is attached after the loggers
// using it were made (the log file's directory is known only once the
// configuration is read): until Attach, and after Detach, it handles
// nothing. Loggers derived with With and WithGroup before Attach write to
// the attached handler with their attributes and groups.
type Late struct {
	root *lateRoot
	ops  []lateOp
	// cache is the attached handler with ops applied, for the root
	// handler it was derived from.
	cache atomic.Pointer[lateCache]
}

type lateRoot struct {
	h atomic.Pointer[slog.Handler]
}

type lateOp struct {
	attrs []slog.Attr
	group string
}

type lateCache struct {
	base    *slog.Handler
	derived slog.Handler
}

// NewLate returns a Late handler with nothing attached.
func NewLate() *Late { return &Late{root: &lateRoot{}} }

// Attach makes h the destination of l and of every handler derived from
// it.
func (l *Late) Attach(h slog.Handler) { l.root.h.Store(&h) }

// Detach stops l and the handlers derived from it from handling records.
func (l *Late) Detach() { l.root.h.Store(nil) }

// handler returns the attached handler with l's attributes and groups.
func (l *Late) handler() slog.Handler {
	base := l.root.h.Load()
	if base == nil {
		return nil
	}
	if c := l.cache.Load(); c != nil && c.base == base {
		return c.derived
	}
	h := *base
	for _, op := range l.ops {
		if op.attrs != nil {
			h = h.WithAttrs(op.attrs)
		} else {
			h = h.WithGroup(op.group)
		}
	}
	l.cache.Store(&lateCache{base: base, derived: h})
	return h
}

// Enabled reports whether a handler is attached and handles level lv.
func (l *Late) Enabled(ctx context.Context, lv slog.Level) bool {
	h := l.handler()
	return h != nil && h.Enabled(ctx, lv)
}

// Handle passes r to the attached handler, if any.
func (l *Late) Handle(ctx context.Context, r slog.Record) error {
	if h := l.handler(); h != nil && h.Enabled(ctx, r.Level) {
		return h.Handle(ctx, r)
	}
	return nil
}

// WithAttrs returns a Late handler adding attrs.
func (l *Late) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return l
	}
	return &Late{root: l.root, ops: append(l.ops[:len(l.ops):len(l.ops)], lateOp{attrs: attrs})}
}

// WithGroup returns a Late handler opening group name.
func (l *Late) WithGroup(name string) slog.Handler {
	if name == "" {
		return l
	}
	return &Late{root: l.root, ops: append(l.ops[:len(l.ops):len(l.ops)], lateOp{group: name})}
}
