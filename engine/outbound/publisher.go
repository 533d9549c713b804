package outbound

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/spec"
)

// Publisher is a configured broker publisher.
//
// Contract, on top of message.Publisher's:
//
//   - Publish returns nil only once the broker has stored every message
//     (acknowledged, confirmed, committed). An error means some messages
//     may be stored and some not; retrying with the same messages is
//     safe because IDs are stable.
//   - Publish sends the messages in order. It is called from one
//     forwarder goroutine, never on the hot path; it may block for up to
//     the publisher's timeout per message.
//   - Building the publisher must not fail or block for long when the
//     broker is unreachable: connecting happens lazily or in the
//     background, and Publish reports the outage.
//   - Close releases connections and is idempotent.
type Publisher struct {
	message.Publisher
	// Topic is the destination passed to Publish: a subject, queue,
	// exchange, stream key, table or URL depending on the broker.
	Topic string
	// Encoding and BatchRows configure the Encoder for this sink.
	Encoding  Encoding
	BatchRows int
	// Permanent reports whether a Publish error can never be fixed by
	// retrying the same message (too large, rejected by the broker as
	// invalid, not permitted). Such messages go to the dead-letter
	// segment. A nil Permanent treats every error as transient.
	Permanent func(error) bool
}

// IsPermanent reports whether err is permanent: it was marked with
// MarkPermanent or p.Permanent says so. A nil error is not permanent.
func (p *Publisher) IsPermanent(err error) bool {
	if err == nil {
		return false
	}
	var pe *PermanentError
	if errors.As(err, &pe) {
		return true
	}
	return p.Permanent != nil && p.Permanent(err)
}

// Encoder returns an encoder for rows of the given edge and stream with
// the publisher's encoding settings.
func (p *Publisher) Encoder(edge, stream string) *Encoder {
	return &Encoder{Encoding: p.Encoding, Edge: edge, Stream: stream, BatchRows: p.BatchRows}
}

// PermanentError marks an error that retrying will not fix.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }

// Unwrap returns the marked error.
func (e *PermanentError) Unwrap() error { return e.Err }

// MarkPermanent wraps err as permanent (nil stays nil).
func MarkPermanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// Factory builds a publisher from its validated configuration. It must not
// block on the network (see Publisher).
type Factory func(cfg *spec.Config, bc engine.BuildContext) (*Publisher, error)

// Registration is a registered publisher type.
type Registration struct {
	Spec spec.Spec
	New  Factory
}

var (
	regMu sync.RWMutex
	reg   = map[string]*Registration{}
)

// RegisterPublisher registers a publisher type. It is meant for init
// functions and panics on a duplicate name or a spec that fails
// spec.Check. The spec's kind is set to sink: the pipeline builder turns
// every publisher type into a buffered sink type.
func RegisterPublisher(s spec.Spec, f Factory) {
	s.Kind = spec.KindSink
	if err := s.Check(); err != nil {
		panic(fmt.Sprintf("outbound: publisher %q: %v", s.Name, err))
	}
	if f == nil {
		panic(fmt.Sprintf("outbound: publisher %q has no factory", s.Name))
	}
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := reg[s.Name]; dup {
		panic(fmt.Sprintf("outbound: publisher %q registered twice", s.Name))
	}
	reg[s.Name] = &Registration{Spec: s, New: f}
}

// LookupPublisher returns the registered publisher type with that name.
func LookupPublisher(name string) (*Registration, bool) {
	regMu.RLock()
	defer regMu.RUnlock()
	r, ok := reg[name]
	return r, ok
}

// PublisherSpecs returns the specs of every registered publisher type,
// sorted by name.
func PublisherSpecs() []spec.Spec {
	regMu.RLock()
	defer regMu.RUnlock()
	out := make([]spec.Spec, 0, len(reg))
	for _, r := range reg {
		out = append(out, r.Spec)
	}
	slices.SortFunc(out, func(a, b spec.Spec) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out
}

// Logger adapts the component's logger for Watermill (a no-op logger
// when there is none).
func Logger(bc engine.BuildContext) watermill.LoggerAdapter {
	if bc.Log == nil {
		return watermill.NopLogger{}
	}
	return watermill.NewSlogLoggerWithLevelMapping(bc.Log, map[slog.Level]slog.Level{
		// Watermill logs every connect and close at info; keep those at
		// debug so a flapping link does not flood the log.
		slog.LevelInfo: slog.LevelDebug,
	})
}

// ErrClosed is returned by Publish after Close.
var ErrClosed = errors.New("outbound: publisher closed")

// Lazy is a message.Publisher that builds the real publisher on the first
// Publish, for libraries whose constructors dial the broker (and block or
// fail while it is down). When building fails, that Publish returns the
// error and the next Publish tries again.
type Lazy struct {
	build func() (message.Publisher, error)

	mu     sync.Mutex
	pub    message.Publisher
	closed bool
}

// NewLazy returns a publisher that calls build on first use.
func NewLazy(build func() (message.Publisher, error)) *Lazy {
	return &Lazy{build: build}
}

// Get returns the underlying publisher, building it if needed.
func (l *Lazy) Get() (message.Publisher, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	if l.pub == nil {
		p, err := l.build()
		if err != nil {
			return nil, fmt.Errorf("connect: %w", err)
		}
		l.pub = p
	}
	return l.pub, nil
}

// Publish builds the publisher if needed and publishes through it.
func (l *Lazy) Publish(topic string, msgs ...*message.Message) error {
	p, err := l.Get()
	if err != nil {
		return err
	}
	return p.Publish(topic, msgs...)
}

// Close closes the underlying publisher, if it was built. It is idempotent.
func (l *Lazy) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	if l.pub == nil {
		return nil
	}
	return l.pub.Close()
}
