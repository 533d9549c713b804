package postgres_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/goleak"

	"github.com/sluice-edge/sluice/connectors/postgres"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
)

var localDSN string

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// local opens the test database on this machine or skips.
func local(t testing.TB) *sql.DB {
	t.Helper()
	localDSN = outboundtest.PostgresDSN(t)
	db, err := sql.Open("pgx", localDSN)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func build(t testing.TB, yaml string) *outbound.Publisher {
	t.Helper()
	p, err := postgres.New(outboundtest.Parse(t, postgres.Spec, fmt.Sprintf("dsn: %q\n", localDSN)+yaml), engine.BuildContext{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func dropTable(t *testing.T, table string) {
	t.Cleanup(func() {
		db := local(t)
		defer db.Close()
		_, _ = db.Exec(`DROP TABLE IF EXISTS ` + postgres.QuoteTable(table))
	})
}

// readTable returns a Reader over every row of a table in Watermill's
// order, through its own connection.
func readTable(table string) outboundtest.Reader {
	return func(ctx context.Context, n int) ([]*message.Message, error) {
		db, err := sql.Open("pgx", localDSN)
		if err != nil {
			return nil, err
		}
		defer db.Close()
		for {
			var count int
			err := db.QueryRowContext(ctx, `SELECT count(*) FROM `+postgres.QuoteTable(table)).Scan(&count)
			if err == nil && count >= n {
				break
			}
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("table %s holds %d rows: %w (%v)", table, count, ctx.Err(), err)
			case <-time.After(20 * time.Millisecond):
			}
		}
		rows, err := db.QueryContext(ctx, `SELECT uuid, payload, metadata FROM `+postgres.QuoteTable(table)+` ORDER BY transaction_id, "offset"`)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var out []*message.Message
		for rows.Next() {
			var id string
			var payload, md []byte
			if err := rows.Scan(&id, &payload, &md); err != nil {
				return out, err
			}
			m := message.NewMessage(id, payload)
			if err := json.Unmarshal(md, &m.Metadata); err != nil {
				return out, err
			}
			out = append(out, m)
		}
		return out, rows.Err()
	}
}

func TestConformance(t *testing.T) {
	local(t).Close()
	outboundtest.Run(t, outboundtest.Case{
		Spec:   postgres.Spec,
		Dedupe: true,
		New: func(t *testing.T, enc outbound.Encoding) (*outbound.Publisher, outboundtest.Reader) {
			table := "sluice_test_" + outboundtest.Suffix()
			dropTable(t, table)
			p := build(t, fmt.Sprintf("table: %s\nencoding: %s", table, enc))
			t.Cleanup(func() { _ = p.Close() })
			return p, readTable(table)
		},
	})
}

// TestChunks publishes more messages than one INSERT takes.
func TestChunks(t *testing.T) {
	local(t).Close()
	table := "sluice_chunks_" + outboundtest.Suffix()
	dropTable(t, table)
	p := build(t, "table: "+table+"\nencoding: json\nchunk: 7")
	entries := outboundtest.Entries(1, 30)
	defer entries[0].Rec.Release()
	msgs, _ := p.Encoder("e", "s").Encode(entries[0])
	if err := p.Publish(p.Topic, msgs...); err != nil {
		t.Fatal(err)
	}
	// A retry of an overlapping range stores nothing twice.
	if err := p.Publish(p.Topic, msgs[10:]...); err != nil {
		t.Fatal(err)
	}
	p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := readTable(table)(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 30 {
		t.Fatalf("%d rows, want 30", len(got))
	}
	for i := range msgs {
		outboundtest.CheckMessage(t, i, msgs[i], got[i])
	}
}

// TestWatermillSubscriber reads the table with Watermill's SQL subscriber.
func TestWatermillSubscriber(t *testing.T) {
	db := local(t)
	defer db.Close()
	table := "sluice_wm_" + outboundtest.Suffix()
	offsets := table + "_offsets"
	dropTable(t, table)
	dropTable(t, offsets)
	p := build(t, "table: "+table+"\nencoding: arrow")
	entries := outboundtest.Entries(1, 9)
	defer entries[0].Rec.Release()
	enc := p.Encoder("site", "raw")
	enc.BatchRows = 4
	want, _ := enc.Encode(entries[0])
	if err := p.Publish(p.Topic, want...); err != nil {
		t.Fatal(err)
	}
	p.Close()

	sub, err := wmsql.NewSubscriber(wmsql.BeginnerFromStdSQL(db), wmsql.SubscriberConfig{
		SchemaAdapter:    postgres.Schema(true),
		OffsetsAdapter:   wmsql.DefaultPostgreSQLOffsetsAdapter{GenerateMessagesOffsetsTableName: func(string) string { return postgres.QuoteTable(offsets) }},
		InitializeSchema: true,
		PollInterval:     20 * time.Millisecond,
	}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch, err := sub.Subscribe(ctx, table)
	if err != nil {
		t.Fatal(err)
	}
	got, err := outboundtest.Collect(ctx, ch, len(want))
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range want {
		outboundtest.CheckMessage(t, i, want[i], got[i])
	}
}

// TestWrongPayloadType publishes arrow bytes into a table whose payload
// column is JSON: PostgreSQL's rejection is permanent.
func TestWrongPayloadType(t *testing.T) {
	local(t).Close()
	table := "sluice_wrongtype_" + outboundtest.Suffix()
	dropTable(t, table)
	p := build(t, "table: "+table+"\nencoding: json")
	defer p.Close()
	if err := p.Publish(p.Topic, message.NewMessage("e/s/1", []byte(`{"a":1}`))); err != nil {
		t.Fatal(err)
	}
	err := p.Publish(p.Topic, message.NewMessage("e/s/2", []byte{0xff, 0x00, 'A', 'R'}))
	if err == nil || !p.IsPermanent(err) {
		t.Fatalf("err %v, permanent %v", err, p.IsPermanent(err))
	}
}

// TestBrokerDown builds against a port nobody listens on.
func TestBrokerDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	p, err := postgres.New(outboundtest.Parse(t, postgres.Spec, "dsn: postgres://postgres@"+addr+"/test?connect_timeout=1\ntable: t"), engine.BuildContext{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = p.Publish(p.Topic, message.NewMessage("e/s/1", []byte("{}")))
	if err == nil || p.IsPermanent(err) {
		t.Fatalf("err %v, permanent %v", err, p.IsPermanent(err))
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("publish took %v to fail", d)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestPermanent(t *testing.T) {
	pg := func(code string) error {
		return fmt.Errorf("could not insert message as row: %w", &pgconn.PgError{Code: code})
	}
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"invalid json", pg("22P02"), true},
		{"value too long", pg("22001"), true},
		{"not null", pg("23502"), true},
		{"row too big", pg("54000"), true},
		{"no privilege", pg("42501"), true},
		{"undefined table", pg("42P01"), false},
		{"connection failure", pg("08006"), false},
		{"serialization", pg("40001"), false},
		{"deadlock", pg("40P01"), false},
		{"disk full", pg("53100"), false},
		{"admin shutdown", pg("57P01"), false},
		{"auth", pg("28P01"), false},
		{"deadline", context.DeadlineExceeded, false},
		{"other", errors.New("boom"), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := postgres.Permanent(c.err); got != c.want {
				t.Errorf("Permanent(%v) = %v, want %v", c.err, got, c.want)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{`table: 'a"b'`, "table name"},
		{"table: " + strings.Repeat("x", 64), "table name"},
		{"table: t\nchunk: 0", "chunk must be above 0"},
		{"table: t\nchunk: 30000", "at most 20000"},
	} {
		_, err := postgres.New(outboundtest.Parse(t, postgres.Spec, c.yaml), engine.BuildContext{})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "test.yaml:") {
			t.Errorf("%q: err %v, want %q with a location", c.yaml, err, c.want)
		}
	}
}

// TestDoc checks the reference in docs/sinks.md against the declaration.
func TestDoc(t *testing.T) { outboundtest.CheckDoc(t, postgres.Spec, "../../docs/sinks.md") }
