// Package hubtest holds test helpers for the edge-hub link: what the hub
// receives on the edge stream, read as the hub reads it.
package hubtest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-edge/sluice/engine/hub/ingest"
	"github.com/sluice-edge/sluice/engine/hub/protocol"
	"github.com/sluice-edge/sluice/engine/hub/store"
)

// EdgeRows reads the rows the edge stream holds on subject, decoded as the
// hub decodes them, until there are at least want of them; it fails the
// test after 30 s, or at once when a message does not decode. A stream
// that is missing or not reachable yet is tried again.
func EdgeRows(t testing.TB, js jetstream.JetStream, subject string, want int) []store.Row {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		var rows []store.Row
		s, err := js.Stream(ctx, protocol.EdgeStream)
		var first, last uint64
		if err == nil {
			var info *jetstream.StreamInfo
			if info, err = s.Info(ctx); err == nil {
				first, last = info.State.FirstSeq, info.State.LastSeq
			}
		}
		for seq := first; err == nil && seq > 0 && seq <= last; seq++ {
			var m *jetstream.RawStreamMsg
			if m, err = s.GetMsg(ctx, seq); err != nil || m.Subject != subject {
				continue
			}
			d, derr := ingest.Decode(ingest.Headers(m.Header), m.Data, ingest.Limits{})
			if derr != nil {
				t.Fatalf("the hub cannot decode message %d: %v", seq, derr)
			}
			rows = append(rows, d.Rows...)
		}
		if err == nil && len(rows) >= want {
			return rows
		}
		if ctx.Err() != nil {
			t.Fatalf("%d rows on %s, want %d (%v)", len(rows), subject, want, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
