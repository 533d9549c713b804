// Package ingest reads what edges publish to NATS JetStream (the messages
// engine/outbound encodes and the nats sink publishes) and writes it to the
// hub store exactly once: telemetry rows keyed by (edge, stream, seq) and
// alert transitions keyed by their row's id "edge/stream/seq".
//
// Decode turns one message into rows or alert records, strictly: anything
// that does not match what the outbound encoders produce is an error, and
// the message is poison. Ingest runs a durable JetStream pull consumer that
// every hub instance shares, writes each fetched batch with one InsertRows
// call (and one ApplyAlert per alert record), and acknowledges the batch's
// messages only after the write committed.
package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine/hub/store"
	"github.com/sluice-edge/sluice/engine/jsonenc"
	"github.com/sluice-edge/sluice/engine/outbound"
)

// Default bounds of one message.
const (
	DefaultMaxMessageBytes = 8 << 20
	DefaultMaxRows         = 65536
	DefaultMaxTextBytes    = store.DefaultMaxTextBytes
)

// Limits bound what Decode accepts from one message. Zero fields take the
// defaults.
type Limits struct {
	// MaxMessageBytes bounds the payload.
	MaxMessageBytes int
	// MaxRows bounds the rows of one message.
	MaxRows int
	// MaxTextBytes bounds the text fields of an alert record.
	MaxTextBytes int
}

