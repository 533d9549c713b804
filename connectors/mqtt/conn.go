package mqtt

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/mochi-mqtt/server/v2/packets"
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
//
// Reads go a whole MQTT 5 packet at a time: the property section of each
// PUBLISH is checked (checkProperties) before paho reads it, since paho
// takes a property length running past the end of the packet, reads the
// payload as properties and hands out an empty payload.
type packetConn struct {
	*readBufferedConn
	mu  sync.Mutex
	buf []byte
	err error

	pkt []byte // the packet being read, checked
	off int    // how much of pkt was read
}

// Read reads the packet checked last, and checks the next one when it
// has been read.
func (c *packetConn) Read(p []byte) (int, error) {
	if c.off == len(c.pkt) {
		if err := c.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.pkt[c.off:])
	c.off += n
	return n, nil
}

// next reads the next packet into pkt and checks it.
func (c *packetConn) next() error {
	if cap(c.pkt) > readBufferSize {
		c.pkt = nil
	}
	c.pkt, c.off = c.pkt[:0], 0
	hb, err := c.r.ReadByte()
	if err != nil {
		return err
	}
	c.pkt = append(c.pkt, hb)
	n := 0
	for i := 0; ; i++ {
		if i == 4 {
			return brokerBroke(fmt.Errorf("mqtt: bad packet length: %w", errMalformedLength))
		}
		b, err := c.r.ReadByte()
		if err != nil {
			return err
		}
		c.pkt = append(c.pkt, b)
		n |= int(b&0x7f) << (7 * i)
		if b&0x80 == 0 {
			break
		}
	}
	head := len(c.pkt)
	c.pkt = slices.Grow(c.pkt, n)[:head+n]
	if _, err := io.ReadFull(c.r, c.pkt[head:]); err != nil {
		return err
	}
	if hb>>4 != packets.Publish {
		return nil
	}
	body := c.pkt[head:]
	if len(body) < 2 {
		return brokerBroke(fmt.Errorf("mqtt: bad packet from the broker: %w", packets.ErrMalformedTopic))
	}
	at := 2 + (int(body[0])<<8 | int(body[1]))
	if hb&0x06 != 0 {
		at += 2
	}
	if _, err := checkProperties(body, at); err != nil {
		return brokerBroke(fmt.Errorf("mqtt: bad packet from the broker: %w", err))
	}
	return nil
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
