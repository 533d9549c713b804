// Package controlapi is the edge's local control API: HTTP and JSON over
// an engine/control arbiter, for applications on the edge and for
// third-party systems next to it. Every request carries
// "Authorization: Bearer <token>"; the listener binds to 127.0.0.1 unless
// told otherwise.
//
// Endpoints (bodies and answers are JSON):
//
//	POST   /v1/control/commands            submit a command (CommandRequest):
//	                                       200 and the record when queued (or the earlier
//	                                       record for a repeated idempotency key),
//	                                       409 and the record when rejected, 410 and the
//	                                       record when already expired, 400 when malformed
//	GET    /v1/control/commands/{id}       the record; 404 if unknown
//	GET    /v1/control/commands/{id}/wait?timeout=30s
//	                                       waits (at most MaxWait) for a final status:
//	                                       200 and the record when final, 202 and the
//	                                       record when still in progress
//	GET    /v1/control/commands?asset=&origin=&status=&limit=
//	                                       records, oldest first
//	GET    /v1/control/audit?id=&asset=&origin=&status=&after=&limit=
//	                                       audit entries, oldest first
//	GET    /v1/control/leases              the leases in force
//	POST   /v1/control/leases              take or renew a lease (LeaseBody): 200 and
//	                                       the lease, 409 and the holder's lease when held
//	DELETE /v1/control/leases/{asset}?holder=H
//	                                       release a lease: 204, 404 when not held
//
// Errors are answered with {"error": "..."} (and the record when there is
// one, see Answer).
package controlapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/sluice-edge/sluice/engine/control"
	"github.com/sluice-edge/sluice/engine/httpapi"
	"github.com/sluice-edge/sluice/engine/jsonstrict"
)

// Paths of the API.
const (
	CommandsPath = "/v1/control/commands"
	AuditPath    = "/v1/control/audit"
	LeasesPath   = "/v1/control/leases"
)

// Bounds on requests.
const (
	// MaxBody bounds a request's body.
	MaxBody = 64 << 10
	// MaxWait bounds a long poll; DefaultWait is used when none is asked.
	MaxWait     = 60 * time.Second
	DefaultWait = 30 * time.Second
	// maxWaiters bounds the long polls served at once.
	maxWaiters = 8
	// maxConns bounds the connections the standalone listener holds.
	maxConns = 32
)

// Service is what the API serves; *control.Arbiter is one.
type Service interface {
	control.Submitter
	Get(id string) (control.Record, bool)
	Wait(ctx context.Context, id string) (control.Record, error)
	List(f control.Filter) []control.Record
	Audit(f control.Filter) []control.Transition
	TakeLease(ctx context.Context, req control.LeaseRequest) (control.Lease, error)
	ReleaseLease(ctx context.Context, asset, holder string) error
	Leases() []control.Lease
}

// CommandRequest is the body of a submission. Durations are Go durations
// ("30s", "5m"); times are RFC 3339.
type CommandRequest struct {
	ID             string         `json:"id,omitempty"`
	Product        string         `json:"product,omitempty"`
	Asset          string         `json:"asset"`
	Service        string         `json:"service,omitempty"`
	Inputs         map[string]any `json:"inputs,omitempty"`
	Origin         string         `json:"origin"`
	Class          string         `json:"class,omitempty"`
	Lease          string         `json:"lease,omitempty"`
	IdempotencyKey string         `json:"idempotency_key,omitempty"`
	Timeout        string         `json:"timeout,omitempty"`
	// Expiry is the deadline after which the command must not run;
	// ExpireIn says the same relative to the edge's clock. Set one.
	Expiry    time.Time `json:"expiry,omitzero"`
	ExpireIn  string    `json:"expire_in,omitempty"`
	Requested time.Time `json:"requested,omitzero"`
}

