package engine

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
)

// Relay runs a source independently of the graphs it feeds, so that a hot
// switch can hand the running source — its connection, its MQTT session,
// its read position, the rows it is building — from one graph to the next
// without stopping it: nothing it read is delivered twice or missed.
//
// Each graph places the relay's Tap as its source. The source starts with
// the first tap that runs. While a graph runs, its tap passes the source's
// records into it. When that graph stops, its tap either stops the source
// (flushing what it holds into that graph, as a graceful stop does) or,
// after Handover, detaches: the source keeps running and its next emit
// waits until the next graph's tap attaches. Emits never overlap two
// graphs: a tap detaches only once the emit in flight into its graph has
// returned, so a graph's last batch from the relay precedes the next
// graph's first.
type Relay struct {
	src Source

	mu       sync.Mutex
	cond     *sync.Cond
	target   Emit // the attached graph's emit; nil while detached
	busy     int  // emits in flight into target
	handover bool // the attached tap detaches instead of stopping the source
	stopped  bool // the source was told to stop: waiting emits give up
	started  bool
	cancel   context.CancelFunc
	done     chan struct{}
	err      error
	// pos is the position of a replayable source after the last record a
	// graph took (nil before the first).
	pos []byte
}

// position returns the position of the relay's replayable source after the
// last record a graph took: where a graph that takes the source over starts.
func (r *Relay) position(rep Replayable) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pos == nil {
		return rep.Position()
	}
	return r.pos
}

// NewRelay returns a relay for src; src is started by the first tap that
// runs.
func NewRelay(src Source) *Relay {
	r := &Relay{src: src, done: make(chan struct{})}
	r.cond = sync.NewCond(&r.mu)
	return r
}

// Source returns the source the relay runs.
func (r *Relay) Source() Source { return r.src }

// Handover makes the tap of the graph about to stop detach when that
// graph stops, leaving the source running for the next tap. Call it
// before stopping the graph; it holds for the next stop only.
func (r *Relay) Handover() {
	r.mu.Lock()
	r.handover = true
	r.mu.Unlock()
}

// Stopped reports whether the source was stopped (or told to stop): no
// tap can take it over any more.
func (r *Relay) Stopped() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopped
}

// Stop stops a source no tap will take over (for example when the graph
// that was to take it over could not start) and waits for it to return.
func (r *Relay) Stop() error {
	r.mu.Lock()
	started := r.started
	r.stopped = true
	r.cond.Broadcast()
	cancel := r.cancel
	r.mu.Unlock()
	if !started {
		return nil
	}
	cancel()
	<-r.done
	return r.runErr()
}

func (r *Relay) runErr() error {
	if errors.Is(r.err, context.Canceled) || errors.Is(r.err, ErrStopped) {
		return nil
	}
	return r.err
}

// Tap returns a source for one graph (see Relay).
func (r *Relay) Tap() Source { return &tap{r: r} }

// emit is the source's emit: it passes rec into the attached graph, waiting
// while none is attached.
func (r *Relay) emit(rec arrow.RecordBatch, ack *Ack) error {
	r.mu.Lock()
	for r.target == nil && !r.stopped {
		r.cond.Wait()
	}
	if r.target == nil {
		r.mu.Unlock()
		if rec != nil {
			// Not acknowledged: the source keeps it (a resuming source
			// reads it again, an MQTT broker redelivers it).
			rec.Release()
		}
		return ErrStopped
	}
	t := r.target
	r.busy++
	r.mu.Unlock()
	err := t(rec, ack)
	var pos []byte
	if err == nil && rec != nil {
		if rep, ok := r.src.(Replayable); ok {
			pos = rep.Position()
		}
	}
	r.mu.Lock()
	if pos != nil {
		r.pos = pos
	}
	r.busy--
	r.cond.Broadcast()
	r.mu.Unlock()
	return err
}

// attach makes emit the target and starts the source if it has not
// started. It reports false when the source was stopped.
func (r *Relay) attach(emit Emit) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return false
	}
	r.target = emit
	r.cond.Broadcast()
	if !r.started {
		r.started = true
		ctx, cancel := context.WithCancel(context.Background())
		r.cancel = cancel
		go func() {
			defer close(r.done)
			r.err = r.src.Run(ctx, r.emit)
			if c, ok := r.src.(io.Closer); ok {
				// An ingest log: nothing reads it after its source.
				_ = c.Close()
			}
		}()
	}
	return true
}

// detach waits for the emit in flight into the attached graph and
// detaches it.
func (r *Relay) detach() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.busy > 0 {
		r.cond.Wait()
	}
	r.target = nil
}

// tap is the relay's source in one graph.
type tap struct{ r *Relay }

// Schema implements Source.
func (t *tap) Schema() *Schema { return t.r.src.Schema() }

// Resuming implements Resumer for sources that do.
func (t *tap) Resuming() bool {
	if rs, ok := t.r.src.(Resumer); ok {
		return rs.Resuming()
	}
	return false
}

// Live implements LiveSource for sources that do.
func (t *tap) Live() (bool, string) {
	if l, ok := t.r.src.(LiveSource); ok {
		return l.Live()
	}
	return false, ""
}

// Run implements Source: it feeds the relay's records into this graph
// until the source ends or ctx is cancelled.
func (t *tap) Run(ctx context.Context, emit Emit) error {
	r := t.r
	if !r.attach(emit) {
		return nil
	}
	select {
	case <-r.done:
		r.detach()
		return r.runErr()
	case <-ctx.Done():
	}
	// The graph stops: hand the source over if Handover was called for
	// this stop (even before this tap attached), else stop it.
	r.mu.Lock()
	handover := r.handover
	r.handover = false
	if !handover {
		r.stopped = true
	}
	r.mu.Unlock()
	if handover {
		r.detach()
		return nil
	}
	// A graceful stop: the source flushes what it holds into this graph.
	r.cancel()
	<-r.done
	r.detach()
	return r.runErr()
}
