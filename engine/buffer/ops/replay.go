package ops

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/parquet-go/parquet-go"

	"github.com/sluice-edge/sluice/engine/buffer/disk"
	"github.com/sluice-edge/sluice/engine/outbound"
)

// ReplayOptions configure Replay.
type ReplayOptions struct {
	// Publisher sends the messages in its Encoding; message boundaries
	// come from the files (BatchRows applies only to files that record
	// none).
	Publisher *outbound.Publisher
	// Edge and Stream, when set, replace the names found in the files.
	Edge, Stream string
	// Retries is how often a transient publish failure is retried, with
	// the same message IDs (default 5).
	Retries int
	// Chunk is the number of messages per Publish call (default 64).
	Chunk int
	// Progress, when set, is called after each publish with the rows sent,
	// the rows of every file, and the payload bytes sent.
	Progress func(done, total, bytes int64)
	// Mem allocates the records read (default: the Go allocator).
	Mem memory.Allocator
	Log *slog.Logger
}

// ReplayReport says what Replay sent.
type ReplayReport struct {
	Files    int      `json:"files"`
	Rows     int64    `json:"rows"`
	Messages int64    `json:"messages"`
	Failed   []string `json:"failed,omitempty"`
}

type replayFile struct {
	path         string
	edge, stream string
	first        uint64
	rows         int64
}

// Replay publishes exported files (or segments) with the stable IDs the
// forwarder gives their rows — "<edge>/<stream>/<seq>" per row, or
// "<edge>/<stream>/<first>-<last>" per message, cut where the file's _msg
// column says messages start (the boundaries fixed when the rows were
// appended) — and backfill=true, so that a receiver that deduplicates
// stores each row once however often it is replayed, and whether it also
// came over the link. Files
// are sent in order of edge, stream and first sequence. A message the
// broker rejects permanently is reported in Failed and the rest goes on;
// Replay then returns an error too.
func Replay(ctx context.Context, paths []string, opts ReplayOptions) (*ReplayReport, error) {
	if opts.Publisher == nil {
		return nil, errors.New("replay: no publisher")
	}
	if opts.Retries <= 0 {
		opts.Retries = 5
	}
	if opts.Chunk <= 0 {
		opts.Chunk = 64
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var files []replayFile
	var total int64
	for _, p := range paths {
		rf, err := peek(p)
		if err != nil {
			return nil, err
		}
		if opts.Edge != "" {
			rf.edge = opts.Edge
		}
		if opts.Stream != "" {
			rf.stream = opts.Stream
		}
		if err := outbound.CheckName(rf.edge); err != nil {
			return nil, fmt.Errorf("%s: edge: %w (pass --edge)", p, err)
		}
		if err := outbound.CheckName(rf.stream); err != nil {
			return nil, fmt.Errorf("%s: stream: %w (pass --stream)", p, err)
		}
		total += rf.rows
		files = append(files, rf)
	}
	slices.SortStableFunc(files, func(a, b replayFile) int {
		return cmp.Or(cmp.Compare(a.edge, b.edge), cmp.Compare(a.stream, b.stream), cmp.Compare(a.first, b.first))
	})
	rep := &ReplayReport{}
	var sentBytes int64 // payload bytes handed to the publisher
	pub := opts.Publisher
	for _, rf := range files {
		data, err := os.ReadFile(rf.path)
		if err != nil {
			return rep, err
		}
		sf, err := disk.ReadSegmentFile(data, opts.Mem)
		if err != nil {
			return rep, fmt.Errorf("%s: %w", rf.path, err)
		}
		rep.Files++
		if sf.Rec == nil {
			continue
		}
		enc := pub.Encoder(rf.edge, rf.stream)
		msgs, err := enc.Encode(outbound.Entry{Rec: sf.Rec, First: sf.First, Starts: sf.Starts, Backfill: true, Schema: sf.Schema})
		rows := sf.Rec.NumRows()
		sf.Rec.Release()
		if err != nil {
			return rep, fmt.Errorf("%s: %w", rf.path, err)
		}
		sentRows := rep.Rows
		for lo := 0; lo < len(msgs); lo += opts.Chunk {
			chunk := msgs[lo:min(lo+opts.Chunk, len(msgs))]
			if err := publish(ctx, pub, chunk, opts.Retries, log); err != nil {
				if ctx.Err() != nil {
					return rep, ctx.Err()
				}
				if !pub.IsPermanent(err) {
					return rep, fmt.Errorf("%s: publish: %w", rf.path, err)
				}
				// Find the rejected messages one by one; send the rest.
				for _, m := range chunk {
					if err := publish(ctx, pub, []*message.Message{m}, opts.Retries, log); err != nil {
						if !pub.IsPermanent(err) {
							return rep, fmt.Errorf("%s: publish %s: %w", rf.path, m.UUID, err)
						}
						rep.Failed = append(rep.Failed, fmt.Sprintf("%s: %v", m.UUID, err))
						continue
					}
					rep.Messages++
				}
			} else {
				rep.Messages += int64(len(chunk))
			}
			rep.Rows = sentRows + msgRows(chunk[len(chunk)-1], sf.First)
			for _, m := range chunk {
				sentBytes += int64(len(m.Payload))
			}
			if opts.Progress != nil {
				opts.Progress(rep.Rows, total, sentBytes)
			}
		}
		rep.Rows = sentRows + rows
	}
	if len(rep.Failed) > 0 {
		return rep, fmt.Errorf("replay: the broker rejected %d message(s) permanently", len(rep.Failed))
	}
	return rep, nil
}

// msgRows is the number of rows from first up to the last row of m.
func msgRows(m *message.Message, first uint64) int64 {
	last, err := strconv.ParseUint(m.Metadata.Get(outbound.MetaLastSeq), 10, 64)
	if err != nil || last < first {
		return 0
	}
	return int64(last - first + 1)
}

// publish sends msgs, retrying transient failures with backoff.
func publish(ctx context.Context, pub *outbound.Publisher, msgs []*message.Message, retries int, log *slog.Logger) error {
	wait := 200 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := pub.Publish(pub.Topic, msgs...)
		if err == nil || pub.IsPermanent(err) || attempt >= retries {
			return err
		}
		log.Warn("replay: publish failed; retrying with the same IDs", "err", err, "attempt", attempt+1)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// peek reads a file's metadata without its rows.
func peek(path string) (replayFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return replayFile{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return replayFile{}, err
	}
	pf, err := parquet.OpenFile(f, fi.Size(), parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return replayFile{}, fmt.Errorf("%s: not a Parquet file: %w", path, err)
	}
	rf := replayFile{path: path, rows: pf.NumRows()}
	rf.edge, _ = pf.Lookup(MetaEdge)
	rf.stream, _ = pf.Lookup(MetaStream)
	if rf.edge == "" || rf.stream == "" {
		// A segment of a buffer directory: the buffer records its identity.
		if m, err := disk.ReadMeta(disk.OS, filepath.Dir(filepath.Dir(path))); err == nil && m != nil {
			if rf.edge == "" {
				rf.edge = m.Edge
			}
			if rf.stream == "" {
				rf.stream = m.Stream
			}
		}
	}
	s, _ := pf.Lookup("sluice.first_seq")
	rf.first, _ = strconv.ParseUint(s, 10, 64)
	if _, ok := pf.Lookup("sluice.schema"); !ok {
		return replayFile{}, fmt.Errorf("%s: not a sluice export or segment (no sluice.schema metadata)", path)
	}
	return rf, nil
}