// LeaseBody is the body of a lease request.
type LeaseBody struct {
	Asset  string `json:"asset"`
	Holder string `json:"holder"`
	Origin string `json:"origin"`
	Class  string `json:"class,omitempty"`
	For    string `json:"for"`
	Reason string `json:"reason,omitempty"`
}

// Answer is the body of an error answer; Record is set when the command
// was recorded (rejected or expired), Lease when a lease is held by
// another.
type Answer struct {
	Error  string          `json:"error"`
	Record *control.Record `json:"record,omitempty"`
	Lease  *control.Lease  `json:"lease,omitempty"`
}

// Command turns a request into a command; now is the edge's time (for
// ExpireIn).
func (r *CommandRequest) Command(now time.Time) (control.Command, error) {
	c := control.Command{ID: r.ID, Product: r.Product, Asset: r.Asset, Service: r.Service, Origin: r.Origin, Class: r.Class,
		Lease: r.Lease, IdempotencyKey: r.IdempotencyKey, Expiry: r.Expiry, Requested: r.Requested}
	if len(r.Inputs) > control.MaxInputs {
		return c, fmt.Errorf("%w: %d inputs, more than %d", control.ErrInvalid, len(r.Inputs), control.MaxInputs)
	}
	if r.Inputs != nil {
		c.Inputs = make(map[string]any, len(r.Inputs))
		for k, v := range r.Inputs {
			if n, ok := v.(json.Number); ok {
				if i, err := n.Int64(); err == nil {
					v = i
				} else if f, err := n.Float64(); err == nil {
					v = f
				} else {
					return c, fmt.Errorf("%w: input %q: %w", control.ErrInvalid, k, err)
				}
			}
			c.Inputs[k] = v
		}
	}
	if r.Timeout != "" {
		d, err := time.ParseDuration(r.Timeout)
		if err != nil {
			return c, fmt.Errorf("%w: timeout: %w", control.ErrInvalid, err)
		}
		c.Timeout = d
	}
	if r.ExpireIn != "" {
		if !r.Expiry.IsZero() {
			return c, fmt.Errorf("%w: set expiry or expire_in, not both", control.ErrInvalid)
		}
		d, err := time.ParseDuration(r.ExpireIn)
		if err != nil || d <= 0 {
			return c, fmt.Errorf("%w: expire_in %q is not a positive duration", control.ErrInvalid, clip(r.ExpireIn))
		}
		if d > 100*365*24*time.Hour {
			return c, fmt.Errorf("%w: expire_in %s is absurd", control.ErrInvalid, d)
		}
		c.Expiry = now.Add(d)
	}
	return c, nil
}

// Handler serves the API for svc; it does not check the token (see
// Listen, or wrap it in httpapi.Bearer). now is the edge's clock (nil:
// time.Now).
func Handler(svc Service, now func() time.Time, log *slog.Logger) http.Handler {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &handler{svc: svc, now: now, log: log, waiters: make(chan struct{}, maxWaiters)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+CommandsPath, h.submit)
	mux.HandleFunc("GET "+CommandsPath, h.list)
	mux.HandleFunc("GET "+CommandsPath+"/{id}", h.get)
	mux.HandleFunc("GET "+CommandsPath+"/{id}/wait", h.wait)
	mux.HandleFunc("GET "+AuditPath, h.audit)
	mux.HandleFunc("GET "+LeasesPath, h.leases)
	mux.HandleFunc("POST "+LeasesPath, h.takeLease)
	mux.HandleFunc("DELETE "+LeasesPath+"/{asset}", h.releaseLease)
	return mux
}

