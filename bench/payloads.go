package bench

import (
	"context"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/connectors/sim"
	"github.com/sluice-edge/sluice/engine"
)

// chunkSize is the size of one block of the payload arena.
const chunkSize = 64 << 20

// payloads holds EnOS measure-point payloads rendered before a scenario
// starts, back to back in large blocks outside the Go heap: the input of a
// run stays out of the garbage collector's way and costs nothing to read.
// Payload i is a reading of turbine i % turbines, whose device key (as an
// MQTT topic would carry it) is assets[i % turbines].
type payloads struct {
	chunks []payloadChunk
	assets []string
	n      int64
	bytes  int64
}

type payloadChunk struct {
	buf   []byte
	ends  []uint32 // end offset of each payload in buf
	unmap func()
}

// newFarm returns the simulated farm every scenario reads: the same
// settings as the sim source of the reference pipeline.
func newFarm(opts Options) *sim.Farm {
	return sim.NewFarm(sim.Config{Turbines: opts.Turbines, Interval: Interval, Start: sim.DefaultStart, Seed: opts.Seed, Faults: opts.Faults})
}

// renderPayloads renders perTurbine readings of every turbine, round the
// turbines as the sim source goes.
func renderPayloads(opts Options, perTurbine int64) *payloads {
	farm := newFarm(opts)
	p := &payloads{assets: make([]string, farm.Turbines())}
	for i := range p.assets {
		p.assets[i] = farm.Asset(i)
	}
	var cur *payloadChunk
	var scratch []byte
	for range perTurbine {
		for t := range farm.Turbines() {
			scratch = farm.AppendEnOS(scratch[:0], t)
			if cur == nil || len(cur.buf)+len(scratch) > cap(cur.buf) {
				mem, unmap := mapBytes(chunkSize)
				p.chunks = append(p.chunks, payloadChunk{buf: mem[:0], unmap: unmap})
				cur = &p.chunks[len(p.chunks)-1]
			}
			cur.buf = append(cur.buf, scratch...)
			cur.ends = append(cur.ends, uint32(len(cur.buf)))
			p.n++
			p.bytes += int64(len(scratch))
		}
	}
	return p
}

// size is the number of payload bytes.
func (p *payloads) size() int64 { return p.bytes }

// each calls f with every payload and its device key, in order, until f
// returns false.
func (p *payloads) each(f func(payload []byte, key string) bool) {
	k := 0
	for _, c := range p.chunks {
		start := uint32(0)
		for _, end := range c.ends {
			if !f(c.buf[start:end:end], p.assets[k]) {
				return
			}
			start = end
			if k++; k == len(p.assets) {
				k = 0
			}
		}
	}
}

// free returns the arena's memory.
func (p *payloads) free() {
	for _, c := range p.chunks {
		c.unmap()
	}
	p.chunks = nil
}

// payloadSource is a source that decodes the payloads with the EnOS
// decoder into batches of the pipeline's batch size, as an MQTT source
// does with the payloads it receives (the device key comes from the
// topic).
type payloadSource struct {
	schema *engine.Schema
	in     *payloads
	batch  int
	mem    memory.Allocator
	errs   atomic.Int64
}

var _ engine.Source = (*payloadSource)(nil)

func (s *payloadSource) Schema() *engine.Schema { return s.schema }

func (s *payloadSource) Run(ctx context.Context, emit engine.Emit) error {
	m, err := codec.NewMapping(s.schema, nil)
	if err != nil {
		return err
	}
	dec, err := codec.NewEnOS(m, codec.EnOSOptions{})
	if err != nil {
		return err
	}
	rb := engine.NewRecordBuilder(s.mem, s.schema)
	defer rb.Release()
	// Room for a whole batch up front, as the file source does: the
	// columns are not grown (and copied) step by step.
	rb.Reserve(s.batch)
	var emitErr error
	s.in.each(func(payload []byte, key string) bool {
		if _, err := dec.Decode(rb, payload, key); err != nil {
			s.errs.Add(1)
		}
		if rb.Rows() < s.batch {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		emitErr = emit(rb.NewRecord(), nil)
		rb.Reserve(s.batch)
		return emitErr == nil
	})
	if emitErr != nil {
		return nil // the pipeline is stopping; it reports why
	}
	// Also on cancellation: what was decoded is not lost.
	if rec := rb.NewRecord(); rec != nil {
		return emit(rec, nil)
	}
	return nil
}
