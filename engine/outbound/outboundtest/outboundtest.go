// Package outboundtest is the conformance suite every broker publisher
// passes against its real server: what Publish accepted can be read back
// from the broker, byte for byte, in order, with its stable ID and
// metadata, after the publisher is closed.
package outboundtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/spec"
)

// Reader reads back what was published to the destination under test.
// Once the destination holds at least n messages it returns all the
// messages it holds, in broker order, so that duplicates show; when ctx
// ends first it returns what it has with an error. A Reader must not share
// a connection with the publisher, so that what it reads is what the
// broker stored.
type Reader func(ctx context.Context, n int) ([]*message.Message, error)

// Case describes a publisher type under test.
type Case struct {
	// Spec is the publisher's declaration.
	Spec spec.Spec
	// New builds a publisher for the encoding, writing to a fresh
	// destination with a unique name (the suite calls it once per
	// subtest), and a Reader over that destination. It registers the
	// cleanup of the destination with t.Cleanup.
	New func(t *testing.T, enc outbound.Encoding) (*outbound.Publisher, Reader)
	// Dedupe says that the broker drops a message whose ID it already
	// stored, so that a retry of the same messages stores nothing new.
	Dedupe bool
	// Timeout bounds each read back (default 10s).
	Timeout time.Duration
}

// Suffix returns a random suffix for unique destination names.
func Suffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Schema is the stream schema of the rows the suite publishes.
var Schema = engine.MustSchema([]engine.Field{
	{Name: "time", Type: engine.Timestamp},
	{Name: "asset", Type: engine.String},
	{Name: "power", Type: engine.Float64},
	{Name: "status", Type: engine.String},
	{Name: "alarms", Type: engine.Int64},
}, "time", "asset")

// Entries returns entries of consecutive sequences starting at first: sizes
// gives their row counts; every second entry is backfill. The caller
// releases the records.
func Entries(first uint64, sizes ...int) []outbound.Entry {
	t0 := time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	var out []outbound.Entry
	seq := first
	for i, n := range sizes {
		rb := engine.NewRecordBuilder(memory.DefaultAllocator, Schema)
		for r := range n {
			s := seq + uint64(r)
			rb.Timestamp(0).Append(arrow.Timestamp(t0 + int64(s)*1000))
			rb.String(1).Append(fmt.Sprintf("WT%02d", s%7))
			if s%5 == 0 {
				rb.Float64(2).AppendNull()
			} else {
				rb.Float64(2).Append(float64(s) * 1.5)
			}
			rb.String(3).Append([]string{"run", "stop", `quote " and \ backslash`, "ünïcode"}[s%4])
			rb.Int64(4).Append(int64(s % 3))
			rb.RowDone()
		}
		out = append(out, outbound.Entry{Rec: rb.NewRecord(), First: seq, Backfill: i%2 == 1, Schema: Schema})
		rb.Release()
		seq += uint64(n)
	}
	return out
}

// Run runs the suite for every encoding.
func Run(t *testing.T, c Case) {
	t.Helper()
	t.Run("spec", func(t *testing.T) { CheckSpec(t, c.Spec) })
	for _, enc := range []outbound.Encoding{outbound.JSON, outbound.JSONBatch, outbound.Arrow} {
		t.Run(string(enc), func(t *testing.T) {
			t.Run("publish_read_back", func(t *testing.T) { testPublish(t, c, enc) })
			t.Run("close", func(t *testing.T) { testClose(t, c, enc) })
		})
	}
}

func (c Case) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return 10 * time.Second
}

// testPublish publishes three entries (the second one backfill) with small
// batches, closes the publisher, and reads everything back.
func testPublish(t *testing.T, c Case, enc outbound.Encoding) {
	pub, read := c.New(t, enc)
	if pub.Encoding != enc {
		t.Fatalf("publisher encoding %q, want %q", pub.Encoding, enc)
	}
	if pub.Permanent == nil {
		t.Errorf("publisher has no Permanent classifier")
	}
	entries := Entries(10, 5, 7, 3)
	defer func() {
		for _, e := range entries {
			e.Rec.Release()
		}
	}()
	encoder := pub.Encoder("edge-"+Suffix()[:4], "stream.test")
	encoder.BatchRows = 4
	var sent [][]*message.Message
	var all []*message.Message
	for _, e := range entries {
		msgs, err := encoder.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.Publish(pub.Topic, msgs...); err != nil {
			t.Fatalf("publish: %v", err)
		}
		sent = append(sent, msgs)
		all = append(all, msgs...)
	}
	if c.Dedupe {
		// A retry of the first entry's messages stores nothing new.
		retry, err := encoder.Encode(entries[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.Publish(pub.Topic, retry...); err != nil {
			t.Fatalf("retry: %v", err)
		}
	}
	// Publish returned nil: the broker has the messages, whatever happens
	// to the publisher now.
	if err := pub.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), c.timeout())
	defer cancel()
	got, err := read(ctx, len(all))
	if err != nil {
		t.Fatalf("read back %d of %d messages: %v", len(got), len(all), err)
	}
	if len(got) != len(all) {
		t.Fatalf("read back %d messages, want %d (duplicates or strays)", len(got), len(all))
	}
	for i, want := range all {
		CheckMessage(t, i, want, got[i])
	}
	for i, m := range got {
		checkPayload(t, i, enc, m)
	}
}

