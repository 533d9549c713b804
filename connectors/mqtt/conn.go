package mqtt

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
)

// The MQTT clients read each packet in several small reads (the fixed
// header, the length, the body): straight from a socket that is several
// system calls per message, more than the rest of the work on a message.
// These connections read through a buffer instead.

// readBufferSize is the read buffer of a connection.
const readBufferSize = 64 << 10

// dialBroker opens a TCP or TLS connection to a broker URL.
func dialBroker(ctx context.Context, u *url.URL, tlsCfg *tls.Config) (net.Conn, error) {
	var d net.Dialer
	switch strings.ToLower(u.Scheme) {
	case "tcp", "mqtt", "":
		return d.DialContext(ctx, "tcp", u.Host)
	case "tls", "ssl", "mqtts":
		if tlsCfg == nil {
			tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		if tlsCfg.ServerName == "" && !tlsCfg.InsecureSkipVerify {
			tlsCfg = tlsCfg.Clone()
			tlsCfg.ServerName = u.Hostname()
		}
		td := tls.Dialer{NetDialer: &d, Config: tlsCfg}
		return td.DialContext(ctx, "tcp", u.Host)
	}
	return nil, fmt.Errorf("mqtt: unsupported scheme %q", u.Scheme)
}

// readBufferedConn reads through a buffer; writes go straight through.
// One goroutine reads.
type readBufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func newReadBufferedConn(c net.Conn) *readBufferedConn {
	return &readBufferedConn{Conn: c, r: bufio.NewReaderSize(c, readBufferSize)}
}

func (c *readBufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// packetConn is a readBufferedConn that also gathers the writes of one
// packet into one system call. paho.golang takes the connection's lock
// (sync.Locker) around writing each packet, in several writes; Unlock
// sends what they gathered. Every write must happen under the lock.
type packetConn struct {
	*readBufferedConn
	mu  sync.Mutex
	buf []byte
	err error
}

func newPacketConn(c net.Conn) *packetConn {
	return &packetConn{readBufferedConn: newReadBufferedConn(c)}
}

func (c *packetConn) Lock() { c.mu.Lock() }

func (c *packetConn) Unlock() {
	if len(c.buf) > 0 && c.err == nil {
		_, c.err = c.Conn.Write(c.buf)
	}
	c.buf = c.buf[:0]
	if cap(c.buf) > 64<<10 {
		c.buf = nil
	}
	c.mu.Unlock()
}

func (c *packetConn) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	c.buf = append(c.buf, p...)
	return len(p), nil
}
