// Package statuspage is the edge's status page: one HTML page, its script
// and style embedded in the binary, and the JSON snapshot it polls every
// two seconds. The local API serves it under Prefix on its own listener.
//
// Authentication is the local API's token (package webpage): a request
// carries it as "Authorization: Bearer <token>", or a browser hands it
// over once (Prefix?token=..., or the login form) for a session cookie
// (HttpOnly, SameSite=Strict, 12 hours). Without either, the page is a
// login form that shows nothing of the edge; the token is compared in
// constant time and never logged.
package statuspage

import (
	"embed"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/sluice-edge/sluice/engine/httpapi"
	"github.com/sluice-edge/sluice/engine/webpage"
)

// Paths of the page.
const (
	// Prefix is the route the local API mounts (an http.ServeMux pattern).
	Prefix = "/status/"
	// DataPath answers the View as JSON.
	DataPath = Prefix + "data"
	// LoginPath takes the login form (POST, field "token").
	LoginPath = Prefix + "login"
	// LogoutPath ends the session (POST).
	LogoutPath = Prefix + "logout"
	// CookieName is the session cookie.
	CookieName = "sluice_session"
)

const (
	// SessionTTL is how long a session lasts.
	SessionTTL = webpage.SessionTTL
	// MaxSessions bounds the sessions held; the oldest goes first.
	MaxSessions = webpage.MaxSessions
	// rateEvery is the shortest interval over which rows/s is measured.
	rateEvery = time.Second
)

//go:embed assets
var assets embed.FS

// Options configure a Handler.
type Options struct {
	// Token is the local API's token (required).
	Token string
	// Snapshot returns the edge's state now (required). It is called
	// once per poll of a signed-in page.
	Snapshot func() View
	// Log receives refused requests (never what they sent).
	Log *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Handler serves the page. It is safe for concurrent use.
type Handler struct {
	opts Options
	site *webpage.Site

	mu    sync.Mutex
	rates map[string]sample    // pipeline/step -> last sample
	since map[string]time.Time // asset/name of a condition -> first seen
}

type sample struct {
	at   time.Time
	rows int64
	rate float64
}

// New returns the page's handler.
func New(o Options) (*Handler, error) {
	if o.Token == "" {
		return nil, errors.New("status page: no token")
	}
	if o.Snapshot == nil {
		return nil, errors.New("status page: no snapshot")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		return nil, err
	}
	site, err := webpage.New(webpage.Options{Name: "status page", Prefix: Prefix, Cookie: CookieName, Token: o.Token,
		Assets: sub, Log: o.Log, Now: o.Now, Login: webpage.Login{Title: "Sluice edge: sign in", Heading: "Sluice edge status",
			Hint: "Enter the local API token (the edge configuration's <code>api.token_file</code>)."}})
	if err != nil {
		return nil, err
	}
	return &Handler{opts: o, site: site, rates: map[string]sample{}, since: map[string]time.Time{}}, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.site.Serve(w, r) {
		return
	}
	if r.URL.Path != DataPath || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	if !h.site.Check(w, r) {
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, h.View())
}

// View takes a snapshot and fills in what the handler measures across
// snapshots: rows/s per step, the health conditions and since when each
// alert has been active.
func (h *Handler) View() View {
	v := h.opts.Snapshot()
	now := h.opts.Now()
	if v.Time.IsZero() {
		v.Time = now.UTC()
	}
	if !v.HealthAlerts {
		v.Alerts = append(v.Alerts, Conditions(&v)...)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	rates := make(map[string]sample, len(h.rates))
	for i := range v.Pipelines {
		p := &v.Pipelines[i]
		for j := range p.Steps {
			s := &p.Steps[j]
			key := p.Name + "\x00" + s.Name
			prev, ok := h.rates[key]
			cur := prev
			switch {
			case !ok || s.Rows < prev.rows: // new, or restarted
				cur = sample{at: now, rows: s.Rows}
			case now.Sub(prev.at) >= rateEvery:
				cur = sample{at: now, rows: s.Rows, rate: float64(s.Rows-prev.rows) / now.Sub(prev.at).Seconds()}
			}
			s.RowsPerSec = cur.rate
			rates[key] = cur
		}
	}
	h.rates = rates
	since := make(map[string]time.Time, len(v.Alerts))
	for i := range v.Alerts {
		a := &v.Alerts[i]
		key := a.Asset + "\x00" + a.Type + "\x00" + a.Name
		if a.Since.IsZero() {
			t, ok := h.since[key]
			if !ok {
				t = now.UTC()
			}
			a.Since = t
		}
		since[key] = a.Since
	}
	h.since = since
	sortAlerts(v.Alerts)
	for i := range v.Sinks {
		s := &v.Sinks[i]
		s.ETASeconds = -1
		if s.DrainRate > 0 {
			s.ETASeconds = float64(s.BacklogRows) / s.DrainRate
		} else if s.BacklogRows == 0 {
			s.ETASeconds = 0
		}
	}
	if v.Pipelines == nil {
		v.Pipelines = []Pipeline{}
	}
	if v.Sinks == nil {
		v.Sinks = []Sink{}
	}
	if v.Alerts == nil {
		v.Alerts = []Alert{}
	}
	if v.Applies == nil {
		v.Applies = []Apply{}
	}
	if v.Warnings == nil {
		v.Warnings = []Warning{}
	}
	if v.Commands == nil {
		v.Commands = []Command{}
	}
	return v
}
