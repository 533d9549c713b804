// Package webpage is what the engine's web pages share (the edge's status
// page, the hub's console): one HTML page with its script and style
// embedded in the binary, a login form, and sessions.
//
// A request carries the token as "Authorization: Bearer <token>", or a
// browser hands it over once (Prefix?token=..., or the login form at
// Prefix+"login") for a session cookie (HttpOnly, SameSite=Strict, Secure
// over TLS, path Prefix, SessionTTL) that counts only from the address
// that signed in. Without either, the page is the login form and shows
// nothing; the token is compared in constant time and never logged.
//
// Another origin's page cannot act through a signed-in browser: sign-in
// and logout refuse cross-origin POSTs (http.CrossOriginProtection), and
// the page's data answers only the page itself, an address typed into the
// browser, or a client that is no browser (Sec-Fetch-Site); SameSite alone
// would let a page on another port of the same host through. An address
// that sent maxFailures wrong tokens is refused unchecked (429) until it
// earns one more try per failureEvery.
package webpage

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strconv"
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
	// maxFailures is how many wrong tokens an address may send at once;
	// it earns one more try every failureEvery.
	maxFailures  = 10
	failureEvery = 6 * time.Second
	// maxThrottled bounds the addresses whose failures are counted; past
	// it, new addresses share one count.
	maxThrottled = 1024
	// MaxRefusalLogs is how many refusals a RefusalLog logs at once; one
	// more every RefusalLogEvery.
	MaxRefusalLogs  = 10
	RefusalLogEvery = 6 * time.Second
)

// Files of a page's assets: the page, the script and the style; and the
// files every page shares (this package's): the helpers the script uses
// and the base style. Scripts and styles hold no data and are served
// without a session.
const (
	PageFile   = "index.html"
	ScriptFile = "app.js"
	StyleFile  = "style.css"
	CommonFile = "common.js"
	BaseFile   = "base.css"
)

//go:embed shared
var shared embed.FS

// loginPage is the login form of every page, filled in with its Login.
//
//go:embed login.html
var loginPage string

// loginTemplate renders loginPage.
var loginTemplate = template.Must(template.New("login").Parse(loginPage))

// Login is the text of a page's login form.
type Login struct {
	// Title is the form's title ("Sluice edge: sign in").
	Title string
	// Heading is its heading.
	Heading string
	// Hint tells where the token is found; it is markup, written by the
	// page's code, never data.
	Hint template.HTML
}

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
	// Assets hold PageFile, ScriptFile and StyleFile.
	Assets fs.FS
	// Login is the text of the login form.
	Login Login
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

	csrf *http.CrossOriginProtection

	refusals RefusalLog

	mu       sync.Mutex
	sessions map[string]session  // session id -> session
	failures map[string]*failure // address -> wrong tokens
}

// session is a signed-in browser's: when it ends, and the address it
// signed in from (address), the only one it counts from.
type session struct {
	exp  time.Time
	addr string
}