// Listen serves the API on addr (host:port; 127.0.0.1 unless told
// otherwise) for the holders of token.
func Listen(addr, token string, svc Service, now func() time.Time, log *slog.Logger) (*httpapi.Server, error) {
	if token == "" {
		return nil, errors.New("control api: no token")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := httpapi.Bearer(token, "sluice-control", "unauthorized", func(r *http.Request) {
		log.Warn("control api: request without a valid token", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)
	}, Handler(svc, now, log))
	return httpapi.Listen(addr, h, httpapi.Options{
		Name: "control api", MaxConns: maxConns,
		ReadHeaderTimeout: 2 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: MaxWait + 10*time.Second,
		RemoteWarning: "the control API is reachable from other hosts (every request still needs the token)",
		Log:           log,
	})
}

type handler struct {
	svc     Service
	now     func() time.Time
	log     *slog.Logger
	waiters chan struct{}
}

func fail(w http.ResponseWriter, code int, err error) {
	httpapi.WriteJSON(w, code, Answer{Error: err.Error()})
}

// decode reads a bounded JSON body into v, refusing unknown fields and
// trailing data.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	if r.ContentLength > MaxBody {
		return fmt.Errorf("%w: body of %d bytes, more than %d", control.ErrInvalid, r.ContentLength, MaxBody)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		return fmt.Errorf("%w: body: %w", control.ErrInvalid, err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: body: %w", control.ErrInvalid, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: body: data after the JSON value", control.ErrInvalid)
	}
	if key, ok := jsonstrict.IsDuplicateKey(jsonstrict.CheckKeys(body)); ok {
		return fmt.Errorf("%w: body: %q appears twice in an object", control.ErrInvalid, clip(key))
	}
	return nil
}

func (h *handler) submit(w http.ResponseWriter, r *http.Request) {
	var req CommandRequest
	if err := decode(w, r, &req); err != nil {
		fail(w, http.StatusBadRequest, err)
		return
	}
	c, err := req.Command(h.now())
	if err != nil {
		fail(w, http.StatusBadRequest, err)
		return
	}
	rec, err := h.svc.Submit(r.Context(), c)
	switch {
	case err == nil:
		httpapi.WriteJSON(w, http.StatusOK, rec)
	case errors.Is(err, control.ErrInvalid):
		fail(w, http.StatusBadRequest, err)
	case errors.Is(err, control.ErrRejected) && rec.ID != "":
		httpapi.WriteJSON(w, http.StatusConflict, Answer{Error: err.Error(), Record: &rec})
	case errors.Is(err, control.ErrExpired) && rec.ID != "":
		httpapi.WriteJSON(w, http.StatusGone, Answer{Error: err.Error(), Record: &rec})
	case errors.Is(err, control.ErrClosed):
		fail(w, http.StatusServiceUnavailable, err)
	default:
		h.log.Error("control api: submit failed", "err", err)
		httpapi.WriteJSON(w, http.StatusInternalServerError, Answer{Error: err.Error(), Record: recOrNil(rec)})
	}
}

func recOrNil(r control.Record) *control.Record {
	if r.ID == "" {
		return nil
	}
	return &r
}

func (h *handler) get(w http.ResponseWriter, r *http.Request) {
	rec, ok := h.svc.Get(r.PathValue("id"))
	if !ok {
		fail(w, http.StatusNotFound, fmt.Errorf("no command %q", clip(r.PathValue("id"))))
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, rec)
}

func (h *handler) wait(w http.ResponseWriter, r *http.Request) {
	d := DefaultWait
	if s := r.URL.Query().Get("timeout"); s != "" {
		var err error
		if d, err = time.ParseDuration(s); err != nil || d < 0 {
			fail(w, http.StatusBadRequest, fmt.Errorf("timeout %q is not a duration", clip(s)))
			return
		}
		d = min(d, MaxWait)
	}
	id := r.PathValue("id")
	if _, ok := h.svc.Get(id); !ok {
		fail(w, http.StatusNotFound, fmt.Errorf("no command %q", clip(id)))
		return
	}
	select {
	case h.waiters <- struct{}{}:
		defer func() { <-h.waiters }()
	default:
		fail(w, http.StatusServiceUnavailable, fmt.Errorf("%d waits in progress already: retry later", maxWaiters))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), d)
	defer cancel()
	rec, err := h.svc.Wait(ctx, id)
	switch {
	case err == nil:
		httpapi.WriteJSON(w, http.StatusOK, rec)
	case rec.ID != "":
		httpapi.WriteJSON(w, http.StatusAccepted, rec)
	default:
		fail(w, http.StatusNotFound, err)
	}
}

