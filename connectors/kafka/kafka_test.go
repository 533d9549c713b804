package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	wmkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/sluice-edge/sluice/connectors/kafka"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Sarama's metrics library runs one global ticker for meters.
		goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"),
	)
}

// cluster starts an in-process Kafka cluster (there is no Kafka server on
// this machine).
func cluster(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(3)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func build(t testing.TB, c *kfake.Cluster, yaml string) *outbound.Publisher {
	t.Helper()
	brokers := "[" + strings.Join(c.ListenAddrs(), ", ") + "]"
	p, err := kafka.New(outboundtest.Parse(t, kafka.Spec, "brokers: "+brokers+"\n"+yaml), engine.BuildContext{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// readTopic returns a Reader over every record of a topic, read with a
// franz-go client and decoded with Watermill's Kafka unmarshaler. Records
// of several partitions are returned partition by partition.
func readTopic(c *kfake.Cluster, topic string) outboundtest.Reader {
	return func(ctx context.Context, n int) ([]*message.Message, error) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
		if err != nil {
			return nil, err
		}
		defer cl.Close()
		var recs []*kgo.Record
		// Read until n records arrived, then briefly for strays.
		for extra := false; ; {
			pctx, cancel := ctx, context.CancelFunc(func() {})
			if extra {
				pctx, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
			}
			fs := cl.PollFetches(pctx)
			cancel()
			fs.EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
			if ctx.Err() != nil {
				return toMessages(recs), fmt.Errorf("read %d records: %w", len(recs), ctx.Err())
			}
			if extra && pctx.Err() != nil {
				break
			}
			if len(recs) >= n {
				extra = true
			}
		}
		return toMessages(recs), nil
	}
}

func toMessages(recs []*kgo.Record) []*message.Message {
	var out []*message.Message
	for _, r := range recs {
		cm := &sarama.ConsumerMessage{Key: r.Key, Value: r.Value, Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
		for _, h := range r.Headers {
			cm.Headers = append(cm.Headers, &sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value})
		}
		m, err := wmkafka.DefaultMarshaler{}.Unmarshal(cm)
		if err != nil {
			panic(err)
		}
		m.Metadata.Set("kafka_key", string(r.Key))
		m.Metadata.Set("kafka_partition", strconv.Itoa(int(r.Partition)))
		out = append(out, m)
	}
	return out
}

func TestConformance(t *testing.T) {
	c := cluster(t)
	outboundtest.Run(t, outboundtest.Case{
		Spec: kafka.Spec,
		New: func(t *testing.T, enc outbound.Encoding) (*outbound.Publisher, outboundtest.Reader) {
			topic := "sluice.test." + outboundtest.Suffix()
			p := build(t, c, fmt.Sprintf("topic: %s\nencoding: %s", topic, enc))
			t.Cleanup(func() { _ = p.Close() })
			return p, readTopic(c, topic)
		},
	})
}

// TestPartitionKey checks the keys: per stream by default, per asset for
// one-row messages with partition_key: asset, and that each asset's rows
// stay in order.
func TestPartitionKey(t *testing.T) {
	c := cluster(t)
	topic := "sluice.keys." + outboundtest.Suffix()
	p := build(t, c, "topic: "+topic+"\nencoding: json\npartition_key: asset")
	entries := outboundtest.Entries(1, 40)
	defer entries[0].Rec.Release()
	msgs, _ := p.Encoder("site", "raw").Encode(entries[0])
	if err := p.Publish(p.Topic, msgs...); err != nil {
		t.Fatal(err)
	}
	p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := readTopic(c, topic)(ctx, len(msgs))
	if err != nil {
		t.Fatal(err)
	}
	last := map[string]uint64{}
	partitions := map[string]bool{}
	for _, m := range got {
		asset := m.Metadata.Get(outbound.MetaAsset)
		if key := m.Metadata.Get("kafka_key"); key != "site/"+asset {
			t.Errorf("%s: key %q, want site/%s", m.UUID, key, asset)
		}
		seq, _ := strconv.ParseUint(m.Metadata.Get(outbound.MetaFirstSeq), 10, 64)
		if seq <= last[asset] {
			t.Errorf("asset %s: seq %d after %d", asset, seq, last[asset])
		}
		last[asset] = seq
		partitions[m.Metadata.Get("kafka_partition")] = true
	}
	if len(partitions) < 2 {
		t.Errorf("all assets landed in %d partition(s)", len(partitions))
	}
}

// TestLazyConnect publishes while no broker listens, then starts the
// cluster on that port: building never blocks, the failed publish is
// bounded and transient, and the next publish connects.
func TestLazyConnect(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	start := time.Now()
	p, err := kafka.New(outboundtest.Parse(t, kafka.Spec, fmt.Sprintf("brokers: [127.0.0.1:%d]\ntopic: late\nconnect_timeout: 1s", port)), engine.BuildContext{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("building took %v", d)
	}
	start = time.Now()
	err = p.Publish(p.Topic, message.NewMessage("e/s/1", []byte("{}")))
	if err == nil || p.IsPermanent(err) {
		t.Fatalf("publish with no cluster: %v (permanent %v)", err, p.IsPermanent(err))
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("failed publish took %v (Watermill's constructor alone blocks ~6s)", d)
	}
	t.Logf("publish with no cluster failed after %v: %v", time.Since(start).Round(time.Millisecond), err)

	c := cluster(t, kfake.Ports(port))
	msg := message.NewMessage("e/s/1", []byte("{}"))
	msg.Metadata.Set(outbound.MetaEdge, "e")
	msg.Metadata.Set(outbound.MetaStream, "s")
	if err := p.Publish(p.Topic, msg); err != nil {
		t.Fatalf("publish once the cluster is up: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got, err := readTopic(c, "late")(ctx, 1); err != nil || len(got) != 1 {
		t.Fatalf("read %d messages: %v", len(got), err)
	}
}

// TestTooLarge hits the client limit and the broker's: both permanent.
func TestTooLarge(t *testing.T) {
	c := cluster(t, kfake.BrokerConfigs(map[string]string{"message.max.bytes": "2000"}))
	p := build(t, c, "topic: big\nmax_message_bytes: 100000")
	defer p.Close()
	err := p.Publish(p.Topic, message.NewMessage("e/s/1", make([]byte, 200000)))
	if err == nil || !p.IsPermanent(err) {
		t.Fatalf("above max_message_bytes: %v (permanent %v)", err, p.IsPermanent(err))
	}
	err = p.Publish(p.Topic, message.NewMessage("e/s/2", make([]byte, 50000)))
	if err == nil || !p.IsPermanent(err) {
		t.Fatalf("above the broker's message.max.bytes: %v (permanent %v)", err, p.IsPermanent(err))
	}
	if err := p.Publish(p.Topic, message.NewMessage("e/s/3", []byte("{}"))); err != nil {
		t.Fatalf("small message after rejected ones: %v", err)
	}
}

func TestPermanent(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"client size limit", fmt.Errorf("cannot produce message x: %w", sarama.ConfigurationError("Attempt to produce message larger than configured Producer.MaxMessageBytes: 2 > 1")), true},
		{"broker size limit", fmt.Errorf("cannot produce message x: %w", sarama.ErrMessageSizeTooLarge), true},
		{"corrupt", sarama.ErrInvalidMessage, true},
		{"invalid topic", sarama.ErrInvalidTopic, true},
		{"invalid record", sarama.ErrInvalidRecord, true},
		{"topic authorization", sarama.ErrTopicAuthorizationFailed, true},
		{"cluster authorization", sarama.ErrClusterAuthorizationFailed, true},
		{"not leader", sarama.ErrNotLeaderForPartition, false},
		{"not enough replicas", sarama.ErrNotEnoughReplicas, false},
		{"timed out", sarama.ErrRequestTimedOut, false},
		{"unknown topic", sarama.ErrUnknownTopicOrPartition, false},
		{"out of brokers", sarama.ErrOutOfBrokers, false},
		{"connect (wrapped by %v)", errors.New("connect: kafka: cannot create Kafka producer: kafka: client has run out of available brokers"), false},
		{"other", errors.New("boom"), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := kafka.Permanent(c.err); got != c.want {
				t.Errorf("Permanent(%v) = %v, want %v", c.err, got, c.want)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"brokers: []\ntopic: t", "at least one"},
		{"topic: 'a b'", "topic"},
		{"topic: t\nrequired_acks: leader", "needs required_acks: all"},
		{"topic: t\nversion: banana", "version"},
		{"topic: t\ntimeout: 0s", "timeout must be above 0"},
	} {
		_, err := kafka.New(outboundtest.Parse(t, kafka.Spec, c.yaml), engine.BuildContext{})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "test.yaml:") {
			t.Errorf("%q: err %v, want %q with a location", c.yaml, err, c.want)
		}
	}
}

// TestDoc checks the reference in docs/sinks.md against the declaration.
func TestDoc(t *testing.T) { outboundtest.CheckDoc(t, kafka.Spec, "../../docs/sinks.md") }
