package buffer_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/buffer/faultfs"
	"github.com/sluice-edge/sluice/engine/outbound"
)

// ids encodes everything Next returns now as json_batch messages (after
// rewinding to the cursor) and returns their IDs.
func ids(t *testing.T, b *buffer.Buffer, batchRows int) []string {
	t.Helper()
	b.Rewind()
	enc := &outbound.Encoder{Encoding: outbound.JSONBatch, Edge: "e1", Stream: "d1", BatchRows: batchRows}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out []string
	for {
		e, err := b.Next(ctx)
		if err != nil {
			break
		}
		msgs, err := enc.Encode(outbound.Entry{Rec: e.Rec, First: e.First, Starts: e.Starts, Schema: testSchema})
		e.Rec.Release()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			out = append(out, m.UUID)
		}
	}
	return out
}

// TestMessagesSameFromWALAndSegments reproduces duplicate messages after a
// restart: rows published from the WAL (as the live lane does, one source
// batch at a time) and the same rows re-read from a sealed segment (as the
// backlog lane does after a kill) must give the same message IDs, whatever
// the batch sizes, the segment read size or where the read starts.
func TestMessagesSameFromWALAndSegments(t *testing.T) {
	for _, tc := range []struct {
		name     string
		msgRows  int // the sink's batch_rows
		batches  []int
		readRows int
		want     []string // the message ranges, when checked
	}{
		{"small live batches", 256, []int{30, 30, 30, 30, 30, 30, 30, 30, 30, 30}, 4096, nil},
		{"batches larger than a message", 256, []int{1024, 1024, 700, 3}, 4096, nil},
		{"one WAL record of exactly batch_rows", 1024, []int{1024, 1024, 1024}, 4096, []string{"1-1024", "1025-2048", "2049-3072"}},
		{"segment read in small pieces", 100, []int{250, 33, 480, 7, 1000}, 64, nil},
		{"whole batches as messages", 0, []int{17, 900, 5}, 100, []string{"1-17", "18-917", "918-922"}},
		{"the cut docs/sinks.md describes", 1024, []int{1500}, 4096, []string{"1-1024", "1025-1500"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := checkedMem(t)
			o := opts(faultfs.New(), mem)
			o.MessageRows, o.ReadRows = tc.msgRows, tc.readRows
			b := mustOpen(t, "/buf", o)
			defer b.Close()
			id := int64(0)
			for _, n := range tc.batches {
				id = appendN(t, b, mem, id, 1, n)
			}
			live := ids(t, b, 256)
			if tc.want != nil {
				var got []string
				for _, id := range live {
					got = append(got, id[strings.LastIndexByte(id, '/')+1:])
				}
				if !slices.Equal(got, tc.want) {
					t.Fatalf("messages %v, want %v", got, tc.want)
				}
			}
			if err := b.Roll(); err != nil {
				t.Fatal(err)
			}
			if err := b.Seal(); err != nil {
				t.Fatal(err)
			}
			if len(b.Segments()) == 0 {
				t.Fatal("nothing sealed")
			}
			sealed := ids(t, b, 256)
			if !slices.Equal(live, sealed) {
				t.Fatalf("message IDs differ:\nfrom the WAL    %v\nfrom a segment  %v", live, sealed)
			}
			// Delivering part of the backlog and reading on from the
			// cursor gives the remaining messages, unchanged.
			if len(live) > 2 {
				_, last, _ := parseLast(live[1])
				if err := b.Ack(last); err != nil {
					t.Fatal(err)
				}
				if rest := ids(t, b, 256); !slices.Equal(rest, live[2:]) {
					t.Fatalf("after the cursor moved: %v, want %v", rest, live[2:])
				}
			}
		})
	}
}

func parseLast(id string) (first, last uint64, err error) {
	_, _, first, last, _, err = outbound.ParseID(id)
	return first, last, err
}