// filter reads a filter from the query.
func filter(r *http.Request) (control.Filter, error) {
	q := r.URL.Query()
	f := control.Filter{ID: q.Get("id"), Asset: q.Get("asset"), Origin: q.Get("origin"), Status: control.Status(q.Get("status"))}
	for _, s := range []string{f.ID, f.Asset, f.Origin} {
		if len(s) > control.MaxKeyLen {
			return f, fmt.Errorf("%w: a filter is longer than %d bytes", control.ErrInvalid, control.MaxKeyLen)
		}
	}
	if f.Status != "" && !f.Status.Known() {
		return f, fmt.Errorf("%w: unknown status %q", control.ErrInvalid, clip(string(f.Status)))
	}
	var err error
	if s := q.Get("limit"); s != "" {
		if f.Limit, err = strconv.Atoi(s); err != nil || f.Limit < 0 {
			return f, fmt.Errorf("%w: limit %q", control.ErrInvalid, clip(s))
		}
	}
	if s := q.Get("after"); s != "" {
		if f.After, err = strconv.ParseUint(s, 10, 64); err != nil {
			return f, fmt.Errorf("%w: after %q", control.ErrInvalid, clip(s))
		}
	}
	return f, nil
}

func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	f, err := filter(r)
	if err != nil {
		fail(w, http.StatusBadRequest, err)
		return
	}
	recs := h.svc.List(f)
	if recs == nil {
		recs = []control.Record{}
	}
	httpapi.WriteJSON(w, http.StatusOK, recs)
}

func (h *handler) audit(w http.ResponseWriter, r *http.Request) {
	f, err := filter(r)
	if err != nil {
		fail(w, http.StatusBadRequest, err)
		return
	}
	trs := h.svc.Audit(f)
	if trs == nil {
		trs = []control.Transition{}
	}
	httpapi.WriteJSON(w, http.StatusOK, trs)
}

func (h *handler) leases(w http.ResponseWriter, r *http.Request) {
	ls := h.svc.Leases()
	if ls == nil {
		ls = []control.Lease{}
	}
	httpapi.WriteJSON(w, http.StatusOK, ls)
}

func (h *handler) takeLease(w http.ResponseWriter, r *http.Request) {
	var b LeaseBody
	if err := decode(w, r, &b); err != nil {
		fail(w, http.StatusBadRequest, err)
		return
	}
	d, err := time.ParseDuration(b.For)
	if err != nil {
		fail(w, http.StatusBadRequest, fmt.Errorf("%w: for %q is not a duration", control.ErrInvalid, clip(b.For)))
		return
	}
	l, err := h.svc.TakeLease(r.Context(), control.LeaseRequest{Asset: b.Asset, Holder: b.Holder, Origin: b.Origin, Class: b.Class, For: d, Reason: b.Reason})
	switch {
	case err == nil:
		httpapi.WriteJSON(w, http.StatusOK, l)
	case errors.Is(err, control.ErrLeased):
		httpapi.WriteJSON(w, http.StatusConflict, Answer{Error: err.Error(), Lease: &l})
	case errors.Is(err, control.ErrInvalid):
		fail(w, http.StatusBadRequest, err)
	default:
		fail(w, http.StatusInternalServerError, err)
	}
}

func (h *handler) releaseLease(w http.ResponseWriter, r *http.Request) {
	err := h.svc.ReleaseLease(r.Context(), r.PathValue("asset"), r.URL.Query().Get("holder"))
	switch {
	case err == nil:
		w.WriteHeader(http.StatusNoContent)
	case errors.Is(err, control.ErrNoLease):
		fail(w, http.StatusNotFound, err)
	default:
		fail(w, http.StatusInternalServerError, err)
	}
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
