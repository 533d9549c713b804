package modbus

import (
	"errors"
	"fmt"
	"math"
)

// Table is a Modbus data table an entry of the map lives in.
type Table uint8

// Tables of the map.
const (
	// HoldingRegisters are 16-bit registers (function codes 3, 6, 16;
	// reads of input registers, code 4, see the same map).
	HoldingRegisters Table = iota + 1
	// Coils are single bits (function codes 1, 5, 15; reads of discrete
	// inputs, code 2, see the same map).
	Coils
)

// DataType is how an entry's value is held in its registers.
type DataType string

// Data types of register entries.
const (
	Uint16  DataType = "uint16"
	Int16   DataType = "int16"
	Uint32  DataType = "uint32"
	Int32   DataType = "int32"
	Float32 DataType = "float32"
)

// Words returns the number of registers a value of type t takes (0 for an
// unknown type).
func (t DataType) Words() int {
	switch t {
	case Uint16, Int16:
		return 1
	case Uint32, Int32, Float32:
		return 2
	}
	return 0
}

// WordOrder says which register of a two-register value comes first.
type WordOrder string

// Word orders. Within a register, bytes are always big endian, as Modbus
// says.
const (
	// HighFirst puts the most significant word at the lower address (the
	// default; "big-endian" or ABCD).
	HighFirst WordOrder = "high_first"
	// LowFirst puts the least significant word at the lower address
	// ("word-swapped" or CDAB).
	LowFirst WordOrder = "low_first"
)

// Entry maps one value of a table to an asset's measure point (read) or
// set-point (written), or both.
type Entry struct {
	// Table and Address locate the entry's first register or its coil.
	Table   Table
	Address uint16
	// Product is the asset's product key (for EnOS devices), Asset its
	// name (device key).
	Product, Asset string
	// Point is the measure point a read returns (its latest value); empty
	// for a write-only entry, which reads back the last value written.
	Point string
	// Set is the set-point a write sets through a command; empty for a
	// read-only entry.
	Set string
	// Type and Order say how a register entry's value is held (default
	// uint16, HighFirst). Coils hold 0 or 1.
	Type  DataType
	Order WordOrder
	// Scale and Offset convert: value = raw*Scale + Offset (default
	// scale 1, offset 0). A scale of 0.1 carries tenths in a uint16.
	Scale, Offset float64
}

// words returns how many registers (or coils) the entry takes.
func (e *Entry) words() int {
	if e.Table == Coils {
		return 1
	}
	return e.Type.Words()
}

// Limits of a map.
const (
	// MaxEntries bounds the entries of a map.
	MaxEntries = 10_000
	// MaxNameLen bounds asset, product and point names.
	MaxNameLen = 128
)

// ErrOutOfRange is returned when a value does not fit the entry's type.
var ErrOutOfRange = errors.New("value out of the register's range")

// check validates an entry and fills its defaults.
func (e *Entry) check() error {
	if e.Table != HoldingRegisters && e.Table != Coils {
		return errors.New("unknown table")
	}
	if e.Asset == "" {
		return errors.New("no asset")
	}
	if e.Point == "" && e.Set == "" {
		return errors.New("neither point nor set: the entry maps nothing")
	}
	for what, s := range map[string]string{"asset": e.Asset, "product": e.Product, "point": e.Point, "set": e.Set} {
		if len(s) > MaxNameLen {
			return fmt.Errorf("%s longer than %d bytes", what, MaxNameLen)
		}
		for _, r := range s {
			if r < 0x21 || r == 0x7f || r == '/' || r == '+' || r == '#' {
				return fmt.Errorf("%s %q holds %q", what, s, r)
			}
		}
	}
	if e.Table == Coils {
		if e.Type != "" || e.Order != "" || e.Scale != 0 || e.Offset != 0 {
			return errors.New("a coil holds 0 or 1: it takes no type, word_order, scale or offset")
		}
		return nil
	}
	if e.Type == "" {
		e.Type = Uint16
	}
	if e.Type.Words() == 0 {
		return fmt.Errorf("unknown type %q (uint16, int16, uint32, int32, float32)", e.Type)
	}
	if e.Order == "" {
		e.Order = HighFirst
	}
	if e.Order != HighFirst && e.Order != LowFirst {
		return fmt.Errorf("unknown word_order %q (high_first, low_first)", e.Order)
	}
	if e.Scale == 0 {
		e.Scale = 1
	}
	if math.IsNaN(e.Scale) || math.IsInf(e.Scale, 0) || math.IsNaN(e.Offset) || math.IsInf(e.Offset, 0) {
		return errors.New("scale and offset must be finite")
	}
	if int(e.Address)+e.words() > 0x10000 {
		return fmt.Errorf("a %s at %d runs past address 65535", e.Type, e.Address)
	}
	return nil
}

// encode returns the registers holding v (value units): raw =
// (v-Offset)/Scale, rounded for integer types and saturated to the type's
// range. NaN reads as 0 (NaN for float32).
func (e *Entry) encode(v float64) (hi, lo uint16) {
	raw := (v - e.Offset) / e.Scale
	var bits uint32
	switch e.Type {
	case Float32:
		bits = math.Float32bits(float32(raw))
	case Uint16:
		return uint16(sat(raw, 0, math.MaxUint16)), 0
	case Int16:
		return uint16(int16(sat(raw, math.MinInt16, math.MaxInt16))), 0
	case Uint32:
		bits = uint32(sat(raw, 0, math.MaxUint32))
	case Int32:
		bits = uint32(int32(sat(raw, math.MinInt32, math.MaxInt32)))
	}
	hi, lo = uint16(bits>>16), uint16(bits)
	if e.Order == LowFirst {
		hi, lo = lo, hi
	}
	return hi, lo
}

// sat rounds raw and saturates it to [lo, hi]; NaN gives 0.
func sat(raw, lo, hi float64) float64 {
	if math.IsNaN(raw) {
		return 0
	}
	return min(hi, max(lo, math.Round(raw)))
}

// decode returns the value (value units) held in the entry's registers,
// in address order; w1 is ignored for one-register types.
func (e *Entry) decode(w0, w1 uint16) (float64, error) {
	var raw float64
	switch e.Type {
	case Uint16:
		raw = float64(w0)
	case Int16:
		raw = float64(int16(w0))
	default:
		if e.Order == LowFirst {
			w0, w1 = w1, w0
		}
		bits := uint32(w0)<<16 | uint32(w1)
		switch e.Type {
		case Uint32:
			raw = float64(bits)
		case Int32:
			raw = float64(int32(bits))
		case Float32:
			f := float64(math.Float32frombits(bits))
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return 0, fmt.Errorf("%w: a float32 that is not a finite number", ErrOutOfRange)
			}
			raw = f
		}
	}
	return raw*e.Scale + e.Offset, nil
}
