// Package nats provides the "nats" publisher: it sends messages to a NATS
// JetStream stream through Watermill's NATS publisher, one synchronous
// publish per message, each waiting for JetStream's ack.
//
// Every message carries its stable ID, signed with the key of the
// engine's data directory (see MsgID), in the Nats-Msg-Id header, so
// JetStream stores a message once however often it is retried within the
// stream's duplicate window, and no other publisher of the stream can
// make it drop the message as a duplicate. That matters because a publish that times out
// is "unknown", not "failed": the message may have been stored (its ack
// was lost, or the client sent it from its reconnect buffer after the
// broker came back). Retrying with the same ID is always safe.
//
// Building the publisher never fails or blocks when the server is down:
// the client connects in the background and keeps reconnecting. While it
// is disconnected, Publish fails at once (or, with reconnect_buffer set,
// waits up to timeout for the ack of a message kept in the client's
// buffer). The stream is created on the first Publish when missing.
package nats

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	natsgo "github.com/nats-io/nats.go"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer/disk"
	"github.com/sluice-edge/sluice/engine/natsurl"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/redact"
	"github.com/sluice-edge/sluice/engine/spec"
)

// Spec declares the nats publisher.
var Spec = spec.Spec{
	Name:    "nats",
	Summary: "Publishes to a NATS JetStream stream; retries are deduplicated by message ID.",
	Description: "Each message is published to `subject` and waits for JetStream's ack. Its `Nats-Msg-Id` " +
		"is its stable ID signed with the secret key of the engine's data directory " +
		"(`<id>#<HMAC-SHA256>`; the key is `<data_dir>/" + KeyFile + "`, made at the first start, mode 0600), " +
		"so JetStream drops copies a retry, a restart or a replay sends within `duplicate_window`, and no other " +
		"publisher to the stream can have a message dropped as a duplicate of its own. Without a data directory " +
		"the key is made per process: copies sent after a restart are stored again (consumers deduplicate by the " +
		"`id` header, which holds the plain ID). " +
		"Metadata travels as NATS headers. With `provision` the stream is created on the first publish " +
		"(file storage) and its duplicate window widened when shorter than configured. The publisher " +
		"starts while the server is down and reconnects forever.",
	Fields: append([]spec.Field{
		{Name: "url", Type: spec.String, Default: "nats://127.0.0.1:4222",
			Description: "Server URL; several URLs are separated by commas.", Example: "nats://hub-1:4222,nats://hub-2:4222"},
		{Name: "subject", Type: spec.String,
			Description: "Subject to publish to.", Example: "sluice.site-a.stats"},
		{Name: "stream", Type: spec.String, Optional: true,
			Description: "JetStream stream that captures the subject (default: the subject with `.`, `*` and `>` replaced by `_`).",
			Example:     "SLUICE"},
		{Name: "provision", Type: spec.Bool, Default: true,
			Description: "Create the stream when missing, add the subject to it when it does not capture it, and widen its duplicate window to `duplicate_window`."},
		{Name: "duplicate_window", Type: spec.Duration, Default: "2m",
			Description: "How long JetStream remembers message IDs. A retry later than this after the original publish can store a second copy (consumers still deduplicate by ID). Longer windows cost server memory per message."},
		{Name: "max_age", Type: spec.Duration, Default: "0",
			Description: "Maximum age of messages in a provisioned stream; 0 keeps them until other limits apply.", Advanced: true},
		{Name: "replicas", Type: spec.Int, Default: 1,
			Description: "Replicas of a provisioned stream (clustered JetStream).", Advanced: true},
		{Name: "timeout", Type: spec.Duration, Default: "5s",
			Description: "How long a publish waits for JetStream's ack of each message."},
		{Name: "connect_timeout", Type: spec.Duration, Default: "2s",
			Description: "Timeout of each connection attempt.", Advanced: true},
		{Name: "reconnect_buffer", Type: spec.Int, Default: 0, Advanced: true,
			Description: "Bytes of publishes the client keeps while reconnecting and sends after reconnecting. " +
				"0 makes Publish fail at once while disconnected, which lets the forwarder back off. " +
				"Buffered publishes usually time out and are stored later anyway; the retry is deduplicated."},
		{Name: "user", Type: spec.String, Optional: true, Description: "User name."},
		{Name: "password", Type: spec.String, Optional: true, Description: "Password of user."},
		{Name: "token", Type: spec.String, Optional: true, Description: "Authentication token."},
		{Name: "credentials_file", Type: spec.String, Optional: true,
			Description: "NATS credentials file (JWT and NKey seed); relative to the pipeline file. It is read (a regular file of at most 1 MiB) and checked when the pipeline is built, by `sluice validate` too."},
		outbound.TLSField(),
	}, outbound.EncodingFields(outbound.JSONBatch)...),
	Example: `sinks:
  cloud:
    type: nats
    input: stats
    url: nats://hub.example.com:4222
    subject: sluice.site-a.stats
    stream: SLUICE_STATS
    duplicate_window: 10m
    encoding: json_batch`,
}

