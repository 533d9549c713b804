// Package httpapi is what the engine's HTTP endpoints share: the edge's
// local API, the hub's API and the metrics endpoint. It serves a handler
// on one address with bounded connections, headers and time, and checks
// a bearer token in constant time, so that a client without the token
// costs as little as possible.
package httpapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"
)

// Options bound a Server. Zero durations and sizes take the defaults.
type Options struct {
	// Name names the server in logs and errors ("hub api").
	Name string
	// MaxConns bounds the connections served at once (default 16).
	MaxConns int
	// ReadHeaderTimeout bounds the wait for a request's headers (default
	// 5 s): a client that dawdles loses its connection.
	ReadHeaderTimeout time.Duration
	// ReadTimeout and WriteTimeout bound reading a request and writing
	// its answer (default 10 min each).
	ReadTimeout, WriteTimeout time.Duration
	// MaxHeaderBytes bounds a request's headers (default 8 KiB).
	MaxHeaderBytes int
	// RemoteWarning, when set, is logged when the server listens on an
	// address other than loopback.
	RemoteWarning string
	// Log receives what the server does (default: discarded).
	Log *slog.Logger
}

func (o *Options) defaults() {
	if o.MaxConns <= 0 {
		o.MaxConns = 16
	}
	if o.ReadHeaderTimeout <= 0 {
		o.ReadHeaderTimeout = 5 * time.Second
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = 10 * time.Minute
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Minute
	}
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = 8 << 10
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// Server is an HTTP server on one listener.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// Listen starts serving h on addr (host:port; port 0 picks one).
func Listen(addr string, h http.Handler, o Options) (*Server, error) {
	o.defaults()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.Name, err)
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() && o.RemoteWarning != "" {
		o.Log.Warn(o.RemoteWarning, "addr", ln.Addr().String())
	}
	s := &Server{ln: ln, done: make(chan struct{})}
	s.srv = &http.Server{
		Handler: h, ReadHeaderTimeout: o.ReadHeaderTimeout, ReadTimeout: o.ReadTimeout,
		WriteTimeout: o.WriteTimeout, IdleTimeout: time.Minute, MaxHeaderBytes: o.MaxHeaderBytes,
		ErrorLog: slog.NewLogLogger(o.Log.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(netutil.LimitListener(ln, o.MaxConns)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			o.Log.Error(o.Name+" stopped", "err", err)
		}
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server, waiting up to wait for requests in flight.
func (s *Server) Close(wait time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}

// Bearer lets through the requests that carry "Authorization: Bearer
// <token>" (compared in constant time). Any other is answered 401 with
// the JSON body {"error": msg} and its connection closed without reading
// its body, so a client without the token holds none of the few
// connections; refused, when set, is told of it (never of what it sent).
func Bearer(token, realm, msg string, refused func(*http.Request), next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !HasBearer(r, token) {
			if refused != nil {
				refused(r)
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`"`)
			w.Header().Set("Connection", "close")
			_ = http.NewResponseController(w).SetReadDeadline(time.Now()) // the body is never read
			WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": msg})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// HasBearer says whether r carries "Authorization: Bearer <token>",
// compared in constant time.
func HasBearer(r *http.Request, token string) bool {
	return subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+token)) == 1
}

// WriteJSON answers code with v as indented JSON, not to be cached.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
