package mqtt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/connectors/devsim"
	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/control"
)

// controlPath is an arbiter in front of a downlink, as on the edge.
type controlPath struct {
	a     *control.Arbiter
	dl    *Downlink
	clock *command.ManualClock
}

func newControlPath(t testing.TB, url string, clock *command.ManualClock) *controlPath {
	t.Helper()
	p := &controlPath{clock: clock}
	var err error
	// The downlink is the arbiter's transport and reports the replies to
	// the arbiter's tracker: one record per command.
	lazy := &control.LateTransport{}
	opts := control.Options{Dir: t.TempDir(), Transport: lazy, Timeout: 30 * time.Second}
	if clock != nil {
		opts.Clock = clock
	}
	if p.a, err = control.Open(opts); err != nil {
		t.Fatal(err)
	}
	p.dl, err = NewDownlink(DownlinkOptions{Tracker: p.a.Tracker(), Client: ClientOptions{
		URLs: []string{url}, ClientID: "ctl-" + suffix(), Version: 5, CleanSession: true}, SendTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	lazy.Set(p.dl)
	t.Cleanup(func() { p.a.Close(); p.dl.Close() })
	return p
}

func waitFinal(t testing.TB, a *control.Arbiter, id string) control.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	r, err := a.Wait(ctx, id)
	if err != nil {
		t.Fatalf("waiting for %s: %v (%s)", id, err, r.Status)
	}
	return r
}

func TestControlPath(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, b := range brokers(t) {
		t.Run(b.name, func(t *testing.T) {
			pk := "pk" + suffix()
			sim := answeringDevices(t, b.url, pk)
			ctx := context.Background()

			t.Run("a local safety lease blocks a cloud set-point", func(t *testing.T) {
				p := newControlPath(t, b.url, command.NewManualClock(start))
				if _, err := p.a.TakeLease(ctx, control.LeaseRequest{Asset: "T0001", Holder: "hmi-1", Origin: "local:hmi",
					Class: control.ClassSafety, For: time.Hour}); err != nil {
					t.Fatal(err)
				}
				rec, err := p.a.Submit(ctx, control.Command{Product: pk, Asset: "T0001", Origin: "cloud", Inputs: map[string]any{"lease_probe": 1.0}})
				if !errors.Is(err, control.ErrLeased) || rec.Status != command.Rejected || !strings.Contains(rec.Reason, "leased by hmi-1") {
					t.Fatalf("%s %q %v", rec.Status, rec.Reason, err)
				}
				own, err := p.a.Submit(ctx, control.Command{Product: pk, Asset: "T0001", Origin: "local:hmi", Lease: "hmi-1", Inputs: map[string]any{"lease_probe": 2.0}})
				if err != nil {
					t.Fatal(err)
				}
				if got := waitFinal(t, p.a, own.ID); got.Status != command.Acked || got.Replied.IsZero() {
					t.Fatalf("the holder's command: %s", got.Status)
				}
				if v := sim.SetPoints("T0001")["lease_probe"]; v != 2 {
					t.Fatalf("the device holds lease_probe=%v, want 2 (the holder's, never the cloud's)", v)
				}
				if n := len(p.a.Audit(control.Filter{ID: rec.ID, Status: command.Rejected})); n != 1 {
					t.Fatalf("%d audit entries of the rejection", n)
				}
			})

			t.Run("a device that never replies times out; a late reply is audited only", func(t *testing.T) {
				p := newControlPath(t, b.url, command.NewManualClock(start))
				rec, err := p.a.Submit(ctx, control.Command{Product: pk, Asset: "T0003", Origin: "cloud", Inputs: map[string]any{"p": 1.0}})
				if err != nil {
					t.Fatal(err)
				}
				waitSent(t, p.a, rec.ID)
				p.clock.Advance(30 * time.Second)
				if got := waitFinal(t, p.a, rec.ID); got.Status != command.Timeout {
					t.Fatalf("status %s", got.Status)
				}
				// The device answers at last.
				pub := newPublisher(t, b.url, 5)
				payload := fmt.Appendf(nil, `{"id":%q,"code":200,"data":{}}`, rec.ID)
				pub.publish(codec.ReplyTopicFor(codec.ServiceTopicFor(pk, "T0003", command.SetPoints)), payload)
				deadline := time.Now().Add(waitFor)
				for !auditHas(p.a, rec.ID, "late reply ignored") {
					if time.Now().After(deadline) {
						t.Fatalf("the late reply is not audited: %v", p.a.Audit(control.Filter{ID: rec.ID}))
					}
					time.Sleep(5 * time.Millisecond)
				}
				if got, _ := p.a.Get(rec.ID); got.Status != command.Timeout {
					t.Fatalf("status after the late reply %s", got.Status)
				}
			})

			t.Run("idempotency key executed once", func(t *testing.T) {
				p := newControlPath(t, b.url, nil)
				c := control.Command{Product: pk, Asset: "T0001", Origin: "cloud", IdempotencyKey: "k-" + suffix(), Inputs: map[string]any{"idem": 1.0}}
				first, err := p.a.Submit(ctx, c)
				if err != nil {
					t.Fatal(err)
				}
				waitFinal(t, p.a, first.ID)
				again, err := p.a.Submit(ctx, c)
				if err != nil || again.ID != first.ID {
					t.Fatalf("again: %s %v", again.ID, err)
				}
				if n := len(p.a.List(control.Filter{})); n != 1 {
					t.Fatalf("%d records", n)
				}
			})
		})
	}
}

func waitSent(t testing.TB, a *control.Arbiter, id string) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		if r, _ := a.Get(id); r.Status == command.Sent {
			return
		}
		if time.Now().After(deadline) {
			r, _ := a.Get(id)
			t.Fatalf("%s is %s, not sent", id, r.Status)
		}
		time.Sleep(time.Millisecond)
	}
}

