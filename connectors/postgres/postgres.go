// Package postgres provides the "postgres" publisher: it inserts messages
// into a PostgreSQL table through Watermill's SQL publisher and the pgx
// driver — one multi-row INSERT per Publish (in chunks), committed before
// Publish returns.
//
// The table is Watermill's PostgreSQL message table, so Watermill's SQL
// subscriber reads it, with two changes: the uuid column is TEXT (message
// IDs are longer than Watermill's VARCHAR(36)), and a unique index on uuid
// with INSERT ... ON CONFLICT DO NOTHING makes retries idempotent: a
// message is stored once however often it is published. The table and the
// index are created on the first Publish.
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/redact"
	"github.com/sluice-edge/sluice/engine/spec"
)

// Spec declares the postgres publisher.
var Spec = spec.Spec{
	Name:    "postgres",
	Summary: "Inserts messages into a PostgreSQL table (Watermill's message table), idempotently.",
	Description: "Each Publish is one transaction of multi-row INSERTs into `table`: columns " +
		"`offset`, `uuid` (the stable ID, unique), `created_at`, `payload` (JSON for json encodings, " +
		"BYTEA for arrow), `metadata` (JSON) and `transaction_id`, the layout Watermill's SQL " +
		"subscriber reads. A message whose ID is already in the table is skipped, so retries never " +
		"store copies. Use `search_path` in the DSN to choose a schema.",
	Fields: append([]spec.Field{
		{Name: "dsn", Type: spec.String, Default: "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
			Description: "Connection string (URL or key=value), as understood by pgx: host, user, password, database, `sslmode`, `sslrootcert`, `connect_timeout`, `search_path`, ...",
			Example:     "postgres://sluice:secret@db.example.com:5432/telemetry?sslmode=verify-full"},
		{Name: "table", Type: spec.String,
			Description: "Table the messages are inserted into (letters, digits, `_`, `-`, `.`, `:`, `$`; at most 63 bytes).",
			Example:     "site_a_stats"},
		{Name: "init_schema", Type: spec.Bool, Default: true,
			Description: "Create the table and its unique index on uuid on the first publish when missing."},
		{Name: "timeout", Type: spec.Duration, Default: "10s",
			Description: "Longest time one Publish (its INSERTs and commit) may take."},
		{Name: "chunk", Type: spec.Int, Default: 1000, Advanced: true,
			Description: "Messages per INSERT statement (each message takes three parameters; PostgreSQL allows 65,535)."},
	}, outbound.EncodingFields(outbound.JSONBatch)...),
	Example: `sinks:
  warehouse:
    type: postgres
    input: stats
    dsn: postgres://sluice:secret@db.example.com:5432/telemetry?sslmode=require
    table: site_a_stats
    encoding: json_batch`,
}

func init() { outbound.RegisterPublisher(Spec, New) }

var tableName = regexp.MustCompile(`^[A-Za-z0-9\-$:._]{1,63}$`)

// New builds a postgres publisher from its configuration. It does not
// connect: database/sql connects on first use.
func New(cfg *spec.Config, bc engine.BuildContext) (*outbound.Publisher, error) {
	table := cfg.String("table")
	if !tableName.MatchString(table) {
		return nil, cfg.Errorf("table", "table name %q must be 1-63 letters, digits or any of - $ : . _", table)
	}
	for _, name := range []string{"timeout", "chunk"} {
		if err := outbound.Positive(cfg, name); err != nil {
			return nil, err
		}
	}
	if cfg.Int("chunk") > 20000 {
		return nil, cfg.Errorf("chunk", "chunk must be at most 20000 (PostgreSQL allows 65,535 parameters)")
	}
	enc, err := outbound.ParseEncoding(cfg.String("encoding"))
	if err != nil {
		return nil, cfg.Errorf("encoding", "%v", err)
	}
	// Parsed here as the driver parses it when it connects: a bad
	// connection string is a configuration error, for validate too. A
	// URL is first checked as every connector checks one
	// (redact.ParseURL): the driver's error would quote url.Parse's,
	// which holds the password cut short.
	dsn := cfg.String("dsn")
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if _, err := redact.ParseURL(dsn); err != nil {
			return nil, cfg.Errorf("dsn", "%v", err)
		}
	}
	if _, err := pgx.ParseConfig(dsn); err != nil {
		return nil, cfg.Errorf("dsn", "%v", redact.Error(err))
	}
	db, err := sql.Open("pgx", cfg.String("dsn"))
	if err != nil {
		return nil, cfg.Errorf("dsn", "%v", redact.Error(err))
	}
	if bc.DryRun {
		// Checked; nothing is connected.
		_ = db.Close()
		return nil, nil
	}
	p, err := NewPublisher(db, Config{
		Table:      table,
		InitSchema: cfg.Bool("init_schema"),
		Binary:     enc == outbound.Arrow,
		Timeout:    cfg.Duration("timeout"),
		Chunk:      int(cfg.Int("chunk")),
	}, bc)
	if err != nil {
		_ = db.Close()
		return nil, cfg.Errorf("dsn", "%v", redact.Error(err))
	}
	return outbound.New(cfg, p, table, Permanent)
}

