package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/sluice-edge/sluice/engine/httpapi"
	"github.com/sluice-edge/sluice/engine/hub/protocol"
	"github.com/sluice-edge/sluice/engine/logquery"
)

// ErrEdgeOffline is returned when no edge answers a log query on its
// subject: it is not connected (or runs without a hub section).
var ErrEdgeOffline = errors.New("the edge is not connected: no answer on its logs subject")

// MaxLogsWait bounds how long a log query waits for an edge to come
// online.
const MaxLogsWait = 5 * time.Minute

// EdgeLogs asks the online edge for the records of its log file that req
// selects, over NATS request/reply (protocol.LogsSubject), and waits at
// most protocol.LogsTimeout for the answer. An edge that is not connected
// is ErrEdgeOffline at once, or, with wait > 0, is asked again (every few
// seconds) until it answers or wait has passed. The answer is checked as
// hostile: at most req's max_bytes, every record a JSON object with a time
// and a level.
func (h *Hub) EdgeLogs(ctx context.Context, edge string, req logquery.Request, wait time.Duration) (logquery.Answer, error) {
	until := time.Now().Add(min(wait, MaxLogsWait))
	backoff := 250 * time.Millisecond
	for {
		a, err := h.edgeLogs(ctx, edge, req)
		left := time.Until(until)
		if !errors.Is(err, ErrEdgeOffline) || left <= 0 {
			return a, err
		}
		t := time.NewTimer(min(backoff, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return a, err
		case <-t.C:
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// edgeLogs asks the edge once.
func (h *Hub) edgeLogs(ctx context.Context, edge string, req logquery.Request) (logquery.Answer, error) {
	subj, err := protocol.LogsSubject(edge)
	if err != nil {
		return logquery.Answer{}, err
	}
	q, err := req.Query()
	if err != nil {
		return logquery.Answer{}, fmt.Errorf("%w: %w", errBadQuery, err)
	}
	data, err := json.Marshal(req)
	if err != nil {
		return logquery.Answer{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, protocol.LogsTimeout)
	defer cancel()
	m, err := h.js.Conn().RequestWithContext(ctx, subj, data)
	switch {
	case errors.Is(err, natsgo.ErrNoResponders):
		return logquery.Answer{}, ErrEdgeOffline
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, natsgo.ErrTimeout):
		return logquery.Answer{}, fmt.Errorf("the edge did not answer within %s", protocol.LogsTimeout)
	case err != nil:
		return logquery.Answer{}, fmt.Errorf("asking the edge: %w", err)
	}
	a, err := logquery.DecodeAnswer(m.Data, int(q.MaxBytes))
	if err != nil {
		return logquery.Answer{}, err
	}
	if a.Error != "" {
		return a, fmt.Errorf("the edge: %s", clip(a.Error))
	}
	return a, nil
}

// edgeLogs answers GET /v1/edges/{id}/logs: level, since and until (RFC
// 3339), pipeline, component, grep, limit and max_bytes as in
// logquery.Request; wait (a duration up to MaxLogsWait) for an edge not
// connected yet.
func (a *API) edgeLogs(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := protocol.CheckEdgeID(id); err != nil {
		a.fail(w, r, err)
		return
	}
	req, err := logsRequestOf(r.URL.Query())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var wait time.Duration
	if s := r.URL.Query().Get("wait"); s != "" {
		if wait, err = time.ParseDuration(s); err != nil || wait < 0 || wait > MaxLogsWait {
			a.fail(w, r, fmt.Errorf("%w: wait: a duration from 0 to %s", errBadQuery, MaxLogsWait))
			return
		}
	}
	ans, err := a.hub.EdgeLogs(r.Context(), id, req, wait)
	switch {
	case errors.Is(err, ErrEdgeOffline):
		httpapi.WriteJSON(w, http.StatusServiceUnavailable, errorBody{Error: err.Error()})
	case errors.Is(err, errBadQuery), errors.Is(err, protocol.ErrFormat):
		a.fail(w, r, err)
	case err != nil:
		httpapi.WriteJSON(w, http.StatusBadGateway, errorBody{Error: err.Error()})
	default:
		httpapi.WriteJSON(w, http.StatusOK, ans)
	}
}

// logsRequestOf reads a log query from URL values.
func logsRequestOf(v url.Values) (logquery.Request, error) {
	req := logquery.Request{Level: v.Get("level"), Pipeline: v.Get("pipeline"), Component: v.Get("component"), Grep: v.Get("grep")}
	for _, p := range []struct {
		name string
		dst  **time.Time
	}{{"since", &req.Since}, {"until", &req.Until}} {
		if s := v.Get(p.name); s != "" {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return req, fmt.Errorf("%w: %s: not an RFC 3339 time", errBadQuery, p.name)
			}
			*p.dst = &t
		}
	}
	for _, p := range []struct {
		name string
		dst  *int
	}{{"limit", &req.Limit}, {"max_bytes", &req.MaxBytes}} {
		if s := v.Get(p.name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil {
				return req, fmt.Errorf("%w: %s: not a number", errBadQuery, p.name)
			}
			*p.dst = n
		}
	}
	if _, err := req.Query(); err != nil {
		return req, fmt.Errorf("%w: %w", errBadQuery, err)
	}
	return req, nil
}

// EdgeLogs asks the hub for the records of edge's log file that req
// selects; the edge must be online, or come online within wait.
func (c *Client) EdgeLogs(ctx context.Context, edge string, req logquery.Request, wait time.Duration) (logquery.Answer, error) {
	if err := protocol.CheckEdgeID(edge); err != nil {
		return logquery.Answer{}, err
	}
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("level", req.Level)
	set("pipeline", req.Pipeline)
	set("component", req.Component)
	set("grep", req.Grep)
	if req.Since != nil {
		set("since", req.Since.Format(time.RFC3339Nano))
	}
	if req.Until != nil {
		set("until", req.Until.Format(time.RFC3339Nano))
	}
	if req.Limit != 0 {
		set("limit", strconv.Itoa(req.Limit))
	}
	if req.MaxBytes != 0 {
		set("max_bytes", strconv.Itoa(req.MaxBytes))
	}
	if wait > 0 {
		set("wait", wait.String())
	}
	var ans logquery.Answer
	if err := c.do(ctx, http.MethodGet, EdgesPath+"/"+edge+"/logs", q, nil, 0, &ans); err != nil {
		return ans, err
	}
	// The hub checked the edge's answer; the client checks the hub's
	// and makes each record one line again (the API indents its JSON).
	kept := ans.Records[:0]
	for _, rec := range ans.Records {
		var b bytes.Buffer
		if json.Compact(&b, rec) == nil && b.Len() > 0 && b.Bytes()[0] == '{' {
			kept = append(kept, b.Bytes())
		}
	}
	ans.Records = kept
	return ans, nil
}
