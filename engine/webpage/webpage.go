// Package webpage is what the engine's web pages share (the edge's status
// page, the hub's console): one HTML page with its script and style
// embedded in the binary, a login form, and sessions.
//
// A request carries the token as "Authorization: Bearer <token>", or a
// browser hands it over once (Prefix?token=..., or the login form at
// Prefix+"login") for a session cookie (HttpOnly, SameSite=Strict, path
// Prefix, SessionTTL). Without either, the page is the login form and
// shows nothing; the token is compared in constant time and never logged.
package webpage

import (
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sluice-edge/sluice/engine/httpapi"
)

const (
	// SessionTTL is how long a session lasts.
	SessionTTL = 12 * time.Hour
	// MaxSessions bounds the sessions held; the oldest goes first.
	MaxSessions = 32
	// maxForm bounds a login form's body.
	maxForm = 4 << 10
)

// Files of a page's assets: the page, the login form, the script and the
// style; and the files every page shares (this package's): the helpers
// the script uses and the base style. Scripts and styles hold no data and
// are served without a session.
const (
	PageFile   = "index.html"
	LoginFile  = "login.html"
	ScriptFile = "app.js"
	StyleFile  = "style.css"
	CommonFile = "common.js"
	BaseFile   = "base.css"
)

//go:embed shared
var shared embed.FS

// Options configure a Site.
type Options struct {
	// Name names the page in log messages ("status page").
	Name string
	// Prefix is the path the page is served under, ending in "/".
	Prefix string
	// Cookie is the session cookie's name.
	Cookie string
	// Token is the token a request or sign-in must carry (required).
	Token string
	// Assets hold PageFile, LoginFile, ScriptFile and StyleFile.
	Assets fs.FS
	// Log receives refused requests (never what they sent).
	Log *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Site serves a page's common paths and holds its sessions. It is safe
// for concurrent use.
type Site struct {
	opts   Options
	static http.Handler
	common http.Handler
	page   []byte
	login  []byte

	mu       sync.Mutex
	sessions map[string]time.Time // session id -> expiry
}

// New returns the site of o.
func New(o Options) (*Site, error) {
	if o.Token == "" {
		return nil, fmt.Errorf("%s: no token", o.Name)
	}
	if !strings.HasPrefix(o.Prefix, "/") || !strings.HasSuffix(o.Prefix, "/") || o.Cookie == "" || o.Assets == nil {
		return nil, errors.New("webpage: a prefix /.../, a cookie name and assets are required")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	page, err := fs.ReadFile(o.Assets, PageFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.Name, err)
	}
	login, err := fs.ReadFile(o.Assets, LoginFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.Name, err)
	}
	sub, err := fs.Sub(shared, "shared")
	if err != nil {
		return nil, err
	}
	strip := strings.TrimSuffix(o.Prefix, "/")
	return &Site{opts: o, static: http.StripPrefix(strip, http.FileServerFS(o.Assets)),
		common: http.StripPrefix(strip, http.FileServerFS(sub)),
		page:   page, login: login, sessions: map[string]time.Time{}}, nil
}

// SetHeaders sets the headers of every answer of a page: a strict content
// security policy (nothing but the page's own origin), no sniffing, no
// referrer, no framing, and no idle connection kept (a page polls every
// few seconds and must not hold one of the server's few connections in
// between).
func SetHeaders(w http.ResponseWriter) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("Connection", "close")
}

// Serve answers the common paths of the page: the page itself (or the
// login form), the login and logout forms, the script and the style. It
// reports whether r was one of them; the caller answers the others. It
// sets the headers of SetHeaders.
func (s *Site) Serve(w http.ResponseWriter, r *http.Request) bool {
	SetHeaders(w)
	p := s.opts.Prefix
	switch {
	case r.URL.Path == p && r.Method == http.MethodGet:
		s.servePage(w, r)
	case r.URL.Path == p+"login" && r.Method == http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		if err := r.ParseForm(); err != nil {
			s.Refuse(w, r)
			return true
		}
		s.signIn(w, r, r.PostForm.Get("token"))
	case r.URL.Path == p+"logout" && r.Method == http.MethodPost:
		if c, err := r.Cookie(s.opts.Cookie); err == nil {
			s.mu.Lock()
			delete(s.sessions, c.Value)
			s.mu.Unlock()
		}
		http.SetCookie(w, s.cookie("", -1))
		http.Redirect(w, r, p, http.StatusSeeOther)
	case r.Method == http.MethodGet && (r.URL.Path == p+ScriptFile || r.URL.Path == p+StyleFile):
		w.Header().Set("Cache-Control", "no-cache")
		s.static.ServeHTTP(w, r)
	case r.Method == http.MethodGet && (r.URL.Path == p+CommonFile || r.URL.Path == p+BaseFile):
		w.Header().Set("Cache-Control", "no-cache")
		s.common.ServeHTTP(w, r)
	default:
		return false
	}
	return true
}

// servePage answers the page to a signed-in browser, exchanges a token in
// the query for a session, and shows the login form otherwise.
func (s *Site) servePage(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Has("token") {
		s.signIn(w, r, r.URL.Query().Get("token"))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !s.Authed(r) {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write(s.login)
		return
	}
	_, _ = w.Write(s.page)
}

// signIn starts a session when token is the token and sends the browser
// to the page (the token leaves the address bar).
func (s *Site) signIn(w http.ResponseWriter, r *http.Request, token string) {
	if subtle.ConstantTimeCompare([]byte(token), []byte(s.opts.Token)) != 1 {
		s.opts.Log.Warn(s.opts.Name+": sign-in with a wrong token", "remote", r.RemoteAddr)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write(s.login)
		return
	}
	id, err := newSessionID()
	if err != nil {
		http.Error(w, "no session", http.StatusInternalServerError)
		return
	}
	now := s.opts.Now()
	s.mu.Lock()
	for k, exp := range s.sessions {
		if !exp.After(now) {
			delete(s.sessions, k)
		}
	}
	for len(s.sessions) >= MaxSessions {
		var oldest string
		var at time.Time
		for k, exp := range s.sessions {
			if oldest == "" || exp.Before(at) {
				oldest, at = k, exp
			}
		}
		delete(s.sessions, oldest)
	}
	s.sessions[id] = now.Add(SessionTTL)
	s.mu.Unlock()
	http.SetCookie(w, s.cookie(id, int(SessionTTL/time.Second)))
	http.Redirect(w, r, s.opts.Prefix, http.StatusSeeOther)
}

func (s *Site) cookie(value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: s.opts.Cookie, Value: value, Path: s.opts.Prefix, MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode}
}

func newSessionID() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// Authed says whether r carries the token (as a bearer) or a live
// session.
func (s *Site) Authed(r *http.Request) bool {
	if r.Header.Get("Authorization") != "" {
		return httpapi.HasBearer(r, s.opts.Token)
	}
	c, err := r.Cookie(s.opts.Cookie)
	if err != nil || len(c.Value) != 64 {
		return false
	}
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var exp time.Time
	ok := false
	for id, e := range s.sessions { // constant time per session
		if subtle.ConstantTimeCompare([]byte(id), []byte(c.Value)) == 1 {
			exp, ok = e, true
		}
	}
	return ok && exp.After(now)
}

// Refuse answers 401 to a request without a valid token or session, and
// logs it (never what it sent).
func (s *Site) Refuse(w http.ResponseWriter, r *http.Request) {
	s.opts.Log.Warn(s.opts.Name+": request without a valid token or session", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)
	w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
	httpapi.WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized"})
}