// failure counts an address's wrong tokens as a bucket of tries: left
// tries at at, one more earned per failureEvery, at most maxFailures.
type failure struct {
	left float64
	at   time.Time
	told bool // the block is logged
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
	var login bytes.Buffer
	if err := loginTemplate.Execute(&login, o.Login); err != nil {
		return nil, fmt.Errorf("%s: login form: %w", o.Name, err)
	}
	sub, err := fs.Sub(shared, "shared")
	if err != nil {
		return nil, err
	}
	strip := strings.TrimSuffix(o.Prefix, "/")
	return &Site{opts: o, static: http.StripPrefix(strip, http.FileServerFS(o.Assets)),
		common: http.StripPrefix(strip, http.FileServerFS(sub)),
		page:   page, login: login.Bytes(), csrf: http.NewCrossOriginProtection(),
		sessions: map[string]session{}, failures: map[string]*failure{}}, nil
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
	case (r.URL.Path == p+"login" || r.URL.Path == p+"logout") && r.Method == http.MethodPost && s.csrf.Check(r) != nil:
		s.forbid(w, r)
	case r.URL.Path == p+"login" && r.Method == http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		if err := r.ParseForm(); err != nil {
			s.Refuse(w, r)
			return true
		}
		s.signIn(w, r, r.PostForm.Get("token"))
	case r.URL.Path == p+"logout" && r.Method == http.MethodPost:
		s.mu.Lock()
		for _, v := range s.sessionCookies(r) {
			delete(s.sessions, v)
		}
		s.mu.Unlock()
		http.SetCookie(w, s.cookie(r, "", -1))
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
// the query for a session (when the address was typed or opened, not
// when another origin's page asks), and shows the login form otherwise.
func (s *Site) servePage(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Has("token") {
		if !sameOrigin(r) { // another origin's page would spend the address's tries
			s.forbid(w, r)
			return
		}
		s.signIn(w, r, r.URL.Query().Get("token"))
		return
	}
	code, wait := s.authorize(r)
	if code == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", strconv.Itoa(wait))
		http.Error(w, "too many wrong tokens from this address; try again later", code)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if code != 0 {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write(s.login)
		return
	}
	_, _ = w.Write(s.page)
}

// signIn starts a session when token is the token and sends the browser
// to the page (the token leaves the address bar).
func (s *Site) signIn(w http.ResponseWriter, r *http.Request, token string) {
	if wait := s.throttled(r); wait > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(wait))
		http.Error(w, "too many wrong tokens from this address; try again later", http.StatusTooManyRequests)
		return
	}
	if subtle.ConstantTimeCompare([]byte(token), []byte(s.opts.Token)) != 1 {
		s.failed(r, "sign-in with a wrong token")
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
	for _, v := range s.sessionCookies(r) { // the browser's session before: a new one replaces it
		delete(s.sessions, v)
	}
	for k, e := range s.sessions {
		if !e.exp.After(now) {
			delete(s.sessions, k)
		}
	}
	for len(s.sessions) >= MaxSessions {
		var oldest string
		var at time.Time
		for k, e := range s.sessions {
			if oldest == "" || e.exp.Before(at) {
				oldest, at = k, e.exp
			}
		}
		delete(s.sessions, oldest)
	}
	s.sessions[id] = session{exp: now.Add(SessionTTL), addr: address(r)}
	s.mu.Unlock()
	http.SetCookie(w, s.cookie(r, id, int(SessionTTL/time.Second)))
	http.Redirect(w, r, s.opts.Prefix, http.StatusSeeOther)
}

// cookie is the session cookie: Secure when r came over TLS.
func (s *Site) cookie(r *http.Request, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: s.opts.Cookie, Value: value, Path: s.opts.Prefix, MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil}
}

func newSessionID() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// Authed says whether r carries the token (as a bearer) or a live
// session signed in from r's address: cookies do not tell ports apart,
// so a service on another port of the host may be sent the cookie, and
// what it steals must not work from elsewhere.
func (s *Site) Authed(r *http.Request) bool {
	if r.Header.Get("Authorization") != "" {
		return httpapi.HasBearer(r, s.opts.Token)
	}
	now := s.opts.Now()
	addr := address(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	authed := false
	for _, v := range s.sessionCookies(r) {
		for id, e := range s.sessions { // constant time per session
			if subtle.ConstantTimeCompare([]byte(id), []byte(v)) == 1 && e.exp.After(now) && e.addr == addr {
				authed = true
			}
		}
	}
	return authed
}

// sessionCookies returns the values of r's session cookies that may be
// session ids (the server's bound on a request's headers bounds them): a
// page on another port of the host can set cookies of the same name
// (cookies do not tell ports apart) that the browser sends before the
// session's, and they must not hide it.
func (s *Site) sessionCookies(r *http.Request) []string {
	var out []string
	for _, c := range r.CookiesNamed(s.opts.Cookie) {
		if len(c.Value) == 64 {
			out = append(out, c.Value)
		}
	}
	return out
}

// Check says whether r may read the page's data, and answers r when it
// may not: 403 to a request another origin's page made (Sec-Fetch-Site
// other than same-origin or none), 429 to an address blocked for wrong
// tokens, 401 (Refuse) without the token or a session. A wrong bearer
// token counts against the address.
func (s *Site) Check(w http.ResponseWriter, r *http.Request) bool {
	if !sameOrigin(r) {
		s.forbid(w, r)
		return false
	}
	switch code, wait := s.authorize(r); code {
	case 0:
		return true
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", strconv.Itoa(wait))
		httpapi.WriteJSON(w, code, map[string]string{"error": "too many wrong tokens from this address"})
	default:
		if r.Header.Get("Authorization") != "" { // the wrong token is logged
			unauthorized(w)
		} else {
			s.Refuse(w, r)
		}
	}
	return false
}

// authorize checks r's bearer token or session: code 0 when r may see the
// page, else 429 (wait the seconds the address must wait) or 401. A wrong
// bearer token counts against r's address.
func (s *Site) authorize(r *http.Request) (code, wait int) {
	if r.Header.Get("Authorization") != "" {
		if wait := s.throttled(r); wait > 0 {
			return http.StatusTooManyRequests, wait
		}
		if !httpapi.HasBearer(r, s.opts.Token) {
			s.failed(r, "request with a wrong token")
			return http.StatusUnauthorized, 0
		}
		return 0, 0
	}
	if !s.Authed(r) {
		return http.StatusUnauthorized, 0
	}
	return 0, 0
}

// sameOrigin says whether a browser made r for the page itself, or the
// operator typed its address (Sec-Fetch-Site same-origin or none), or no
// browser made it (no Sec-Fetch-Site).
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
		return true
	}
	return false
}

