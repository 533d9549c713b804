package outbound

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/sluice-edge/sluice/engine/jsonenc"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
)

// Encoding is the payload format of outgoing messages.
type Encoding string

// Encodings.
const (
	// JSON is one message per row (EnOS-like object).
	JSON Encoding = "json"
	// JSONBatch is one JSON message per run of rows.
	JSONBatch Encoding = "json_batch"
	// Arrow is one Arrow IPC stream per run of rows.
	Arrow Encoding = "arrow"
)

// Encodings lists the encoding names, for spec enums.
func Encodings() []string { return []string{string(JSON), string(JSONBatch), string(Arrow)} }

// ParseEncoding parses an encoding name.
func ParseEncoding(s string) (Encoding, error) {
	switch e := Encoding(s); e {
	case JSON, JSONBatch, Arrow:
		return e, nil
	}
	return "", fmt.Errorf("unknown encoding %q (want one of %s)", s, strings.Join(Encodings(), ", "))
}

// ContentType returns the MIME type of the encoding's payloads.
func (e Encoding) ContentType() string {
	if e == Arrow {
		return "application/vnd.apache.arrow.stream"
	}
	return "application/json"
}

// Batched reports whether a message holds a run of rows (json_batch,
// arrow) rather than one row (json).
func (e Encoding) Batched() bool { return e != JSON }

// Entry is a run of rows read from a sink's buffer.
type Entry struct {
	// Rec holds the rows; row i has sequence First+i. Encoding does not
	// take ownership of Rec: the caller still releases it.
	Rec arrow.RecordBatch
	// First is the sequence of the first row.
	First uint64
	// Starts lists, in order, the sequences at which a message starts,
	// each within the entry; rows before the first of them form a message
	// of their own. json_batch and arrow send one message per start: the
	// boundaries are the ones fixed when the rows were appended to the
	// buffer, so every reader of the same rows cuts the same messages.
	// Nil means the rows carry no boundaries: they are cut into blocks of
	// BatchRows aligned in sequence space.
	Starts []uint64
	// Backfill marks rows delivered from the backlog after an outage.
	Backfill bool
	// Schema is the stream's schema; it names the event-time and key
	// columns. When nil, the first timestamp column is the event time and
	// there is no key.
	Schema *engine.Schema
}

// DefaultBatchRows is the default number of rows per json_batch or arrow
// message.
const DefaultBatchRows = 1024

// Encoder turns entries into Watermill messages. It keeps scratch space
// and a per-schema plan between calls; it is not safe for concurrent use
// (a forwarder owns one).
type Encoder struct {
	Encoding Encoding
	// Edge and Stream name the rows' origin in message IDs and metadata.
	Edge, Stream string
	// BatchRows cuts an entry without message boundaries (Entry.Starts
	// nil) into json_batch or arrow messages of the blocks of BatchRows
	// sequences 1..BatchRows, BatchRows+1..2*BatchRows, ..., so that two
	// reads of the same rows cut into different entries give the same IDs
	// wherever an entry covers a whole block. Zero or less puts a whole
	// entry in one message. Entries with boundaries follow them instead.
	BatchRows int
	// Mem allocates Arrow memory for the arrow encoding (default: the Go
	// allocator).
	Mem memory.Allocator

	plan      *plan
	checked   [2]string // edge and stream last validated
	rowHint   int       // bytes per encoded JSON row seen last
	strs      []byte    // scratch for metadata strings
	strOffs   []int
	scratchID []byte
}

// Encode encodes an entry with default settings: one message per row for
// json, one message for the whole entry for json_batch and arrow.
func Encode(enc Encoding, edge, stream string, entry Entry) ([]*message.Message, error) {
	e := Encoder{Encoding: enc, Edge: edge, Stream: stream}
	return e.Encode(entry)
}

