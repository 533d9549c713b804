// Package buffer is the durable per-sink buffer: a write-ahead log of Arrow
// record batches that is sealed into Parquet segments, read in sequence order
// by a forwarder that advances a durable delivery cursor, and bounded by a
// disk quota with an explicit policy on full.
//
// The on-disk format is documented in docs/format/buffer.md. In short:
//
//   - Append writes one checksummed WAL record per batch and, under the
//     default fsync policy, returns only once the record is on disk
//     (concurrent appenders share one fsync).
//   - Each row gets a sequence, one per row and per buffer, so the message
//     identity (edge, stream, sequence) is stable across restarts.
//   - Full or idle WAL files are rewritten as zstd Parquet segments, published
//     atomically and listed in a checksummed manifest before the WAL file is
//     removed.
//   - Next returns rows in sequence order, from segments and then the WAL;
//     Ack makes the cursor durable and deletes what it covers at once.
//   - A held buffer (Options.Held, the sink of a checkpointing pipeline)
//     lets Next return only rows up to the committed sequence (Commit);
//     Sync gives the mark, Rollback forgets the rows after a mark so the
//     next Append continues right after it. Uncommitted rows are never
//     sealed, evicted or expired; an append that only a commit could make
//     room for is admitted over the quota (by at most one open epoch), so
//     a write never holds a checkpoint barrier in a deadlock.
//   - Corrupt files are quarantined and reported as *CorruptionError; valid
//     records around the damage are salvaged; the rest keeps running.
//
// All file access goes through the FS interface so that tests can inject an
// error at any operation and simulate power loss (see package faultfs).
package buffer
