// Package redis provides the "redis" publisher: it appends messages to a
// Redis stream through Watermill's Redis Streams publisher — one
// synchronous XADD per message, each returning once Redis has appended the
// entry (durability then follows the server's AOF/RDB settings).
//
// XADD has no deduplication: a retry after an error whose outcome is
// unknown (a timeout after the command was sent) can append a second
// entry with the same ID, and consumers deduplicate by ID. The client's own
// retries are switched off so that only the forwarder retries. A hung
// server blocks each XADD for the read timeout.
package redis

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	goredis "github.com/redis/go-redis/v9"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/redact"
	"github.com/sluice-edge/sluice/engine/spec"
)

// Spec declares the redis publisher.
var Spec = spec.Spec{
	Name:    "redis",
	Summary: "Appends messages to a Redis stream (one synchronous XADD per message).",
	Description: "Each message becomes one stream entry in Watermill's format: fields " +
		"`_watermill_message_uuid` (the stable ID), `payload` and `metadata` (MessagePack). " +
		"Redis does not deduplicate: a retry after a timeout may append a second entry with the same " +
		"ID, which consumers drop. `maxlen` trims the stream approximately (`MAXLEN ~`), discarding " +
		"the oldest entries even when no consumer has read them.",
	Fields: append([]spec.Field{
		{Name: "url", Type: spec.String, Default: "redis://127.0.0.1:6379/0",
			Description: "Server URL `redis://[user:password@]host:port/db`; `rediss://` uses TLS.", Example: "rediss://:secret@cache.example.com:6380/0"},
		{Name: "stream", Type: spec.String,
			Description: "Key of the stream the entries are appended to.", Example: "sluice:site-a:stats"},
		{Name: "maxlen", Type: spec.Int, Default: 0,
			Description: "Approximate maximum length of the stream; older entries are trimmed. 0 never trims."},
		{Name: "username", Type: spec.String, Optional: true, Description: "ACL user (overrides the URL's)."},
		{Name: "password", Type: spec.String, Optional: true, Description: "Password (overrides the URL's)."},
		{Name: "timeout", Type: spec.Duration, Default: "3s",
			Description: "Read and write timeout of each XADD."},
		{Name: "connect_timeout", Type: spec.Duration, Default: "5s", Advanced: true,
			Description: "Timeout of each connection attempt."},
		outbound.TLSField(),
	}, outbound.EncodingFields(outbound.JSONBatch)...),
	Example: `sinks:
  cloud:
    type: redis
    input: stats
    url: redis://cache.example.com:6379/0
    stream: sluice:site-a:stats
    maxlen: 1000000
    encoding: json_batch`,
}

func init() { outbound.RegisterPublisher(Spec, New) }

// ParseURL parses a server URL as the client does when it connects, after
// the check every connector shares (redact.ParseURL: a port in 1..65535,
// no password in the error).
func ParseURL(s string) (*goredis.Options, error) {
	if _, err := redact.ParseURL(s); err != nil {
		return nil, err
	}
	opts, err := goredis.ParseURL(s)
	if err != nil {
		return nil, fmt.Errorf("url %s: %w", redact.URL(s), redact.Error(err))
	}
	return opts, nil
}

// New builds a redis publisher from its configuration. It does not dial.
func New(cfg *spec.Config, bc engine.BuildContext) (*outbound.Publisher, error) {
	if err := outbound.Require(cfg, "stream"); err != nil {
		return nil, err
	}
	opts, err := ParseURL(cfg.String("url"))
	if err != nil {
		return nil, cfg.Errorf("url", "%v", err)
	}
	if u := cfg.String("username"); u != "" {
		opts.Username = u
	}
	if pw := cfg.String("password"); pw != "" {
		opts.Password = pw
	}
	for _, name := range []string{"timeout", "connect_timeout"} {
		if err := outbound.Positive(cfg, name); err != nil {
			return nil, err
		}
	}
	maxlen := cfg.Int("maxlen")
	if maxlen < 0 {
		return nil, cfg.Errorf("maxlen", "maxlen must not be negative")
	}
	timeout := cfg.Duration("timeout")
	opts.ReadTimeout, opts.WriteTimeout = timeout, timeout
	opts.DialTimeout = cfg.Duration("connect_timeout")
	opts.MaxRetries = -1 // the forwarder retries; XADD is not idempotent
	opts.PoolSize = 2
	opts.ClientName = "sluice"
	tlsc, err := outbound.TLSConfig(cfg, bc)
	if err != nil {
		return nil, err
	}
	if tlsc != nil {
		opts.TLSConfig = tlsc
	}
	if bc.DryRun {
		// Checked; nothing is connected.
		return nil, nil
	}
	client := goredis.NewClient(opts)
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{
		Client:        client,
		DefaultMaxlen: maxlen,
	}, outbound.Logger(bc))
	if err != nil {
		_ = client.Close()
		return nil, cfg.Errorf("url", "%v", redact.Error(err))
	}
	return outbound.New(cfg, &closeOnce{Publisher: pub}, cfg.String("stream"), Permanent)
}

// closeOnce makes Close idempotent and safe to call concurrently, and
// fails Publish after Close (Watermill's flag is not synchronised).
type closeOnce struct {
	*redisstream.Publisher
	mu     sync.RWMutex
	closed bool
}

func (c *closeOnce) Publish(topic string, msgs ...*message.Message) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return outbound.ErrClosed
	}
	return c.Publisher.Publish(topic, msgs...)
}

func (c *closeOnce) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	return c.Publisher.Close()
}

// Permanent reports errors that retrying the same message cannot fix: the
// key holds another type, the user may not run XADD on it, or the message
// cannot be marshalled.
func Permanent(err error) bool {
	if err == nil {
		return false
	}
	for _, prefix := range []string{"WRONGTYPE", "NOPERM"} {
		if goredis.HasErrorPrefix(err, prefix) {
			return true
		}
	}
	var re goredis.Error
	if errors.As(err, &re) {
		return false // other server errors: OOM, LOADING, READONLY, BUSY, ...
	}
	return strings.Contains(err.Error(), "cannot marshal message")
}