// Encode turns an entry into messages, in sequence order. An entry without
// rows gives no messages.
func (e *Encoder) Encode(en Entry) ([]*message.Message, error) {
	if en.Rec == nil {
		return nil, errors.New("outbound: entry has no record")
	}
	if e.checked != [2]string{e.Edge, e.Stream} {
		if err := CheckName(e.Edge); err != nil {
			return nil, fmt.Errorf("outbound: edge: %w", err)
		}
		if err := CheckName(e.Stream); err != nil {
			return nil, fmt.Errorf("outbound: stream: %w", err)
		}
		e.checked = [2]string{e.Edge, e.Stream}
	}
	rows := int(en.Rec.NumRows())
	if rows == 0 {
		return nil, nil
	}
	if en.First > ^uint64(0)-uint64(rows) {
		return nil, fmt.Errorf("outbound: sequence overflow (first %d, %d rows)", en.First, rows)
	}
	p, err := e.planFor(en.Rec.Schema(), en.Schema)
	if err != nil {
		return nil, err
	}
	switch e.Encoding {
	case JSON:
		return e.encodeRows(p, en), nil
	case JSONBatch, Arrow:
		var out []*message.Message
		k := 0 // next start to look at
		for lo := 0; lo < rows; {
			var hi int
			if en.Starts != nil {
				hi, k = startsEnd(en.Starts, k, en.First, lo, rows)
			} else {
				hi = e.splitEnd(en.First, lo, rows)
			}
			m, err := e.encodeBatch(p, en, lo, hi)
			if err != nil {
				return nil, err
			}
			out = append(out, m)
			lo = hi
		}
		return out, nil
	}
	return nil, fmt.Errorf("outbound: unknown encoding %q", e.Encoding)
}

// startsEnd returns the end (exclusive) of the message starting at row lo
// of an entry with message starts, and the index of the first start after
// it.
func startsEnd(starts []uint64, k int, first uint64, lo, rows int) (int, int) {
	seq := first + uint64(lo)
	for k < len(starts) && starts[k] <= seq {
		k++
	}
	if k < len(starts) {
		if end := starts[k] - first; end < uint64(rows) {
			return int(end), k
		}
	}
	return rows, k
}

// splitEnd returns the end (exclusive) of the message starting at row lo
// of an entry without message starts: blocks of BatchRows sequences
// counted from sequence 1.
func (e *Encoder) splitEnd(first uint64, lo, rows int) int {
	n := uint64(e.BatchRows)
	if e.BatchRows <= 0 {
		return rows
	}
	seq := first + uint64(lo)
	next := uint64(1) // first sequence of the next block
	if seq > 0 {
		next = ((seq-1)/n+1)*n + 1
	}
	if next < seq { // overflow at the top of the sequence space
		return rows
	}
	if end := uint64(lo) + (next - seq); end < uint64(rows) {
		return int(end)
	}
	return rows
}

// plan is what the encoder resolves once per schema.
type plan struct {
	arrow  *arrow.Schema
	stream *engine.Schema
	time   int // -1 when there is none
	key    int // -1 when there is none
	unit   arrow.TimeUnit
	// points are the measure-point columns (all but time and key) with
	// their quoted names followed by ':'.
	points []point
	// timeName and keyName name the time and key columns ("" when none).
	timeName, keyName string
}

type point struct {
	col  int
	name []byte
}

