package localapi

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/sluice-edge/sluice/engine/agent"
)

// maxAnswer bounds an answer's body.
const maxAnswer = 1 << 20

// ErrUnreachable: no engine answered at the address.
var ErrUnreachable = errors.New("no engine answers")

// Client speaks to a running engine's local API.
type Client struct {
	addr  string
	token string
	http  *http.Client

	mu     sync.Mutex
	proven bool // the server proved it knows the token
}

// NewClient returns a client of the API at addr (host:port) with the
// bearer token.
func NewClient(addr, token string) *Client {
	return &Client{addr: addr, token: token, http: &http.Client{
		// Redirects are never followed: the token goes to addr only.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     &http.Transport{Proxy: nil, ResponseHeaderTimeout: 15 * time.Minute, MaxIdleConns: 1},
	}}
}

// Close closes the client's idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Import sends a bundle of size bytes, named file in the report, and
// returns the engine's report: outcome applied or rejected.
func (c *Client) Import(ctx context.Context, body io.Reader, size int64, file string) (agent.Report, error) {
	u := "http://" + c.addr + ImportPath
	if file != "" {
		u += "?" + url.Values{"file": {file}}.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, body)
	if err != nil {
		return agent.Report{}, fmt.Errorf("import: %w", err)
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	var rep agent.Report
	code, err := c.do(req, &rep)
	if err != nil {
		return rep, err
	}
	if code != http.StatusOK && code != http.StatusUnprocessableEntity && code != http.StatusRequestEntityTooLarge {
		return rep, fmt.Errorf("import: the engine answered %d", code)
	}
	return rep, nil
}

// Status asks the engine for its status.
func (c *Client) Status(ctx context.Context) (agent.Status, error) {
	var s agent.Status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.addr+StatusPath, nil)
	if err != nil {
		return s, fmt.Errorf("status: %w", err)
	}
	code, err := c.do(req, &s)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("status: the engine answered %d", code)
	}
	return s, err
}

// Ping says whether an engine answers at the address with this token.
func (c *Client) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := c.Status(ctx)
	return err
}

// hello checks, once, that the server knows the token before it is sent:
// another process may hold the port while the engine is stopped.
func (c *Client) hello(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proven {
		return nil
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	nonce := hex.EncodeToString(raw[:])
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.addr+HelloPath+"?nonce="+nonce, nil)
	if err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	resp, data, err := c.send(req)
	if err != nil {
		return err
	}
	var h helloBody
	if resp.StatusCode != http.StatusOK || json.Unmarshal(data, &h) != nil ||
		!hmac.Equal([]byte(h.Proof), []byte(Proof(c.token, nonce))) {
		return fmt.Errorf("the server at %s does not know the token (answer %d): it is not this edge's engine, or the token file changed since it started; the token was not sent", c.addr, resp.StatusCode)
	}
	c.proven = true
	return nil
}

// send sends req and reads a bounded answer.
func (c *Client) send(req *http.Request) (*http.Response, []byte, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%w at %s: %v", ErrUnreachable, c.addr, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return resp, nil, fmt.Errorf("reading the answer of %s: %w", c.addr, err)
	}
	if len(data) > maxAnswer {
		return resp, nil, fmt.Errorf("the answer of %s is larger than %d bytes", c.addr, maxAnswer)
	}
	return resp, data, nil
}

// do sends req, once the server proved it knows the token, and decodes a
// JSON answer into v; an error answer's text is returned as the error.
func (c *Client) do(req *http.Request, v any) (int, error) {
	if err := c.hello(req.Context()); err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, data, err := c.send(req)
	if err != nil {
		code := 0
		if resp != nil {
			code = resp.StatusCode
		}
		return code, err
	}
	switch resp.StatusCode {
	case http.StatusOK, http.StatusUnprocessableEntity:
		if err := json.Unmarshal(data, v); err != nil {
			return resp.StatusCode, fmt.Errorf("the answer of %s: %w", c.addr, err)
		}
		return resp.StatusCode, nil
	case http.StatusRequestEntityTooLarge:
		// A report of the rejection.
		var rep agent.Report
		if r, ok := v.(*agent.Report); ok && json.Unmarshal(data, &rep) == nil && rep.Outcome == agent.Rejected {
			*r = rep
			return resp.StatusCode, nil
		}
	}
	var e errorBody
	if json.Unmarshal(data, &e) == nil && e.Error != "" {
		return resp.StatusCode, fmt.Errorf("the engine at %s answered %d: %s", c.addr, resp.StatusCode, e.Error)
	}
	return resp.StatusCode, fmt.Errorf("the engine at %s answered %d", c.addr, resp.StatusCode)
}
