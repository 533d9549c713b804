// Package statuspage is the edge's status page: one HTML page, its script
// and style embedded in the binary, and the JSON snapshot it polls every
// two seconds. The local API serves it under Prefix on its own listener.
//
// Authentication is the local API's token: a request carries it as
// "Authorization: Bearer <token>", or a browser hands it over once
// (Prefix?token=..., or the login form) for a session cookie (HttpOnly,
// SameSite=Strict, 12 hours). Without either, the page is a login form
// that shows nothing of the edge; the token is compared in constant time
// and never logged.
package statuspage

import (
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sluice-edge/sluice/engine/httpapi"
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
	SessionTTL = 12 * time.Hour
	// MaxSessions bounds the sessions held; the oldest goes first.
	MaxSessions = 32
	// maxForm bounds a login form's body.
	maxForm = 4 << 10
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
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Handler serves the page. It is safe for concurrent use.
type Handler struct {
	opts   Options
	static http.Handler
	page   []byte
	login  []byte

	mu       sync.Mutex
	sessions map[string]time.Time // session id -> expiry
	rates    map[string]sample    // pipeline/step -> last sample
	since    map[string]time.Time // asset/name of a condition -> first seen
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
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		return nil, err
	}
	page, err := fs.ReadFile(sub, "index.html")
	if err != nil {
		return nil, err
	}
	login, err := fs.ReadFile(sub, "login.html")
	if err != nil {
		return nil, err
	}
	return &Handler{opts: o, static: http.StripPrefix(strings.TrimSuffix(Prefix, "/"), http.FileServerFS(sub)),
		page: page, login: login, sessions: map[string]time.Time{}, rates: map[string]sample{}, since: map[string]time.Time{}}, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("X-Frame-Options", "DENY")
	// A page polls every 2 s: its connection is not kept idle in between,
	// so that open pages do not take the local API's few connections.
	hdr.Set("Connection", "close")
	switch {
	case r.URL.Path == Prefix && r.Method == http.MethodGet:
		h.servePage(w, r)
	case r.URL.Path == DataPath && r.Method == http.MethodGet:
		if !h.authed(r) {
			h.refuse(w, r)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, h.View())
	case r.URL.Path == LoginPath && r.Method == http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		if err := r.ParseForm(); err != nil {
			h.refuse(w, r)
			return
		}
		h.signIn(w, r, r.PostForm.Get("token"))
	case r.URL.Path == LogoutPath && r.Method == http.MethodPost:
		if c, err := r.Cookie(CookieName); err == nil {
			h.mu.Lock()
			delete(h.sessions, c.Value)
			h.mu.Unlock()
		}
		http.SetCookie(w, h.cookie("", -1))
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
	case r.Method == http.MethodGet && (r.URL.Path == Prefix+"app.js" || r.URL.Path == Prefix+"style.css"):
		// The script and the style hold no data of the edge.
		hdr.Set("Cache-Control", "no-cache")
		h.static.ServeHTTP(w, r)
	default:
		http.NotFound(w, r)
	}
}

// servePage answers the page to a signed-in browser, exchanges a token in
// the query for a session, and shows the login form otherwise.
func (h *Handler) servePage(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Has("token") {
		h.signIn(w, r, r.URL.Query().Get("token"))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !h.authed(r) {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write(h.login)
		return
	}
	_, _ = w.Write(h.page)
}

// signIn starts a session when token is the token and sends the browser
// to the page (the token leaves the address bar).
func (h *Handler) signIn(w http.ResponseWriter, r *http.Request, token string) {
	if !h.validToken(token) {
		h.opts.Log.Warn("status page: sign-in with a wrong token", "remote", r.RemoteAddr)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write(h.login)
		return
	}
	id, err := newSessionID()
	if err != nil {
		http.Error(w, "no session", http.StatusInternalServerError)
		return
	}
	now := h.opts.Now()
	h.mu.Lock()
	for k, exp := range h.sessions {
		if !exp.After(now) {
			delete(h.sessions, k)
		}
	}
	for len(h.sessions) >= MaxSessions {
		var oldest string
		var at time.Time
		for k, exp := range h.sessions {
			if oldest == "" || exp.Before(at) {
				oldest, at = k, exp
			}
		}
		delete(h.sessions, oldest)
	}
	h.sessions[id] = now.Add(SessionTTL)
	h.mu.Unlock()
	http.SetCookie(w, h.cookie(id, int(SessionTTL/time.Second)))
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

func (h *Handler) cookie(value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: CookieName, Value: value, Path: Prefix, MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode}
}

func newSessionID() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

func (h *Handler) validToken(t string) bool {
	return subtle.ConstantTimeCompare([]byte(t), []byte(h.opts.Token)) == 1
}

// authed says whether r carries the token or a live session.
func (h *Handler) authed(r *http.Request) bool {
	if r.Header.Get("Authorization") != "" {
		return httpapi.HasBearer(r, h.opts.Token)
	}
	c, err := r.Cookie(CookieName)
	if err != nil || len(c.Value) != 64 {
		return false
	}
	now := h.opts.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	var exp time.Time
	ok := false
	for id, e := range h.sessions { // constant time per session
		if subtle.ConstantTimeCompare([]byte(id), []byte(c.Value)) == 1 {
			exp, ok = e, true
		}
	}
	return ok && exp.After(now)
}

func (h *Handler) refuse(w http.ResponseWriter, r *http.Request) {
	h.opts.Log.Warn("status page: request without a valid token or session", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)
	w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
	httpapi.WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized"})
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
	return v
}
