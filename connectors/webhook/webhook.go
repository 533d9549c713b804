// Package webhook provides the "http" publisher: it POSTs each message to
// a URL through Watermill's HTTP publisher, one request at a time, and
// counts a message as delivered only when the server answered 2xx.
//
// The body is the payload; headers carry the stable ID (Idempotency-Key
// and Watermill's Message-Uuid), the metadata as JSON (Watermill's
// Message-Metadata) and the content type of the encoding, so Watermill's
// HTTP subscriber can receive it. A 4xx answer other than 408 and 429
// means the server will never take the message (permanent); 408, 429, 5xx
// and network errors are transient.
package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	wmhttp "github.com/ThreeDotsLabs/watermill-http/v2/pkg/http"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/redact"
	"github.com/sluice-edge/sluice/engine/spec"
)

// Spec declares the http publisher.
var Spec = spec.Spec{
	Name:    "http",
	Summary: "Sends each message as an HTTP request (webhook); 2xx means delivered.",
	Description: "Each message is one request with the payload as body. Headers: `Content-Type` " +
		"(`application/json` or `application/vnd.apache.arrow.stream`), `Idempotency-Key` and " +
		"`Message-Uuid` (the stable ID), `Message-Metadata` (the metadata as a JSON object), and " +
		"`headers`. A 4xx answer except 408 and 429 is permanent (the message goes to the dead-letter " +
		"segment); 408, 429, 5xx and network errors are retried.",
	Fields: append([]spec.Field{
		{Name: "url", Type: spec.String,
			Description: "Endpoint URL (http or https).", Example: "https://ingest.example.com/v1/sites/site-a/stats"},
		{Name: "method", Type: spec.String, Default: "POST", Enum: []string{"POST", "PUT"},
			Description: "Request method."},
		{Name: "headers", Type: spec.Map, Elem: spec.String, Optional: true,
			Description: "Extra request headers, for example Authorization.",
			Example:     map[string]any{"Authorization": "Bearer ${INGEST_TOKEN}"}},
		{Name: "timeout", Type: spec.Duration, Default: "10s",
			Description: "Timeout of each request, including reading the answer."},
		outbound.TLSField(),
	}, outbound.EncodingFields(outbound.JSONBatch)...),
	Example: `sinks:
  ingest:
    type: http
    input: stats
    url: https://ingest.example.com/v1/sites/site-a/stats
    headers: {Authorization: "Bearer ${INGEST_TOKEN}"}
    encoding: json_batch`,
}

func init() { outbound.RegisterPublisher(Spec, New) }

// New builds an http publisher from its configuration.
func New(cfg *spec.Config, bc engine.BuildContext) (*outbound.Publisher, error) {
	if err := outbound.Require(cfg, "url"); err != nil {
		return nil, err
	}
	target := cfg.String("url")
	u, err := redact.ParseURL(target)
	if err != nil {
		return nil, cfg.Errorf("url", "%v", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, cfg.Errorf("url", "url %s must be an absolute http or https URL", redact.URL(target))
	}
	if err := outbound.Positive(cfg, "timeout"); err != nil {
		return nil, err
	}
	headers := http.Header{}
	for _, e := range cfg.Entries("headers") {
		s, _ := e.Value.(string)
		headers.Set(e.Key, s)
	}
	tlsc, err := outbound.TLSConfig(cfg, bc)
	if err != nil {
		return nil, err
	}
	if tlsc != nil && u.Scheme != "https" {
		return nil, cfg.Errorf("tls", "tls.enabled needs an https:// URL (the request to %s would go in plaintext)", redact.URL(target))
	}
	if bc.DryRun {
		// Checked; nothing is connected.
		return nil, nil
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 2
	if tlsc != nil {
		transport.TLSClientConfig = tlsc
	}
	client := &http.Client{
		Transport: statusTransport{transport},
		Timeout:   cfg.Duration("timeout"),
	}
	method := cfg.String("method")
	pub, err := wmhttp.NewPublisher(wmhttp.PublisherConfig{
		MarshalMessageFunc:                marshal(method, headers),
		Client:                            client,
		DoNotLogResponseBodyOnServerError: true,
	}, outbound.Logger(bc))
	if err != nil {
		return nil, cfg.Errorf("url", "%v", err)
	}
	return outbound.New(cfg, &Publisher{wm: pub, transport: transport}, target, Permanent)
}

// marshal builds the request of a message; the topic is the URL.
func marshal(method string, extra http.Header) wmhttp.MarshalMessageFunc {
	return func(target string, msg *message.Message) (*http.Request, error) {
		req, err := http.NewRequestWithContext(msg.Context(), method, target, bytes.NewReader(msg.Payload))
		if err != nil {
			return nil, err
		}
		for k, v := range extra {
			req.Header[k] = v
		}
		md, err := json.Marshal(msg.Metadata)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", outbound.Encoding(msg.Metadata.Get(outbound.MetaEncoding)).ContentType())
		req.Header.Set("Idempotency-Key", msg.UUID)
		req.Header.Set(wmhttp.HeaderUUID, msg.UUID)
		req.Header.Set(wmhttp.HeaderMetadata, string(md))
		req.Header.Set("User-Agent", "sluice")
		return req, nil
	}
}

// Publisher sends requests through Watermill's HTTP publisher.
type Publisher struct {
	wm        *wmhttp.Publisher
	transport *http.Transport

	mu     sync.RWMutex
	closed bool
}

// Publish sends the messages in order, one request each, and returns at
// the first that is not answered 2xx.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return outbound.ErrClosed
	}
	return p.wm.Publish(topic, msgs...)
}

// Close drops idle connections. It is idempotent.
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	p.transport.CloseIdleConnections()
	return p.wm.Close()
}

// StatusError is a final answer other than 2xx.
type StatusError struct {
	Code int
	// Body is the start of the answer's body.
	Body string
	// RetryAfter is the delay a 429 or 503 answer asked for (0 when none).
	RetryAfter time.Duration
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("server answered %d %s", e.Code, http.StatusText(e.Code))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// Permanent reports whether the server will never take the message: a 4xx
// answer other than 408 Request Timeout and 429 Too Many Requests.
func Permanent(err error) bool {
	var se *StatusError
	if !errors.As(err, &se) {
		return false
	}
	return se.Code >= 400 && se.Code < 500 && se.Code != http.StatusRequestTimeout && se.Code != http.StatusTooManyRequests
}

// statusTransport turns answers other than 2xx (and redirects the client
// follows) into a *StatusError, so that the status reaches Permanent
// through Watermill's error wrapping.
type statusTransport struct{ http.RoundTripper }

func (t statusTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.RoundTripper.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	code := resp.StatusCode
	if code >= 200 && code < 300 {
		return resp, nil
	}
	if code >= 300 && code < 400 && resp.Header.Get("Location") != "" {
		return resp, nil // the client follows it
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_ = resp.Body.Close()
	se := &StatusError{Code: code, Body: strings.TrimSpace(string(body))}
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		if s, err := strconv.Atoi(ra); err == nil && s >= 0 {
			se.RetryAfter = time.Duration(s) * time.Second
		} else if t, err := http.ParseTime(ra); err == nil {
			se.RetryAfter = max(0, time.Until(t))
		}
	}
	return nil, se
}
