package rowexpr

// This file holds the one unusual technique of the package: a struct value,
// boxed in an interface once, whose memory is overwritten row by row.
//
// Why. The expression VM runs fastest (and allocates nothing) when its
// environment is a struct VALUE whose type was declared at compile time: it
// reads a variable with reflect (Value.Field then Value.Interface), and
// Interface on a field of a non-addressable struct returns an interface that
// points into the struct's memory instead of copying the field. A pointer to
// a struct works too but is several times slower, and a map environment
// boxes every value it stores. Schemas are only known at run time, so the
// struct type is built with reflect.StructOf: one field per column and per
// extra variable, each tagged `expr:"<name>"` so that expressions use the
// column names (the Go field names F0, F1, ... are invisible to them).
//
// How. reflect.New(T).Elem() is addressable, so its Interface method copies
// the struct into a fresh heap object of type T and returns an interface
// whose data word points to that object. Nothing else references the object:
// it belongs to the one interface value we keep in box.val. We read the data
// word (the second word of an empty interface) once and keep it as box.mem;
// per row we store column values at mem + field offset with ordinary typed
// stores (the compiler emits the GC write barriers for fields that hold
// pointers, such as strings and maps). The VM then reads the current row
// through box.val.
//
// Why it is sound.
//   - T is never pointer-shaped: every environment struct ends with an
//     8-byte non-pointer probe field, so an interface holding T always points
//     to a separate heap object rather than holding the value in its data
//     word.
//   - The object is allocated by reflect at run time, so the compiler cannot
//     have placed it in read-only data or assumed its contents.
//   - Offsets come from reflect.StructField.Offset of the same type T, and
//     every store uses the field's own Go type, so alignment and pointer
//     bitmaps match (checkptr, enabled by -race, verifies this).
//   - A box is used by one goroutine at a time (a Frame is not safe for
//     concurrent use); the VM's reads follow our writes in program order.
//   - newBox verifies the technique on the running Go version: it writes the
//     probe through mem and reads it back through reflect on box.val, and
//     fails if the two disagree.
//
// Consequence. A value the VM returns may point into the box (an expression
// that is just a column name returns an interface aliasing the field), so a
// result is only valid until the frame moves to another row; Frame.Eval
// copies such results out before returning them.

import (
	"errors"
	"reflect"
	"unsafe"
)

// probeValue is written into the probe field to check that the box is
// writable through its memory pointer.
const probeValue = 0x5eed_0f_b0c5_1234

// probeField is the name of the trailing non-pointer field of every
// environment struct; its expr tag "-" hides it from expressions.
const probeField = "Probe_"

// eface is the layout of an empty interface: type word, data word.
type eface struct {
	typ  unsafe.Pointer
	data unsafe.Pointer
}

// box is one boxed environment struct and the address of its memory.
type box struct {
	val any            // handed to the VM; its dynamic type is the env struct
	mem unsafe.Pointer // the struct's memory, shared with val
}

// newBox boxes a zero value of t (an environment struct built by newEnvType)
// and checks that writes through mem are visible through val.
func newBox(t reflect.Type, probe uintptr, probeIndex int) (box, error) {
	v := reflect.New(t).Elem().Interface()
	b := box{val: v, mem: (*eface)(unsafe.Pointer(&v)).data}
	*(*uint64)(unsafe.Add(b.mem, probe)) = probeValue
	if reflect.ValueOf(b.val).Field(probeIndex).Uint() != probeValue {
		return box{}, errors.New("rowexpr: the boxed environment is not writable on this Go version")
	}
	*(*uint64)(unsafe.Add(b.mem, probe)) = 0
	return b, nil
}

// at returns the address of the field at offset off.
func (b *box) at(off uintptr) unsafe.Pointer { return unsafe.Add(b.mem, off) }
