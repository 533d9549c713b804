// Package controlclient is the Go client of the edge's local control API
// (engine/control/controlapi), for applications that run on the edge or
// next to it. A Client is a control.Submitter: code written against the
// arbiter runs unchanged against a remote one.
package controlclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/sluice-edge/sluice/engine/control"
	"github.com/sluice-edge/sluice/engine/control/controlapi"
)

// maxAnswer bounds an answer's body.
const maxAnswer = 16 << 20

// Client talks to one control API.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// New returns a client of the API at base (for example
// "http://127.0.0.1:7420") using token. hc nil takes a client without an
// overall timeout (long polls are bounded by the server and by ctx).
func New(base, token string, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{}
	}
	return &Client{base: base, token: token, hc: hc}
}

// Error is an answer other than success. It wraps control.ErrInvalid
// (400), control.ErrRejected and control.ErrLeased (409),
// control.ErrExpired (410) or control.ErrNoLease (404 on release) so that
// errors.Is works as with the arbiter.
type Error struct {
	Code    int
	Message string
	wrapped error
}

func (e *Error) Error() string { return fmt.Sprintf("control api: %d: %s", e.Code, e.Message) }

// Unwrap returns the control error the answer stands for, if any.
func (e *Error) Unwrap() error { return e.wrapped }

// do sends a request and decodes a 2xx answer into out; an error answer
// is decoded into an Answer.
func (c *Client) do(ctx context.Context, method, path string, in, out any) (int, *controlapi.Answer, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("control api: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("control api: %w", err)
	}
	if resp.StatusCode/100 == 2 {
		if out != nil && resp.StatusCode != http.StatusNoContent {
			if err := json.Unmarshal(data, out); err != nil {
				return resp.StatusCode, nil, fmt.Errorf("control api: answer: %w", err)
			}
		}
		return resp.StatusCode, nil, nil
	}
	var a controlapi.Answer
	if json.Unmarshal(data, &a) != nil || a.Error == "" {
		a.Error = http.StatusText(resp.StatusCode)
	}
	e := &Error{Code: resp.StatusCode, Message: a.Error}
	switch resp.StatusCode {
	case http.StatusBadRequest:
		e.wrapped = control.ErrInvalid
	case http.StatusConflict:
		e.wrapped = control.ErrRejected
		if a.Lease != nil || a.Record != nil && bytes.Contains([]byte(a.Error), []byte(control.ErrLeased.Error())) {
			e.wrapped = errors.Join(control.ErrRejected, control.ErrLeased)
		}
	case http.StatusGone:
		e.wrapped = control.ErrExpired
	case http.StatusNotFound:
		if path != "" && method == http.MethodDelete {
			e.wrapped = control.ErrNoLease
		}
	}
	return resp.StatusCode, &a, e
}

// Submit submits a command; see control.Arbiter.Submit. A rejected or
// expired command returns its record with the error.
func (c *Client) Submit(ctx context.Context, cmd control.Command) (control.Record, error) {
	req := controlapi.CommandRequest{ID: cmd.ID, Product: cmd.Product, Asset: cmd.Asset, Service: cmd.Service, Inputs: cmd.Inputs,
		Origin: cmd.Origin, Class: cmd.Class, Lease: cmd.Lease, IdempotencyKey: cmd.IdempotencyKey, Expiry: cmd.Expiry, Requested: cmd.Requested}
	if cmd.Timeout > 0 {
		req.Timeout = cmd.Timeout.String()
	}
	var rec control.Record
	_, a, err := c.do(ctx, http.MethodPost, controlapi.CommandsPath, req, &rec)
	if a != nil && a.Record != nil {
		rec = *a.Record
	}
	return rec, err
}

// Get returns a record.
func (c *Client) Get(ctx context.Context, id string) (control.Record, error) {
	var rec control.Record
	_, _, err := c.do(ctx, http.MethodGet, controlapi.CommandsPath+"/"+url.PathEscape(id), nil, &rec)
	return rec, err
}

// Wait waits until the record has a final status or ctx ends, polling the
// server in long polls of at most controlapi.MaxWait.
func (c *Client) Wait(ctx context.Context, id string) (control.Record, error) {
	for {
		d := controlapi.DefaultWait
		if dl, ok := ctx.Deadline(); ok {
			d = min(d, max(time.Until(dl), time.Millisecond))
		}
		var rec control.Record
		code, _, err := c.do(ctx, http.MethodGet, controlapi.CommandsPath+"/"+url.PathEscape(id)+"/wait?timeout="+d.String(), nil, &rec)
		if err != nil {
			return rec, err
		}
		if code == http.StatusOK {
			return rec, nil
		}
		if err := ctx.Err(); err != nil {
			return rec, err
		}
	}
}

// List returns the records f selects.
func (c *Client) List(ctx context.Context, f control.Filter) ([]control.Record, error) {
	var out []control.Record
	_, _, err := c.do(ctx, http.MethodGet, controlapi.CommandsPath+query(f), nil, &out)
	return out, err
}

// Audit returns the audit entries f selects.
func (c *Client) Audit(ctx context.Context, f control.Filter) ([]control.Transition, error) {
	var out []control.Transition
	_, _, err := c.do(ctx, http.MethodGet, controlapi.AuditPath+query(f), nil, &out)
	return out, err
}

func query(f control.Filter) string {
	q := url.Values{}
	for k, v := range map[string]string{"id": f.ID, "asset": f.Asset, "origin": f.Origin, "status": string(f.Status)} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.After > 0 {
		q.Set("after", strconv.FormatUint(f.After, 10))
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// TakeLease takes or renews a lease. When another holds it, the error
// wraps control.ErrLeased and the lease returned is theirs.
func (c *Client) TakeLease(ctx context.Context, req control.LeaseRequest) (control.Lease, error) {
	var l control.Lease
	_, a, err := c.do(ctx, http.MethodPost, controlapi.LeasesPath, controlapi.LeaseBody{Asset: req.Asset, Holder: req.Holder,
		Origin: req.Origin, Class: req.Class, For: req.For.String(), Reason: req.Reason}, &l)
	if err != nil && a != nil && a.Lease != nil {
		var e *Error
		if errors.As(err, &e) {
			e.wrapped = control.ErrLeased
		}
		l = *a.Lease
	}
	return l, err
}

// ReleaseLease gives up holder's lease on asset.
func (c *Client) ReleaseLease(ctx context.Context, asset, holder string) error {
	_, _, err := c.do(ctx, http.MethodDelete, controlapi.LeasesPath+"/"+url.PathEscape(asset)+"?holder="+url.QueryEscape(holder), nil, nil)
	return err
}

// Leases returns the leases in force.
func (c *Client) Leases(ctx context.Context) ([]control.Lease, error) {
	var out []control.Lease
	_, _, err := c.do(ctx, http.MethodGet, controlapi.LeasesPath, nil, &out)
	return out, err
}

var _ control.Submitter = (*Client)(nil)
