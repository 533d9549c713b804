package control

import (
	"context"
	"errors"
	"fmt"
)

// Checker is implemented by a Transport that can tell, before a command is
// accepted, that it could never deliver it (a target it cannot address, a
// command its protocol cannot carry). The arbiter refuses such a command
// as malformed (ErrInvalid) instead of accepting it and failing it later.
type Checker interface {
	// Check returns why c cannot be delivered, or nil.
	Check(c *Record) error
}

// OnePointer is implemented by a Transport that carries set-point
// commands of one point only to some devices (a generic JSON command
// topic: one point and value per message). An issuer that sets several
// points at once asks it, through Arbiter.OnePoint, and submits one
// command per point to those devices.
type OnePointer interface {
	// OnePoint reports whether commands to the device (product, asset)
	// must set exactly one point.
	OnePoint(product, asset string) bool
}

// OnePoint reports whether a set-point command for the device (product,
// asset) must set exactly one point with this arbiter's transport (see
// OnePointer).
func (a *Arbiter) OnePoint(product, asset string) bool {
	if op, ok := a.opts.Transport.(OnePointer); ok {
		return op.OnePoint(product, asset)
	}
	return false
}

// Route sends the commands for some devices through a transport of their
// own: those whose asset is one of Assets, or whose product is one of
// Products.
type Route struct {
	// Name says what the route is in errors and the audit, for example
	// "json command topic plant/{asset}/cmd".
	Name string
	// Assets and Products select the commands of the route; an asset
	// named by one route wins over a product named by another.
	Assets, Products []string
	// Transport delivers them.
	Transport Transport
}

// Router is a Transport that delivers each command through the transport
// of its device: the first route naming its asset, else the first naming
// its product, else the default transport (the EnOS downlink, for
// example). All of them report replies to the same arbiter's tracker.
type Router struct {
	def       Transport
	routes    []Route
	byAsset   map[string]int
	byProduct map[string]int
}

// ErrRoute is returned by NewRouter for routes that contradict each other.
var ErrRoute = errors.New("bad command route")

// NewRouter returns a router sending the commands of routes' devices
// through their transports and the others through def. An asset or
// product may be named by one route only; a route names at least one.
func NewRouter(def Transport, routes ...Route) (*Router, error) {
	if def == nil {
		return nil, fmt.Errorf("%w: no default transport", ErrRoute)
	}
	r := &Router{def: def, routes: routes, byAsset: map[string]int{}, byProduct: map[string]int{}}
	for i, rt := range routes {
		if rt.Transport == nil {
			return nil, fmt.Errorf("%w: %s has no transport", ErrRoute, rt.Name)
		}
		if len(rt.Assets)+len(rt.Products) == 0 {
			return nil, fmt.Errorf("%w: %s names no asset and no product", ErrRoute, rt.Name)
		}
		for _, set := range []struct {
			what  string
			names []string
			m     map[string]int
		}{{"asset", rt.Assets, r.byAsset}, {"product", rt.Products, r.byProduct}} {
			for _, n := range set.names {
				if err := checkKey(set.what, n, MaxKeyLen); err != nil {
					return nil, fmt.Errorf("%w: %s: %w", ErrRoute, rt.Name, err)
				}
				if j, dup := set.m[n]; dup {
					return nil, fmt.Errorf("%w: %s %q is in %s and in %s", ErrRoute, set.what, n, routes[j].Name, rt.Name)
				}
				set.m[n] = i
			}
		}
	}
	return r, nil
}

// For returns the transport of the device (product, asset).
func (r *Router) For(product, asset string) Transport {
	if i, ok := r.byAsset[asset]; ok {
		return r.routes[i].Transport
	}
	if i, ok := r.byProduct[product]; ok && product != "" {
		return r.routes[i].Transport
	}
	return r.def
}

// Ready returns once every transport is ready: they share the link to the
// devices (one broker), so a command waits for all of them as it would
// for one.
func (r *Router) Ready(ctx context.Context) error {
	if err := r.def.Ready(ctx); err != nil {
		return err
	}
	for _, rt := range r.routes {
		if err := rt.Transport.Ready(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Deliver delivers c through the transport of its device.
func (r *Router) Deliver(ctx context.Context, c Record) error {
	return r.For(c.Product, c.Asset).Deliver(ctx, c)
}

// Check checks c with the transport of its device, when it is a Checker.
func (r *Router) Check(c *Record) error {
	if ck, ok := r.For(c.Product, c.Asset).(Checker); ok {
		return ck.Check(c)
	}
	return nil
}

// OnePoint asks the transport of the device, when it is a OnePointer.
func (r *Router) OnePoint(product, asset string) bool {
	if op, ok := r.For(product, asset).(OnePointer); ok {
		return op.OnePoint(product, asset)
	}
	return false
}

// Check checks c with the transport set, when it is a Checker; before
// Set, nothing is refused.
func (l *LateTransport) Check(c *Record) error {
	l.mu.Lock()
	t := l.t
	l.mu.Unlock()
	if ck, ok := t.(Checker); ok {
		return ck.Check(c)
	}
	return nil
}

// OnePoint asks the transport set, when it is a OnePointer.
func (l *LateTransport) OnePoint(product, asset string) bool {
	l.mu.Lock()
	t := l.t
	l.mu.Unlock()
	if op, ok := t.(OnePointer); ok {
		return op.OnePoint(product, asset)
	}
	return false
}
