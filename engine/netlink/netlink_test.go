package netlink

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// echo starts a line echo server on 127.0.0.1.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// roundTrip says whether a line sent over c comes back.
func roundTrip(c net.Conn) bool {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && line == "ping\n"
}

func dial(t *testing.T, l *Link) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestLink(t *testing.T) {
	l, err := Open(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c := dial(t, l)
	if !roundTrip(c) {
		t.Fatal("no round trip over the link")
	}
	l.Break()
	if roundTrip(c) {
		t.Fatal("a connection survived Break")
	}
	if c2 := dial(t, l); !roundTrip(c2) {
		t.Fatal("a new connection after Break does not work")
	}
	l.Down()
	if c3 := dial(t, l); roundTrip(c3) {
		t.Fatal("a connection works while the link is down")
	}
	l.Up()
	if c4 := dial(t, l); !roundTrip(c4) {
		t.Fatal("no round trip after Up")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", l.Addr(), time.Second); err == nil {
		t.Fatal("the link still accepts after Close")
	}
}

func TestOpenBadTarget(t *testing.T) {
	l, err := Open("127.0.0.1:1") // nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if roundTrip(dial(t, l)) {
		t.Fatal("a round trip to nowhere")
	}
}
