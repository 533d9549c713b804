// Package control is the one path every command to a device takes on the
// edge: whatever its origin (a local application, the cloud, a third-party
// control system, an automated rule), a command becomes a record
// (command.Command) and goes through an Arbiter before it reaches the
// device's transport.
//
// The arbiter decides by rules a site engineer can predict (docs/control.md):
//
//  1. A command that is malformed, out of bounds, that its transport
//     cannot carry (Checker) or that claims a priority class its origin may
//     not use is rejected.
//  2. A command repeating the idempotency key of an earlier command of the
//     same origin is not executed again: Submit returns the earlier record.
//  3. A command whose expiry has passed is expired and never executed; so
//     is a queued command whose expiry passes before its turn.
//  4. A set-point command whose asset has a known thing model (Models,
//     SetModels) is rejected when it sets a point the model lacks, or a
//     value of the wrong type or outside the point's range; a number
//     input that is NaN or ±Inf is rejected whatever the asset (ErrBadSetPoint).
//  5. While a holder has a lease on an asset, commands for that asset from
//     others are rejected, naming the holder, unless their priority class
//     is higher than the lease's.
//  6. A newer command setting the same points of an asset (or invoking the
//     same service) supersedes an older one still queued, if its class is
//     at least as high; a newer command of a lower class than the queued
//     one is rejected.
//  7. Accepted commands are queued per asset and sent one at a time, the
//     highest class first, then the oldest.
//
// Every decision is recorded in the audit with its reason. Records, the
// audit and leases are kept in an append-only log in the data directory, so
// that they survive a restart or a crash (see Open).
package control

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/sluice-edge/sluice/engine/command"
)

// Command is a command as submitted; Record is the same type as the
// arbiter keeps it, with its status and timestamps. There is one record
// type: command.Command.
type (
	Command    = command.Command
	Record     = command.Command
	Status     = command.Status
	Transition = command.Transition
)

// Submitter is what a component that issues commands needs: the local
// API, a protocol server for third-party control systems, rules. Submit
// returns the command's record once the arbiter has decided (accepted and
// queued, rejected, expired, or the earlier record of the same idempotency
// key); the record then moves on asynchronously (see Arbiter.Wait). An
// error comes with a record when the command was recorded (rejected or
// expired) and with a zero record when it could not be.
type Submitter interface {
	Submit(ctx context.Context, c Command) (Record, error)
}

// Transport delivers commands to devices: the EnOS MQTT downlink, for
// example, or a Router choosing among several by device. The device's
// reply reaches the arbiter's tracker (Arbiter.Tracker) by the
// transport's own means.
type Transport interface {
	// Ready returns once the transport can deliver (its link is up), or
	// with ctx's error.
	Ready(ctx context.Context) error
	// Deliver hands c, already recorded as sent, to the device. An error
	// fails the command; it is never delivered again by the arbiter.
	Deliver(ctx context.Context, c Record) error
}

// Origins: the kind of issuer, the part of Command.Origin before any ":"
// (for example "local:hmi" is of origin local).
const (
	OriginLocal      = "local"
	OriginCloud      = "cloud"
	OriginThirdParty = "third-party"
	OriginRule       = "rule"
)

// Priority classes, highest first in the default order.
const (
	ClassSafety   = "safety"
	ClassOperator = "operator"
	ClassCloud    = "cloud"
	ClassRule     = "rule"
)

// DefaultClasses is the default order of the priority classes, highest
// first.
var DefaultClasses = []string{ClassSafety, ClassOperator, ClassCloud, ClassRule}

// DefaultOriginClasses is, for each origin, the highest class its commands
// may claim; a command that names no class gets this one.
var DefaultOriginClasses = map[string]string{
	OriginLocal:      ClassSafety,
	OriginThirdParty: ClassOperator,
	OriginCloud:      ClassCloud,
	OriginRule:       ClassRule,
}

// OriginKind returns the kind of an origin: the part before any ":".
func OriginKind(origin string) string {
	k, _, _ := strings.Cut(origin, ":")
	return k
}

// Lease is the control of one asset by one holder for a while.
type Lease struct {
	// Asset is the asset (device key) leased.
	Asset string `json:"asset"`
	// Holder names who holds the lease (for example "local:hmi-1").
	Holder string `json:"holder"`
	// Origin is the origin of the holder; Class its priority class.
	Origin string `json:"origin"`
	Class  string `json:"class"`
	// Taken and Until bound the lease.
	Taken time.Time `json:"taken"`
	Until time.Time `json:"until"`
	// Reason is why the lease was taken, for the audit.
	Reason string `json:"reason,omitempty"`
}

// LeaseRequest asks for a lease.
type LeaseRequest struct {
	Asset  string        `json:"asset"`
	Holder string        `json:"holder"`
	Origin string        `json:"origin"`
	Class  string        `json:"class,omitempty"`
	For    time.Duration `json:"for"`
	Reason string        `json:"reason,omitempty"`
}

// Errors returned by the Arbiter.
var (
	// ErrRejected wraps the reason of a rejected command.
	ErrRejected = errors.New("command rejected")
	// ErrLeased is returned (wrapped in ErrRejected for commands) when
	// another holder has the asset's lease.
	ErrLeased = errors.New("asset leased")
	// ErrInvalid is returned for a malformed command or lease request.
	ErrInvalid = errors.New("invalid")
	// ErrNoLease is returned when releasing a lease that is not held.
	ErrNoLease = errors.New("no such lease")
	// ErrLocked is returned by Open when another process has the log
	// open.
	ErrLocked = errors.New("control log in use by another process")
	// ErrClosed is returned once the arbiter is closed.
	ErrClosed = errors.New("control arbiter closed")
	// ErrExpired is returned for a command that expired before it could
	// be sent.
	ErrExpired = command.ErrExpired
)

// LateTransport is a Transport given after the arbiter is opened: a
// transport that reports the devices' replies to the arbiter's tracker
// (Arbiter.Tracker) can only be made once the arbiter exists. Until Set,
// commands wait as if the link to the devices were down. The zero value is
// ready to use.
type LateTransport struct {
	mu  sync.Mutex
	t   Transport
	set chan struct{}
}

func (l *LateTransport) ch() chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.set == nil {
		l.set = make(chan struct{})
	}
	return l.set
}

// Set gives the transport; only the first call counts.
func (l *LateTransport) Set(t Transport) {
	ch := l.ch()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.t == nil {
		l.t = t
		close(ch)
	}
}

func (l *LateTransport) get(ctx context.Context) (Transport, error) {
	select {
	case <-l.ch():
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.t, nil
}

// Ready waits for the transport to be set, then for it to be ready.
func (l *LateTransport) Ready(ctx context.Context) error {
	t, err := l.get(ctx)
	if err != nil {
		return err
	}
	return t.Ready(ctx)
}

// Deliver delivers through the transport set.
func (l *LateTransport) Deliver(ctx context.Context, c Record) error {
	t, err := l.get(ctx)
	if err != nil {
		return err
	}
	return t.Deliver(ctx, c)
}