func (e *Encoder) planFor(as *arrow.Schema, s *engine.Schema) (*plan, error) {
	if p := e.plan; p != nil && p.stream == s && (p.arrow == as || p.arrow.Equal(as)) {
		return p, nil
	}
	if e.Encoding == Arrow && fieldIndex(as, SeqColumn) >= 0 {
		return nil, fmt.Errorf("outbound: a field named %q clashes with the sequence column of arrow payloads", SeqColumn)
	}
	p := &plan{arrow: as, stream: s, time: -1, key: -1}
	if s != nil {
		if len(s.Fields) != as.NumFields() {
			return nil, fmt.Errorf("outbound: record has %d columns, stream schema %d", as.NumFields(), len(s.Fields))
		}
		if s.Time != "" {
			p.time = fieldIndex(as, s.Time)
			if p.time < 0 {
				return nil, fmt.Errorf("outbound: time column %q is not in the record", s.Time)
			}
		}
		if s.Key != "" {
			p.key = fieldIndex(as, s.Key)
			if p.key < 0 {
				return nil, fmt.Errorf("outbound: key column %q is not in the record", s.Key)
			}
			if as.Field(p.key).Type.ID() != arrow.STRING {
				return nil, fmt.Errorf("outbound: key column %q is %s, not string", s.Key, as.Field(p.key).Type)
			}
		}
	} else {
		for i, f := range as.Fields() {
			if f.Type.ID() == arrow.TIMESTAMP {
				p.time = i
				break
			}
		}
	}
	if p.time >= 0 {
		tt, ok := as.Field(p.time).Type.(*arrow.TimestampType)
		if !ok {
			return nil, fmt.Errorf("outbound: time column %q is %s, not a timestamp", as.Field(p.time).Name, as.Field(p.time).Type)
		}
		p.unit = tt.Unit
		p.timeName = as.Field(p.time).Name
	}
	if p.key >= 0 {
		p.keyName = as.Field(p.key).Name
	}
	for i, f := range as.Fields() {
		if i == p.time || i == p.key {
			continue
		}
		name := jsonenc.AppendString(nil, f.Name)
		p.points = append(p.points, point{col: i, name: append(name, ':')})
	}
	e.plan = p
	return p, nil
}

func fieldIndex(s *arrow.Schema, name string) int {
	if idx := s.FieldIndices(name); len(idx) > 0 {
		return idx[0]
	}
	return -1
}

// timeMillis returns row r's event time in milliseconds.
func (p *plan) timeMillis(rec arrow.RecordBatch, r int) (int64, bool) {
	if p.time < 0 {
		return 0, false
	}
	col := rec.Column(p.time).(*array.Timestamp)
	if col.IsNull(r) {
		return 0, false
	}
	return jsonenc.ToMillis(int64(col.Value(r)), p.unit), true
}

func (p *plan) timeRange(rec arrow.RecordBatch, lo, hi int) (minMs, maxMs int64, ok bool) {
	if p.time < 0 {
		return 0, 0, false
	}
	col := rec.Column(p.time).(*array.Timestamp)
	vals := col.TimestampValues()
	for r := lo; r < hi; r++ {
		if col.IsNull(r) {
			continue
		}
		v := int64(vals[r])
		if !ok {
			minMs, maxMs, ok = v, v, true
			continue
		}
		minMs, maxMs = min(minMs, v), max(maxMs, v)
	}
	if ok {
		minMs, maxMs = jsonenc.ToMillis(minMs, p.unit), jsonenc.ToMillis(maxMs, p.unit)
	}
	return minMs, maxMs, ok
}

// strArena collects many small strings and converts them with a single
// allocation.
type strArena struct {
	buf  []byte
	offs []int
}

func (a *strArena) mark() { a.offs = append(a.offs, len(a.buf)) }

// strings returns the collected strings; string i spans offs[i]..offs[i+1].
func (a *strArena) strings() (all string, offs []int) {
	a.mark()
	return string(a.buf), a.offs
}