// Config configures a Publisher.
type Config struct {
	Table      string
	InitSchema bool
	// Binary makes the payload column BYTEA (for arrow) instead of JSON.
	Binary  bool
	Timeout time.Duration
	Chunk   int
}

// Publisher inserts messages with Watermill's SQL publisher.
type Publisher struct {
	cfg Config
	db  *sql.DB
	wm  *wmsql.Publisher

	mu     sync.RWMutex
	closed bool
}

// NewPublisher returns a publisher that owns db.
func NewPublisher(db *sql.DB, c Config, bc engine.BuildContext) (*Publisher, error) {
	if c.Chunk <= 0 {
		c.Chunk = 1000
	}
	db.SetMaxOpenConns(2)
	db.SetMaxIdleConns(1)
	db.SetConnMaxIdleTime(time.Minute)
	wm, err := wmsql.NewPublisher(wmsql.BeginnerFromStdSQL(db), wmsql.PublisherConfig{
		SchemaAdapter:        Schema(c.Binary),
		AutoInitializeSchema: c.InitSchema,
	}, outbound.Logger(bc))
	if err != nil {
		return nil, err
	}
	return &Publisher{cfg: c, db: db, wm: wm}, nil
}

// Publish inserts the messages in order, c.Chunk per statement, each
// statement its own transaction; it returns nil once all are committed.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return outbound.ErrClosed
	}
	if len(msgs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.Timeout)
	defer cancel()
	for lo := 0; lo < len(msgs); lo += p.cfg.Chunk {
		chunk := msgs[lo:min(lo+p.cfg.Chunk, len(msgs))]
		// Watermill runs the INSERT with the first message's context:
		// give a copy of it the deadline.
		first := chunk[0].Copy()
		first.SetContext(ctx)
		batch := make([]*message.Message, len(chunk))
		batch[0] = first
		copy(batch[1:], chunk[1:])
		if err := p.wm.Publish(topic, batch...); err != nil {
			return err
		}
	}
	return nil
}

// Close closes the publisher and the database handle. It is idempotent.
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	return errors.Join(p.wm.Close(), p.db.Close())
}

// Schema returns the schema adapter: Watermill's PostgreSQL schema with
// the table named after the topic, a TEXT uuid column with a unique index,
// and idempotent inserts. binary makes the payload column BYTEA.
func Schema(binary bool) wmsql.SchemaAdapter {
	payload := "JSON"
	if binary {
		payload = "BYTEA"
	}
	return schema{wmsql.DefaultPostgreSQLSchema{
		GenerateMessagesTableName: QuoteTable,
		GeneratePayloadType:       func(string) string { return payload },
	}}
}

// QuoteTable quotes a table name.
func QuoteTable(table string) string { return `"` + table + `"` }

type schema struct{ wmsql.DefaultPostgreSQLSchema }

// SchemaInitializingQueries creates the table and the unique index under
// Watermill's schema-initialisation advisory lock.
func (s schema) SchemaInitializingQueries(params wmsql.SchemaInitializingQueriesParams) ([]wmsql.Query, error) {
	table := s.MessagesTable(params.Topic)
	return []wmsql.Query{
		{Query: fmt.Sprintf("SELECT pg_advisory_xact_lock(%d);", wmsql.DefaultSchemaInitializationLock("watermill"))},
		{Query: `CREATE TABLE IF NOT EXISTS ` + table + ` (
			"offset" BIGSERIAL,
			"uuid" TEXT NOT NULL,
			"created_at" TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
			"payload" ` + s.PayloadColumnType(params.Topic) + ` DEFAULT NULL,
			"metadata" JSON DEFAULT NULL,
			"transaction_id" xid8 NOT NULL,
			PRIMARY KEY ("transaction_id", "offset")
		);`},
		{Query: `CREATE UNIQUE INDEX IF NOT EXISTS ` + indexName(params.Topic) + ` ON ` + table + ` ("uuid");`},
	}, nil
}