func auditHas(a *control.Arbiter, id, part string) bool {
	return slices.ContainsFunc(a.Audit(control.Filter{ID: id}), func(tr command.Transition) bool { return strings.Contains(tr.Reason, part) })
}

// TestControlOffline: commands queued while the edge's link to the devices
// is down; when it returns 5 minutes later, the one with a 1-minute expiry
// is expired and never executed, and of two for the same point only the
// newer runs.
func TestControlOffline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	clock := command.NewManualClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	p := newControlPath(t, "tcp://"+addr, clock)
	ctx := context.Background()
	pk := "pk" + suffix()

	expiring := control.Command{Product: pk, Asset: "T0001", Origin: "cloud", Inputs: map[string]any{"a": 1.0}, Expiry: clock.Now().Add(time.Minute)}
	exp, err := p.a.Submit(ctx, expiring)
	if err != nil || exp.Status != command.Queued {
		t.Fatalf("%s %v", exp.Status, err)
	}
	older, err := p.a.Submit(ctx, control.Command{Product: pk, Asset: "T0001", Origin: "cloud", Inputs: map[string]any{"b": 1.0}})
	if err != nil {
		t.Fatal(err)
	}
	newer, err := p.a.Submit(ctx, control.Command{Product: pk, Asset: "T0001", Origin: "cloud", Inputs: map[string]any{"b": 2.0}})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := p.a.Get(older.ID); got.Status != command.Superseded {
		t.Fatalf("older: %s", got.Status)
	}
	clock.Advance(5 * time.Minute)

	// The link returns: the broker comes up, the devices with it.
	br, err := StartBroker(BrokerOptions{Listen: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { br.Close() })
	sim := answeringDevices(t, "tcp://"+addr, pk)
	if got := waitFinal(t, p.a, newer.ID); got.Status != command.Acked {
		t.Fatalf("newer: %s %s", got.Status, got.Reason)
	}
	if got, _ := p.a.Get(exp.ID); got.Status != command.Expired {
		t.Fatalf("expiring: %s", got.Status)
	}
	if v, ok := sim.SetPoints("T0001")["a"]; ok {
		t.Fatalf("the expired command was executed: a=%v", v)
	}
	if v := sim.SetPoints("T0001")["b"]; v != 2 {
		t.Fatalf("b=%v, want 2", v)
	}
}

// BenchmarkControlPath measures commands through the arbiter (its log
// synced at every transition) and the downlink to the embedded broker and
// simulated devices that acknowledge them: commands per second and the
// time from submission to acked (p50, p99), with one command in flight
// per device and 8 devices.
func BenchmarkControlPath(b *testing.B) {
	for _, synced := range []bool{true, false} {
		name := "synced"
		if !synced {
			name = "nosync"
		}
		b.Run(name, func(b *testing.B) {
			br := embedded(b)
			pk := "pk" + suffix()
			sim, err := devsimFor(b, br.url, pk, 8)
			if err != nil {
				b.Fatal(err)
			}
			lazy := &control.LateTransport{}
			a, err := control.Open(control.Options{Dir: b.TempDir(), Transport: lazy, NoSync: !synced})
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			dl, err := NewDownlink(DownlinkOptions{Tracker: a.Tracker(), Client: ClientOptions{URLs: []string{br.url}, ClientID: "bench-" + suffix(), Version: 5, CleanSession: true}})
			if err != nil {
				b.Fatal(err)
			}
			defer dl.Close()
			lazy.Set(dl)
			devices := sim.DeviceKeys()
			ctx := context.Background()
			lat := make([]time.Duration, b.N)
			var wg sync.WaitGroup
			next := make(chan int)
			b.ReportAllocs()
			b.ResetTimer()
			for _, dev := range devices {
				wg.Go(func() {
					for i := range next {
						t0 := time.Now()
						rec, err := a.Submit(ctx, control.Command{Product: pk, Asset: dev, Origin: "cloud", Inputs: map[string]any{"bench": float64(i)}})
						if err != nil {
							b.Error(err)
							return
						}
						if got, err := a.Wait(ctx, rec.ID); err != nil || got.Status != command.Acked {
							b.Errorf("%s: %s %v", rec.ID, got.Status, err)
							return
						}
						lat[i] = time.Since(t0)
					}
				})
			}
			for i := range b.N {
				next <- i
			}
			close(next)
			wg.Wait()
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cmds/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}

// devsimFor starts n simulated devices that acknowledge every command.
func devsimFor(b testing.TB, url, pk string, n int) (*devsim.Sim, error) {
	sim, err := devsim.New(devsim.Config{URLs: []string{url}, ClientID: "dev-" + suffix(), ProductKey: pk, Devices: n})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	stop, err := sim.Answer(ctx)
	if err != nil {
		return nil, err
	}
	b.Cleanup(stop)
	return sim, nil
}
