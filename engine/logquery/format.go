package logquery

import (
	"bytes"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Format writes a record (a JSON line) as one line of text for people:
// its time (UTC, milliseconds), level and message, then its other
// attributes as key=value in their order, nested objects as JSON. Text
// that holds spaces, quotes or control characters is quoted, so that a
// record cannot move the cursor or forge lines on a terminal. A line that
// is not a JSON object is written quoted.
func Format(w io.Writer, line []byte) error {
	var b strings.Builder
	if err := format(&b, line); err != nil {
		b.Reset()
		b.WriteString(strconv.QuoteToASCII(string(line)))
	}
	b.WriteByte('\n')
	_, err := io.WriteString(w, b.String())
	return err
}

func format(b *strings.Builder, line []byte) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return errNotObject
	}
	var tm, level, msg string
	var rest []string
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := kt.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return err
		}
		var s string
		isString := json.Unmarshal(v, &s) == nil
		switch {
		case key == "time" && isString && tm == "":
			if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
				s = t.UTC().Format("2006-01-02T15:04:05.000Z")
			}
			tm = s
		case key == "level" && isString && level == "":
			level = s
		case key == "msg" && isString && msg == "":
			msg = s
		default:
			val := plain(string(v)) // JSON as written: numbers, objects
			if isString {
				val = text(s)
			}
			rest = append(rest, text(key)+"="+val)
		}
	}
	b.WriteString(text(tm))
	b.WriteByte(' ')
	b.WriteString(text(level))
	for i := len(level); i < 5; i++ {
		b.WriteByte(' ')
	}
	b.WriteByte(' ')
	b.WriteString(plain(msg))
	for _, kv := range rest {
		b.WriteByte(' ')
		b.WriteString(kv)
	}
	return nil
}

type formatError string

func (e formatError) Error() string { return string(e) }

const errNotObject = formatError("not a JSON object")

// plain quotes s when it holds a character that is not printable (a
// message reads better unquoted).
func plain(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) || unicode.Is(unicode.Bidi_Control, r) {
			return strconv.QuoteToASCII(s)
		}
	}
	return s
}

// text quotes s when it is empty or holds a space, a quote, '=' or a
// character that is not printable.
func text(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if r == ' ' || r == '"' || r == '=' || r == '\\' || !unicode.IsPrint(r) || unicode.Is(unicode.Bidi_Control, r) {
			return strconv.QuoteToASCII(s)
		}
	}
	return s
}
