// Package forward is the buffered side of a cloud-bound sink: a Sink that
// appends every batch to its durable buffer (engine/buffer) and a forwarder
// goroutine that reads the buffer back, encodes rows with engine/outbound and
// publishes them through one outbound.Publisher, advancing the buffer's
// delivery cursor only after the broker confirmed.
//
// Acknowledged. Sink.Write returns once the batch is appended to the buffer
// under its fsync policy (fsynced with the default "always"); the graph then
// acknowledges the source. Nothing the sink accepted is lost by an outage,
// a broker restart or a crash of the engine (see docs/forwarding.md for the
// other fsync policies).
//
// Lanes. In live_first mode (the default) the forwarder has two lanes:
//
//   - the live lane publishes batches straight from memory as Write hands
//     them over (after they are durable), in sequence order, flagged
//     backfill=false;
//   - the backlog lane reads the buffer in sequence order (buffer.Next) and
//     publishes the rows the live lane does not own, flagged backfill=true
//     when they were written before the link came back (or read from a
//     sealed segment), at most backfill_rate rows per second.
//
// The live lane owns every row from the sequence at which it opened; the
// backlog lane owns every row below. The lane opens when the sink starts,
// when the link comes back and when the backlog lane has caught up; it
// closes (its undelivered rows fall back to the backlog lane) when a live
// publish fails, when Write finds the live queue full, or when a row reaches
// the buffer without passing through Write. The delivery cursor advances over
// the longest delivered prefix of sequences, so after a crash rows published
// live ahead of the backlog are published again, with the same IDs.
//
// In fifo mode there is only the backlog lane: every row leaves in sequence
// order.
//
// Identity. Message IDs are (edge, stream, sequence) as built by the
// outbound encoder; a retry re-encodes the same rows and gets the same IDs,
// so brokers and consumers deduplicate.
//
// Held. A sink of a checkpointing pipeline (Options.Held) implements
// engine.Committer: its buffer is held, the forwarder publishes only rows
// a Commit released (no live lane), Prepare makes the rows durable and
// returns the mark (edge, stream, last sequence), Rollback forgets the rows
// after a mark. A sink built without Held holds nothing back; its Prepare
// returns ErrNotHeld (delivery at least once).
//
// Errors. Transient publish errors are retried forever with exponential
// backoff and jitter; a permanent error (outbound.Publisher.IsPermanent) is
// retried up to max_attempts times, then the rows of the rejected message go
// to the buffer's dead-letter segment with the error and the queue moves on.
package forward
