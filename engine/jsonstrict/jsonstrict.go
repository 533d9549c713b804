// Package jsonstrict finds what encoding/json lets through in JSON that
// arrives from outside: a key that appears twice in one object (the
// decoder keeps the last, while a proxy, a log or another reader may take
// the first). Bundle manifests and the control API refuse such input.
package jsonstrict

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// MaxDepth bounds the nesting CheckKeys walks.
const MaxDepth = 64

// DuplicateKeyError names a key that appears twice in one object.
type DuplicateKeyError struct {
	Key string
}

func (e *DuplicateKeyError) Error() string { return fmt.Sprintf("duplicate key %q", e.Key) }

// CheckKeys walks the JSON value in data and returns a *DuplicateKeyError
// for the first object holding a key twice, at any depth; an error too for
// JSON that does not parse or nests deeper than MaxDepth.
func CheckKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	type frame struct {
		object bool
		keys   map[string]bool
		expect bool // the next token in an object is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			if len(stack) > 0 {
				return io.ErrUnexpectedEOF
			}
			return nil
		}
		if err != nil {
			return err
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.expect {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				continue
			}
			k, _ := tok.(string)
			if top.keys[k] {
				return &DuplicateKeyError{Key: k}
			}
			top.keys[k] = true
			top.expect = false
			continue
		}
		if top != nil && top.object {
			top.expect = true
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{':
				stack = append(stack, &frame{object: true, keys: map[string]bool{}, expect: true})
			case '[':
				stack = append(stack, &frame{})
			case ']':
				stack = stack[:len(stack)-1]
			}
		}
		if len(stack) > MaxDepth {
			return fmt.Errorf("nested deeper than %d levels", MaxDepth)
		}
	}
}

// IsDuplicateKey reports whether err is a *DuplicateKeyError and returns
// its key.
func IsDuplicateKey(err error) (string, bool) {
	var d *DuplicateKeyError
	if errors.As(err, &d) {
		return d.Key, true
	}
	return "", false
}
