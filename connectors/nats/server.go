//go:build !sluice_lean

package nats

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Server is a NATS server with JetStream running in this process, for the
// demos and benchmarks that need a broker with nothing installed.
type Server struct {
	srv      *server.Server
	storeDir string
	// tempDir is storeDir when StartServer made it ("" once removed).
	tempDir string
}

// StartServer starts an embedded NATS server with JetStream and waits until
// it accepts clients. It installs no signal handler and logs nothing.
func StartServer(opts ServerOptions) (*Server, error) {
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	host, portText, err := net.SplitHostPort(opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS server: listen address %q: %w", opts.Listen, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("embedded NATS server: listen address %q: the port is not 0 to 65535", opts.Listen)
	}
	if port == 0 {
		// The server reads 0 as its default port, 4222; -1 picks a free one.
		port = server.RANDOM_PORT
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 10 * time.Second
	}
	s := &Server{storeDir: opts.StoreDir}
	dir := opts.StoreDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "sluice-nats-"); err != nil {
			return nil, fmt.Errorf("embedded NATS server: store directory: %w", err)
		}
		s.storeDir, s.tempDir = dir, dir
	}
	srv, err := server.NewServer(&server.Options{Host: host, Port: port, JetStream: true, StoreDir: dir,
		Authorization: opts.Token, NoLog: true, NoSigs: true})
	if err != nil {
		s.removeTemp()
		// The options' token is never part of the error: it names no field
		// values.
		return nil, fmt.Errorf("embedded NATS server: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(opts.ReadyTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		s.removeTemp()
		return nil, fmt.Errorf("embedded NATS server: not ready to accept clients on %s within %s", opts.Listen, opts.ReadyTimeout)
	}
	s.srv = srv
	return s, nil
}

// URL is the server's client URL (nats://host:port), without the token.
func (s *Server) URL() string { return s.srv.ClientURL() }

// Addr is the host:port the server listens on.
func (s *Server) Addr() string {
	if a, ok := s.srv.Addr().(*net.TCPAddr); ok {
		return a.String()
	}
	return ""
}

// StoreDir is JetStream's store directory.
func (s *Server) StoreDir() string { return s.storeDir }

// Close stops the server, waits until it has stopped and removes the store
// directory StartServer made. It may be called more than once.
func (s *Server) Close() error {
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	return s.removeTemp()
}

func (s *Server) removeTemp() error {
	if s.tempDir == "" {
		return nil
	}
	err := os.RemoveAll(s.tempDir)
	s.tempDir = ""
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("embedded NATS server: removing its store: %w", err)
	}
	return nil
}
