package statecodec_test

import (
	"bytes"
	"errors"
	"math"
	"testing"

	"github.com/sluice-edge/sluice/engine/statecodec"
)

func TestRoundTrip(t *testing.T) {
	w := statecodec.NewWriter(nil)
	w.Byte(7)
	w.Bool(true)
	w.Bool(false)
	w.Uvarint(math.MaxUint64)
	w.Varint(math.MinInt64)
	w.Varint(-1)
	w.Float64(math.Copysign(0, -1))
	w.Float64(math.Float64frombits(0x7ff8000000000123)) // a NaN with a payload
	w.String("héllo")
	w.Blob([]byte{1, 2, 3})
	w.Raw([]byte{9, 9})
	w.Uint64(42)

	r := statecodec.NewReader(w.Bytes())
	if v := r.Byte(); v != 7 {
		t.Errorf("Byte %d", v)
	}
	if !r.Bool() || r.Bool() {
		t.Error("Bool")
	}
	if v := r.Uvarint(); v != math.MaxUint64 {
		t.Errorf("Uvarint %d", v)
	}
	if v := r.Varint(); v != math.MinInt64 {
		t.Errorf("Varint %d", v)
	}
	if v := r.Int(-1, 0, "v"); v != -1 {
		t.Errorf("Int %d", v)
	}
	if v := r.Float64(); math.Float64bits(v) != 1<<63 {
		t.Errorf("Float64 -0: %x", math.Float64bits(v))
	}
	if v := r.Float64(); math.Float64bits(v) != 0x7ff8000000000123 {
		t.Errorf("Float64 NaN: %x", math.Float64bits(v))
	}
	if s := r.String(10, "name"); s != "héllo" {
		t.Errorf("String %q", s)
	}
	if p := r.Blob(3, "blob"); !bytes.Equal(p, []byte{1, 2, 3}) {
		t.Errorf("Blob %v", p)
	}
	if p := r.Raw(2); !bytes.Equal(p, []byte{9, 9}) {
		t.Errorf("Raw %v", p)
	}
	if v := r.Uint64(); v != 42 {
		t.Errorf("Uint64 %d", v)
	}
	if err := r.Done(); err != nil {
		t.Fatal(err)
	}
}

// TestHostile: every malformed input is an error wrapping ErrCorrupt, the
// first error sticks, and no declared length is believed beyond the bytes
// that remain.
func TestHostile(t *testing.T) {
	for _, c := range []struct {
		name string
		data []byte
		read func(r *statecodec.Reader)
	}{
		{"empty byte", nil, func(r *statecodec.Reader) { r.Byte() }},
		{"bad bool", []byte{2}, func(r *statecodec.Reader) { r.Bool() }},
		{"truncated varint", []byte{0x80}, func(r *statecodec.Reader) { r.Uvarint() }},
		{"overlong varint", bytes.Repeat([]byte{0xff}, 11), func(r *statecodec.Reader) { r.Uvarint() }},
		{"truncated signed", []byte{0x80, 0x80}, func(r *statecodec.Reader) { r.Varint() }},
		{"overlong zero", []byte{0x80, 0x00}, func(r *statecodec.Reader) { r.Uvarint() }},
		{"overlong signed", []byte{0x82, 0x80, 0x00}, func(r *statecodec.Reader) { r.Varint() }},
		{"uint above limit", []byte{11}, func(r *statecodec.Reader) { r.Uint(10, "n") }},
		{"int below range", []byte{3}, func(r *statecodec.Reader) { r.Int(0, 5, "n") }}, // zigzag 3 = -2
		{"count above limit", []byte{5, 0, 0, 0, 0, 0}, func(r *statecodec.Reader) { r.Count(4, 1, "items") }},
		{"count beyond input", []byte{0xff, 0xff, 0xff, 0xff, 0x0f}, func(r *statecodec.Reader) { r.Count(math.MaxInt, 1, "items") }},
		{"count of wide items", []byte{3, 0, 0, 0, 0, 0}, func(r *statecodec.Reader) { r.Count(10, 2, "items") }},
		{"huge string", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, func(r *statecodec.Reader) { r.String(math.MaxInt, "name") }},
		{"string above limit", []byte{3, 'a', 'b', 'c'}, func(r *statecodec.Reader) { r.String(2, "name") }},
		{"short float", []byte{1, 2, 3}, func(r *statecodec.Reader) { r.Float64() }},
		{"trailing bytes", []byte{1, 2}, func(r *statecodec.Reader) { r.Byte() }},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := statecodec.NewReader(c.data)
			c.read(r)
			err := r.Done()
			if !errors.Is(err, statecodec.ErrCorrupt) {
				t.Fatalf("error %v, want ErrCorrupt", err)
			}
			// Sticky: later reads return zero values and keep the error.
			if r.Uvarint() != 0 || r.String(10, "x") != "" || r.Raw(0) != nil || !errors.Is(r.Err(), err) {
				t.Errorf("reads after an error: not zero, or the error changed to %v", r.Err())
			}
		})
	}
}
