// Package outbound is the publishing side of cloud-bound sinks: the stable
// identity and metadata of outgoing messages, their encodings, and the
// registry of broker publishers.
//
// A cloud-bound sink writes its batches into a durable buffer; a forwarder
// reads entries (runs of rows with consecutive sequences) back from the
// buffer, turns each into Watermill messages with an Encoder, and hands them
// to a Publisher from its own goroutine. It advances the delivery cursor only
// after Publish returned nil, which every publisher registered here
// guarantees to mean "the broker has stored the messages" (JetStream ack,
// AMQP publisher confirm, XADD reply, committed INSERT, Kafka ack, HTTP 2xx).
//
// Identity. Every message carries a deterministic ID built from the edge
// name, the stream name and the row sequences it holds: "<edge>/<stream>/<seq>"
// for a message holding one row and "<edge>/<stream>/<first>-<last>" for a
// batch message. The ID is the Watermill message UUID and the "id" metadata
// entry, so brokers that deduplicate (NATS JetStream's Nats-Msg-Id, the
// Postgres sink's unique index) and consumers can drop the copies a retry
// produces.
//
// Metadata. Every message has the entries listed by MetadataKeys: id, edge,
// stream, first_seq, last_seq, time_min, time_max (RFC 3339 UTC with
// milliseconds), backfill (true|false) and encoding.
//
// Encodings:
//
//   - json: one message per row, an EnOS-like object
//     {"id","edge","stream","seq","assetId","time","measurepoints":{...},"backfill"};
//   - json_batch: one message per run of up to BatchRows rows,
//     {"id","edge","stream","first_seq","last_seq","backfill","rows":[...]};
//   - arrow: one message per run of up to BatchRows rows, an Arrow IPC stream
//     (schema, one record batch, end of stream).
//
// Encoding is deterministic: the same entry gives the same bytes.
//
// Publishers. A broker package declares its configuration once (a spec.Spec
// holding only connection, topic and encoding fields) and registers a
// factory with RegisterPublisher in an init function. The pipeline builder
// turns each registered publisher type into a buffered sink type.
package outbound
