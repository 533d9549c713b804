package nats

import "time"

// ServerOptions configure StartServer.
type ServerOptions struct {
	// Listen is the TCP address to listen on (default 127.0.0.1:0; port 0
	// picks a free port).
	Listen string
	// Token, when set, is the token every client must present
	// (nats.Token); without it the server admits anyone who can connect.
	Token string
	// StoreDir is JetStream's store directory; empty makes a temporary one
	// that Close removes.
	StoreDir string
	// ReadyTimeout bounds the wait until the server accepts clients
	// (default 10 s).
	ReadyTimeout time.Duration
}
