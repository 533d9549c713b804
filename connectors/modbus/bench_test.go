package modbus_test

import (
	"slices"
	"testing"
	"time"

	mb "github.com/simonvetter/modbus"

	"github.com/sluice-edge/sluice/connectors/modbus"
)

// BenchmarkClientRead: a plant controller reads 10 registers over
// loopback TCP (the same library's client).
func BenchmarkClientRead(b *testing.B) {
	var entries []modbus.Entry
	for i := range 5 {
		entries = append(entries, modbus.Entry{Table: modbus.HoldingRegisters, Address: uint16(2 * i), Asset: "T0001", Point: "power", Type: modbus.Float32})
	}
	srv, c := start(b, modbus.Options{Entries: entries})
	srv.Update("T0001", "power", 1234.5)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.ReadRegisters(0, 10, mb.HOLDING_REGISTER); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
}

// BenchmarkWriteToDevice: a write becomes a command through the arbiter
// (durable log, not synced) and the EnOS downlink to a simulated turbine
// on the embedded broker; each iteration waits for the device's reply.
// It reports commands/s and the p50/p99 from the write to acked.
func BenchmarkWriteToDevice(b *testing.B) {
	p := newPlant(b)
	_, c := start(b, modbus.Options{Entries: []modbus.Entry{
		{Table: modbus.HoldingRegisters, Address: 0, Product: p.pk, Asset: "T0001", Set: "power_limit"}}, Submitter: p.arbiter})
	var lat []time.Duration
	b.ReportAllocs()
	v := uint16(0)
	for b.Loop() {
		began := time.Now()
		v++
		if err := c.WriteRegister(0, v); err != nil {
			b.Fatal(err)
		}
		select {
		case <-p.acked:
		case <-time.After(waitFor):
			b.Fatal("no command acked")
		}
		lat = append(lat, time.Since(began))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commands/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50_us")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99_us")
}
