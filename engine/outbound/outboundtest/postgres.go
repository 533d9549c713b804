package outboundtest

import (
	"context"
	"database/sql"
	"os"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

// PostgresDSN returns the DSN of the machine's test database (127.0.0.1:5432,
// database test, user postgres or else root, trust authentication), or
// skips the test when it is unreachable — fails it when CI=true, where the
// database must be there.
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
	if os.Getenv("CI") == "true" {
		t.Fatalf("PostgreSQL database test at 127.0.0.1:5432 unreachable (required when CI=true): %v", last)
	}
	t.Skipf("PostgreSQL database test at 127.0.0.1:5432 unreachable: %v", last)
	return ""
}
