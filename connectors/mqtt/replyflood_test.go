package mqtt

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/control"
)

// TestHostileReplies: on a broker without ACLs any client may publish on
// a device's reply topic, and the command topic shows every command id.
// A reply with a huge message and output, then a flood of late replies
// with huge messages to the same (finished) command, must leave the
// record and the audit bounded: the reason and output are cut, and only
// the first few ignored replies of a command are audited (the others
// counted), so that a flood neither fills the memory nor pushes the real
// history out of the audit.
func TestHostileReplies(t *testing.T) {
	b := mosquitto(t)
	root := "hr" + suffix()
	a, err := control.Open(control.Options{Dir: t.TempDir(), Transport: &control.LateTransport{}, Timeout: 30 * time.Second, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	jdl, err := NewJSONDownlink(JSONDownlinkOptions{Tracker: a.Tracker(), Topic: root + "/{asset}/cmd", ReplyTopic: root + "/{asset}/reply",
		SendTimeout: 5 * time.Second, Client: ClientOptions{URLs: []string{b.url}, ClientID: "hr-" + suffix(), CleanSession: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); jdl.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitFor)
	defer cancel()
	if err := jdl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	sub := newSubscriber(t, b.url, root+"/+/cmd")
	pub := newPublisher(t, b.url, 5)
	rec, err := a.Submit(ctx, control.Command{Asset: "P1", Origin: "cloud", Inputs: map[string]any{"limit": 5.0}, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := jdl.Deliver(ctx, mustSent(t, a, rec.ID)); err != nil {
		t.Fatal(err)
	}
	m := sub.next(t)
	var cmd struct{ ID string }
	if err := json.Unmarshal(m.payload, &cmd); err != nil || cmd.ID != rec.ID {
		t.Fatalf("command %s: %v", m.payload, err)
	}
	huge := strings.Repeat("x", 256<<10)
	reply := func(code int) []byte {
		b, _ := json.Marshal(map[string]any{"id": rec.ID, "code": code, "message": huge, "data": map[string]string{"blob": huge}})
		return b
	}
	pub.publish(root+"/P1/reply", reply(500))
	const flood = 60
	for range flood {
		pub.publish(root+"/P1/reply", reply(200))
	}
	// A reply naming no command marks the end of the flood (replies are
	// handled in order).
	pub.publish(root+"/P1/reply", []byte(`{"id":"nobody","code":200}`))
	deadline := time.Now().Add(waitFor)
	for jdl.Unmatched() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the flood was not handled")
		}
		time.Sleep(20 * time.Millisecond)
	}
	got, _ := a.Get(rec.ID)
	if got.Status != command.Failed {
		t.Fatalf("status %s, want failed", got.Status)
	}
	if len(got.Reason) > 2048 || len(got.Output) > 64<<10 {
		t.Errorf("the record holds a reason of %d bytes and an output of %d bytes", len(got.Reason), len(got.Output))
	}
	audit := a.Audit(control.Filter{ID: rec.ID})
	size := 0
	for _, tr := range audit {
		size += len(tr.Reason)
	}
	if len(audit) > 20 || size > 20<<10 {
		t.Errorf("%d late replies left %d audit entries of %d bytes", flood, len(audit), size)
	}
	if st := a.Tracker().ReplyStats(); st.Unaudited < flood-command.MaxIgnoredReplies {
		t.Errorf("%d late replies left out of the audit counted, want at least %d", st.Unaudited, flood-command.MaxIgnoredReplies)
	}
}

// mustSent records a command as sent, as the arbiter's worker does, so
// that the test delivers it itself.
func mustSent(t *testing.T, a *control.Arbiter, id string) command.Command {
	t.Helper()
	c, err := a.Tracker().Sent(id)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// countingHandler counts the log records at WARN and above.
type countingHandler struct{ n *atomic.Int64 }

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.n.Add(1)
	}
	return nil
}
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }

// TestBadReplyFloodLogBounded: replies that cannot be read, published by
// anyone on the reply topics, are counted, and logged only a few at a
// time, so that they do not flood the edge's log (whose newest warnings
// the status page shows).
func TestBadReplyFloodLogBounded(t *testing.T) {
	b := mosquitto(t)
	root := "br" + suffix()
	var warned atomic.Int64
	jdl, err := NewJSONDownlink(JSONDownlinkOptions{Topic: root + "/{asset}/cmd", ReplyTopic: root + "/{asset}/reply", Log: slog.New(countingHandler{&warned}),
		SendTimeout: 5 * time.Second, Client: ClientOptions{URLs: []string{b.url}, ClientID: "br-" + suffix(), CleanSession: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { jdl.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitFor)
	defer cancel()
	if err := jdl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	pub := newPublisher(t, b.url, 5)
	const flood = 100
	for i := range flood {
		pub.publish(root+"/P1/reply", []byte(fmt.Sprintf(`{"garbage":%d`, i)))
	}
	deadline := time.Now().Add(waitFor)
	for jdl.Unmatched() < flood {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d bad replies counted", jdl.Unmatched(), flood)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := warned.Load(); n > 10 {
		t.Fatalf("%d bad replies logged %d warnings", flood, n)
	}
}
