package server_test

import (
	"bytes"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/outbound"
)

// arrowListRow is an arrow payload of one row of stream "stats" of edge
// e1 at sequence seq whose column "tags" is a list of strings, a type no
// edge sends.
func arrowListRow(t *testing.T, seq uint64, tags ...string) []byte {
	t.Helper()
	mem := memory.DefaultAllocator
	md := arrow.NewMetadata(
		[]string{outbound.ArrowMetaEdge, outbound.ArrowMetaStream, outbound.ArrowMetaFirstSeq, outbound.ArrowMetaBackfill, outbound.ArrowMetaTime, outbound.ArrowMetaKey},
		[]string{"e1", "stats", strconv.FormatUint(seq, 10), "false", "ts", "asset"})
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Millisecond}},
		{Name: "asset", Type: arrow.BinaryTypes.String},
		{Name: "tags", Type: arrow.ListOf(arrow.BinaryTypes.String)},
		{Name: outbound.SeqColumn, Type: arrow.PrimitiveTypes.Int64},
	}, &md)
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	b.Field(0).(*array.TimestampBuilder).Append(arrow.Timestamp(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixMilli()))
	b.Field(1).(*array.StringBuilder).Append("A")
	lb := b.Field(2).(*array.ListBuilder)
	lb.Append(true)
	for _, s := range tags {
		lb.ValueBuilder().(*array.StringBuilder).Append(s)
	}
	b.Field(3).(*array.Int64Builder).Append(int64(seq))
	rec := b.NewRecordBatch()
	defer rec.Release()
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(schema))
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestArrowNestedNUL: an arrow row whose list column holds a string with
// a NUL (jsonb holds no \u0000) does not wedge the data consumer: it is
// stored with the NUL replaced, like a NUL in a string column, or set
// aside, and the rows sent after it are stored.
func TestArrowNestedNUL(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	_, js := e.connect()
	schema, t0 := statsSchema(), statsT0
	en := outbound.Encoder{Encoding: outbound.Arrow, Edge: "e1", Stream: "stats"}
	rec := enginetest.Record(nil, schema, enginetest.Row{t0, "A", 1.0})
	msgs, err := en.Encode(outbound.Entry{Rec: rec, First: 1, Schema: schema})
	rec.Release()
	if err != nil {
		t.Fatal(err)
	}
	msgs[0].Payload = arrowListRow(t, 1, "ok", "a\x00b")
	publish(t, js, "sluice.e1.data.stats", msgs)
	publish(t, js, "sluice.e1.data.stats", encode(t, "e1", "stats", schema, 2, enginetest.Row{t0.Add(time.Second), "A", 2.0}))
	waitFor(t, 20*time.Second, "the consumer goes on", func() error {
		var n int
		if err := e.db.QueryRow("SELECT count(*) FROM " + e.schema + ".telemetry").Scan(&n); err != nil {
			return err
		}
		d, _ := in.hub.Stats()
		if n+int(d.Poison) != 2 || d.StoreErrors > 0 {
			return fmt.Errorf("%d rows stored, data %+v", n, d)
		}
		return nil
	})
}
