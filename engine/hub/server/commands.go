package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/httpapi"
	"github.com/sluice-edge/sluice/engine/hub/protocol"
	"github.com/sluice-edge/sluice/engine/hub/store"
)

// CommandsPath is the API's path of commands.
const CommandsPath = "/v1/commands"

// DefaultCommandExpiry is the deadline of a command that sets none.
const DefaultCommandExpiry = 5 * time.Minute

// maxCommandRequest bounds the body of POST /v1/commands.
const maxCommandRequest = 64 << 10

// ErrNotPublished is returned when a command was recorded but could not
// be handed to the broker; its record is failed.
var ErrNotPublished = errors.New("command not published")

// CommandView is one command in the API: issued by the hub or reported by
// an edge (any origin).
type CommandView struct {
	ID      string         `json:"id"`
	Edge    string         `json:"edge"`
	Product string         `json:"product"`
	Asset   string         `json:"asset"`
	Service string         `json:"service"`
	Inputs  map[string]any `json:"inputs"`
	Origin  string         `json:"origin"`
	Class   string         `json:"class"`
	// Status is the edge's status of the record, or "issued" before the
	// edge reported it; Reason why it is there.
	Status  string     `json:"status"`
	Reason  string     `json:"reason"`
	Expiry  *time.Time `json:"expiry"`
	Created time.Time  `json:"created"`
	Updated time.Time  `json:"updated"`
	Version uint64     `json:"version"`
	// IssuedBy names who issued it at the hub ("" for others).
	IssuedBy string `json:"issued_by,omitempty"`
	// Audit is the record's last audit entries at the edge, oldest first
	// (GET /v1/commands/{id} only; absent before the edge reported it).
	Audit []command.Transition `json:"audit,omitempty"`
}

// Final says whether the status is final: it changes no more.
func (v CommandView) Final() bool { return command.Status(v.Status).Final() }

func commandView(c store.Command) CommandView {
	v := CommandView{ID: c.ID, Edge: c.Edge, Product: c.Product, Asset: c.Asset, Service: c.Service, Inputs: c.Inputs,
		Origin: c.Origin, Class: c.Class, Status: c.Status, Reason: c.Reason, Expiry: opt(c.Expiry), Created: c.Created,
		Updated: c.Updated, Version: c.Version, IssuedBy: c.IssuedBy}
	if v.Inputs == nil {
		v.Inputs = map[string]any{}
	}
	return v
}

// CommandRequest is the body of POST /v1/commands.
type CommandRequest struct {
	Edge    string         `json:"edge"`
	Product string         `json:"product,omitempty"`
	Asset   string         `json:"asset"`
	Service string         `json:"service,omitempty"`
	Inputs  map[string]any `json:"inputs"`
	Class   string         `json:"class,omitempty"`
	// ExpireIn is the deadline from now ("5m"; DefaultCommandExpiry
	// when empty), at most protocol.MaxCommandExpiry.
	ExpireIn string `json:"expire_in,omitempty"`
}

// newCommandID makes a hub command id: c-<time>-<random>.
func newCommandID(now time.Time) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "c-" + now.UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b[:])
}

// IssueCommand records a command for an edge and publishes it on the
// edge's subject of protocol.CommandStream, where it waits while the edge
// is offline. The edge judges its deadline, decides through its arbiter
// and reports the record back (edge events). A command the broker did not
// take is recorded failed and ErrNotPublished returned.
func (h *Hub) IssueCommand(ctx context.Context, req CommandRequest, by string) (CommandView, error) {
	// As PostgreSQL keeps it, so the answer is what later reads show.
	now := h.opts.Now().UTC().Truncate(time.Microsecond)
	expireIn := DefaultCommandExpiry
	if req.ExpireIn != "" {
		d, err := time.ParseDuration(req.ExpireIn)
		if err != nil || d <= 0 || d > protocol.MaxCommandExpiry {
			return CommandView{}, fmt.Errorf("%w: expire_in %.40q: a duration above 0 and at most %s", ErrBody, req.ExpireIn, protocol.MaxCommandExpiry)
		}
		expireIn = d
	}
	service := req.Service
	if service == "" {
		service = command.SetPoints
	}
	pc := protocol.Command{ID: newCommandID(now), Edge: req.Edge, Product: req.Product, Asset: req.Asset, Service: service,
		Inputs: req.Inputs, Class: req.Class, Issued: now, Expiry: now.Add(expireIn), By: by}
	data, err := pc.Encode()
	if err != nil {
		return CommandView{}, err
	}
	subject, _ := protocol.CommandSubject(pc.Edge)
	c := store.Command{Edge: pc.Edge, ID: pc.ID, Product: pc.Product, Asset: pc.Asset, Service: pc.Service, Inputs: pc.Inputs,
		Origin: protocol.CommandOrigin, Class: pc.Class, Status: store.CommandIssued, Reason: "issued; waiting for the edge",
		Expiry: pc.Expiry, Created: now, Updated: now, IssuedBy: by}
	if err := h.st.InsertCommand(ctx, c); err != nil {
		return CommandView{}, err
	}
	if _, err := h.js.Publish(ctx, subject, data, jetstream.WithMsgID(pc.ID), jetstream.WithExpectStream(protocol.CommandStream)); err != nil {
		reason := "not published: " + err.Error()
		if ferr := h.st.FailIssued(context.WithoutCancel(ctx), pc.Edge, pc.ID, reason, h.opts.Now()); ferr != nil {
			h.log.Error("hub: recording an unpublished command", "id", pc.ID, "err", ferr)
		}
		return CommandView{}, fmt.Errorf("%w: %w", ErrNotPublished, err)
	}
	h.log.Info("hub: command issued", "id", pc.ID, "edge", pc.Edge, "asset", pc.Asset, "service", pc.Service, "by", by,
		"expiry", pc.Expiry.Format(time.RFC3339))
	return commandView(c), nil
}

