package modbus

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"sync/atomic"
	"testing"
	"time"
)

func TestEncodeDecode(t *testing.T) {
	cases := []struct {
		name   string
		e      Entry
		v      float64
		hi, lo uint16
		back   float64 // the value decode gives for (hi, lo)
	}{
		{"uint16", Entry{Type: Uint16}, 1500, 1500, 0, 1500},
		{"uint16 rounds", Entry{Type: Uint16}, 7.5, 8, 0, 8},
		{"uint16 saturates above", Entry{Type: Uint16}, 1e9, 0xffff, 0, 65535},
		{"uint16 saturates below", Entry{Type: Uint16}, -5, 0, 0, 0},
		{"uint16 tenths", Entry{Type: Uint16, Scale: 0.1}, 123.4, 1234, 0, 123.4},
		{"uint16 offset", Entry{Type: Uint16, Offset: -40}, 25, 65, 0, 25},
		{"int16 negative", Entry{Type: Int16}, -12, 0xfff4, 0, -12},
		{"int16 saturates", Entry{Type: Int16}, -1e6, 0x8000, 0, -32768},
		{"uint32 high first", Entry{Type: Uint32}, 0x12345678, 0x1234, 0x5678, 0x12345678},
		{"uint32 low first", Entry{Type: Uint32, Order: LowFirst}, 0x12345678, 0x5678, 0x1234, 0x12345678},
		{"int32 negative", Entry{Type: Int32}, -2, 0xffff, 0xfffe, -2},
		{"float32", Entry{Type: Float32}, 1.5, 0x3fc0, 0, 1.5},
		{"float32 low first", Entry{Type: Float32, Order: LowFirst}, 1.5, 0, 0x3fc0, 1.5},
		{"NaN reads 0", Entry{Type: Uint16}, math.NaN(), 0, 0, 0},
		{"NaN reads NaN in a float32", Entry{Type: Float32}, math.NaN(), 0x7fc0, 0, math.NaN()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := tc.e
			e.Table, e.Asset, e.Point = HoldingRegisters, "a", "p"
			if err := e.check(); err != nil {
				t.Fatal(err)
			}
			hi, lo := e.encode(tc.v)
			if hi != tc.hi || lo != tc.lo {
				t.Errorf("encode(%v) = %#04x %#04x, want %#04x %#04x", tc.v, hi, lo, tc.hi, tc.lo)
			}
			back, err := e.decode(hi, lo)
			if math.IsNaN(tc.back) {
				if !errors.Is(err, ErrOutOfRange) {
					t.Errorf("decode of NaN: %v, %v", back, err)
				}
				return
			}
			if err != nil || math.Abs(back-tc.back) > 1e-9 {
				t.Errorf("decode = %v, %v; want %v", back, err, tc.back)
			}
		})
	}
}

// BenchmarkReadRegisters measures the server's side of a read of 10
// registers (the handler, without the network).
func BenchmarkReadRegisters(b *testing.B) {
	var entries []Entry
	for i := range 5 {
		entries = append(entries, Entry{Table: HoldingRegisters, Address: uint16(2 * i), Asset: "T0001", Point: "p" + string(rune('0'+i)), Type: Float32})
	}
	s, err := New(Options{Entries: entries})
	if err != nil {
		b.Fatal(err)
	}
	for i := range 5 {
		s.Update("T0001", "p"+string(rune('0'+i)), float64(i)*1.5)
	}
	h := handler{s}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.readRegisters(0, 10); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUpdate measures feeding one value.
func BenchmarkUpdate(b *testing.B) {
	s, err := New(Options{Entries: []Entry{{Table: HoldingRegisters, Asset: "T0001", Point: "power", Type: Float32}}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	v := 0.0
	for b.Loop() {
		s.Update("T0001", "power", v)
		v++
	}
}

// countHandler counts the records logged.
type countHandler struct{ n *atomic.Int64 }

func (h countHandler) Enabled(context.Context, slog.Level) bool  { return true }
func (h countHandler) Handle(context.Context, slog.Record) error { h.n.Add(1); return nil }
func (h countHandler) WithAttrs([]slog.Attr) slog.Handler        { return h }
func (h countHandler) WithGroup(string) slog.Handler             { return h }

// TestLogWriterBounded: a flood of the library's log lines (refused
// connections) is cut to the burst per period.
func TestLogWriterBounded(t *testing.T) {
	var n atomic.Int64
	w := newLogWriter(slog.New(countHandler{&n}), time.Hour, 10)
	for range 1000 {
		if _, err := w.Write([]byte("max. number of concurrent connections reached, rejecting 10.0.0.9:4711\n")); err != nil {
			t.Fatal(err)
		}
	}
	if got := n.Load(); got != 10 {
		t.Errorf("%d lines logged of 1000, want 10", got)
	}
}
