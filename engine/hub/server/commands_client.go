package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// IssueCommand asks the hub to issue a command to an edge.
func (c *Client) IssueCommand(ctx context.Context, req CommandRequest) (CommandView, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return CommandView{}, fmt.Errorf("hub: command: %w", err)
	}
	var v CommandView
	return v, c.do(ctx, http.MethodPost, CommandsPath, nil, bytes.NewReader(body), int64(len(body)), &v)
}

// CommandFilter selects the commands of a listing; empty fields select
// all.
type CommandFilter struct {
	Edge, Asset, Status string
}

// CommandsPage asks for the commands f selects after the cursor after
// (from the newest when empty), at most limit (the hub's default when 0),
// newest first. It returns the cursor of the next page, "" when no
// command remains.
func (c *Client) CommandsPage(ctx context.Context, f CommandFilter, after string, limit int) ([]CommandView, string, error) {
	q := pageValues(after, limit)
	for k, v := range map[string]string{"edge": f.Edge, "asset": f.Asset, "status": f.Status} {
		if v != "" {
			q.Set(k, v)
		}
	}
	var cs []CommandView
	next, err := c.getPage(ctx, CommandsPath, q, &cs)
	return cs, next, err
}

// Commands lists the commands f selects, page after page.
func (c *Client) Commands(ctx context.Context, f CommandFilter) ([]CommandView, error) {
	return all(ctx, func(ctx context.Context, after string) ([]CommandView, string, error) {
		return c.CommandsPage(ctx, f, after, 0)
	})
}

// Command returns one command; edge ("" for any) picks the edge of an id
// several edges use.
func (c *Client) Command(ctx context.Context, edge, id string) (CommandView, error) {
	q := url.Values{}
	if edge != "" {
		q.Set("edge", edge)
	}
	var v CommandView
	return v, c.do(ctx, http.MethodGet, CommandsPath+"/"+url.PathEscape(id), q, nil, 0, &v)
}

// WaitCommand asks for a command every poll until its status is final or
// ctx ends; it returns the command as last seen (with ctx's error when not
// final).
func (c *Client) WaitCommand(ctx context.Context, edge, id string, poll time.Duration) (CommandView, error) {
	if poll <= 0 {
		poll = 500 * time.Millisecond
	}
	for {
		v, err := c.Command(ctx, edge, id)
		if err == nil && v.Final() {
			return v, nil
		}
		if err != nil && ctx.Err() == nil {
			return v, err
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, ctx.Err()
		case <-t.C:
		}
	}
}