// commandOf reads a command record from a row of protocol.ControlSchema.
// leaseEventOf reads a lease event from a row of protocol.ControlSchema
// with an empty id: its version is the entry's seq, its audit the entry
// alone, which names no command.
func leaseEventOf(r store.Row) (store.LeaseEvent, error) {
	v := values(r.Values)
	seq := v.uint(protocol.ColVersion)
	status := v.str(protocol.ColStatus)
	raw := v.str(protocol.ColRecord)
	auditRaw := v.str(protocol.ColAudit)
	if err := v.err(); err != nil {
		return store.LeaseEvent{}, err
	}
	if status != "" || raw != "" || len(auditRaw) > protocol.MaxRecordBytes {
		return store.LeaseEvent{}, errors.New("lease event: a status, a record or an audit too large")
	}
	var audit []command.Transition
	dec := json.NewDecoder(bytes.NewReader([]byte(auditRaw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&audit); err != nil {
		return store.LeaseEvent{}, fmt.Errorf("lease event: audit: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return store.LeaseEvent{}, errors.New("lease event: data after the audit")
	}
	if len(audit) != 1 {
		return store.LeaseEvent{}, fmt.Errorf("lease event: %d audit entries, want 1", len(audit))
	}
	tr := audit[0]
	switch {
	case tr.ID != "" || tr.From != "" || tr.To != "":
		return store.LeaseEvent{}, fmt.Errorf("lease event: names command %.80q", tr.ID)
	case tr.Seq != seq || seq == 0:
		return store.LeaseEvent{}, fmt.Errorf("lease event: seq %d in a row of version %d", tr.Seq, seq)
	case tr.At.IsZero() || tr.Asset == "":
		return store.LeaseEvent{}, errors.New("lease event: no time or asset")
	}
	return store.LeaseEvent{Edge: r.Edge, Seq: seq, At: tr.At, Asset: clip(tr.Asset), Origin: clip(tr.Origin), Reason: clip(tr.Reason)}, nil
}

func commandOf(r store.Row) (store.Command, error) {
	var c store.Command
	v := values(r.Values)
	id := v.str(protocol.ColID)
	version := v.uint(protocol.ColVersion)
	status := v.str(protocol.ColStatus)
	raw := v.str(protocol.ColRecord)
	auditRaw := v.str(protocol.ColAudit)
	if err := v.err(); err != nil {
		return c, err
	}
	if len(raw) > protocol.MaxRecordBytes {
		return c, fmt.Errorf("command record of %d bytes, more than %d", len(raw), protocol.MaxRecordBytes)
	}
	var rec command.Command
	dec := json.NewDecoder(bytes.NewReader([]byte(raw)))
	dec.UseNumber()
	if err := dec.Decode(&rec); err != nil {
		return c, fmt.Errorf("command record: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return c, errors.New("command record: data after the object")
	}
	switch {
	case rec.ID == "" || rec.ID != id:
		return c, fmt.Errorf("command record %.80q in a row of id %.80q", rec.ID, id)
	case rec.Version != version || version == 0:
		return c, fmt.Errorf("command record %.80q: version %d in a row of version %d", id, rec.Version, version)
	case string(rec.Status) != status || !rec.Status.Known():
		return c, fmt.Errorf("command record %.80q: status %.40q", id, rec.Status)
	case rec.Asset == "" || rec.Created.IsZero():
		return c, fmt.Errorf("command record %.80q: no asset or creation time", id)
	}
	var audit []command.Transition
	if auditRaw != "" {
		if len(auditRaw) > protocol.MaxRecordBytes {
			return c, fmt.Errorf("command record %.80q: audit of %d bytes", id, len(auditRaw))
		}
		if err := json.Unmarshal([]byte(auditRaw), &audit); err != nil {
			return c, fmt.Errorf("command record %.80q: audit: %w", id, err)
		}
		if len(audit) > 2*protocol.MaxRecordAudit {
			audit = audit[len(audit)-2*protocol.MaxRecordAudit:]
		}
		for i := range audit {
			audit[i].Reason = clip(audit[i].Reason)
		}
	}
	if audit == nil {
		audit = []command.Transition{}
	}
	auditJSON, err := json.Marshal(audit)
	if err != nil {
		return c, fmt.Errorf("command record %.80q: audit: %w", id, err)
	}
	updated := rec.Updated
	if updated.IsZero() {
		updated = r.Time
	}
	// The whole record is kept without the device's output (kept
	// bounded by the edge; the hub has no use for it).
	rec.Output = nil
	whole, err := json.Marshal(rec)
	if err != nil {
		return c, fmt.Errorf("command record %.80q: %w", id, err)
	}
	return store.Command{Edge: r.Edge, ID: rec.ID, Product: rec.Product, Asset: rec.Asset, Service: rec.Service,
		Inputs: rec.Inputs, Origin: rec.Origin, Class: rec.Class, Status: string(rec.Status), Reason: clip(rec.Reason),
		Expiry: rec.Expiry, Created: rec.Created, Updated: updated, Version: rec.Version, Record: whole, Audit: auditJSON}, nil
}

// issueCommand serves POST /v1/commands.
func (a *API) issueCommand(w http.ResponseWriter, r *http.Request) {
	var req CommandRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxCommandRequest))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(&req); err != nil {
		a.fail(w, r, fmt.Errorf("%w: %w", ErrBody, err))
		return
	}
	if _, err := dec.Token(); err != io.EOF {
		a.fail(w, r, fmt.Errorf("%w: data after the object", ErrBody))
		return
	}
	v, err := a.hub.IssueCommand(r.Context(), req, "api")
	if errors.Is(err, ErrNotPublished) {
		a.log.Warn("hub api: command not published", "err", err)
		httpapi.WriteJSON(w, http.StatusServiceUnavailable, errorBody{Error: "the command is recorded failed: the broker did not take it; try again"})
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusCreated, v)
}

// commands answers a page of the commands, newest first, filtered by
// edge=, asset= and status=.
func (a *API) commands(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.CommandFilter{Edge: q.Get("edge"), Asset: q.Get("asset"), Status: q.Get("status")}
	if f.Edge != "" {
		if err := protocol.CheckEdgeID(f.Edge); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	for name, s := range map[string]string{"asset": f.Asset, "status": f.Status} {
		if err := checkText(s); err != nil {
			a.fail(w, r, fmt.Errorf("%w: %s: %w", errBadQuery, name, err))
			return
		}
	}
	limit, after, err := pageQuery(r, 3)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var from *store.CommandKey
	if after != nil {
		t, err := parseCursorTime(after[0])
		if err != nil {
			a.fail(w, r, err)
			return
		}
		from = &store.CommandKey{Created: t, Edge: after[1], ID: after[2]}
	}
	p := newPage(limit)
	err = a.hub.st.CommandsAfter(r.Context(), f, from, limit+1, func(c store.Command) bool {
		return p.add(commandView(c), func() string {
			return encodeCursor(cursorTime(c.Created), c.Edge, c.ID)
		})
	})
	a.writePage(w, r, p, err)
}

// command answers one command; edge= picks the edge of an id that
// several edges use.
func (a *API) command(w http.ResponseWriter, r *http.Request) {
	id, edge := r.PathValue("id"), r.URL.Query().Get("edge")
	if err := checkText(id); err != nil || id == "" {
		a.fail(w, r, fmt.Errorf("%w: command id", errBadQuery))
		return
	}
	if edge != "" {
		if err := protocol.CheckEdgeID(edge); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	c, err := a.hub.st.GetCommand(r.Context(), edge, id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	v := commandView(c)
	if len(c.Audit) > 0 {
		if err := json.Unmarshal(c.Audit, &v.Audit); err != nil {
			a.fail(w, r, fmt.Errorf("audit of command %s: %w", c.ID, err))
			return
		}
	}
	httpapi.WriteJSON(w, http.StatusOK, v)
}
