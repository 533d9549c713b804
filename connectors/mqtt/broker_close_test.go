package mqtt

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestBrokerCloseListsClientsUnderOneLock: closing the listener
// disconnects its clients without the broker library's closeClients,
// which read-locks the client table twice (Clients.GetByListener calls
// Clients.Len under its own read lock) and so hangs for good when a client
// connects or leaves in between.
func TestBrokerCloseListsClientsUnderOneLock(t *testing.T) {
	b, _ := startTestBroker(t, BrokerOptions{})
	var clients []*testClient
	for i := range 3 {
		clients = append(clients, mustDial3(t, b.URL(), fmt.Sprintf("close-%d-%s", i, suffix()), "", ""))
	}
	b.ln.Close(func(string) {
		t.Error("the library's closeClients was called: it takes the client table's read lock twice")
	})
	for i, c := range clients {
		select {
		case <-c.lost:
		case <-time.After(waitFor):
			t.Fatalf("client %d still connected after the listener closed", i)
		}
	}
}

// TestBrokerCloseUnderChurn closes brokers while clients keep connecting
// and leaving: every Close returns.
func TestBrokerCloseUnderChurn(t *testing.T) {
	for round := range 10 {
		b, err := StartBroker(BrokerOptions{Listen: "127.0.0.1:0", Log: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; ; n++ {
					select {
					case <-stop:
						return
					default:
					}
					c, err := dial3(t, b.URL(), fmt.Sprintf("churn-%d-%d-%d-%s", round, w, n, suffix()), "", "")
					if err != nil {
						continue // the broker is closing
					}
					c.c.Disconnect(0)
				}
			}()
		}
		closed := make(chan error, 1)
		go func() { closed <- b.Close() }()
		select {
		case err := <-closed:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(2 * time.Minute):
			buf := make([]byte, 1<<20)
			t.Fatalf("round %d: the broker's Close hangs:\n%s", round, buf[:runtime.Stack(buf, true)])
		}
		close(stop)
		wg.Wait()
	}
}

// TestBrokerCloseEndsUnlistedConnections: the broker's Close waits for
// every connection it was handed; one it no longer lists among its clients
// (a client id taken over while the old connection still reads) is closed
// by the listener, so Close returns.
func TestBrokerCloseEndsUnlistedConnections(t *testing.T) {
	b, err := StartBroker(BrokerOptions{Listen: "127.0.0.1:0", Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	id := "unlisted-" + suffix()
	c := mustDial3(t, b.URL(), id, "", "")
	b.srv.Clients.Delete(id)
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		buf := make([]byte, 1<<20)
		t.Fatalf("the broker's Close hangs on a connection it does not list:\n%s", buf[:runtime.Stack(buf, true)])
	}
	select {
	case <-c.lost:
	case <-time.After(waitFor):
		t.Fatal("the unlisted client is still connected")
	}
}
