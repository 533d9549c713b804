package server_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/enginetest"
)

// TestNumberPostgresCannotHold: a JSON row whose value is a number
// jsonb cannot hold (1e1000000) is set aside as poison; it does not
// wedge the data consumer, and the rows sent after it are stored.
func TestNumberPostgresCannotHold(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	_, js := e.connect()
	schema, t0 := statsSchema(), statsT0
	bad := encode(t, "e1", "stats", schema, 1, enginetest.Row{t0, "A", 1.25})
	for _, m := range bad {
		if !bytes.Contains(m.Payload, []byte("1.25")) {
			t.Fatalf("payload %s", m.Payload)
		}
		m.Payload = bytes.Replace(m.Payload, []byte("1.25"), []byte("1e1000000"), 1)
	}
	publish(t, js, "sluice.e1.data.stats", bad)
	publish(t, js, "sluice.e1.data.stats", encode(t, "e1", "stats", schema, 2,
		enginetest.Row{t0.Add(time.Second), "A", 2.0}, enginetest.Row{t0.Add(2 * time.Second), "A", 3.0}))
	waitFor(t, 20*time.Second, "the good rows stored, the bad one set aside", func() error {
		var n int
		if err := e.db.QueryRow("SELECT count(*) FROM " + e.schema + ".telemetry").Scan(&n); err != nil {
			return err
		}
		d, _ := in.hub.Stats()
		if n != 2 || d.Poison != 1 {
			return fmt.Errorf("%d rows stored, data %+v", n, d)
		}
		return nil
	})
	if d, _ := in.hub.Stats(); d.StoreErrors > 0 {
		t.Error(errors.New("store errors counted"), d)
	}
}