// CheckMessage checks that got is want as stored by the broker: same UUID,
// same payload bytes and the same stable metadata.
func CheckMessage(t testing.TB, i int, want, got *message.Message) {
	t.Helper()
	if got.UUID != want.UUID {
		t.Errorf("message %d: uuid %q, want %q (order or identity lost)", i, got.UUID, want.UUID)
	}
	if !bytes.Equal(got.Payload, want.Payload) {
		t.Errorf("message %d (%s): payload differs: got %d bytes, want %d", i, want.UUID, len(got.Payload), len(want.Payload))
	}
	for _, k := range append(outbound.MetadataKeys(), outbound.MetaAsset) {
		w, ok := want.Metadata[k]
		if !ok {
			continue
		}
		if g := got.Metadata.Get(k); g != w {
			t.Errorf("message %d (%s): metadata %s = %q, want %q", i, want.UUID, k, g, w)
		}
	}
}

// checkPayload decodes a payload and checks it against its metadata.
func checkPayload(t *testing.T, i int, enc outbound.Encoding, m *message.Message) {
	t.Helper()
	first, err1 := strconv.ParseUint(m.Metadata.Get(outbound.MetaFirstSeq), 10, 64)
	last, err2 := strconv.ParseUint(m.Metadata.Get(outbound.MetaLastSeq), 10, 64)
	if err1 != nil || err2 != nil || last < first {
		t.Errorf("message %d: bad sequence metadata %v", i, m.Metadata)
		return
	}
	rows := int(last - first + 1)
	switch enc {
	case outbound.JSON, outbound.JSONBatch:
		var v struct {
			ID       string            `json:"id"`
			Backfill bool              `json:"backfill"`
			Rows     []json.RawMessage `json:"rows"`
		}
		if err := json.Unmarshal(m.Payload, &v); err != nil {
			t.Errorf("message %d: payload is not JSON: %v", i, err)
			return
		}
		if v.ID != m.UUID || strconv.FormatBool(v.Backfill) != m.Metadata.Get(outbound.MetaBackfill) {
			t.Errorf("message %d: payload id %q backfill %v disagree with metadata %v", i, v.ID, v.Backfill, m.Metadata)
		}
		if enc == outbound.JSONBatch && len(v.Rows) != rows {
			t.Errorf("message %d: %d rows, metadata says %d", i, len(v.Rows), rows)
		}
	case outbound.Arrow:
		r, err := ipc.NewReader(bytes.NewReader(m.Payload))
		if err != nil {
			t.Errorf("message %d: payload is not an Arrow stream: %v", i, err)
			return
		}
		defer r.Release()
		n := 0
		for r.Next() {
			n += int(r.RecordBatch().NumRows())
		}
		if r.Err() != nil || n != rows {
			t.Errorf("message %d: %d rows (err %v), metadata says %d", i, n, r.Err(), rows)
		}
	}
}

// testClose checks that Close is idempotent and that Publish after Close
// fails instead of pretending success.
func testClose(t *testing.T, c Case, enc outbound.Encoding) {
	pub, _ := c.New(t, enc)
	if err := pub.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := pub.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	entries := Entries(1, 1)
	defer entries[0].Rec.Release()
	msgs, err := pub.Encoder("e", "s").Encode(entries[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(pub.Topic, msgs...); err == nil {
		t.Errorf("publish after close returned nil")
	}
}

// CheckSpec checks a publisher declaration: it passes spec.Check, declares
// the encoding fields, and its example parses against it.
func CheckSpec(t *testing.T, s spec.Spec) {
	t.Helper()
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"encoding", "batch_rows"} {
		if _, ok := s.Field(name); !ok {
			t.Errorf("spec %q lacks the %q field", s.Name, name)
		}
	}
	for _, f := range s.Fields {
		if f.Description == "" {
			t.Errorf("field %s.%s has no description", s.Name, f.Name)
		}
	}
	if s.Summary == "" || s.Example == "" {
		t.Fatalf("spec %q needs a summary and an example", s.Name)
	}
	var doc struct {
		Sinks map[string]yaml.Node `yaml:"sinks"`
	}
	if err := yaml.Unmarshal([]byte(s.Example), &doc); err != nil {
		t.Fatalf("example: %v", err)
	}
	if len(doc.Sinks) == 0 {
		t.Fatalf("example of %q has no sinks: block", s.Name)
	}
	for name, node := range doc.Sinks {
		var typ struct {
			Type string `yaml:"type"`
		}
		_ = node.Decode(&typ)
		if typ.Type != s.Name {
			t.Errorf("example sink %q has type %q, want %q", name, typ.Type, s.Name)
		}
		if _, errs := s.Parse("example", &node, "type", "input"); len(errs) > 0 {
			t.Errorf("example sink %q: %v", name, strings.ReplaceAll(errs.Error(), "\n", "; "))
		}
	}
}

// Parse parses YAML text against a spec, failing the test on errors.
func Parse(t testing.TB, s spec.Spec, src string) *spec.Config {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	cfg, errs := s.Parse("test.yaml", &n)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return cfg
}

// Eventually polls cond until it returns true or the timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Collect reads messages from a Watermill subscription channel, acking
// each, until n arrived or ctx ends.
func Collect(ctx context.Context, ch <-chan *message.Message, n int) ([]*message.Message, error) {
	var out []*message.Message
	for len(out) < n {
		select {
		case m, ok := <-ch:
			if !ok {
				return out, fmt.Errorf("subscription closed after %d messages", len(out))
			}
			m.Ack()
			out = append(out, m)
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
	return out, nil
}
