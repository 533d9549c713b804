package redis_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/sluice-edge/sluice/connectors/redis"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
)

const localURL = "redis://127.0.0.1:6379/0"

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// local returns a client of the Redis server on this machine or skips.
func local(t testing.TB) *goredis.Client {
	t.Helper()
	opts, _ := goredis.ParseURL(localURL)
	opts.DialTimeout = time.Second
	c := goredis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		t.Skipf("Redis at %s unreachable: %v", localURL, err)
	}
	return c
}

func build(t testing.TB, yaml string) *outbound.Publisher {
	t.Helper()
	p, err := redis.New(outboundtest.Parse(t, redis.Spec, yaml), engine.BuildContext{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// readStream returns a Reader over every entry of a stream (XRANGE),
// decoded with Watermill's unmarshaller.
func readStream(key string) outboundtest.Reader {
	return func(ctx context.Context, n int) ([]*message.Message, error) {
		c := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:6379"})
		defer c.Close()
		for {
			l, err := c.XLen(ctx, key).Result()
			if err == nil && l >= int64(n) {
				break
			}
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("stream %s holds %d entries: %w (%v)", key, l, ctx.Err(), err)
			case <-time.After(20 * time.Millisecond):
			}
		}
		entries, err := c.XRange(ctx, key, "-", "+").Result()
		if err != nil {
			return nil, err
		}
		var out []*message.Message
		for _, e := range entries {
			m, err := redisstream.DefaultMarshallerUnmarshaller{}.Unmarshal(e.Values)
			if err != nil {
				return out, err
			}
			out = append(out, m)
		}
		return out, nil
	}
}

func TestConformance(t *testing.T) {
	local(t).Close()
	outboundtest.Run(t, outboundtest.Case{
		Spec: redis.Spec,
		New: func(t *testing.T, enc outbound.Encoding) (*outbound.Publisher, outboundtest.Reader) {
			key := "sluice:test:" + outboundtest.Suffix()
			t.Cleanup(func() {
				c := local(t)
				defer c.Close()
				c.Del(context.Background(), key)
			})
			p := build(t, fmt.Sprintf("stream: %s\nencoding: %s", key, enc))
			t.Cleanup(func() { _ = p.Close() })
			return p, readStream(key)
		},
	})
}

// TestMaxlen checks that the stream is trimmed (approximately).
func TestMaxlen(t *testing.T) {
	c := local(t)
	defer c.Close()
	key := "sluice:maxlen:" + outboundtest.Suffix()
	defer c.Del(context.Background(), key)
	p := build(t, "stream: "+key+"\nmaxlen: 10\nencoding: json")
	defer p.Close()
	entries := outboundtest.Entries(1, 500)
	defer entries[0].Rec.Release()
	msgs, _ := p.Encoder("e", "s").Encode(entries[0])
	if err := p.Publish(p.Topic, msgs...); err != nil {
		t.Fatal(err)
	}
	n, err := c.XLen(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	if n >= 500 || n < 10 {
		t.Fatalf("stream holds %d entries after 500 XADDs with maxlen 10", n)
	}
}

// TestWrongType publishes to a key that holds a string: Redis answers
// WRONGTYPE, which is permanent.
func TestWrongType(t *testing.T) {
	c := local(t)
	defer c.Close()
	key := "sluice:wrongtype:" + outboundtest.Suffix()
	if err := c.Set(context.Background(), key, "x", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	defer c.Del(context.Background(), key)
	p := build(t, "stream: "+key)
	defer p.Close()
	err := p.Publish(p.Topic, message.NewMessage("e/s/1", []byte("{}")))
	if err == nil || !p.IsPermanent(err) {
		t.Fatalf("err %v, permanent %v", err, p.IsPermanent(err))
	}
}

// TestBrokerDown builds against a port nobody listens on.
func TestBrokerDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	p := build(t, "url: redis://"+addr+"/0\nstream: s\nconnect_timeout: 1s")
	start := time.Now()
	err = p.Publish(p.Topic, message.NewMessage("e/s/1", []byte("{}")))
	if err == nil || p.IsPermanent(err) {
		t.Fatalf("err %v, permanent %v", err, p.IsPermanent(err))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("publish took %v to fail", d)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestPermanent(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"wrong type", fmt.Errorf("cannot xadd message x: %w", redisErr("WRONGTYPE Operation against a key holding the wrong kind of value")), true},
		{"no permission", redisErr("NOPERM User sluice has no permissions to run the 'xadd' command"), true},
		{"oom", redisErr("OOM command not allowed when used memory > 'maxmemory'."), false},
		{"loading", redisErr("LOADING Redis is loading the dataset in memory"), false},
		{"readonly replica", redisErr("READONLY You can't write against a read only replica."), false},
		{"marshal", errors.New("cannot marshal message x: metadata _watermill_message_uuid is reserved"), true},
		{"timeout", &net.OpError{Op: "read", Err: errors.New("i/o timeout")}, false},
		{"refused", errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), false},
		{"closed", goredis.ErrClosed, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := redis.Permanent(c.err); got != c.want {
				t.Errorf("Permanent(%v) = %v, want %v", c.err, got, c.want)
			}
		})
	}
}

// redisErr is a server error reply as the client returns it.
type redisErr string

func (e redisErr) Error() string { return string(e) }
func (redisErr) RedisError()     {}

func TestConfigErrors(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"stream: s\nurl: http://x", "invalid URL scheme"},
		{"stream: ''", "stream must not be empty"},
		{"stream: s\nmaxlen: -1", "maxlen"},
		{"stream: s\ntimeout: 0s", "timeout must be above 0"},
	} {
		_, err := redis.New(outboundtest.Parse(t, redis.Spec, c.yaml), engine.BuildContext{})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "test.yaml:") {
			t.Errorf("%q: err %v, want %q with a location", c.yaml, err, c.want)
		}
	}
}

// TestDoc checks the reference in docs/sinks.md against the declaration.
func TestDoc(t *testing.T) { outboundtest.CheckDoc(t, redis.Spec, "../../docs/sinks.md") }
