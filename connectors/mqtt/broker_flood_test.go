package mqtt

import (
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// TestBrokerAuthFloodMeasure floods the broker with wrong passwords at
// bcrypt's default cost and reports the attempts per second, the CPU the
// process spent and the login time of legitimate devices meanwhile. It
// measures, it checks nothing: run it with SLUICE_BROKER_MEASURE=1.
func TestBrokerAuthFloodMeasure(t *testing.T) {
	if os.Getenv("SLUICE_BROKER_MEASURE") == "" {
		t.Skip("set SLUICE_BROKER_MEASURE=1 to measure")
	}
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.DefaultCost)
	if err != nil {
		t.Fatal(err)
	}
	const legit = 8
	users := []BrokerUser{{Username: "victim", PasswordHash: string(h), ProductKey: "p", DeviceKey: "victim"}}
	for i := range legit {
		users = append(users, BrokerUser{Username: fmt.Sprintf("L%d", i), PasswordHash: string(h), ProductKey: "p", DeviceKey: fmt.Sprintf("L%d", i)})
	}
	for _, sc := range []struct {
		name    string
		workers int
		addrs   int
		warmUp  time.Duration
	}{{"one address", 8, 1, 0}, {"64 addresses", 8, 64, 0}, {"64 addresses after 30s", 8, 64, 30 * time.Second}} {
		t.Run(sc.name, func(t *testing.T) {
			b, _ := startTestBroker(t, BrokerOptions{Users: users})
			for k, tc := range []struct{ what, user string }{{"existing user", "victim"}, {"unknown user", "nobody"}} {
				var d []time.Duration
				for i := range 5 {
					start := time.Now()
					_, _ = dial3From(t, b.URL(), fmt.Sprintf("127.0.%d.%d", 3+k, 1+i), "probe-"+suffix(), tc.user, "wrong")
					d = append(d, time.Since(start))
				}
				t.Logf("idle broker: a wrong password for an %s takes %v (median of 5)", tc.what, median(d))
			}
			stop := make(chan struct{})
			var attempts atomic.Int64
			var wg sync.WaitGroup
			for w := range sc.workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n := 0; ; n++ {
						select {
						case <-stop:
							return
						default:
						}
						from := fmt.Sprintf("127.0.1.%d", 1+(w+n*sc.workers)%sc.addrs)
						d := net.Dialer{Timeout: waitFor, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
						c, err := d.Dial("tcp", b.Addr())
						if err != nil {
							continue
						}
						_, _ = c.Write(rawConnect(fmt.Sprintf("f-%d-%d", w, n), "victim", "wrong", 30))
						_ = c.SetReadDeadline(time.Now().Add(waitFor))
						_, _ = io.Copy(io.Discard, c)
						_ = c.Close()
						attempts.Add(1)
					}
				}()
			}
			time.Sleep(sc.warmUp) // the flood runs meanwhile: a measurement, not synchronisation
			attempts.Store(0)
			refused0 := b.Stats()
			var before syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
			start := time.Now()
			var logins []time.Duration
			for i := range legit {
				time.Sleep(250 * time.Millisecond) // spaced logins during the flood, not synchronisation
				t0 := time.Now()
				if _, err := dial3From(t, b.URL(), "127.0.2.1", fmt.Sprintf("L%d-%s", i, suffix()), fmt.Sprintf("L%d", i), "pw"); err != nil {
					t.Logf("legit login %d failed: %v", i, err)
					continue
				}
				logins = append(logins, time.Since(t0))
			}
			wall := time.Since(start)
			var after syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
			close(stop)
			wg.Wait()
			cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
			s := b.Stats()
			t.Logf("%s, %d workers: %.1f wrong-password attempts/s; process CPU %.2f cores; %d of %d legit logins, median %v, max %v; auth refused %d, throttled %d",
				sc.name, sc.workers, float64(attempts.Load())/wall.Seconds(), cpu.Seconds()/wall.Seconds(), len(logins), legit,
				median(logins), maxOf(logins), s.AuthRefused-refused0.AuthRefused, s.AuthThrottled-refused0.AuthThrottled)
		})
	}
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	d = append([]time.Duration(nil), d...)
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2]
}

func maxOf(d []time.Duration) time.Duration {
	var m time.Duration
	for _, x := range d {
		m = max(m, x)
	}
	return m
}
