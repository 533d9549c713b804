// Package netlink is a TCP link that can be broken on purpose: a proxy
// from a free port of 127.0.0.1 to a target. The hub demo cuts an edge's
// link with it, and tests cut a client's link to a server that must keep
// running (a shared server is never stopped). Breaking it closes the
// connections it carries, as a failing network would; taking it down also
// refuses new ones until it is brought up again.
package netlink

import (
	"fmt"
	"io"
	"net"
	"sync"
)

// Link is a TCP proxy to one target. Its methods are safe for concurrent
// use.
type Link struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	down  bool
	wg    sync.WaitGroup
}

// Open starts a link from a free port of 127.0.0.1 to target (host:port).
func Open(target string) (*Link, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("link to %s: %w", target, err)
	}
	l := &Link{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	l.wg.Add(1)
	go l.serve()
	return l, nil
}

// Addr is the link's host:port.
func (l *Link) Addr() string { return l.ln.Addr().String() }

func (l *Link) serve() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.mu.Lock()
		down := l.down
		l.mu.Unlock()
		if down {
			_ = c.Close()
			continue
		}
		up, err := net.Dial("tcp", l.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		l.mu.Lock()
		if l.down { // taken down while dialling
			l.mu.Unlock()
			_ = c.Close()
			_ = up.Close()
			continue
		}
		l.conns[c], l.conns[up] = struct{}{}, struct{}{}
		l.mu.Unlock()
		l.wg.Add(2)
		go l.pipe(up, c)
		go l.pipe(c, up)
	}
}

// pipe copies from src to dst until either breaks, then closes both.
func (l *Link) pipe(dst, src net.Conn) {
	defer l.wg.Done()
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
	l.mu.Lock()
	delete(l.conns, dst)
	delete(l.conns, src)
	l.mu.Unlock()
}

// Break closes every connection the link carries; new ones are accepted.
func (l *Link) Break() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		_ = c.Close()
	}
}

// Down breaks every connection and refuses new ones until Up.
func (l *Link) Down() {
	l.mu.Lock()
	l.down = true
	l.mu.Unlock()
	l.Break()
}

// Up accepts connections again after Down.
func (l *Link) Up() {
	l.mu.Lock()
	l.down = false
	l.mu.Unlock()
}

// Close stops the link and waits for its goroutines.
func (l *Link) Close() error {
	err := l.ln.Close()
	l.Down()
	l.wg.Wait()
	return err
}
