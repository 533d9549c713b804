// Package localapi is the edge agent's local HTTP API: the protocol
// `sluice import` and `sluice status` speak to a running engine.
//
// Every request carries "Authorization: Bearer <token>" (the token file of
// the edge configuration). Endpoints:
//
//	POST /v1/import  body: the bundle's bytes (at most max_bundle_bytes);
//	                 ?file= names it in the report.
//	                 200 and the report (agent.Report) when applied, 422 and
//	                 the report when rejected, 413 and the rejected report
//	                 when its Content-Length is over the limit, 500 and
//	                 {"error": ...} when the agent failed.
//	GET  /v1/status  200 and agent.Status.
//	GET  /v1/hello?nonce=N  no token: 200 and {"proof": Proof(token, N)},
//	                 which a client checks before it sends the token.
//
// One import runs at a time; later ones wait for it.
package localapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/httpapi"
	"github.com/sluice-edge/sluice/engine/webpage"
)

// Paths of the API.
const (
	ImportPath = "/v1/import"
	StatusPath = "/v1/status"
	// HelloPath needs no token: the server proves that it knows the
	// token before a client sends it (see Proof).
	HelloPath = "/v1/hello"
)

// Proof is what the server answers to HelloPath?nonce=N: the hex
// HMAC-SHA256 of N keyed with the token. A client sends the token only
// to a server whose proof verifies, so that a process holding the port
// while the engine is stopped never learns it.
func Proof(token, nonce string) string {
	mac := hmac.New(sha256.New, []byte(token))
	mac.Write([]byte("sluice local api hello\x00" + nonce))
	return hex.EncodeToString(mac.Sum(nil))
}

// helloBody is the answer to HelloPath.
type helloBody struct {
	Proof string `json:"proof"`
}

// maxNonce bounds a hello's nonce.
const maxNonce = 128

// maxConns bounds the connections the server holds at once.
const maxConns = 16

// Service is what the API serves: an agent.Agent.
type Service interface {
	Import(r io.Reader, file string) (agent.Report, error)
	// RejectTooLarge reports a bundle of size bytes, more than the
	// limit, refused without reading it.
	RejectTooLarge(file string, size int64) (agent.Report, error)
	Status() agent.Status
}

// Server serves the local API.
type Server struct {
	srv     *httpapi.Server
	svc     Service
	secret  string // the token
	maxBody int64
	log     *slog.Logger
	imports chan struct{} // one import at a time
}

// Route is another API served by the same listener behind the same token
// (for example the control API under /v1/control/).
type Route struct {
	// Pattern is an http.ServeMux pattern such as "/v1/control/".
	Pattern string
	Handler http.Handler
	// OwnAuth serves the route without the bearer check: its handler
	// authenticates every request itself (the status page takes the
	// token once and then a session cookie).
	OwnAuth bool
}

// Listen starts serving svc on addr (host:port), and routes beside it.
// token is required; maxBody bounds an imported bundle. A listener on an
// address other than loopback is logged as a warning.
func Listen(addr, token string, svc Service, maxBody int64, log *slog.Logger, routes ...Route) (*Server, error) {
	if token == "" {
		return nil, errors.New("local api: no token")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{svc: svc, secret: token, maxBody: maxBody, log: log, imports: make(chan struct{}, 1)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+ImportPath, s.handleImport)
	mux.HandleFunc("GET "+StatusPath, s.handleStatus)
	mux.HandleFunc("GET "+HelloPath, s.handleHello)
	own := http.NewServeMux() // routes that check their own auth
	for _, r := range routes {
		if r.OwnAuth {
			own.Handle(r.Pattern, r.Handler)
			continue
		}
		mux.Handle(r.Pattern, r.Handler)
	}
	// Refusals are logged within bounds: a flood would push the edge's
	// warnings off its status page.
	refused := &webpage.RefusalLog{}
	authed := httpapi.Bearer(token, "sluice", "unauthorized", func(r *http.Request) {
		refused.Warn(log, time.Now(), "local api: request without a valid token", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)
	}, mux)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == HelloPath { // the server proves it knows the token first
			mux.ServeHTTP(w, r)
			return
		}
		if _, pattern := own.Handler(r); pattern != "" {
			own.ServeHTTP(w, r)
			return
		}
		authed.ServeHTTP(w, r)
	})
	srv, err := httpapi.Listen(addr, h, httpapi.Options{
		Name: "local api", MaxConns: maxConns,
		// Local clients send their headers at once: a connection that
		// dawdles is dropped soon, so that slow clients without the token
		// hold the few connections for less than a client waits.
		ReadHeaderTimeout: time.Second, ReadTimeout: 10 * time.Minute, WriteTimeout: 15 * time.Minute,
		RemoteWarning: "the local API is reachable from other hosts (every request still needs the token)",
		Log:           log,
	})
	if err != nil {
		return nil, err
	}
	s.srv = srv
	log.Info("local api listening", "url", "http://"+srv.Addr())
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.srv.Addr() }

// Close stops the server, waiting a few seconds for requests in flight.
func (s *Server) Close() error { return s.srv.Close(5 * time.Second) }

// errorBody is the body of an error answer.
type errorBody struct {
	Error string `json:"error"`
}

func (s *Server) handleImport(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > s.maxBody {
		// Refused unread, and reported like every bundle refused.
		rep, err := s.svc.RejectTooLarge(r.URL.Query().Get("file"), r.ContentLength)
		if err != nil {
			s.log.Error("import failed", "err", err)
			httpapi.WriteJSON(w, http.StatusInternalServerError, errorBody{Error: err.Error()})
			return
		}
		httpapi.WriteJSON(w, http.StatusRequestEntityTooLarge, rep)
		return
	}
	select {
	case s.imports <- struct{}{}:
		defer func() { <-s.imports }()
	case <-r.Context().Done():
		return
	}
	// The agent bounds the body too and reports a bundle that is too
	// large; the limit here stops reading one byte after it.
	body := http.MaxBytesReader(w, r.Body, s.maxBody+1)
	rep, err := s.svc.Import(body, agent.CleanFileName(r.URL.Query().Get("file")))
	if err != nil {
		s.log.Error("import failed", "err", err)
		httpapi.WriteJSON(w, http.StatusInternalServerError, errorBody{Error: err.Error()})
		return
	}
	code := http.StatusOK
	if rep.Outcome != agent.Applied {
		code = http.StatusUnprocessableEntity
	}
	httpapi.WriteJSON(w, code, rep)
}

// handleHello proves that the server knows the token (Proof).
func (s *Server) handleHello(w http.ResponseWriter, r *http.Request) {
	nonce := r.URL.Query().Get("nonce")
	if len(nonce) < 32 || len(nonce) > maxNonce {
		w.Header().Set("Connection", "close")
		httpapi.WriteJSON(w, http.StatusBadRequest, errorBody{Error: fmt.Sprintf("nonce must be 32 to %d characters", maxNonce)})
		return
	}
	// Closed after the answer, like a refusal: a client without the
	// token must not keep one of the few connections idle.
	w.Header().Set("Connection", "close")
	httpapi.WriteJSON(w, http.StatusOK, helloBody{Proof: Proof(s.secret, nonce)})
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	httpapi.WriteJSON(w, http.StatusOK, s.svc.Status())
}