func init() { outbound.RegisterPublisher(Spec, New) }

// Config is the typed configuration of a nats publisher.
type Config struct {
	URL             string
	Subject         string
	Stream          string
	Provision       bool
	DuplicateWindow time.Duration
	MaxAge          time.Duration
	Replicas        int
	Timeout         time.Duration
	ConnectTimeout  time.Duration
	ReconnectBuffer int
	// Options are extra connection options (credentials, TLS).
	Options []natsgo.Option
	// MsgIDKey signs the Nats-Msg-Ids (see MsgID); nil takes the key of
	// the build context's data directory (LoadKey).
	MsgIDKey []byte
}

// New builds a nats publisher from its configuration.
func New(cfg *spec.Config, bc engine.BuildContext) (*outbound.Publisher, error) {
	for _, name := range []string{"url", "subject"} {
		if err := outbound.Require(cfg, name); err != nil {
			return nil, err
		}
	}
	c := Config{
		URL:             cfg.String("url"),
		Subject:         cfg.String("subject"),
		Stream:          cfg.String("stream"),
		Provision:       cfg.Bool("provision"),
		DuplicateWindow: cfg.Duration("duplicate_window"),
		MaxAge:          cfg.Duration("max_age"),
		Replicas:        int(cfg.Int("replicas")),
		Timeout:         cfg.Duration("timeout"),
		ConnectTimeout:  cfg.Duration("connect_timeout"),
		ReconnectBuffer: int(cfg.Int("reconnect_buffer")),
	}
	if err := natsurl.Check(c.URL); err != nil {
		return nil, cfg.Errorf("url", "%v", err)
	}
	if err := checkSubject(c.Subject); err != nil {
		return nil, cfg.Errorf("subject", "%v", err)
	}
	if c.Stream == "" {
		c.Stream = StreamName(c.Subject)
	} else if strings.ContainsAny(c.Stream, ".*> \t") {
		return nil, cfg.Errorf("stream", "stream name %q must not contain '.', '*', '>' or white space", c.Stream)
	}
	for _, name := range []string{"timeout", "connect_timeout"} {
		if err := outbound.Positive(cfg, name); err != nil {
			return nil, err
		}
	}
	if c.DuplicateWindow < 0 || c.MaxAge < 0 {
		return nil, cfg.Errorf("duplicate_window", "durations must not be negative")
	}
	if c.Replicas < 1 {
		return nil, cfg.Errorf("replicas", "replicas must be at least 1")
	}
	if c.ReconnectBuffer < 0 {
		return nil, cfg.Errorf("reconnect_buffer", "reconnect_buffer must not be negative")
	}
	if u := cfg.String("user"); u != "" {
		c.Options = append(c.Options, natsgo.UserInfo(u, cfg.String("password")))
	}
	if tok := cfg.String("token"); tok != "" {
		c.Options = append(c.Options, natsgo.Token(tok))
	}
	if f := cfg.String("credentials_file"); f != "" {
		if bc.Dir != "" && !filepath.IsAbs(f) {
			f = filepath.Join(bc.Dir, f)
		}
		opt, err := credentials(f)
		if err != nil {
			return nil, cfg.Errorf("credentials_file", "credentials_file: %v", err)
		}
		c.Options = append(c.Options, opt)
	}
	tlsc, err := outbound.TLSConfig(cfg, bc)
	if err != nil {
		return nil, err
	}
	if tlsc != nil {
		c.Options = append(c.Options, natsgo.Secure(tlsc))
	}
	if bc.DryRun {
		// Checked; nothing is connected.
		return nil, nil
	}
	fsys, _ := bc.FS.(disk.FS)
	if c.MsgIDKey, err = LoadKeyFS(fsys, bc.DataDir); err != nil {
		return nil, err
	}
	p, err := Dial(c, bc)
	if err != nil {
		return nil, cfg.Errorf("url", "%v", redact.Error(err))
	}
	return outbound.New(cfg, p, c.Subject, Permanent)
}

