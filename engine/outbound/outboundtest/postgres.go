package outboundtest

import (
	"context"
	"database/sql"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

// PostgresDSN returns the DSN of the machine's test database (127.0.0.1:5432,
// database test, user postgres or else root, trust authentication), or
// skips the test when it is unreachable.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	var last error
	for _, user := range []string{"postgres", "root"} {
		dsn := "postgres://" + user + "@127.0.0.1:5432/test?sslmode=disable&connect_timeout=2"
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = db.PingContext(ctx)
		cancel()
		db.Close()
		if err == nil {
			return dsn
		}
		last = err
	}
	t.Skipf("PostgreSQL database test at 127.0.0.1:5432 unreachable: %v", last)
	return ""
}
