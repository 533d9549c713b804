package modbus_test

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/connectors/modbus"
)

// dialFrom connects to addr from the loopback address local (any
// 127.0.0.0/8 address is this host's).
func dialFrom(local, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: waitFor}
	return d.Dial("tcp", addr)
}

// TestClientsNotAllowedHoldNoSlot: a host on the network that is not in
// the allow list opens connections and keeps them (idle, or sending
// requests that are refused): they are closed at once and do not count
// against max_clients, so an allowed client (the SCADA) is still served.
func TestClientsNotAllowedHoldNoSlot(t *testing.T) {
	srv, c := start(t, modbus.Options{Entries: turbineMap("pk"), MaxClients: 2, IdleTimeout: time.Minute,
		Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}})
	_ = c // a client from 127.0.0.1, not allowed
	addr := srv.Addr()
	var held []net.Conn
	defer func() {
		for _, h := range held {
			h.Close()
		}
	}()
	for range 4 {
		h, err := dialFrom("127.0.0.3", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, h)
	}
	// The held connections are closed by the server.
	for _, h := range held {
		_ = h.SetReadDeadline(time.Now().Add(waitFor))
		var ne net.Error
		if _, err := h.Read(make([]byte, 1)); err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("a connection of a client not allowed was kept open (%v)", err)
		}
	}
	// Both slots are free for the allowed client: it holds two
	// connections at once and is served on each. (Connections opened one
	// after the other could race the server's release of a closed one's
	// slot.)
	var allowed [2]net.Conn
	for i := range allowed {
		conn, err := dialFrom("127.0.0.2", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(waitFor))
		allowed[i] = conn
	}
	for round := range 2 {
		for i, conn := range allowed {
			pdu, err := exchange(conn, uint16(10+round), binary.BigEndian.AppendUint16([]byte{0x03, 0, 2}, 1))
			if err != nil || len(pdu) < 1 || pdu[0] != 0x03 {
				t.Fatalf("allowed client, connection %d, read %d: % x %v", i, round, pdu, err)
			}
		}
	}
	// Both slots are held (both connections were served): a third
	// connection of the allowed client is closed at once.
	extra, err := dialFrom("127.0.0.2", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	_ = extra.SetReadDeadline(time.Now().Add(waitFor))
	var ne net.Error
	if _, err := extra.Read(make([]byte, 1)); err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("a connection beyond max_clients was kept open (%v)", err)
	}
	if st := srv.Stats(); st.Refused < 4 {
		t.Errorf("stats %+v: want the refused connections counted", st)
	}
}