// credentials reads a NATS credentials file (a user JWT and its NKey seed,
// as nsc writes them) of at most outbound.MaxSecretFileBytes and checks it
// with the client's own parsers: the JWT must be there and the seed must
// sign. The option it returns holds the bytes read, so that a validation
// and a run check the same file and connecting never reads it again.
func credentials(path string) (natsgo.Option, error) {
	data, err := spec.ReadConfigFile(path, outbound.MaxSecretFileBytes)
	if err != nil {
		return nil, err
	}
	opt := natsgo.UserCredentialBytes(data)
	var o natsgo.Options
	if err := opt(&o); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if jwt, err := o.UserJWT(); err != nil || strings.TrimSpace(jwt) == "" {
		return nil, fmt.Errorf("%s holds no user JWT", path)
	}
	if _, err := o.SignatureCB([]byte("check")); err != nil {
		return nil, fmt.Errorf("%s holds no usable user seed: %w", path, err)
	}
	return opt, nil
}

// StreamName derives a stream name from a subject.
func StreamName(subject string) string {
	return strings.NewReplacer(".", "_", "*", "_", ">", "_").Replace(subject)
}

func checkSubject(s string) error {
	if s == "" {
		return errors.New("subject is empty")
	}
	if strings.ContainsAny(s, " \t\r\n*>") {
		return fmt.Errorf("subject %q must not contain white space or wildcards", s)
	}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" {
			return fmt.Errorf("subject %q has an empty token", s)
		}
	}
	return nil
}

// Publisher publishes to JetStream. It embeds Watermill's NATS publisher
// and adds stream provisioning and error classification.
type Publisher struct {
	cfg  Config
	conn *natsgo.Conn
	js   natsgo.JetStreamContext
	wm   *wmnats.Publisher

	mu     sync.Mutex
	ready  bool // stream checked since the last "no stream" error
	closed atomic.Bool
	// denied is the last publish permissions violation the server sent.
	denied atomic.Pointer[string]
}

