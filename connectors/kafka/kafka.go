// Package kafka provides the "kafka" publisher: it produces messages to a
// Kafka topic through Watermill's Kafka publisher (a Sarama synchronous
// producer), one message at a time, each returning once the partition
// leader — and, with required_acks: all, every in-sync replica — has it.
//
// Watermill's constructor connects to the cluster and, while the cluster
// is unreachable, blocks about six seconds (three metadata attempts two
// seconds apart) before failing. The publisher therefore connects on the
// first Publish, with short metadata and producer-ID retries, so that a
// down cluster costs well under a second (refused connections) or a few
// connect_timeouts (unanswered ones) per Publish; it retries on the next
// Publish.
//
// Messages are keyed so that the rows of one stream (or, for one-row json
// messages, of one asset) go to one partition and keep their order. The
// producer is idempotent by default: Sarama's internal retries never
// duplicate or reorder within a partition. Retries after an error are the
// forwarder's and can store copies; consumers deduplicate by ID.
package kafka

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/IBM/sarama"
	wmkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/redact"
	"github.com/sluice-edge/sluice/engine/spec"
)

// Spec declares the kafka publisher.
var Spec = spec.Spec{
	Name:    "kafka",
	Summary: "Produces messages to a Kafka topic, keyed per stream or per asset.",
	Description: "Each message is produced synchronously and acknowledged by the cluster before the next. " +
		"The stable ID travels in the `_watermill_message_uuid` header and the metadata as headers. " +
		"The publisher connects on the first publish, so a sink starts while the cluster is down. " +
		"The topic must exist unless the cluster creates topics automatically.",
	Fields: append([]spec.Field{
		{Name: "brokers", Type: spec.List, Elem: spec.String, Default: []string{"127.0.0.1:9092"},
			Description: "Bootstrap brokers, host:port.", Example: []string{"kafka-1:9092", "kafka-2:9092"}},
		{Name: "topic", Type: spec.String,
			Description: "Topic to produce to.", Example: "sluice.site-a.stats"},
		{Name: "partition_key", Type: spec.String, Default: "stream", Enum: []string{"stream", "asset"},
			Description: "Message key: `stream` (edge/stream: one partition per stream, total order) or `asset` " +
				"(edge/asset for one-row json messages: order per asset; batch messages keep the stream key)."},
		{Name: "required_acks", Type: spec.String, Default: "all", Enum: []string{"all", "leader"},
			Description: "Acknowledgement the producer waits for: every in-sync replica or only the leader."},
		{Name: "idempotent", Type: spec.Bool, Default: true,
			Description: "Idempotent producer (needs required_acks: all and Kafka 0.11 or later)."},
		{Name: "compression", Type: spec.String, Default: "none", Enum: []string{"none", "gzip", "snappy", "lz4", "zstd"},
			Description: "Compression of produced batches."},
		{Name: "version", Type: spec.String, Default: "2.1.0", Advanced: true,
			Description: "Kafka protocol version to speak (the oldest broker version of the cluster)."},
		{Name: "max_message_bytes", Type: spec.Int, Default: 1000000, Advanced: true,
			Description: "Largest message produced; a larger one fails as permanent. Keep it at or below the topic's `max.message.bytes`."},
		{Name: "timeout", Type: spec.Duration, Default: "10s",
			Description: "How long the cluster may take to acknowledge a message, and the network read/write timeout."},
		{Name: "connect_timeout", Type: spec.Duration, Default: "5s", Advanced: true,
			Description: "Timeout of each connection attempt."},
		{Name: "username", Type: spec.String, Optional: true, Description: "SASL/PLAIN user."},
		{Name: "password", Type: spec.String, Optional: true, Description: "SASL/PLAIN password."},
		outbound.TLSField(),
	}, outbound.EncodingFields(outbound.JSONBatch)...),
	Example: `sinks:
  cloud:
    type: kafka
    input: stats
    brokers: [kafka-1:9092, kafka-2:9092]
    topic: sluice.site-a.stats
    partition_key: stream
    compression: zstd
    encoding: arrow`,
}

func init() { outbound.RegisterPublisher(Spec, New) }

