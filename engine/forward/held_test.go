package forward_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/sluice-edge/sluice/connectors/nats"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/forward"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
)

const localNATS = "nats://127.0.0.1:4222"

// jetStream connects to the JetStream server on this machine or skips.
func jetStream(t *testing.T) natsgo.JetStreamContext {
	t.Helper()
	nc, err := natsgo.Connect(localNATS, natsgo.Timeout(time.Second), natsgo.MaxReconnects(0))
	if err != nil {
		t.Skipf("NATS server at %s unreachable: %v", localNATS, err)
	}
	t.Cleanup(nc.Close)
	js, err := nc.JetStream()
	if err == nil {
		_, err = js.AccountInfo()
	}
	if err != nil {
		t.Skipf("NATS server at %s has no JetStream: %v", localNATS, err)
	}
	return js
}

// stored is one message of a JetStream stream.
type stored struct {
	id   string // the "id" header
	data string
}

// streamMsgs returns every message of a stream in order.
func streamMsgs(t *testing.T, js natsgo.JetStreamContext, stream string) []stored {
	t.Helper()
	info, err := js.StreamInfo(stream)
	if errors.Is(err, natsgo.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []stored
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := js.GetMsg(stream, seq)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		out = append(out, stored{id: m.Header.Get("id"), data: string(m.Data)})
	}
	return out
}

// heldNATSSink opens a held sink on dir publishing to subject through the
// nats publisher; delivered receives the last sequence of every confirmed
// publish.
func heldNATSSink(t *testing.T, dir, subject, stream string, delivered chan<- uint64) *forward.Sink {
	t.Helper()
	cfg := outboundtest.Parse(t, nats.Spec, fmt.Sprintf("url: %s\nsubject: %s\nstream: %s\n", localNATS, subject, stream))
	pub, err := nats.New(cfg, engine.BuildContext{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := forward.New(pub, forward.Options{
		Schema: schema, Edge: "site", Stream: "held", Dir: dir, Held: true,
		RetryMin: time.Millisecond, RetryMax: 20 * time.Millisecond, DrainTimeout: 200 * time.Millisecond,
		Log: quiet(), OnDelivered: func(d forward.Delivery) { delivered <- d.Last },
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// waitDelivered waits until the rows up to seq are confirmed.
func waitDelivered(t *testing.T, delivered <-chan uint64, seq uint64) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case last := <-delivered:
			if last >= seq {
				return
			}
		case <-timeout:
			t.Fatalf("rows up to %d not delivered", seq)
		}
	}
}

func prepare(t *testing.T, s *forward.Sink) []byte {
	t.Helper()
	m, err := s.Prepare(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestHeldSinkNATS runs the two-phase commit of a held sink against
// JetStream: rows written and prepared but not committed never reach the
// stream; committed ones do; after a crash, Rollback to the last mark and
// the same input written again, the stream holds each row once, under the
// message IDs a run without the lost epoch gives them.
func TestHeldSinkNATS(t *testing.T) {
	js := jetStream(t)
	sfx := fmt.Sprint(time.Now().UnixNano())
	subject, stream := "sluice.heldtest."+sfx, "HELDTEST_"+sfx
	t.Cleanup(func() { _ = js.DeleteStream(stream) })
	dir := t.TempDir()
	delivered := make(chan uint64, 64)

	// Run 1: epoch 1 (rows 0-9) is committed; epoch 2 (rows 10-19,
	// prepared) and rows 20-24 (not even prepared) never are: the run
	// dies before its checkpoint is durable.
	s := heldNATSSink(t, dir, subject, stream, delivered)
	write(t, s, 0, 5)
	write(t, s, 5, 5)
	mark1 := prepare(t, s)
	write(t, s, 1000, 10) // what the lost epoch wrote differs from the replay
	_ = prepare(t, s)
	write(t, s, 2000, 5)
	if got := streamMsgs(t, js, stream); len(got) != 0 {
		t.Fatalf("%d messages in the stream before any commit", len(got))
	}
	if err := s.Commit(mark1); err != nil {
		t.Fatal(err)
	}
	waitDelivered(t, delivered, 10)
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := streamMsgs(t, js, stream)
	if ids := idsOfStored(got); ids != "site/held/1-5 site/held/6-10" {
		t.Fatalf("after the first run the stream holds %s; want the committed rows only", ids)
	}

	// Run 2 recovers from the checkpoint holding mark1: Rollback, Commit,
	// and the input after the checkpoint written again.
	s = heldNATSSink(t, dir, subject, stream, delivered)
	defer s.Close(context.Background())
	if err := s.Rollback(mark1); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(mark1); err != nil {
		t.Fatal(err)
	}
	write(t, s, 10, 10)
	write(t, s, 20, 5)
	mark2 := prepare(t, s)
	if err := s.Commit(mark2); err != nil {
		t.Fatal(err)
	}
	waitDelivered(t, delivered, 25)
	got = streamMsgs(t, js, stream)
	if ids := idsOfStored(got); ids != "site/held/1-5 site/held/6-10 site/held/11-20 site/held/21-25" {
		t.Fatalf("the stream holds %s", ids)
	}
	for _, m := range got {
		if strings.Contains(m.data, "1000") || strings.Contains(m.data, "2000") {
			t.Fatalf("a row of the rolled-back epoch reached the stream: %s %s", m.id, m.data)
		}
	}
}

func idsOfStored(ms []stored) string {
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.id
	}
	return strings.Join(ids, " ")
}

// TestHeldSinkMarks checks what a sink answers when it cannot commit: a
// sink built without Held has no mark (ErrNotHeld), and a held sink
// refuses a mark of another stream.
func TestHeldSinkMarks(t *testing.T) {
	plain := newSink(t, &fakePub{}, t.TempDir(), nil)
	defer plain.Close(context.Background())
	if _, err := plain.Prepare(context.Background()); !errors.Is(err, forward.ErrNotHeld) || plain.Held() {
		t.Fatalf("Prepare of a sink that is not held: %v", err)
	}
	a := newSink(t, &fakePub{}, t.TempDir(), func(o *forward.Options) { o.Held = true })
	defer a.Close(context.Background())
	b := newSink(t, &fakePub{}, t.TempDir(), func(o *forward.Options) { o.Held, o.Stream = true, "other" })
	defer b.Close(context.Background())
	write(t, b, 0, 3)
	m := prepare(t, b)
	if err := a.Commit(m); !errors.Is(err, forward.ErrMark) {
		t.Fatalf("Commit of another stream's mark: %v", err)
	}
	if err := a.Rollback([]byte("garbage")); !errors.Is(err, forward.ErrMark) {
		t.Fatalf("Rollback of a garbage mark: %v", err)
	}
	if err := b.Commit(m); err != nil {
		t.Fatal(err)
	}
}
