package logquery

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Bounds of a remote query (a hub asking an edge).
const (
	// MaxRequestBytes bounds an encoded Request.
	MaxRequestBytes = 4 << 10
	// MaxGrepBytes bounds Request.Grep.
	MaxGrepBytes = 1 << 10
	// MaxNameBytes bounds Request.Pipeline and Request.Component.
	MaxNameBytes = 256
	// DefaultAnswerBytes is the size cap of an answer when the request
	// names none: below NATS's default max_payload of 1 MiB.
	DefaultAnswerBytes = 512 << 10
	// MinAnswerBytes and MaxAnswerBytes bound Request.MaxBytes.
	MinAnswerBytes = 4 << 10
	MaxAnswerBytes = 8 << 20
)

// Request is a query sent to an edge, as JSON.
type Request struct {
	// Level is the lowest level: debug, info, warn or error (default
	// info).
	Level string `json:"level,omitempty"`
	// Since and Until bound the records' times.
	Since *time.Time `json:"since,omitempty"`
	Until *time.Time `json:"until,omitempty"`
	// Pipeline and Component must equal the record's attributes.
	Pipeline  string `json:"pipeline,omitempty"`
	Component string `json:"component,omitempty"`
	// Grep is a regular expression (RE2 syntax) the record's JSON line
	// must match.
	Grep string `json:"grep,omitempty"`
	// Limit is the number of newest records wanted (default
	// DefaultLimit, at most MaxLimit).
	Limit int `json:"limit,omitempty"`
	// MaxBytes caps the encoded answer (default DefaultAnswerBytes,
	// MinAnswerBytes to MaxAnswerBytes).
	MaxBytes int `json:"max_bytes,omitempty"`
}

// RequestOf returns the request asking for q's records, with answers of
// at most maxBytes (0: the default).
func RequestOf(q Query, maxBytes int) Request {
	r := Request{Level: strings.ToLower(q.Level.String()), Pipeline: q.Pipeline, Component: q.Component, Limit: q.Limit, MaxBytes: maxBytes}
	if !q.Since.IsZero() {
		s := q.Since.UTC()
		r.Since = &s
	}
	if !q.Until.IsZero() {
		u := q.Until.UTC()
		r.Until = &u
	}
	if q.Grep != nil {
		r.Grep = q.Grep.String()
	}
	return r
}

// DecodeRequest reads a request strictly: unknown fields, trailing data,
// more than MaxRequestBytes and values out of bounds are refused.
func DecodeRequest(data []byte) (Request, error) {
	var r Request
	if len(data) > MaxRequestBytes {
		return r, fmt.Errorf("logquery: request of %d bytes, over %d", len(data), MaxRequestBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return r, fmt.Errorf("logquery: request: %w", err)
	}
	if dec.More() {
		return r, errors.New("logquery: request: trailing data")
	}
	if _, err := r.Query(); err != nil {
		return r, err
	}
	return r, nil
}

// Query returns the query of r, checked.
func (r Request) Query() (Query, error) {
	var q Query
	if r.Level != "" {
		if err := q.Level.UnmarshalText([]byte(r.Level)); err != nil {
			return q, fmt.Errorf("logquery: level %.20q is not one of debug, info, warn, error", r.Level)
		}
	}
	if r.Since != nil {
		q.Since = *r.Since
	}
	if r.Until != nil {
		q.Until = *r.Until
	}
	if len(r.Pipeline) > MaxNameBytes || len(r.Component) > MaxNameBytes {
		return q, fmt.Errorf("logquery: pipeline and component names are at most %d bytes", MaxNameBytes)
	}
	q.Pipeline, q.Component = r.Pipeline, r.Component
	if len(r.Grep) > MaxGrepBytes {
		return q, fmt.Errorf("logquery: grep pattern of %d bytes, over %d", len(r.Grep), MaxGrepBytes)
	}
	if r.Grep != "" {
		re, err := regexp.Compile(r.Grep)
		if err != nil {
			return q, fmt.Errorf("logquery: grep: %w", err)
		}
		q.Grep = re
	}
	q.Limit = r.Limit
	if r.MaxBytes != 0 && (r.MaxBytes < MinAnswerBytes || r.MaxBytes > MaxAnswerBytes) {
		return q, fmt.Errorf("logquery: max_bytes %d is not from %d to %d", r.MaxBytes, MinAnswerBytes, MaxAnswerBytes)
	}
	q.MaxBytes = int64(r.answerBytes())
	return q, q.check()
}

func (r Request) answerBytes() int {
	if r.MaxBytes == 0 {
		return DefaultAnswerBytes
	}
	return r.MaxBytes
}

// Answer is an edge's answer to a Request, as JSON.
type Answer struct {
	// Records are the matching records, oldest first, each a JSON object
	// (a log line).
	Records []json.RawMessage `json:"records"`
	// Truncated says that older matches were left out: the limit, or the
	// size cap of the answer.
	Truncated bool  `json:"truncated"`
	Stats     Stats `json:"stats"`
	// Error says why the edge could not answer.
	Error string `json:"error,omitempty"`
}

// EncodeAnswer encodes the answer of r holding res's newest records that
// fit r's size cap (older ones are left out, and Truncated set).
func EncodeAnswer(r Request, res *Result) []byte {
	a := Answer{Truncated: res.Truncated, Stats: res.Stats}
	limit := r.answerBytes()
	// The envelope (stats, flags) takes well under 1 KiB; each record
	// its bytes and a comma.
	room := limit - 1024
	first := len(res.Entries)
	for first > 0 && room-len(res.Entries[first-1].Line)-1 >= 0 {
		room -= len(res.Entries[first-1].Line) + 1
		first--
	}
	if first > 0 {
		a.Truncated = true
	}
	a.Records = make([]json.RawMessage, 0, len(res.Entries)-first)
	for _, e := range res.Entries[first:] {
		a.Records = append(a.Records, e.Line)
	}
	out, err := json.Marshal(a)
	if err != nil {
		// A record that is not JSON (Search returns only valid ones).
		return ErrorAnswer(err)
	}
	return out
}

// ErrorAnswer encodes an answer saying err.
func ErrorAnswer(err error) []byte {
	out, _ := json.Marshal(Answer{Records: []json.RawMessage{}, Error: err.Error()})
	return out
}

// DecodeAnswer reads an edge's answer: at most maxBytes, every record a
// JSON object with a time and a level at its head (as the engine writes
// them). Records that are not are dropped and counted as bad lines.
func DecodeAnswer(data []byte, maxBytes int) (Answer, error) {
	var a Answer
	if len(data) > maxBytes {
		return a, fmt.Errorf("logquery: answer of %d bytes, over %d", len(data), maxBytes)
	}
	if err := json.Unmarshal(data, &a); err != nil {
		return a, fmt.Errorf("logquery: answer: %w", err)
	}
	kept := a.Records[:0]
	for _, rec := range a.Records {
		if _, _, ok := head(rec); !ok || rec[len(rec)-1] != '}' {
			a.Stats.BadLines++
			continue
		}
		kept = append(kept, rec)
	}
	a.Records = kept
	return a, nil
}