// forbid answers 403 to a request another origin's page made.
func (s *Site) forbid(w http.ResponseWriter, r *http.Request) {
	s.warn("request from another origin's page refused", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)
	httpapi.WriteJSON(w, http.StatusForbidden, map[string]string{"error": "cross-origin request refused"})
}

// address is what wrong tokens are counted by: r's IP (an IPv6 address's
// /64).
func address(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String()
	}
	return host
}

// refill brings f's tries up to now.
func (f *failure) refill(now time.Time) { f.refillBy(now, maxFailures, failureEvery) }

// refillBy brings f's tries up to now: one per every, at most most.
func (f *failure) refillBy(now time.Time, most float64, every time.Duration) {
	if d := now.Sub(f.at); d > 0 {
		f.left = min(most, f.left+float64(d)/float64(every))
	}
	f.at = now
}

// warn logs a refusal within the bounds of a RefusalLog.
func (s *Site) warn(msg string, args ...any) {
	s.refusals.Warn(s.opts.Log, s.opts.Now(), s.opts.Name+": "+msg, args...)
}

// RefusalLog bounds the log lines of refused requests, so that refused
// requests cannot flood the log (on an edge the status page shows the
// log's newest warnings): at most MaxRefusalLogs lines at once, then one
// per RefusalLogEvery, the next line logged counting those left out
// ("unlogged"). The zero value is ready to use; it is safe for concurrent
// use.
type RefusalLog struct {
	mu       sync.Mutex
	tries    failure // lines that may be logged
	started  bool    // tries was filled
	unlogged int     // refusals not logged since the last line
}

// Warn logs msg and args on log as a warning at now, unless too many
// were logged lately.
func (l *RefusalLog) Warn(log *slog.Logger, now time.Time, msg string, args ...any) {
	l.mu.Lock()
	if !l.started {
		l.tries, l.started = failure{left: MaxRefusalLogs, at: now}, true
	}
	l.tries.refillBy(now, MaxRefusalLogs, RefusalLogEvery)
	if l.tries.left < 1 {
		l.unlogged++
		l.mu.Unlock()
		return
	}
	l.tries.left--
	n := l.unlogged
	l.unlogged = 0
	l.mu.Unlock()
	if n > 0 {
		args = append(args, "unlogged", n)
	}
	log.Warn(msg, args...)
}

// throttled answers how many seconds r's address must wait before its
// next try (0: it may try now).
func (s *Site) throttled(r *http.Request) int {
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.failures[address(r)]
	if !ok {
		if f, ok = s.failures[""]; !ok || len(s.failures) < maxThrottled { // not full: the address's own count, none yet
			return 0
		}
	}
	f.refill(now)
	if f.left >= 1 {
		return 0
	}
	return int((1-f.left)*failureEvery.Seconds()) + 1
}

// failed counts a wrong token of r's address, and logs it (or, once, that
// the address is blocked), never the token.
func (s *Site) failed(r *http.Request, what string) {
	now := s.opts.Now()
	key := address(r)
	s.mu.Lock()
	f, ok := s.failures[key]
	if !ok {
		if len(s.failures) >= maxThrottled {
			for k, g := range s.failures { // forget the addresses that earned all their tries back
				if g.refill(now); g.left >= maxFailures {
					delete(s.failures, k)
				}
			}
		}
		if len(s.failures) >= maxThrottled {
			key = "" // full: the new addresses share one count
		}
		if f, ok = s.failures[key]; !ok {
			f = &failure{left: maxFailures, at: now}
			s.failures[key] = f
		}
	}
	f.refill(now)
	f.left = max(0, f.left-1)
	told, blocked := f.told, f.left < 1
	f.told = blocked
	s.mu.Unlock()
	switch {
	case told: // blocked before and logged: quiet
	case blocked:
		s.warn(what+"; the address is refused unchecked for a while", "remote", r.RemoteAddr)
	default:
		s.warn(what, "remote", r.RemoteAddr)
	}
}

// Refuse answers 401 to a request without a valid token or session, and
// logs it (never what it sent; at most MaxRefusalLogs lines at once).
func (s *Site) Refuse(w http.ResponseWriter, r *http.Request) {
	s.warn("request without a valid token or session", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)
	unauthorized(w)
}

// unauthorized answers 401.
func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
	httpapi.WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized"})
}
