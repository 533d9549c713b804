package mqtt

import (
	"encoding/json"

	"github.com/sluice-edge/sluice/connectors/codec"
)

// A few allocation-free reads of JSON envelopes: the message id a reply
// must carry, and the device keys of a batch post. They look only at what
// they need and assume nothing of the rest; the payload decoders check the
// payload in full.

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// scanString returns the index after the string starting at b[i] (a
// quote) and whether it holds escapes; -1 when it is not terminated.
func scanString(b []byte, i int) (int, bool) {
	esc := false
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			esc = true
			j++
		case '"':
			return j + 1, esc
		}
	}
	return -1, esc
}

// skipValue returns the index after the value starting at b[i], or -1.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		end, _ := scanString(b, i)
		return end
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, _ := scanString(b, j)
				if end < 0 {
					return -1
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && !isSpace(b[j]) {
		j++
	}
	if j == i {
		return -1
	}
	return j
}

// member returns the raw value of key in the object b[i:], or nil.
func member(b []byte, i int, key string) []byte {
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != '{' {
		return nil
	}
	i++
	for {
		i = skipSpace(b, i)
		if i >= len(b) || b[i] != '"' {
			return nil
		}
		end, esc := scanString(b, i)
		if end < 0 {
			return nil
		}
		k := b[i+1 : end-1]
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return nil
		}
		i = skipSpace(b, i+1)
		vend := skipValue(b, i)
		if vend < 0 {
			return nil
		}
		if !esc && string(k) == key {
			return b[i:vend]
		}
		i = skipSpace(b, vend)
		if i >= len(b) || b[i] != ',' {
			return nil
		}
		i++
	}
}

// messageID returns the top-level "id" of a JSON payload: a string's
// contents or a number's text; "" when there is none.
func messageID(payload []byte) string {
	v := member(payload, 0, "id")
	if len(v) == 0 {
		return ""
	}
	return codec.IDText(json.RawMessage(v))
}

// eachItemKey calls f with the string value of key in each object of the
// top-level "params" list, stopping when f returns false. It reports
// false when params is not a list; items without the key are passed as "".
func eachItemKey(payload []byte, key string, f func(string) bool) bool {
	p := member(payload, 0, "params")
	if len(p) == 0 || p[0] != '[' {
		return false
	}
	i := 1
	for {
		i = skipSpace(p, i)
		if i >= len(p) || p[i] == ']' {
			return true
		}
		end := skipValue(p, i)
		if end < 0 {
			return false
		}
		k := ""
		if v := member(p[i:end], 0, key); len(v) > 1 && v[0] == '"' {
			if e, esc := scanString(v, 0); e == len(v) && !esc {
				k = string(v[1 : len(v)-1])
			} else {
				k = codec.IDText(json.RawMessage(v))
			}
		}
		if !f(k) {
			return true
		}
		i = skipSpace(p, end)
		if i < len(p) && p[i] == ',' {
			i++
		}
	}
}