// Dial connects in the background and returns the publisher at once, even
// when the server is unreachable.
func Dial(c Config, bc engine.BuildContext) (*Publisher, error) {
	p := &Publisher{cfg: c}
	key := c.MsgIDKey
	if key == nil {
		var err error
		fsys, _ := bc.FS.(disk.FS)
		if key, err = LoadKeyFS(fsys, bc.DataDir); err != nil {
			return nil, err
		}
	}
	name := "sluice"
	if bc.Pipeline != "" || bc.Name != "" {
		name = "sluice " + bc.Pipeline + "/" + bc.Name
	}
	bufSize := c.ReconnectBuffer
	if bufSize == 0 {
		bufSize = -1 // fail publishes at once while disconnected
	}
	opts := append([]natsgo.Option{
		natsgo.Name(name),
		natsgo.RetryOnFailedConnect(true),
		natsgo.MaxReconnects(-1),
		natsgo.ReconnectWait(time.Second),
		natsgo.Timeout(c.ConnectTimeout),
		natsgo.ReconnectBufSize(bufSize),
		natsgo.NoCallbacksAfterClientClose(),
		natsgo.ErrorHandler(func(_ *natsgo.Conn, _ *natsgo.Subscription, err error) {
			if errors.Is(err, natsgo.ErrPermissionViolation) && strings.Contains(strings.ToLower(err.Error()), "publish") {
				s := err.Error()
				p.denied.Store(&s)
			}
			if bc.Log != nil {
				bc.Log.Warn("nats: asynchronous error", "err", err)
			}
		}),
	}, c.Options...)
	conn, err := natsgo.Connect(c.URL, opts...)
	if err != nil {
		return nil, err
	}
	wm, err := wmnats.NewPublisherWithNatsConn(conn, wmnats.PublisherPublishConfig{
		Marshaler:         marshaler{key: key},
		SubjectCalculator: wmnats.DefaultSubjectCalculator,
		JetStream: wmnats.JetStreamConfig{
			// Provisioning is done here: Watermill's asks the server
			// for the stream on every Publish and names the stream
			// after the subject, which cannot hold '.'.
			AutoProvision: false,
			// The marshaler sets Nats-Msg-Id; TrackMsgId would
			// overwrite it with the unsigned ID.
			TrackMsgId:     false,
			ConnectOptions: []natsgo.JSOpt{natsgo.MaxWait(c.Timeout)},
		},
	}, outbound.Logger(bc))
	if err != nil {
		conn.Close()
		return nil, err
	}
	p.conn = conn
	p.wm = wm
	p.js, err = conn.JetStream(natsgo.MaxWait(c.Timeout))
	if err != nil {
		conn.Close()
		return nil, err
	}
	return p, nil
}

// Conn returns the underlying connection.
func (p *Publisher) Conn() *natsgo.Conn { return p.conn }

// Publish publishes the messages in order, each waiting for its ack.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	if p.closed.Load() {
		return outbound.ErrClosed
	}
	if err := p.ensureStream(topic); err != nil {
		return err
	}
	err := p.wm.Publish(topic, msgs...)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, natsgo.ErrNoStreamResponse):
		// No stream captures the subject (any more): check again on the
		// next publish.
		p.mu.Lock()
		p.ready = false
		p.mu.Unlock()
		return fmt.Errorf("nats: no JetStream stream stores subject %q: %w", topic, err)
	case errors.Is(err, natsgo.ErrReconnectBufExceeded) && p.cfg.ReconnectBuffer == 0:
		return fmt.Errorf("nats: not connected to %s (status %v): %w", redact.String(p.cfg.URL), p.conn.Status(), err)
	case errors.Is(err, natsgo.ErrTimeout):
		// A publish the server refuses for lack of permission is
		// reported asynchronously; the request itself just times out.
		if d := p.denied.Load(); d != nil && strings.Contains(*d, `"`+topic+`"`) {
			return fmt.Errorf("%w: %s", natsgo.ErrPermissionViolation, *d)
		}
	}
	return err
}