func (e *Encoder) encodeRows(p *plan, en Entry) []*message.Message {
	rec := en.Rec
	rows := int(rec.NumRows())
	backfill := strconv.FormatBool(en.Backfill)

	// Metadata strings of every row: id, seq, time (three per row).
	ar := strArena{buf: e.strs[:0], offs: e.strOffs[:0]}
	for r := 0; r < rows; r++ {
		seq := en.First + uint64(r)
		ar.mark()
		ar.buf = appendRowID(ar.buf, e.Edge, e.Stream, seq)
		ar.mark()
		ar.buf = strconv.AppendUint(ar.buf, seq, 10)
		ar.mark()
		if ms, ok := p.timeMillis(rec, r); ok {
			ar.buf = jsonenc.AppendRFC3339(ar.buf, ms)
		}
	}
	all, offs := ar.strings()
	e.strs, e.strOffs = ar.buf, ar.offs
	str := func(i int) string { return all[offs[i]:offs[i+1]] }

	// Payloads share one allocation.
	hint := e.rowHint
	if hint == 0 {
		hint = 128 + 24*len(p.points)
	}
	buf := make([]byte, 0, rows*hint+hint)
	ends := make([]int, rows)
	for r := 0; r < rows; r++ {
		buf = e.appendRowMessage(buf, p, rec, r, en.First+uint64(r), str(3*r), en.Backfill)
		ends[r] = len(buf)
	}
	e.rowHint = len(buf)/rows + 8

	var keys *array.String
	if p.key >= 0 {
		keys = rec.Column(p.key).(*array.String)
	}
	out := make([]*message.Message, rows)
	start := 0
	for r := 0; r < rows; r++ {
		id, seq, ts := str(3*r), str(3*r+1), str(3*r+2)
		m := message.NewMessage(id, message.Payload(buf[start:ends[r]:ends[r]]))
		md := make(message.Metadata, 10)
		md[MetaID] = id
		md[MetaEdge] = e.Edge
		md[MetaStream] = e.Stream
		md[MetaFirstSeq] = seq
		md[MetaLastSeq] = seq
		md[MetaTimeMin] = ts
		md[MetaTimeMax] = ts
		md[MetaBackfill] = backfill
		md[MetaEncoding] = string(JSON)
		if keys != nil && keys.IsValid(r) {
			if a := keys.Value(r); headerSafe(a) {
				md[MetaAsset] = a
			}
		}
		m.Metadata = md
		out[r] = m
		start = ends[r]
	}
	return out
}

// appendRowMessage appends one json message:
// {"id":..,"edge":..,"stream":..,"seq":..,"assetId":..,"time":..,"measurepoints":{..},"backfill":..}
func (e *Encoder) appendRowMessage(dst []byte, p *plan, rec arrow.RecordBatch, r int, seq uint64, id string, backfill bool) []byte {
	dst = append(dst, `{"id":`...)
	dst = jsonenc.AppendString(dst, id)
	dst = append(dst, `,"edge":`...)
	dst = jsonenc.AppendString(dst, e.Edge)
	dst = append(dst, `,"stream":`...)
	dst = jsonenc.AppendString(dst, e.Stream)
	dst = append(dst, ',')
	dst = appendRowBody(dst, p, rec, r, seq)
	dst = append(dst, `,"backfill":`...)
	dst = strconv.AppendBool(dst, backfill)
	return append(dst, '}')
}

