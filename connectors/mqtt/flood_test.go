package mqtt

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sluice-edge/sluice/engine"
)

// floodPublish appends the head of a PUBLISH of payloadLen bytes (fixed
// header, topic, packet id, an empty MQTT 5 property section) to b.
func floodPublish(b []byte, v byte, topic string, qos byte, pid uint16, payloadLen int) []byte {
	body := 2 + len(topic) + payloadLen
	if qos > 0 {
		body += 2
	}
	if v == 5 {
		body++
	}
	b = append(b, packets.Publish<<4|qos<<1)
	for {
		c := byte(body & 0x7f)
		if body >>= 7; body > 0 {
			c |= 0x80
		}
		b = append(b, c)
		if body == 0 {
			break
		}
	}
	b = append(b, byte(len(topic)>>8), byte(len(topic)))
	b = append(b, topic...)
	if qos > 0 {
		b = append(b, byte(pid>>8), byte(pid))
	}
	if v == 5 {
		b = append(b, 0)
	}
	return b
}

// heapInUse returns the heap in use after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestSourceFloodHeapBound: a broker flooding the source as fast as it
// can write — payloads of up to max_payload over thousands of topics, or
// small ones from a new device each, QoS 0 (which no in-flight window
// limits) or QoS 1 — while the pipeline downstream holds the first batch,
// costs the source no more heap than queue_bytes, one packet being read
// (max_payload + 128 KiB), the device table (max_device_bytes) and a few
// MiB: the connection stops reading, TCP holds the broker back, and no
// QoS 1 message is acknowledged while its rows are held. Once the
// pipeline takes batches again the flood goes on within the same bound.
// Before, the queue between the connection and the decoder was bounded
// in messages only (queue, 4096), so it could hold 4096 × max_payload
// bytes (4 GiB by default).
func TestSourceFloodHeapBound(t *testing.T) {
	const (
		maxPayload  = 256 << 10
		queueBytes  = 8 << 20
		deviceBytes = 1 << 20
	)
	cases := []struct {
		name    string
		qos     byte
		sizes   []int // payload sizes, in turn
		devices int   // distinct device keys, in turn
	}{
		{"large/qos0", 0, []int{maxPayload, maxPayload * 4 / 5, maxPayload * 3 / 5, maxPayload * 2 / 5}, 5000},
		{"large/qos1", 1, []int{maxPayload, maxPayload * 4 / 5, maxPayload * 3 / 5, maxPayload * 2 / 5}, 5000},
		{"small/qos1", 1, []int{64, 100, 200}, 1 << 30},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			qos := tc.qos
			h := newHostileBroker(t)
			cfg := fmt.Sprintf(`
urls: [%s]
client_id: flood-%s
username: %s
password: %s
clean_session: true
qos: %d
max_payload: %d
queue_bytes: %d
max_device_bytes: %d
format: json
topics: ["h/+"]
topic_pattern: "h/{deviceKey}"
schema: {time: ts, key: device, fields: {temp: float64}}
`, h.url(), suffix(), hostileUser, hostilePass, qos, maxPayload, queueBytes, deviceBytes)
			counters := engine.NewCounters()
			src := buildSource(t, cfg, engine.BuildContext{Counters: counters, Mem: checkedMem(t)})

			// The pipeline downstream holds every batch until release.
			release := make(chan struct{})
			releaseAll := sync.OnceFunc(func() { close(release) })
			defer releaseAll() // a failure leaves nothing held
			var emitted atomic.Int64
			emit := func(rec arrow.RecordBatch, ack *engine.Ack) error {
				<-release
				emitted.Add(rec.NumRows())
				rec.Release()
				ack.Done()
				return nil
			}
			sess := make(chan *hostileSession, 1)
			go func() { sess <- h.handshake(t, 5, true) }()
			r := startEmit(t, src, emit, nil)
			s := <-sess

			// The broker counts the PUBACKs it gets.
			var pubacks atomic.Int64
			go func() {
				rd := bufio.NewReader(s.conn)
				for {
					pk, err := readHostile(rd, 5)
					if err != nil {
						return
					}
					if pk.FixedHeader.Type == packets.Puback {
						pubacks.Add(1)
					}
				}
			}()

			// JSON objects padded to their sizes.
			payloads := make([][]byte, len(tc.sizes))
			for i, n := range tc.sizes {
				p := fmt.Appendf(nil, `{"ts":1700000000000,"temp":%d,"pad":"`, i)
				for len(p) < n-2 {
					p = append(p, 'x')
				}
				payloads[i] = append(p, `"}`...)
			}
			base := heapInUse()

			// The flood: as fast as the socket takes it.
			var (
				written  atomic.Int64
				blocked  atomic.Int64 // consecutive writes that took nothing
				stopping = make(chan struct{})
				flooded  sync.WaitGroup
			)
			flooded.Add(1)
			go func() {
				defer flooded.Done()
				head := make([]byte, 0, 64)
				var pid uint16
				for i := 0; ; i++ {
					p := payloads[i%len(payloads)]
					if qos == 1 {
						if pid++; pid == 0 {
							pid = 1
						}
					}
					head = floodPublish(head[:0], 5, "h/D"+strconv.Itoa(i%tc.devices), qos, pid, len(p))
					for _, b := range [][]byte{head, p} {
						for len(b) > 0 {
							select {
							case <-stopping:
								return
							default:
							}
							_ = s.conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
							k, err := s.conn.Write(b)
							b = b[k:]
							written.Add(int64(k))
							if err == nil {
								blocked.Store(0)
								continue
							}
							var ne net.Error
							if !errors.As(err, &ne) || !ne.Timeout() {
								return
							}
							if k == 0 {
								blocked.Add(1)
							}
						}
					}
				}
			}()
			stopFlood := sync.OnceFunc(func() { close(stopping); flooded.Wait() })
			defer stopFlood()

			bound := uint64(queueBytes + 2*(maxPayload+publishHeadRoom) + deviceBytes + 4<<20)
			var peak uint64
			sample := func(phase string) {
				time.Sleep(20 * time.Millisecond)
				if hu := heapInUse(); hu > base && hu-base > peak {
					peak = hu - base
				}
				if peak > bound {
					t.Fatalf("%s: heap in use grew by %d MiB while %d MiB were written to the source (%d messages decoded), beyond the bound of %d MiB",
						phase, peak>>20, written.Load()>>20, counters.Counter("messages").Load(), bound>>20)
				}
			}
			deadline := time.Now().Add(waitFor)
			// Until the broker has been held back for a second (10 writes
			// in a row taking nothing).
			for blocked.Load() < 10 {
				if time.Now().After(deadline) {
					t.Fatalf("the broker was never held back: %d MiB written", written.Load()>>20)
				}
				sample("held")
			}
			heldPeak := peak
			if n := pubacks.Load(); n != 0 {
				t.Fatalf("%d messages acknowledged while their rows were held", n)
			}

			// The pipeline takes batches again: the flood goes on, within
			// the bound.
			held := written.Load()
			releaseAll()
			deadline = time.Now().Add(waitFor)
			for written.Load() < held+2<<20 || qos == 1 && pubacks.Load() == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("the flood did not go on: %d MiB written, %d PUBACKs after the release", (written.Load()-held)>>20, pubacks.Load())
				}
				sample("released")
			}
			t.Logf("%s: broker held back after %d MiB; heap in use grew by at most %.1f MiB held, %.1f MiB after the release "+
				"(bound %d MiB: queue_bytes %d MiB + 2 × (max_payload + 128 KiB) + max_device_bytes %d MiB + 4 MiB); "+
				"%d rows emitted, %d PUBACKs, %d devices evicted",
				tc.name, held>>20, float64(heldPeak)/(1<<20), float64(peak)/(1<<20), bound>>20, queueBytes>>20, deviceBytes>>20,
				emitted.Load(), pubacks.Load(), counters.Counter("devices_evicted").Load())
			stopFlood()
			_ = s.conn.Close()
			r.stop(t)
		})
	}
}
