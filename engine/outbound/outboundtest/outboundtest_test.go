package outboundtest_test

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"sync"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
	"github.com/sluice-edge/sluice/engine/spec"
)

// memBroker stores copies of what is published, deduplicating by ID.
type memBroker struct {
	mu     sync.Mutex
	msgs   []*message.Message
	seen   map[string]bool
	closed bool
}

func (b *memBroker) Publish(_ string, msgs ...*message.Message) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errors.New("closed")
	}
	for _, m := range msgs {
		if b.seen[m.UUID] {
			continue
		}
		b.seen[m.UUID] = true
		c := message.NewMessage(m.UUID, bytes.Clone(m.Payload))
		c.Metadata = maps.Clone(m.Metadata)
		b.msgs = append(b.msgs, c)
	}
	return nil
}

func (b *memBroker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	return nil
}

var memSpec = spec.Spec{
	Name:    "mem",
	Kind:    spec.KindSink,
	Summary: "Keeps messages in memory.",
	Fields:  outbound.EncodingFields(outbound.JSONBatch),
	Example: "sinks:\n  m: {type: mem, input: s, encoding: arrow}",
}

// TestSuiteOnMemory runs the suite against an in-memory broker.
func TestSuiteOnMemory(t *testing.T) {
	outboundtest.Run(t, outboundtest.Case{
		Spec:   memSpec,
		Dedupe: true,
		New: func(t *testing.T, enc outbound.Encoding) (*outbound.Publisher, outboundtest.Reader) {
			b := &memBroker{seen: map[string]bool{}}
			cfg := outboundtest.Parse(t, memSpec, "encoding: "+string(enc))
			p, err := outbound.New(cfg, b, "topic", func(error) bool { return false })
			if err != nil {
				t.Fatal(err)
			}
			return p, func(ctx context.Context, n int) ([]*message.Message, error) {
				b.mu.Lock()
				defer b.mu.Unlock()
				return append([]*message.Message(nil), b.msgs...), nil
			}
		},
	})
}

func TestEntries(t *testing.T) {
	es := outboundtest.Entries(5, 2, 3)
	defer func() {
		for _, e := range es {
			e.Rec.Release()
		}
	}()
	if len(es) != 2 || es[0].First != 5 || es[1].First != 7 || es[0].Backfill || !es[1].Backfill || es[1].Rec.NumRows() != 3 {
		t.Fatalf("entries %+v", es)
	}
}