func (l Limits) withDefaults() Limits {
	if l.MaxMessageBytes <= 0 {
		l.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if l.MaxRows <= 0 {
		l.MaxRows = DefaultMaxRows
	}
	if l.MaxTextBytes <= 0 {
		l.MaxTextBytes = DefaultMaxTextBytes
	}
	return l
}

// Headers are a message's headers (a nats.Header is one).
type Headers map[string][]string

func (h Headers) get(k string) string {
	if v := h[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Alert is one alert transition and the id of the row that carried it
// ("edge/stream/seq"), the key ApplyAlert stores it under.
type Alert struct {
	Record store.AlertRecord
	MsgID  string
}

// Decoded is what one message holds: telemetry rows, or the alert
// transitions of an alert stream (never both).
type Decoded struct {
	// MsgID is the message id from the id header.
	MsgID  string
	Rows   []store.Row
	Alerts []Alert
}

// ErrPoison marks a message that can never be stored: every Decode error
// wraps it.
var ErrPoison = errors.New("poison message")

func poison(id string, format string, args ...any) error {
	return fmt.Errorf("%w %.80q: %s", ErrPoison, id, fmt.Sprintf(format, args...))
}

// Alert streams. A message belongs to an alert stream when its rows have
// every column of engine.AlertSchema but time and asset (which travel as
// the event time and the key): id, rule, severity, type, content, value,
// occur_time, recover_time and state. In json payloads a null (or NaN)
// column is left out, so recover_time and value may be missing there; id,
// rule, severity, state and occur_time must be present in every row of
// the message. An optional string column rule_set_version names the rule
// set. Rows of an alert stream become alert records, not telemetry.
var alertColumns = []string{"id", "rule", "severity", "type", "content", "value", "occur_time", "recover_time", "state"}

// alertRequired are the columns a json alert row always carries.
var alertRequired = []string{"id", "rule", "severity", "state", "occur_time"}

// ColumnRuleSetVersion is the optional alert column naming the rule set.
const ColumnRuleSetVersion = "rule_set_version"

// PostgreSQL timestamptz bounds, in Unix milliseconds (4713 BC and
// 294276 AD, kept a little inside).
const (
	minTimeMs = -210863520000000
	maxTimeMs = 9224318015999999
)

// Decode decodes one message published by an outbound encoder: its
// headers (id, edge, stream, first_seq, last_seq, backfill, encoding) and
// payload. The headers and the payload must agree on the edge, stream,
// sequence range and backfill flag, and the payload must hold exactly one
// row per sequence of the range. Any error wraps ErrPoison.
func Decode(h Headers, data []byte, lim Limits) (*Decoded, error) {
	lim = lim.withDefaults()
	id := h.get(outbound.MetaID)
	if len(data) > lim.MaxMessageBytes {
		return nil, poison(id, "%d bytes, more than %d", len(data), lim.MaxMessageBytes)
	}
	edge, stream, first, last, batch, err := outbound.ParseID(id)
	if err != nil {
		return nil, poison(id, "%v", err)
	}
	if err := outbound.CheckName(edge); err != nil {
		return nil, poison(id, "edge: %v", err)
	}
	if err := outbound.CheckName(stream); err != nil {
		return nil, poison(id, "stream: %v", err)
	}
	if last-first >= uint64(lim.MaxRows) {
		return nil, poison(id, "%d rows, more than %d", last-first+1, lim.MaxRows)
	}
	if last > math.MaxInt64 {
		return nil, poison(id, "sequence %d out of range", last)
	}
	if h.get(outbound.MetaEdge) != edge || h.get(outbound.MetaStream) != stream ||
		h.get(outbound.MetaFirstSeq) != strconv.FormatUint(first, 10) ||
		h.get(outbound.MetaLastSeq) != strconv.FormatUint(last, 10) {
		return nil, poison(id, "edge, stream or sequence headers do not match the id")
	}
	var backfill bool
	switch h.get(outbound.MetaBackfill) {
	case "true":
		backfill = true
	case "false":
	default:
		return nil, poison(id, "backfill header %.20q", h.get(outbound.MetaBackfill))
	}
	enc, err := outbound.ParseEncoding(h.get(outbound.MetaEncoding))
	if err != nil {
		return nil, poison(id, "%v", err)
	}
	if enc.Batched() != batch {
		return nil, poison(id, "id form does not match encoding %s", enc)
	}
	d := &decoder{id: id, edge: edge, stream: stream, first: first, n: int(last - first + 1), backfill: backfill, lim: lim}
	var rows []rawRow
	switch enc {
	case outbound.JSON:
		rows, err = d.json(data)
	case outbound.JSONBatch:
		rows, err = d.jsonBatch(data)
	case outbound.Arrow:
		rows, err = d.arrow(data)
	}
	if err != nil {
		return nil, err
	}
	return d.finish(rows)
}

// rawRow is one decoded row before it becomes telemetry or an alert.
type rawRow struct {
	seq    uint64
	asset  string
	hasT   bool
	timeMs int64
	values map[string]any
}

type decoder struct {
	id, edge, stream string
	first            uint64
	n                int
	backfill         bool
	lim              Limits
}

type jsonRow struct {
	Seq    *uint64         `json:"seq"`
	Asset  *string         `json:"assetId"`
	Time   *int64          `json:"time"`
	Points json.RawMessage `json:"measurepoints"`
}

type jsonOne struct {
	ID       string `json:"id"`
	Edge     string `json:"edge"`
	Stream   string `json:"stream"`
	Backfill *bool  `json:"backfill"`
	jsonRow
}

type jsonBatch struct {
	ID       string            `json:"id"`
	Edge     string            `json:"edge"`
	Stream   string            `json:"stream"`
	First    *uint64           `json:"first_seq"`
	Last     *uint64           `json:"last_seq"`
	Backfill *bool             `json:"backfill"`
	Rows     []json.RawMessage `json:"rows"`
}

func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}

func (d *decoder) header(id, edge, stream string, backfill *bool) error {
	if id != d.id || edge != d.edge || stream != d.stream {
		return poison(d.id, "payload id, edge or stream does not match the headers")
	}
	if backfill == nil || *backfill != d.backfill {
		return poison(d.id, "payload backfill flag missing or does not match the header")
	}
	return nil
}

func (d *decoder) row(r *jsonRow, want uint64) (rawRow, error) {
	if r.Seq == nil || *r.Seq != want {
		return rawRow{}, poison(d.id, "row sequence missing or not %d", want)
	}
	out := rawRow{seq: want}
	if r.Asset != nil {
		out.asset = *r.Asset
	}
	if r.Time != nil {
		out.hasT, out.timeMs = true, *r.Time
	}
	if len(r.Points) == 0 {
		return rawRow{}, poison(d.id, "row %d has no measurepoints", want)
	}
	var pts map[string]any
	dec := json.NewDecoder(bytes.NewReader(r.Points))
	dec.UseNumber()
	if err := dec.Decode(&pts); err != nil || pts == nil {
		return rawRow{}, poison(d.id, "row %d: measurepoints are not an object", want)
	}
	if err := checkNumbers(pts); err != nil {
		return rawRow{}, poison(d.id, "row %d: %v", want, err)
	}
	out.values = pts
	return out, nil
}

// Bounds of a JSON number in a row's values: PostgreSQL's numeric, which
// jsonb stores numbers as, holds every number within them (at most 131072
// digits before the point and 16383 after), and the edge's encodings never
// come near. A number jsonb refused would fail every batch holding it.
const (
	maxNumberLen = 1000
	maxNumberExp = 10000
)

// checkNumbers refuses a JSON number in v (values, maps and slices of
// them) outside maxNumberLen and maxNumberExp.
func checkNumbers(v any) error {
	switch x := v.(type) {
	case json.Number:
		s := string(x)
		if len(s) > maxNumberLen {
			return fmt.Errorf("number of %d characters, more than %d", len(s), maxNumberLen)
		}
		if i := strings.IndexAny(s, "eE"); i >= 0 {
			e, err := strconv.Atoi(strings.TrimPrefix(s[i+1:], "+"))
			if err != nil || e > maxNumberExp || e < -maxNumberExp {
				return fmt.Errorf("number %.40s: exponent beyond ±%d", s, maxNumberExp)
			}
		}
	case map[string]any:
		for _, e := range x {
			if err := checkNumbers(e); err != nil {
				return err
			}
		}
	case []any:
		for _, e := range x {
			if err := checkNumbers(e); err != nil {
				return err
			}
		}
	}
	return nil
}

func (d *decoder) json(data []byte) ([]rawRow, error) {
	var m jsonOne
	if err := strictUnmarshal(data, &m); err != nil {
		return nil, poison(d.id, "json: %v", err)
	}
	if err := d.header(m.ID, m.Edge, m.Stream, m.Backfill); err != nil {
		return nil, err
	}
	r, err := d.row(&m.jsonRow, d.first)
	if err != nil {
		return nil, err
	}
	return []rawRow{r}, nil
}

func (d *decoder) jsonBatch(data []byte) ([]rawRow, error) {
	var m jsonBatch
	if err := strictUnmarshal(data, &m); err != nil {
		return nil, poison(d.id, "json_batch: %v", err)
	}
	if err := d.header(m.ID, m.Edge, m.Stream, m.Backfill); err != nil {
		return nil, err
	}
	if m.First == nil || m.Last == nil || *m.First != d.first || *m.Last != d.first+uint64(d.n-1) {
		return nil, poison(d.id, "json_batch: sequence range does not match the id")
	}
	if len(m.Rows) != d.n {
		return nil, poison(d.id, "json_batch: %d rows for %d sequences", len(m.Rows), d.n)
	}
	out := make([]rawRow, 0, d.n)
	for i, raw := range m.Rows {
		var jr jsonRow
		if err := strictUnmarshal(raw, &jr); err != nil {
			return nil, poison(d.id, "json_batch row %d: %v", i, err)
		}
		r, err := d.row(&jr, d.first+uint64(i))
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func (d *decoder) arrow(data []byte) (rows []rawRow, err error) {
	// The IPC reader trusts lengths inside the stream; a payload that
	// makes it panic is poison like any other malformed one.
	defer func() {
		if r := recover(); r != nil {
			rows, err = nil, poison(d.id, "arrow: malformed stream")
		}
	}()
	if err := checkArrowSchema(data); err != nil {
		return nil, poison(d.id, "%v", err)
	}
	mem := &boundedAllocator{left: 4*len(data) + 1<<16}
	rd, err := ipc.NewReader(bytes.NewReader(data), ipc.WithAllocator(mem))
	if err != nil {
		return nil, poison(d.id, "arrow: %v", err)
	}
	defer rd.Release()
	schema := rd.Schema()
	md := schema.Metadata()
	meta := func(k string) string {
		if i := md.FindKey(k); i >= 0 {
			return md.Values()[i]
		}
		return ""
	}
	if meta(outbound.ArrowMetaEdge) != d.edge || meta(outbound.ArrowMetaStream) != d.stream ||
		meta(outbound.ArrowMetaFirstSeq) != strconv.FormatUint(d.first, 10) ||
		meta(outbound.ArrowMetaBackfill) != strconv.FormatBool(d.backfill) {
		return nil, poison(d.id, "arrow: schema metadata does not match the headers")
	}
	for _, f := range schema.Fields() {
		if !arrowTypes[f.Type.ID()] {
			// Nested or binary values would reach jsonb unchecked (a
			// NUL in a list of strings failed every batch holding it).
			return nil, poison(d.id, "arrow: column %.40q is %s, a type no edge sends", f.Name, f.Type)
		}
	}
	seqIdx, timeIdx, keyIdx := -1, -1, -1
	for i, f := range schema.Fields() {
		switch {
		case f.Name == outbound.SeqColumn:
			if seqIdx >= 0 || f.Type.ID() != arrow.INT64 {
				return nil, poison(d.id, "arrow: bad %s column", outbound.SeqColumn)
			}
			seqIdx = i
		case f.Name == meta(outbound.ArrowMetaTime) && timeIdx < 0:
			if f.Type.ID() != arrow.TIMESTAMP {
				return nil, poison(d.id, "arrow: time column is %s", f.Type)
			}
			timeIdx = i
		case f.Name == meta(outbound.ArrowMetaKey) && keyIdx < 0:
			if f.Type.ID() != arrow.STRING {
				return nil, poison(d.id, "arrow: key column is %s", f.Type)
			}
			keyIdx = i
		}
	}
	if seqIdx < 0 || (meta(outbound.ArrowMetaTime) != "" && timeIdx < 0) || (meta(outbound.ArrowMetaKey) != "" && keyIdx < 0) {
		return nil, poison(d.id, "arrow: sequence, time or key column missing")
	}
	if !rd.Next() {
		if err := rd.Err(); err != nil {
			return nil, poison(d.id, "arrow: %v", err)
		}
		return nil, poison(d.id, "arrow: no record batch")
	}
	rec := rd.RecordBatch()
	if rec.NumRows() != int64(d.n) {
		return nil, poison(d.id, "arrow: %d rows for %d sequences", rec.NumRows(), d.n)
	}
	seqs := rec.Column(seqIdx).(*array.Int64)
	out := make([]rawRow, 0, d.n)
	for r := 0; r < d.n; r++ {
		want := d.first + uint64(r)
		if seqs.IsNull(r) || uint64(seqs.Value(r)) != want {
			return nil, poison(d.id, "arrow: row %d sequence is not %d", r, want)
		}
		row := rawRow{seq: want, values: make(map[string]any, int(rec.NumCols()))}
		for c, f := range schema.Fields() {
			col := rec.Column(c)
			switch c {
			case seqIdx:
				continue
			case timeIdx:
				if col.IsValid(r) {
					row.hasT, row.timeMs = true, toMillis(col.(*array.Timestamp), r)
				}
				continue
			case keyIdx:
				if col.IsValid(r) {
					row.asset = col.(*array.String).Value(r)
				}
				continue
			}
			if col.IsNull(r) {
				continue
			}
			row.values[f.Name] = arrowValue(col, r)
		}
		out = append(out, row)
	}
	if rd.Next() {
		return nil, poison(d.id, "arrow: more than one record batch")
	}
	if err := rd.Err(); err != nil {
		return nil, poison(d.id, "arrow: %v", err)
	}
	return out, nil
}

// boundedAllocator refuses (by panicking, which Decode recovers) to
// allocate more than left bytes in all: lengths declared inside a hostile
// stream must not make the reader allocate far beyond the payload's size.
type boundedAllocator struct {
	left int
}

var errAllocation = errors.New("arrow: declared sizes exceed the payload")

func (a *boundedAllocator) Allocate(n int) []byte {
	if n < 0 || n > a.left {
		panic(errAllocation)
	}
	a.left -= n
	return memory.DefaultAllocator.Allocate(n)
}

func (a *boundedAllocator) Reallocate(n int, b []byte) []byte {
	if n < 0 || n-len(b) > a.left {
		panic(errAllocation)
	}
	if n > len(b) {
		a.left -= n - len(b)
	}
	return memory.DefaultAllocator.Reallocate(n, b)
}

func (a *boundedAllocator) Free(b []byte) { memory.DefaultAllocator.Free(b) }

func toMillis(a *array.Timestamp, r int) int64 {
	return jsonenc.ToMillis(int64(a.Value(r)), a.DataType().(*arrow.TimestampType).Unit)
}

// arrowValue returns the value the json encodings would carry for a
// column: timestamps as Unix milliseconds, numbers, strings, booleans.
// arrowTypes are the column types an arrow payload may have: those
// engine/outbound writes, and the narrower numbers arrowValue reads too.
var arrowTypes = map[arrow.Type]bool{arrow.TIMESTAMP: true, arrow.INT64: true, arrow.INT32: true, arrow.UINT64: true,
	arrow.FLOAT64: true, arrow.FLOAT32: true, arrow.BOOL: true, arrow.STRING: true}

func arrowValue(col arrow.Array, r int) any {
	switch a := col.(type) {
	case *array.Timestamp:
		return toMillis(a, r)
	case *array.Int64:
		return a.Value(r)
	case *array.Int32:
		return int64(a.Value(r))
	case *array.Uint64:
		return a.Value(r)
	case *array.Float64:
		return a.Value(r)
	case *array.Float32:
		return float64(a.Value(r))
	case *array.Boolean:
		return a.Value(r)
	case *array.String:
		return a.Value(r)
	}
	return col.GetOneForMarshal(r)
}

// finish checks the rows' times and turns them into telemetry or alerts.
func (d *decoder) finish(rows []rawRow) (*Decoded, error) {
	out := &Decoded{MsgID: d.id}
	for _, r := range rows {
		if r.hasT && (r.timeMs < minTimeMs || r.timeMs > maxTimeMs) {
			return nil, poison(d.id, "row %d: time %d ms out of range", r.seq, r.timeMs)
		}
	}
	if isAlertStream(rows) {
		out.Alerts = make([]Alert, 0, len(rows))
		for _, r := range rows {
			a, err := d.alert(r)
			if err != nil {
				return nil, err
			}
			out.Alerts = append(out.Alerts, a)
		}
		return out, nil
	}
	out.Rows = make([]store.Row, len(rows))
	for i, r := range rows {
		row := store.Row{MsgID: d.id, Edge: d.edge, Stream: d.stream, Seq: r.seq, Asset: r.asset,
			Backfill: d.backfill, Values: r.values}
		if r.hasT {
			row.Time = time.UnixMilli(r.timeMs).UTC()
		}
		out.Rows[i] = row
	}
	return out, nil
}

// isAlertStream reports whether every row carries the alert columns.
func isAlertStream(rows []rawRow) bool {
	if len(rows) == 0 {
		return false
	}
	for _, r := range rows {
		for _, c := range alertRequired {
			if _, ok := r.values[c]; !ok {
				return false
			}
		}
		for k := range r.values {
			if k == ColumnRuleSetVersion {
				continue
			}
			known := false
			for _, c := range alertColumns {
				if k == c {
					known = true
					break
				}
			}
			if !known {
				return false
			}
		}
	}
	return true
}

func (d *decoder) alert(r rawRow) (Alert, error) {
	bad := func(f string, args ...any) (Alert, error) {
		return Alert{}, poison(d.id, "alert row %d: %s", r.seq, fmt.Sprintf(f, args...))
	}
	str := func(k string) (string, bool) {
		v, ok := r.values[k]
		if !ok {
			return "", true
		}
		s, isStr := v.(string)
		return s, isStr && len(s) <= d.lim.MaxTextBytes && utf8.ValidString(s) && !containsNUL(s)
	}
	a := store.AlertRecord{Edge: d.edge, Asset: r.asset}
	var ok bool
	// The edge renders contents up to 64 KiB by default: a longer one is
	// shortened, not refused (the alert would be missing at the hub).
	if c, isStr := r.values["content"].(string); isStr {
		r.values["content"] = ClipText(c, d.lim.MaxTextBytes)
	}
	for _, f := range []struct {
		k   string
		dst *string
	}{{"id", &a.ID}, {"rule", &a.Rule}, {"severity", &a.Severity}, {"type", &a.Type},
		{"content", &a.Content}, {"state", &a.State}, {ColumnRuleSetVersion, &a.RuleSetVersion}} {
		if *f.dst, ok = str(f.k); !ok {
			return bad("column %s is not a valid string", f.k)
		}
	}
	if len(a.Asset) > d.lim.MaxTextBytes || !utf8.ValidString(a.Asset) || containsNUL(a.Asset) {
		return bad("asset is not a valid string")
	}
	if a.ID == "" {
		return bad("empty alert id")
	}
	if a.State != store.AlertRaised && a.State != store.AlertCleared {
		return bad("state %.20q", a.State)
	}
	a.Value = math.NaN()
	if v, present := r.values["value"]; present {
		f, err := number(v)
		if err != nil {
			return bad("value: %v", err)
		}
		a.Value = f
	}
	var err error
	if a.Occur, err = msTime(r.values["occur_time"]); err != nil || a.Occur.IsZero() {
		return bad("occur_time missing or invalid")
	}
	if v, present := r.values["recover_time"]; present {
		if a.Recover, err = msTime(v); err != nil {
			return bad("recover_time: %v", err)
		}
	}
	return Alert{Record: a, MsgID: outbound.RowID(d.edge, d.stream, r.seq)}, nil
}

func containsNUL(s string) bool { return bytes.IndexByte([]byte(s), 0) >= 0 }

func number(v any) (float64, error) {
	switch x := v.(type) {
	case float64:
		return x, nil
	case int64:
		return float64(x), nil
	case uint64:
		return float64(x), nil
	case json.Number:
		return strconv.ParseFloat(string(x), 64)
	}
	return 0, fmt.Errorf("not a number (%T)", v)
}

func msTime(v any) (time.Time, error) {
	var ms int64
	switch x := v.(type) {
	case nil:
		return time.Time{}, nil
	case int64:
		ms = x
	case json.Number:
		n, err := x.Int64()
		if err != nil {
			return time.Time{}, err
		}
		ms = n
	default:
		return time.Time{}, fmt.Errorf("not a time (%T)", v)
	}
	if ms < minTimeMs || ms > maxTimeMs {
		return time.Time{}, fmt.Errorf("time %d ms out of range", ms)
	}
	return time.UnixMilli(ms).UTC(), nil
}

// fbuf reads a FlatBuffer defensively: every offset and vector length is
// checked against the buffer, so that counts declared in a hostile
// payload cannot make a reader allocate beyond the payload's size.
type fbuf []byte

var errFlatBuffer = errors.New("arrow: malformed schema message")

func (b fbuf) u32(p int) (int, error) {
	if p < 0 || p+4 > len(b) {
		return 0, errFlatBuffer
	}
	return int(uint32(b[p]) | uint32(b[p+1])<<8 | uint32(b[p+2])<<16 | uint32(b[p+3])<<24), nil
}

func (b fbuf) u16(p int) (int, error) {
	if p < 0 || p+2 > len(b) {
		return 0, errFlatBuffer
	}
	return int(uint16(b[p]) | uint16(b[p+1])<<8), nil
}

// field returns the position of a table's field, 0 when absent.
func (b fbuf) field(table, slot int) (int, error) {
	soff, err := b.u32(table)
	if err != nil {
		return 0, err
	}
	vt := table - int(int32(uint32(soff)))
	vtLen, err := b.u16(vt)
	if err != nil {
		return 0, err
	}
	if 4+2*slot+2 > vtLen {
		return 0, nil
	}
	off, err := b.u16(vt + 4 + 2*slot)
	if err != nil || off == 0 {
		return 0, err
	}
	return table + off, nil
}

// ref follows the offset stored at p.
func (b fbuf) ref(p int) (int, error) {
	off, err := b.u32(p)
	if err != nil {
		return 0, err
	}
	if q := p + off; q < len(b) {
		return q, nil
	}
	return 0, errFlatBuffer
}

// vector returns the start and length of a table's vector field of
// elements of size elem, checked to lie within the buffer.
func (b fbuf) vector(table, slot, elem int) (start, n int, err error) {
	p, err := b.field(table, slot)
	if err != nil || p == 0 {
		return 0, 0, err
	}
	v, err := b.ref(p)
	if err != nil {
		return 0, 0, err
	}
	if n, err = b.u32(v); err != nil {
		return 0, 0, err
	}
	if n > (len(b)-v-4)/elem {
		return 0, 0, errFlatBuffer
	}
	return v + 4, n, nil
}

// checkArrowSchema checks the vectors of the first message of an Arrow
// IPC stream (the schema: its fields, their children and metadata) before
// the Arrow reader sizes slices by them.
func checkArrowSchema(data []byte) error {
	p := 0
	if len(data) >= 4 && data[0] == 0xff && data[1] == 0xff && data[2] == 0xff && data[3] == 0xff {
		p = 4
	}
	n, err := fbuf(data).u32(p)
	if err != nil || n > len(data)-p-4 {
		return errFlatBuffer
	}
	b := fbuf(data[p+4 : p+4+n])
	msg, err := b.ref(0)
	if err != nil {
		return err
	}
	hp, err := b.field(msg, 2)
	if err != nil || hp == 0 {
		return errFlatBuffer
	}
	schema, err := b.ref(hp)
	if err != nil {
		return err
	}
	if _, _, err := b.vector(schema, 2, 4); err != nil {
		return err
	}
	if _, _, err := b.vector(schema, 3, 8); err != nil {
		return err
	}
	return b.checkFields(schema, 1, 0)
}

func (b fbuf) checkFields(table, slot, depth int) error {
	if depth > 32 {
		return errFlatBuffer
	}
	start, n, err := b.vector(table, slot, 4)
	if err != nil {
		return err
	}
	for i := range n {
		f, err := b.ref(start + 4*i)
		if err != nil {
			return err
		}
		if _, _, err := b.vector(f, 6, 4); err != nil { // custom_metadata
			return err
		}
		if err := b.checkFields(f, 5, depth+1); err != nil { // children
			return err
		}
	}
	return nil
}

// ClipText shortens valid UTF-8 text longer than max bytes at a rune
// boundary, ending it with "…" (max bytes in all); other text is returned
// as it is, for the checks that refuse it.
func ClipText(s string, max int) string {
	const ellipsis = "…"
	if len(s) <= max || max < len(ellipsis) || !utf8.ValidString(s) {
		return s
	}
	s = s[:max-len(ellipsis)+1]
	for len(s) > max-len(ellipsis) || !utf8.ValidString(s) {
		_, n := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-n]
	}
	return s + ellipsis
}