// New builds a kafka publisher from its configuration. It does not
// connect.
func New(cfg *spec.Config, bc engine.BuildContext) (*outbound.Publisher, error) {
	brokers := cfg.Strings("brokers")
	if len(brokers) == 0 {
		return nil, cfg.Errorf("brokers", "brokers must list at least one host:port")
	}
	for _, b := range brokers {
		if err := redact.CheckHostPort(b); err != nil {
			return nil, cfg.Errorf("brokers", "broker %v", err)
		}
	}
	if err := outbound.Require(cfg, "topic"); err != nil {
		return nil, err
	}
	topic := cfg.String("topic")
	if len(topic) > 249 || strings.Trim(topic, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "" {
		return nil, cfg.Errorf("topic", "topic %q must be at most 249 of a-z A-Z 0-9 . _ -", topic)
	}
	for _, name := range []string{"timeout", "connect_timeout", "max_message_bytes"} {
		if err := outbound.Positive(cfg, name); err != nil {
			return nil, err
		}
	}
	sc := sarama.NewConfig()
	v, err := sarama.ParseKafkaVersion(cfg.String("version"))
	if err != nil {
		return nil, cfg.Errorf("version", "%v", err)
	}
	sc.Version = v
	sc.ClientID = "sluice"
	timeout := cfg.Duration("timeout")
	sc.Net.DialTimeout = cfg.Duration("connect_timeout")
	sc.Net.ReadTimeout, sc.Net.WriteTimeout = timeout, timeout
	// Bounded connect: Watermill's defaults retry metadata three times,
	// two seconds apart.
	sc.Metadata.Retry.Max = 1
	sc.Metadata.Retry.Backoff = 250 * time.Millisecond
	sc.Metadata.Full = false
	// The idempotent producer asks for a producer ID while being built,
	// retrying 50 times 100ms apart by default.
	sc.Producer.Transaction.Retry.Max = 2
	sc.Producer.Transaction.Retry.Backoff = 200 * time.Millisecond
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	sc.Producer.Timeout = timeout
	sc.Producer.Retry.Max = 5
	sc.Producer.Retry.Backoff = 200 * time.Millisecond
	sc.Producer.MaxMessageBytes = int(cfg.Int("max_message_bytes"))
	sc.Producer.RequiredAcks = sarama.WaitForAll
	if cfg.String("required_acks") == "leader" {
		sc.Producer.RequiredAcks = sarama.WaitForLocal
	}
	if cfg.Bool("idempotent") {
		if sc.Producer.RequiredAcks != sarama.WaitForAll {
			return nil, cfg.Errorf("idempotent", "an idempotent producer needs required_acks: all")
		}
		sc.Producer.Idempotent = true
		sc.Net.MaxOpenRequests = 1
	}
	switch cfg.String("compression") {
	case "gzip":
		sc.Producer.Compression = sarama.CompressionGZIP
	case "snappy":
		sc.Producer.Compression = sarama.CompressionSnappy
	case "lz4":
		sc.Producer.Compression = sarama.CompressionLZ4
	case "zstd":
		sc.Producer.Compression = sarama.CompressionZSTD
	}
	if u := cfg.String("username"); u != "" {
		sc.Net.SASL.Enable = true
		sc.Net.SASL.Mechanism = sarama.SASLTypePlaintext
		sc.Net.SASL.User = u
		sc.Net.SASL.Password = cfg.String("password")
	}
	tlsc, err := outbound.TLSConfig(cfg, bc)
	if err != nil {
		return nil, err
	}
	if tlsc != nil {
		sc.Net.TLS.Enable = true
		sc.Net.TLS.Config = tlsc
	}
	if err := sc.Validate(); err != nil {
		return nil, cfg.Errorf("", "%v", err)
	}
	if bc.DryRun {
		// Checked; nothing is connected.
		return nil, nil
	}
	byAsset := cfg.String("partition_key") == "asset"
	wc := wmkafka.PublisherConfig{
		Brokers:               brokers,
		Marshaler:             wmkafka.NewWithPartitioningMarshaler(partitionKey(byAsset)),
		OverwriteSaramaConfig: sc,
	}
	logger := outbound.Logger(bc)
	lazy := outbound.NewLazy(func() (message.Publisher, error) {
		if err := probe(brokers, sc); err != nil {
			return nil, fmt.Errorf("kafka: %v", err)
		}
		p, err := wmkafka.NewPublisher(wc, logger)
		if err != nil {
			// %v: failing to reach the cluster is an outage, not a
			// permanent message error.
			return nil, fmt.Errorf("kafka: %v", err)
		}
		return p, nil
	})
	return outbound.New(cfg, lazy, topic, Permanent)
}

// probe builds and closes a producer. Sarama's NewSyncProducer leaks its
// client (and the client's metadata goroutine) when building the
// idempotent producer fails, which it does whenever the cluster is down;
// Watermill's constructor calls it, and a forwarder retrying through an
// outage would leak one client per attempt. Probing with a client this
// package owns and closes avoids that.
func probe(brokers []string, sc *sarama.Config) error {
	client, err := sarama.NewClient(brokers, sc)
	if err != nil {
		return err
	}
	defer client.Close()
	sp, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		return err
	}
	return sp.Close()
}

// partitionKey keys messages by edge/stream, or by edge/asset for
// one-row messages when byAsset.
func partitionKey(byAsset bool) wmkafka.GeneratePartitionKey {
	return func(_ string, msg *message.Message) (string, error) {
		edge := msg.Metadata.Get(outbound.MetaEdge)
		if byAsset {
			if a := msg.Metadata.Get(outbound.MetaAsset); a != "" {
				return edge + "/" + a, nil
			}
		}
		return edge + "/" + msg.Metadata.Get(outbound.MetaStream), nil
	}
}

// Permanent reports errors that retrying the same message cannot fix: a
// message above max_message_bytes or the broker's limit, a corrupt or
// invalid record, an invalid topic, a policy violation or a missing
// authorisation.
func Permanent(err error) bool {
	if err == nil {
		return false
	}
	var ce sarama.ConfigurationError
	if errors.As(err, &ce) {
		return true // "Attempt to produce message larger than configured Producer.MaxMessageBytes"
	}
	var ke sarama.KError
	if errors.As(err, &ke) {
		switch ke {
		case sarama.ErrMessageSizeTooLarge, sarama.ErrInvalidMessage, sarama.ErrInvalidTopic,
			sarama.ErrInvalidRecord, sarama.ErrPolicyViolation, sarama.ErrUnsupportedForMessageFormat,
			sarama.ErrTopicAuthorizationFailed, sarama.ErrClusterAuthorizationFailed:
			return true
		}
	}
	return false
}
