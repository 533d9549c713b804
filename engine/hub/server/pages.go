package server

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Paging of the listings (GET /v1/edges, /v1/releases, /v1/alerts).
const (
	// DefaultPageLimit is the items of a page when the request gives no
	// limit; MaxPageLimit the most it may ask for.
	DefaultPageLimit = 500
	MaxPageLimit     = 5000
	// NextHeader carries the cursor of the next page (the after= of the
	// next request) when more items remain; it is absent on the last page.
	NextHeader = "Sluice-Next"
	// pageBytes bounds the JSON of a page's items: a page holding that
	// much ends before its limit (always with at least one item), so that
	// an answer stays far below the client's maxAnswer whatever the items
	// hold.
	pageBytes = 4 << 20
	// maxCursor bounds the after= cursor (three texts of at most 4 KiB,
	// in base64).
	maxCursor = 20 << 10
)

// pageQuery reads limit= and after= of a listing: the limit (default
// DefaultPageLimit) and the fields of the cursor (nil for the first
// page), of which there must be fields.
func pageQuery(r *http.Request, fields int) (int, []string, error) {
	q := r.URL.Query()
	limit := DefaultPageLimit
	if vs, ok := q["limit"]; ok {
		n, err := strconv.Atoi(vs[0])
		if len(vs) != 1 || err != nil || n < 1 || n > MaxPageLimit {
			return 0, nil, fmt.Errorf("%w: limit=N, 1 to %d", errBadQuery, MaxPageLimit)
		}
		limit = n
	}
	vs, ok := q["after"]
	if !ok {
		return limit, nil, nil
	}
	if len(vs) != 1 {
		return 0, nil, fmt.Errorf("%w: one after= cursor", errBadQuery)
	}
	after, err := decodeCursor(vs[0], fields)
	if err != nil {
		return 0, nil, fmt.Errorf("%w (%w)", errNotCursor, err)
	}
	return limit, after, nil
}

// errNotCursor refuses an after= whose fields are not those of the
// listing's items.
var errNotCursor = fmt.Errorf("%w: after: not a cursor of this listing", errBadQuery)

// cursorTime is a time as a cursor field; parseCursorTime reads it back.
func cursorTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// parseCursorTime reads a cursor field of cursorTime (errNotCursor if it
// is not one).
func parseCursorTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, errNotCursor
	}
	return t, nil
}

// encodeCursor makes the opaque cursor of fields: each one's length and
// bytes, in unpadded URL-safe base64.
func encodeCursor(fields ...string) string {
	var b []byte
	for _, f := range fields {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor reads a cursor of encodeCursor with n fields, each a text
// the store may hold.
func decodeCursor(s string, n int) ([]string, error) {
	if s == "" || len(s) > maxCursor {
		return nil, fmt.Errorf("empty or longer than %d bytes", maxCursor)
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("not base64")
	}
	out := make([]string, 0, n)
	for len(b) > 0 {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) || len(out) == n {
			return nil, fmt.Errorf("malformed")
		}
		f := string(b[k : k+int(l)])
		if err := checkText(f); err != nil {
			return nil, err
		}
		out = append(out, f)
		b = b[k+int(l):]
	}
	if len(out) != n {
		return nil, fmt.Errorf("malformed")
	}
	return out, nil
}

// page gathers the items of one page of a listing, in order.
type page struct {
	buf   bytes.Buffer
	n     int
	limit int
	// last is the cursor of the last item added; next the cursor the
	// answer carries (set once an item did not fit).
	last func() string
	next string
	err  error
}

func newPage(limit int) *page {
	p := &page{limit: limit}
	p.buf.WriteString("[")
	return p
}

// add appends item v, whose cursor cursor returns, and reports whether
// the page takes more: it takes limit items and at most pageBytes of
// them. An item that does not fit is left for the next page.
func (p *page) add(v any, cursor func() string) bool {
	if p.n == p.limit {
		p.next = p.last()
		return false
	}
	b, err := json.MarshalIndent(v, "  ", "  ")
	if err != nil {
		p.err = fmt.Errorf("hub api: %w", err)
		return false
	}
	if p.n > 0 && p.buf.Len()+len(b) > pageBytes {
		p.next = p.last()
		return false
	}
	if p.n > 0 {
		p.buf.WriteString(",")
	}
	p.buf.WriteString("\n  ")
	p.buf.Write(b)
	p.n++
	p.last = cursor
	return true
}

// write answers the page: its items as a JSON array, the next cursor in
// NextHeader when more remain.
func (p *page) write(w http.ResponseWriter) {
	if p.n > 0 {
		p.buf.WriteString("\n")
	}
	p.buf.WriteString("]\n")
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if p.next != "" {
		w.Header().Set(NextHeader, p.next)
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(p.buf.Bytes())
}

// writePage answers page p, or the failure err of reading its items, or
// the failure of one item's encoding.
func (a *API) writePage(w http.ResponseWriter, r *http.Request, p *page, err error) {
	if err == nil {
		err = p.err
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	p.write(w)
}
