// Package console is the hub's console: one HTML page, its script and
// style embedded in the binary, served by `sluice hub` on the same
// listener as its JSON API. The page reads the API's own read endpoints
// (edges, releases, alerts, commands, an edge's log) through APIPrefix,
// where a signed-in browser's session stands for the bearer token.
//
// Authentication is the hub's API token (package webpage): a request
// carries it as "Authorization: Bearer <token>", or a browser hands it
// over once (Prefix?token=..., or the login form) for a session cookie
// (HttpOnly, SameSite=Strict, 12 hours). Without either, the page is a
// login form that shows nothing of the fleet.
package console

import (
	"embed"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/sluice-edge/sluice/engine/webpage"
)

// Paths of the console.
const (
	// Prefix is the route the hub's server mounts.
	Prefix = "/console/"
	// APIPrefix leads to the API's read endpoints: a GET of
	// APIPrefix+"v1/edges" is the API's GET /v1/edges.
	APIPrefix = Prefix + "api/"
	// CookieName is the session cookie.
	CookieName = "sluice_console"
)

//go:embed assets
var assets embed.FS

// Options configure a Handler.
type Options struct {
	// Token is the hub's API token (required).
	Token string
	// API serves the API's endpoints without checking the token
	// (required); the console checks the session first and forwards
	// only GET requests.
	API http.Handler
	// Log receives refused requests (never what they sent).
	Log *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Handler serves the console. It is safe for concurrent use.
type Handler struct {
	site *webpage.Site
	api  http.Handler
}

// New returns the console's handler.
func New(o Options) (*Handler, error) {
	if o.API == nil {
		return nil, errors.New("hub console: no API")
	}
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		return nil, err
	}
	site, err := webpage.New(webpage.Options{Name: "hub console", Prefix: Prefix, Cookie: CookieName, Token: o.Token,
		Assets: sub, Log: o.Log, Now: o.Now, Login: webpage.Login{Title: "Sluice hub: sign in", Heading: "Sluice hub console",
			Hint: "Enter the hub's API token (the file of <code>sluice hub --token-file</code>)."}})
	if err != nil {
		return nil, err
	}
	return &Handler{site: site, api: o.API}, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.site.Serve(w, r) {
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, APIPrefix)
	if !ok || r.Method != http.MethodGet || !strings.HasPrefix(rest, "v1/") || path.Clean("/"+rest) != "/"+rest ||
		strings.ContainsAny(rest, "\\\x00") {
		http.NotFound(w, r)
		return
	}
	if !h.site.Check(w, r) {
		return
	}
	// The console only reads: a GET of the API's path, without a body,
	// its escapes kept (an escaped "/" stays inside its segment).
	r2 := r.Clone(r.Context())
	r2.URL.Path = "/" + rest
	r2.URL.RawPath = ""
	if raw, ok := strings.CutPrefix(r.URL.EscapedPath(), strings.TrimSuffix(APIPrefix, "/")); ok && raw != r2.URL.Path {
		r2.URL.RawPath = raw
	}
	r2.RequestURI = r2.URL.RequestURI()
	r2.Body = http.NoBody
	r2.ContentLength = 0
	w.Header().Set("Cache-Control", "no-store")
	h.api.ServeHTTP(w, r2)
}