// ensureStream makes sure a stream captures the subject, once.
func (p *Publisher) ensureStream(subject string) error {
	if !p.cfg.Provision {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ready {
		return nil
	}
	if !p.conn.IsConnected() {
		return fmt.Errorf("nats: not connected to %s (status %v)", redact.String(p.cfg.URL), p.conn.Status())
	}
	if err := Provision(p.js, p.cfg.Stream, subject, p.cfg); err != nil {
		return err
	}
	p.ready = true
	return nil
}

// Provision creates the stream when missing, adds the subject to it when
// it does not capture it, and widens its duplicate window.
func Provision(js natsgo.JetStreamManager, stream, subject string, c Config) error {
	info, err := js.StreamInfo(stream)
	if errors.Is(err, natsgo.ErrStreamNotFound) {
		_, err = js.AddStream(&natsgo.StreamConfig{
			Name:        stream,
			Description: "Created by sluice.",
			Subjects:    []string{subject},
			Storage:     natsgo.FileStorage,
			Retention:   natsgo.LimitsPolicy,
			Duplicates:  c.DuplicateWindow,
			MaxAge:      c.MaxAge,
			Replicas:    c.Replicas,
		})
		if errors.Is(err, natsgo.ErrStreamNameAlreadyInUse) {
			return Provision(js, stream, subject, c) // created concurrently
		}
		if err != nil {
			return fmt.Errorf("nats: create stream %s: %w", stream, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("nats: stream %s: %w", stream, err)
	}
	sc := info.Config
	update := false
	if !captures(sc.Subjects, subject) {
		sc.Subjects = append(sc.Subjects, subject)
		update = true
	}
	if c.DuplicateWindow > sc.Duplicates {
		sc.Duplicates = c.DuplicateWindow
		update = true
	}
	if update {
		if _, err := js.UpdateStream(&sc); err != nil {
			return fmt.Errorf("nats: update stream %s: %w", stream, err)
		}
	}
	return nil
}

// captures reports whether one of the subject filters matches subject.
func captures(filters []string, subject string) bool {
	for _, f := range filters {
		if subjectMatch(f, subject) {
			return true
		}
	}
	return false
}

func subjectMatch(filter, subject string) bool {
	ft, st := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, f := range ft {
		if f == ">" {
			return len(st) > i
		}
		if i >= len(st) || (f != "*" && f != st[i]) {
			return false
		}
	}
	return len(ft) == len(st)
}

// Close closes the connection. It is idempotent.
func (p *Publisher) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	return p.wm.Close()
}

// Permanent reports errors that retrying the same message cannot fix: a
// message larger than the server or stream allows, a header block too
// large, an invalid subject, a publish the account may not make.
func Permanent(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, natsgo.ErrMaxPayload) || errors.Is(err, natsgo.ErrBadSubject) ||
		errors.Is(err, natsgo.ErrPermissionViolation) || errors.Is(err, natsgo.ErrInvalidMsg) {
		return true
	}
	var api *natsgo.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode {
		case 10054, // message size exceeds maximum allowed
			10097, // header size exceeds maximum allowed
			10165: // invalid per-message TTL
			return true
		}
	}
	return false
}

// marshaler is Watermill's header marshaler plus the Nats-Msg-Id header,
// which JetStream deduplicates on: the message's stable ID signed with key
// (MsgID). The "id" metadata header keeps the plain ID.
type marshaler struct{ key []byte }

func (ma marshaler) Marshal(topic string, msg *message.Message) (*natsgo.Msg, error) {
	if len(ma.key) == 0 {
		return nil, errors.New("nats: no message id key")
	}
	m, err := (&wmnats.NATSMarshaler{}).Marshal(topic, msg)
	if err != nil {
		return nil, err
	}
	m.Header.Set(natsgo.MsgIdHdr, MsgID(ma.key, msg.UUID))
	return m, nil
}

// Unmarshal is Watermill's.
func (marshaler) Unmarshal(m *natsgo.Msg) (*message.Message, error) {
	return (&wmnats.NATSMarshaler{}).Unmarshal(m)
}

// Marshaler returns the marshaler the publisher uses, for subscribers. It
// signs the Nats-Msg-Ids of what it marshals with ProcessKey.
func Marshaler() wmnats.MarshalerUnmarshaler {
	k, _ := ProcessKey()
	return marshaler{key: k}
}
