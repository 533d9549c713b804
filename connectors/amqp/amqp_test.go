package amqp_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"

	"github.com/sluice-edge/sluice/connectors/amqp"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
)

const localURL = "amqp://guest:guest@127.0.0.1:5672/"

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// local connects to the RabbitMQ server on this machine or skips.
func local(t testing.TB) *amqp091.Connection {
	t.Helper()
	conn, err := amqp091.DialConfig(localURL, amqp091.Config{Dial: amqp091.DefaultDial(time.Second)})
	if err != nil {
		t.Skipf("RabbitMQ at %s unreachable: %v", localURL, err)
	}
	return conn
}

func build(t testing.TB, yaml string) *outbound.Publisher {
	t.Helper()
	p, err := amqp.New(outboundtest.Parse(t, amqp.Spec, yaml), engine.BuildContext{Pipeline: "test", Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// cleanup deletes the queue and the exchange after the test.
func cleanup(t *testing.T, queue, exchange string) {
	t.Cleanup(func() {
		conn := local(t)
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			return
		}
		defer ch.Close()
		if queue != "" {
			_, _ = ch.QueueDelete(queue, false, false, false)
		}
		if exchange != "" {
			_ = ch.ExchangeDelete(exchange, false, false)
		}
	})
}

// readQueue returns a Reader that waits until the queue holds n messages
// and then takes every message from it with basic.get, through its own
// connection.
func readQueue(queue string) outboundtest.Reader {
	return func(ctx context.Context, n int) ([]*message.Message, error) {
		conn, err := amqp091.Dial(localURL)
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			return nil, err
		}
		defer ch.Close()
		for {
			q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
			if err != nil {
				return nil, err
			}
			if q.Messages >= n {
				break
			}
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("queue %s holds %d messages: %w", queue, q.Messages, ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
		var out []*message.Message
		for {
			d, ok, err := ch.Get(queue, true)
			if err != nil {
				return out, err
			}
			if !ok {
				return out, nil
			}
			m, err := wmamqp.DefaultMarshaler{}.Unmarshal(d)
			if err != nil {
				return out, err
			}
			if d.MessageId != m.UUID || d.DeliveryMode != amqp091.Persistent {
				return out, fmt.Errorf("message %s: message_id %q, delivery mode %d", m.UUID, d.MessageId, d.DeliveryMode)
			}
			if want := outbound.Encoding(m.Metadata.Get(outbound.MetaEncoding)).ContentType(); d.ContentType != want {
				return out, fmt.Errorf("message %s: content type %q, want %q", m.UUID, d.ContentType, want)
			}
			out = append(out, m)
		}
	}
}

func TestConformanceQueue(t *testing.T) {
	local(t).Close()
	outboundtest.Run(t, outboundtest.Case{
		Spec: amqp.Spec,
		New: func(t *testing.T, enc outbound.Encoding) (*outbound.Publisher, outboundtest.Reader) {
			queue := "sluice.test." + outboundtest.Suffix()
			cleanup(t, queue, "")
			p := build(t, fmt.Sprintf("queue: %s\nencoding: %s", queue, enc))
			t.Cleanup(func() { _ = p.Close() })
			return p, readQueue(queue)
		},
	})
}

func TestConformanceExchange(t *testing.T) {
	local(t).Close()
	outboundtest.Run(t, outboundtest.Case{
		Spec: amqp.Spec,
		New: func(t *testing.T, enc outbound.Encoding) (*outbound.Publisher, outboundtest.Reader) {
			sfx := outboundtest.Suffix()
			queue, exchange := "sluice.test."+sfx, "sluice.ex."+sfx
			cleanup(t, queue, exchange)
			p := build(t, fmt.Sprintf("exchange: %s\nrouting_key: site.%s\nqueue: %s\nencoding: %s", exchange, sfx, queue, enc))
			t.Cleanup(func() { _ = p.Close() })
			return p, readQueue(queue)
		},
	})
}

// TestWatermillSubscriber consumes with Watermill's AMQP subscriber, as a
// hub would.
func TestWatermillSubscriber(t *testing.T) {
	local(t).Close()
	queue := "sluice.wm." + outboundtest.Suffix()
	cleanup(t, queue, "")
	p := build(t, "queue: "+queue+"\nencoding: json")
	entries := outboundtest.Entries(1, 5)
	defer entries[0].Rec.Release()
	want, _ := p.Encoder("site", "raw").Encode(entries[0])
	if err := p.Publish(p.Topic, want...); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	sub, err := wmamqp.NewSubscriber(wmamqp.NewDurableQueueConfig(localURL), watermill.NopLogger{}) // a nil logger panics in Close
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch, err := sub.Subscribe(ctx, queue)
	if err != nil {
		t.Fatal(err)
	}
	got, err := outboundtest.Collect(ctx, ch, len(want))
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		outboundtest.CheckMessage(t, i, want[i], got[i])
	}
}

// TestBrokerDown builds against a port nobody listens on: building
// succeeds without dialling, Publish fails fast and not permanently, and
// Close works.
func TestBrokerDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	start := time.Now()
	p := build(t, "url: amqp://guest:guest@"+addr+"/\nqueue: q\nconnect_timeout: 1s")
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("building took %v", d)
	}
	err = p.Publish(p.Topic, message.NewMessage("e/s/1", []byte("{}")))
	if err == nil || p.IsPermanent(err) {
		t.Fatalf("publish to a down broker: %v (permanent %v)", err, p.IsPermanent(err))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("publish took %v to fail", d)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestTooLarge checks the client-side size limit.
func TestTooLarge(t *testing.T) {
	local(t).Close()
	queue := "sluice.big." + outboundtest.Suffix()
	cleanup(t, queue, "")
	p := build(t, "queue: "+queue+"\nmax_message_bytes: 100")
	defer p.Close()
	err := p.Publish(p.Topic, message.NewMessage("e/s/1", make([]byte, 101)))
	if !p.IsPermanent(err) || !errors.Is(err, amqp.ErrTooLarge) {
		t.Fatalf("err %v, permanent %v", err, p.IsPermanent(err))
	}
	if err := p.Publish(p.Topic, message.NewMessage("e/s/2", make([]byte, 100))); err != nil {
		t.Fatal(err)
	}
}

// TestDeclareMismatch publishes to a queue declared with other arguments:
// the error is reported and is not permanent (it is a configuration
// problem, not a property of the message).
func TestDeclareMismatch(t *testing.T) {
	conn := local(t)
	defer conn.Close()
	queue := "sluice.mismatch." + outboundtest.Suffix()
	cleanup(t, queue, "")
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(queue, false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	ch.Close()
	p := build(t, "queue: "+queue)
	defer p.Close()
	err = p.Publish(p.Topic, message.NewMessage("e/s/1", []byte("{}")))
	if err == nil || !strings.Contains(err.Error(), "declare queue") || p.IsPermanent(err) {
		t.Fatalf("err %v, permanent %v", err, p.IsPermanent(err))
	}
}

func TestPermanent(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"too large (client)", fmt.Errorf("x: %w", amqp.ErrTooLarge), true},
		{"content too large", &amqp091.Error{Code: amqp091.ContentTooLarge}, true},
		{"access refused", fmt.Errorf("cannot publish msg: %w", &amqp091.Error{Code: amqp091.AccessRefused}), true},
		{"precondition failed", &amqp091.Error{Code: amqp091.PreconditionFailed}, true},
		{"channel closed", amqp091.ErrClosed, false},
		{"not found", &amqp091.Error{Code: amqp091.NotFound}, false},
		{"connection forced", &amqp091.Error{Code: amqp091.ConnectionForced}, false},
		{"not connected", errors.New("not connected to AMQP"), false},
		{"not confirmed", errors.New("delivery not confirmed for message [x]"), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := amqp.Permanent(c.err); got != c.want {
				t.Errorf("Permanent(%v) = %v, want %v", c.err, got, c.want)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"url: amqp://x", "set queue, exchange or both"},
		{"url: http://x\nqueue: q", "scheme"},
		{"queue: q\nrouting_key: other", "routing key is the queue name"},
		{"exchange: amq.topic", "predeclared"},
		{"queue: q\ntimeout: 0s", "timeout must be above 0"},
	} {
		_, err := amqp.New(outboundtest.Parse(t, amqp.Spec, c.yaml), engine.BuildContext{})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "test.yaml:") {
			t.Errorf("%q: err %v, want %q with a location", c.yaml, err, c.want)
		}
	}
}

// TestNack publishes to a full queue that rejects new messages: the broker
// nacks, and Publish must report it instead of returning nil (which it
// would with confirms off).
func TestNack(t *testing.T) {
	conn := local(t)
	defer conn.Close()
	queue := "sluice.full." + outboundtest.Suffix()
	cleanup(t, queue, "")
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, amqp091.Table{"x-max-length": int32(2), "x-overflow": "reject-publish"}); err != nil {
		t.Fatal(err)
	}
	ch.Close()
	p := build(t, "queue: "+queue+"\ndeclare: false")
	defer p.Close()
	for i := 1; i <= 2; i++ {
		if err := p.Publish(p.Topic, message.NewMessage(fmt.Sprintf("e/s/%d", i), []byte("{}"))); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	err = p.Publish(p.Topic, message.NewMessage("e/s/3", []byte("{}")))
	if err == nil {
		t.Fatal("a nacked message was reported as published")
	}
	if p.IsPermanent(err) {
		t.Errorf("a full queue is not a permanent message error: %v", err)
	}
}

// TestDoc checks the reference in docs/sinks.md against the declaration.
func TestDoc(t *testing.T) { outboundtest.CheckDoc(t, amqp.Spec, "../../docs/sinks.md") }
