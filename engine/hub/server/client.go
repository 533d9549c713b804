package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxAnswer bounds an answer's body.
const maxAnswer = 16 << 20

// Client speaks to a hub's API.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// NewClient returns a client of the hub at base (http://host:port or
// https://host:port) with the bearer token.
func NewClient(base, token string) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("hub url %q: want http://HOST:PORT or https://HOST:PORT", base)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return &Client{base: u, token: token, http: &http.Client{
		// Redirects are never followed: the token goes to base only.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     &http.Transport{Proxy: http.ProxyFromEnvironment, ResponseHeaderTimeout: 10 * time.Minute, MaxIdleConns: 2},
	}}, nil
}

// Close closes the client's idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// APIError is an answer other than success.
type APIError struct {
	Code    int
	Message string
}

func (e *APIError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("the hub answered %d", e.Code)
	}
	return fmt.Sprintf("the hub answered %d: %s", e.Code, e.Message)
}

// do sends a request and decodes the JSON answer into v.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body io.Reader, size int64, v any) error {
	u := *c.base
	u.Path += path
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if body != nil {
		req.ContentLength = size
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is in the message below already
		}
		return fmt.Errorf("hub at %s: %w", c.base.Host, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return fmt.Errorf("reading the hub's answer: %w", err)
	}
	if len(data) > maxAnswer {
		return fmt.Errorf("the hub's answer is larger than %d bytes", maxAnswer)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		var e errorBody
		_ = json.Unmarshal(data, &e)
		return &APIError{Code: resp.StatusCode, Message: e.Error}
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("the hub's answer: %w", err)
	}
	return nil
}

// Health asks for the instance's health and counters.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var h Health
	return h, c.do(ctx, http.MethodGet, HealthPath, nil, nil, 0, &h)
}

// Edges lists the edges.
func (c *Client) Edges(ctx context.Context) ([]EdgeView, error) {
	var es []EdgeView
	return es, c.do(ctx, http.MethodGet, EdgesPath, nil, nil, 0, &es)
}

// Edge returns one edge and its apply history.
func (c *Client) Edge(ctx context.Context, id string) (EdgeDetail, error) {
	var d EdgeDetail
	return d, c.do(ctx, http.MethodGet, EdgesPath+"/"+url.PathEscape(id), nil, nil, 0, &d)
}

// Release sends a bundle of size bytes to be released to t.
func (c *Client) Release(ctx context.Context, body io.Reader, size int64, t Target) (ReleaseView, error) {
	q := url.Values{}
	switch t.Kind {
	case "all":
		q.Set("all", "1")
	default:
		q.Set(t.Kind, t.Selector)
	}
	var v ReleaseView
	return v, c.do(ctx, http.MethodPost, ReleasesPath, q, body, size, &v)
}

// ReleaseStatus returns a release and the state of each of its edges.
func (c *Client) ReleaseStatus(ctx context.Context, id string) (ReleaseView, error) {
	var v ReleaseView
	return v, c.do(ctx, http.MethodGet, ReleasesPath+"/"+url.PathEscape(id), nil, nil, 0, &v)
}

// Alerts lists the alerts' current states: only raised ones when active,
// of one asset when asset is not empty.
func (c *Client) Alerts(ctx context.Context, active bool, asset string) ([]AlertView, error) {
	q := url.Values{}
	if active {
		q.Set("active", "1")
	}
	if asset != "" {
		q.Set("asset", asset)
	}
	var as []AlertView
	return as, c.do(ctx, http.MethodGet, AlertsPath, q, nil, 0, &as)
}

// Releases lists the newest releases, newest first.
func (c *Client) Releases(ctx context.Context) ([]ReleaseView, error) {
	var rs []ReleaseView
	return rs, c.do(ctx, http.MethodGet, ReleasesPath, nil, nil, 0, &rs)
}
