//go:build sluice_lean

package nats

import "errors"

// ErrNoServer is the error of StartServer in a lean edge build: it has no
// embedded NATS server (an edge forwards to a broker elsewhere).
var ErrNoServer = errors.New("the embedded NATS server is not included in this build of sluice (a lean edge build, -tags sluice_lean); use a NATS server elsewhere or the complete build (make build)")

// Server stands for the embedded NATS server, which a lean edge build
// does not include.
type Server struct{}

// StartServer refuses: ErrNoServer.
func StartServer(ServerOptions) (*Server, error) { return nil, ErrNoServer }

// URL is empty.
func (s *Server) URL() string { return "" }

// Addr is empty.
func (s *Server) Addr() string { return "" }

// StoreDir is empty.
func (s *Server) StoreDir() string { return "" }

// Close does nothing.
func (s *Server) Close() error { return nil }
