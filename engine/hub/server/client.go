package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
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
	_, err := c.doHeader(ctx, method, path, q, body, size, v)
	return err
}

// doHeader is do that also returns the answer's header.
func (c *Client) doHeader(ctx context.Context, method, path string, q url.Values, body io.Reader, size int64, v any) (http.Header, error) {
	u := *c.base
	// path is escaped (an alert id may hold a "/", as %2F): keep it so.
	unesc, err := url.PathUnescape(path)
	if err != nil {
		return nil, fmt.Errorf("hub: path %.80q: %w", path, err)
	}
	u.RawPath = u.EscapedPath() + path
	u.Path += unesc
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
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
		return nil, fmt.Errorf("hub at %s: %w", c.base.Host, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return nil, fmt.Errorf("reading the hub's answer: %w", err)
	}
	if len(data) > maxAnswer {
		return nil, fmt.Errorf("the hub's answer is larger than %d bytes", maxAnswer)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		var e errorBody
		_ = json.Unmarshal(data, &e)
		return nil, &APIError{Code: resp.StatusCode, Message: e.Error}
	}
	if err := json.Unmarshal(data, v); err != nil {
		return nil, fmt.Errorf("the hub's answer: %w", err)
	}
	return resp.Header, nil
}

// Health asks for the instance's health and counters.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var h Health
	return h, c.do(ctx, http.MethodGet, HealthPath, nil, nil, 0, &h)
}

// pageValues are the query of a page: after (none when empty) and limit
// (the hub's default when 0).
func pageValues(after string, limit int) url.Values {
	q := url.Values{}
	if after != "" {
		q.Set("after", after)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	return q
}

// getPage asks for one page of the listing at path and returns the
// cursor of the next one ("" on the last page).
func (c *Client) getPage(ctx context.Context, path string, q url.Values, v any) (string, error) {
	h, err := c.doHeader(ctx, http.MethodGet, path, q, nil, 0, v)
	if err != nil {
		return "", err
	}
	return h.Get(NextHeader), nil
}

// all gathers every page of a listing.
func all[T any](ctx context.Context, page func(ctx context.Context, after string) ([]T, string, error)) ([]T, error) {
	var out []T
	after := ""
	for {
		items, next, err := page(ctx, after)
		if err != nil {
			return nil, err
		}
		out = append(out, items...)
		if next == "" {
			return out, nil
		}
		if next == after {
			return nil, errors.New("the hub answered the same page cursor twice")
		}
		after = next
	}
}

// EdgesPage asks for the edges after the cursor after (from the first
// when empty), at most limit (the hub's default when 0), by id. It
// returns the cursor of the next page, "" when no edge remains.
func (c *Client) EdgesPage(ctx context.Context, after string, limit int) ([]EdgeView, string, error) {
	var es []EdgeView
	next, err := c.getPage(ctx, EdgesPath, pageValues(after, limit), &es)
	return es, next, err
}

// Edges lists every edge, page after page, and holds them all: EdgesPage
// reads a listing of any length.
func (c *Client) Edges(ctx context.Context) ([]EdgeView, error) {
	return all(ctx, func(ctx context.Context, after string) ([]EdgeView, string, error) { return c.EdgesPage(ctx, after, 0) })
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

// ReleaseStatusPage returns release id with the state of its edges after
// the cursor after (from the first when empty), at most limit (the hub's
// default when 0), by edge, and the cursor of the next page ("" when no
// edge remains). Counts counts every edge of the release.
func (c *Client) ReleaseStatusPage(ctx context.Context, id, after string, limit int) (ReleaseView, string, error) {
	var v ReleaseView
	next, err := c.getPage(ctx, ReleasesPath+"/"+url.PathEscape(id), pageValues(after, limit), &v)
	return v, next, err
}

// ReleaseStatus returns a release and the state of each of its edges,
// read page after page (ReleaseStatusPage); Counts are those of the last
// page read.
func (c *Client) ReleaseStatus(ctx context.Context, id string) (ReleaseView, error) {
	var out ReleaseView
	edges, err := all(ctx, func(ctx context.Context, after string) ([]ReleaseEdgeView, string, error) {
		v, next, err := c.ReleaseStatusPage(ctx, id, after, 0)
		edges := v.Edges
		v.Edges = nil
		out = v
		return edges, next, err
	})
	if err != nil {
		return ReleaseView{}, err
	}
	if edges == nil {
		edges = []ReleaseEdgeView{}
	}
	out.Edges = edges
	return out, nil
}

// LeaseEventsPage asks for the lease events of edge (of one asset when
// asset is not empty), newest first, after the cursor after (from the
// newest when empty), at most limit (the hub's default when 0). It
// returns the cursor of the next page, "" when none remains.
func (c *Client) LeaseEventsPage(ctx context.Context, edge, asset, after string, limit int) ([]LeaseEventView, string, error) {
	q := pageValues(after, limit)
	if asset != "" {
		q.Set("asset", asset)
	}
	var es []LeaseEventView
	next, err := c.getPage(ctx, EdgesPath+"/"+url.PathEscape(edge)+"/leases", q, &es)
	return es, next, err
}

// AlertHistoryPage asks for the recorded changes of alert id of edge,
// newest first, after the cursor after (from the newest when empty), at
// most limit (the hub's default when 0). It returns the cursor of the
// next page, "" when none remains.
func (c *Client) AlertHistoryPage(ctx context.Context, edge, id, after string, limit int) ([]AlertTransitionView, string, error) {
	q := pageValues(after, limit)
	q.Set("edge", edge)
	var ts []AlertTransitionView
	next, err := c.getPage(ctx, AlertsPath+"/"+url.PathEscape(id)+"/history", q, &ts)
	return ts, next, err
}

// AlertsPage asks for the alerts' current states after the cursor after
// (from the first when empty), at most limit (the hub's default when 0),
// by asset, id and edge: only raised ones when active, of one asset when
// asset is not empty. It returns the cursor of the next page, "" when no
// alert remains.
func (c *Client) AlertsPage(ctx context.Context, active bool, asset, after string, limit int) ([]AlertView, string, error) {
	q := pageValues(after, limit)
	if active {
		q.Set("active", "1")
	}
	if asset != "" {
		q.Set("asset", asset)
	}
	var as []AlertView
	next, err := c.getPage(ctx, AlertsPath, q, &as)
	return as, next, err
}

// Alerts lists the alerts' current states as AlertsPage does, page after
// page, and holds them all: AlertsPage reads a listing of any length.
func (c *Client) Alerts(ctx context.Context, active bool, asset string) ([]AlertView, error) {
	return all(ctx, func(ctx context.Context, after string) ([]AlertView, string, error) {
		return c.AlertsPage(ctx, active, asset, after, 0)
	})
}

// ReleasesPage asks for the releases after the cursor after (from the
// newest when empty), at most limit (the hub's default when 0), newest
// first, each with the counts of its edges' states and its first 100
// edges. It returns the cursor of the next page, "" when no release
// remains.
func (c *Client) ReleasesPage(ctx context.Context, after string, limit int) ([]ReleaseView, string, error) {
	var rs []ReleaseView
	next, err := c.getPage(ctx, ReleasesPath, pageValues(after, limit), &rs)
	return rs, next, err
}

// Releases lists every release as ReleasesPage does, page after page, and
// holds them all: ReleasesPage reads a listing of any length.
func (c *Client) Releases(ctx context.Context) ([]ReleaseView, error) {
	return all(ctx, func(ctx context.Context, after string) ([]ReleaseView, string, error) {
		return c.ReleasesPage(ctx, after, 0)
	})
}