// InsertQuery is Watermill's insert that skips IDs already stored. The
// statement and its arguments are Watermill's (uuid, payload, metadata
// as encoding/json writes it), built with one buffer per statement for
// the metadata of all its messages instead of encoding/json's
// allocations per metadata entry.
func (s schema) InsertQuery(params wmsql.InsertQueryParams) (wmsql.Query, error) {
	msgs := params.Msgs
	table := s.MessagesTable(params.Topic)
	q := make([]byte, 0, len(table)+len(insertHead)+len(insertTail)+len(msgs)*(len(insertRow)+3*6))
	q = append(q, "INSERT INTO "...)
	q = append(q, table...)
	q = append(q, insertHead...)
	for i := range msgs {
		if i > 0 {
			q = append(q, ',')
		}
		n := int64(3*i + 1)
		q = append(q, "($"...)
		q = strconv.AppendInt(q, n, 10)
		q = append(q, ",$"...)
		q = strconv.AppendInt(q, n+1, 10)
		q = append(q, ",$"...)
		q = strconv.AppendInt(q, n+2, 10)
		q = append(q, insertRow...)
	}
	q = append(q, insertTail...)

	size := 0
	for _, m := range msgs {
		size += metadataSize(m.Metadata)
	}
	md := make([]byte, 0, size)
	args := make([]any, 0, 3*len(msgs))
	for _, m := range msgs {
		start := len(md)
		md = appendMetadata(md, m.Metadata)
		args = append(args, m.UUID, []byte(m.Payload), md[start:len(md):len(md)])
	}
	return wmsql.Query{Query: string(q), Args: args}, nil
}

// The parts of the INSERT statement around its rows of parameters.
const (
	insertHead = ` (uuid, payload, metadata, transaction_id) VALUES `
	insertRow  = `,pg_current_xact_id())`
	insertTail = ` ON CONFLICT ("uuid") DO NOTHING`
)

// metadataSize is the length of md as appendMetadata writes it when no
// character needs escaping.
func metadataSize(md message.Metadata) int {
	if md == nil {
		return len("null")
	}
	n := 2
	for k, v := range md {
		n += len(k) + len(v) + 6 // two pairs of quotes, ':' and ','
	}
	return n
}

// appendMetadata appends md as encoding/json marshals it: keys sorted,
// strings escaped as encoding/json escapes them (HTML characters too),
// null for a nil map.
func appendMetadata(dst []byte, md message.Metadata) []byte {
	if md == nil {
		return append(dst, "null"...)
	}
	// The entries are sorted through their indices, which hold no
	// pointers to write, on the stack for up to 16 entries.
	var small [16]metaEntry
	var smallOrder [16]int
	entries, order := small[:0], smallOrder[:0]
	for k, v := range md {
		order = append(order, len(entries))
		entries = append(entries, metaEntry{k, v})
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(entries[a].k, entries[b].k) })
	dst = append(dst, '{')
	for i, j := range order {
		e := &entries[j]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, e.k)
		dst = append(dst, ':')
		dst = appendJSONString(dst, e.v)
	}
	return append(dst, '}')
}

type metaEntry struct{ k, v string }

// appendJSONString appends s as a JSON string exactly as encoding/json's
// Marshal writes it: <, >, & and U+2028, U+2029 escaped as \u sequences,
// control characters as \b, \f, \n, \r, \t or \u00XX, and each byte of
// invalid UTF-8 as \ufffd.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// indexName is a short unique index name for a table.
func indexName(table string) string {
	h := fnv.New64a()
	_, _ = h.Write([]byte(table))
	return fmt.Sprintf(`"sluice_uuid_%016x"`, h.Sum64())
}

// Permanent reports errors that retrying the same message cannot fix:
// data exceptions (a payload the column type rejects, a value too long),
// integrity violations, missing privileges and exceeded program limits
// (a row too large).
func Permanent(err error) bool {
	var pg *pgconn.PgError
	if !errors.As(err, &pg) || len(pg.Code) != 5 {
		return false
	}
	switch pg.Code[:2] {
	case "22", // data exception
		"23", // integrity constraint violation
		"54": // program limit exceeded
		return true
	}
	return pg.Code == "42501" // insufficient privilege
}