// appendRowBody appends the fields of one row, without braces:
// "seq":..,"assetId":..,"time":..,"measurepoints":{..}
func appendRowBody(dst []byte, p *plan, rec arrow.RecordBatch, r int, seq uint64) []byte {
	dst = append(dst, `"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	if p.key >= 0 {
		if k := rec.Column(p.key).(*array.String); k.IsValid(r) {
			dst = append(dst, `,"assetId":`...)
			dst = jsonenc.AppendString(dst, k.Value(r))
		}
	}
	if ms, ok := p.timeMillis(rec, r); ok {
		dst = append(dst, `,"time":`...)
		dst = strconv.AppendInt(dst, ms, 10)
	}
	dst = append(dst, `,"measurepoints":{`...)
	first := true
	for _, pt := range p.points {
		col := rec.Column(pt.col)
		if col.IsNull(r) {
			continue
		}
		mark := len(dst)
		if !first {
			dst = append(dst, ',')
		}
		dst = append(dst, pt.name...)
		var ok bool
		if dst, ok = jsonenc.AppendMillisValue(dst, col, r); !ok {
			dst = dst[:mark]
			continue
		}
		first = false
	}
	return append(dst, '}')
}

func (e *Encoder) encodeBatch(p *plan, en Entry, lo, hi int) (*message.Message, error) {
	rec := en.Rec
	first := en.First + uint64(lo)
	last := en.First + uint64(hi-1)

	// Metadata strings: id, first, last, time_min, time_max.
	ar := strArena{buf: e.strs[:0], offs: e.strOffs[:0]}
	ar.mark()
	ar.buf = appendBatchID(ar.buf, e.Edge, e.Stream, first, last)
	ar.mark()
	ar.buf = strconv.AppendUint(ar.buf, first, 10)
	ar.mark()
	ar.buf = strconv.AppendUint(ar.buf, last, 10)
	tmin, tmax, hasTime := p.timeRange(rec, lo, hi)
	ar.mark()
	if hasTime {
		ar.buf = jsonenc.AppendRFC3339(ar.buf, tmin)
	}
	ar.mark()
	if hasTime {
		ar.buf = jsonenc.AppendRFC3339(ar.buf, tmax)
	}
	all, offs := ar.strings()
	e.strs, e.strOffs = ar.buf, ar.offs
	str := func(i int) string { return all[offs[i]:offs[i+1]] }
	id := str(0)

	var payload []byte
	var err error
	if e.Encoding == Arrow {
		payload, err = e.encodeArrow(p, en, lo, hi)
		if err != nil {
			return nil, err
		}
	} else {
		payload = e.appendBatchJSON(p, en, lo, hi, id)
	}
	m := message.NewMessage(id, payload)
	md := make(message.Metadata, 9)
	md[MetaID] = id
	md[MetaEdge] = e.Edge
	md[MetaStream] = e.Stream
	md[MetaFirstSeq] = str(1)
	md[MetaLastSeq] = str(2)
	md[MetaTimeMin] = str(3)
	md[MetaTimeMax] = str(4)
	md[MetaBackfill] = strconv.FormatBool(en.Backfill)
	md[MetaEncoding] = string(e.Encoding)
	m.Metadata = md
	return m, nil
}

// appendBatchJSON returns one json_batch payload:
// {"id":..,"edge":..,"stream":..,"first_seq":..,"last_seq":..,"backfill":..,"rows":[{..},..]}
func (e *Encoder) appendBatchJSON(p *plan, en Entry, lo, hi int, id string) []byte {
	hint := e.rowHint
	if hint == 0 {
		hint = 64 + 24*len(p.points)
	}
	dst := make([]byte, 0, (hi-lo)*hint+256)
	dst = append(dst, `{"id":`...)
	dst = jsonenc.AppendString(dst, id)
	dst = append(dst, `,"edge":`...)
	dst = jsonenc.AppendString(dst, e.Edge)
	dst = append(dst, `,"stream":`...)
	dst = jsonenc.AppendString(dst, e.Stream)
	dst = append(dst, `,"first_seq":`...)
	dst = strconv.AppendUint(dst, en.First+uint64(lo), 10)
	dst = append(dst, `,"last_seq":`...)
	dst = strconv.AppendUint(dst, en.First+uint64(hi-1), 10)
	dst = append(dst, `,"backfill":`...)
	dst = strconv.AppendBool(dst, en.Backfill)
	dst = append(dst, `,"rows":[`...)
	start := len(dst)
	for r := lo; r < hi; r++ {
		if r > lo {
			dst = append(dst, ',')
		}
		dst = append(dst, '{')
		dst = appendRowBody(dst, p, en.Rec, r, en.First+uint64(r))
		dst = append(dst, '}')
	}
	e.rowHint = (len(dst)-start)/(hi-lo) + 8
	return append(dst, ']', '}')
}

// headerSafe reports whether a value read from the data can travel as a
// broker header (NATS, AMQP, Kafka, HTTP): printable, without line breaks,
// at most 256 bytes. Other values stay in the payload only.
func headerSafe(s string) bool {
	if len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}
