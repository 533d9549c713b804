// Package ingest is the ingest log: it makes a live source — one that
// cannot read its input again, like MQTT — replayable (engine.Replayable)
// by wrapping it.
//
// Every record the wrapped source emits is appended to a durable log (an
// engine/buffer.Buffer in <data dir>/<pipeline>/<source>/ingest: same WAL
// and segment format, fsync policy and disk quota as a sink's buffer)
// before it goes into the graph with a nil Ack: from there on the
// pipeline's checkpoints, not the sender, make it durable. The source's
// own Ack completes only once the log holds the record durably (see
// Durability), so an MQTT source sends its PUBACK only then. The source's
// position is the log sequence of the last row emitted.
//
// Run first replays the rows logged after the position given by ResumeAt
// (the checkpoint the pipeline recovers from), in log order, then runs the
// wrapped source. Committed lets the log delete what a durable checkpoint
// covers, keeping the newest Options.Horizon rows for the redelivery check.
//
// # Redeliveries
//
// After a crash a broker delivers again the messages whose acknowledgement
// never reached it, although the log may hold their rows. Their rows are
// recognised by content: as Run starts, it takes a 64-bit hash of every
// column of each of the newest Options.Horizon rows of the log. While this
// horizon is open, an incoming row whose hash is in the set is dropped
// (counted as "redeliveries") and its hash removed from the set, once per
// logged copy. A record all of whose rows are redeliveries is acknowledged
// and not emitted. The horizon closes when the set is empty, after
// Options.Horizon live rows, or Options.HorizonTime after the first live
// row, whichever comes first.
//
// What can still pass twice:
//   - a message redelivered after the horizon closed (a broker that holds it
//     back for longer than HorizonTime, or behind more than Horizon newer
//     rows);
//   - a message whose redelivery decodes to other rows than the first
//     delivery (a row stamped with the time of arrival, a decoder or
//     mapping changed between the runs);
//   - a message whose rows are not among the newest Horizon rows of the log
//     (more than Horizon rows were logged after it but not acknowledged to
//     the broker — impossible with a receive window below Horizon).
//
// And the reverse: while the horizon is open, a new row identical in every
// column to one of the newest logged rows (same time, same values) is taken
// for a redelivery and dropped. Rows with an event time make that rare.
//
// # Durability
//
// Under buffer.FsyncAlways (the default) the log commits in groups: a
// record is appended without waiting for an fsync and emitted at once,
// and a background syncer makes the log durable up to it — one fsync
// covering every record appended meanwhile — before the record's Ack
// completes, in order. At most Options.MaxUnsynced records wait for their
// fsync; the next one waits before it is logged. A failed fsync stops Run
// with its error and no Ack completes after it. Under FsyncInterval and
// FsyncNone the Ack completes right after the append, and a power loss
// may take back rows that were acknowledged: they are lost.
//
// Whatever the policy, a checkpoint never names a position the log may
// lose: the engine calls Sync (engine.Syncer), which makes every row
// logged so far durable, before it saves a checkpoint.
//
// A full log (the quota's reject_new policy, or a full disk) holds the
// wrapped source back inside its emit — the broker keeps the messages that
// are not acknowledged — until a checkpoint frees room; nothing is lost
// silently. Under drop_oldest or downsample the log deletes its oldest rows
// to make room and reports them like a sink's buffer does.
package ingest
