package checkpoint_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer/faultfs"
	"github.com/sluice-edge/sluice/engine/checkpoint"
)

const dir = "/data/pipe/checkpoints"

var quiet = slog.New(slog.DiscardHandler)

// ck returns a checkpoint of epoch whose every field depends on epoch.
func ck(epoch uint64) *engine.Checkpoint {
	return &engine.Checkpoint{
		Epoch:   epoch,
		Time:    time.Date(2026, 12, 7, 0, 0, int(epoch), int(epoch)*1000+7, time.UTC),
		Sources: map[string][]byte{"mqtt-in": fmt.Appendf(nil, "seq-%d", epoch*100), "file": {byte(epoch)}},
		States: map[string]*engine.State{
			"window": {Kind: "tumbling", Version: 3, Data: bytes.Repeat([]byte{byte(epoch)}, 100+int(epoch))},
			"alert":  {Kind: "alert", Version: 1, Data: fmt.Appendf(nil, "open-%d", epoch)},
		},
		Sinks: map[string][]byte{"cloud": fmt.Appendf(nil, "mark-%d", epoch)},
	}
}

// randomBytes returns n reproducible pseudo-random bytes.
func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// same reports how two checkpoints differ ("" when they are equal). Nil
// and empty maps and byte strings are equal.
func same(a, b *engine.Checkpoint) string {
	if a == nil || b == nil {
		if a == b {
			return ""
		}
		return fmt.Sprintf("one is nil: %v %v", a == nil, b == nil)
	}
	if a.Epoch != b.Epoch {
		return fmt.Sprintf("epoch %d != %d", a.Epoch, b.Epoch)
	}
	if !a.Time.Equal(b.Time) {
		return fmt.Sprintf("time %v != %v", a.Time, b.Time)
	}
	for _, p := range []struct {
		what string
		x, y map[string][]byte
	}{{"sources", a.Sources, b.Sources}, {"sinks", a.Sinks, b.Sinks}} {
		if len(p.x) != len(p.y) {
			return fmt.Sprintf("%s: %d != %d entries", p.what, len(p.x), len(p.y))
		}
		for k, v := range p.x {
			w, ok := p.y[k]
			if !ok || !bytes.Equal(v, w) {
				return fmt.Sprintf("%s[%q] differs (present %v)", p.what, k, ok)
			}
		}
	}
	if len(a.States) != len(b.States) {
		return fmt.Sprintf("states: %d != %d entries", len(a.States), len(b.States))
	}
	for k, s := range a.States {
		t, ok := b.States[k]
		switch {
		case !ok:
			return fmt.Sprintf("state %q missing", k)
		case (s == nil) != (t == nil):
			return fmt.Sprintf("state %q: nil %v != %v", k, s == nil, t == nil)
		case s != nil && (s.Kind != t.Kind || s.Version != t.Version || !bytes.Equal(s.Data, t.Data)):
			return fmt.Sprintf("state %q differs", k)
		}
	}
	return ""
}

// memStore opens a store on a new in-memory file system.
func memStore(t testing.TB) (*faultfs.FS, *checkpoint.Store) {
	t.Helper()
	fs := faultfs.New()
	s, err := checkpoint.Open(dir, checkpoint.Options{FS: fs, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return fs, s
}

func save(t testing.TB, s *checkpoint.Store, epochs ...uint64) {
	t.Helper()
	for _, e := range epochs {
		if err := s.Save(ck(e)); err != nil {
			t.Fatalf("save %d: %v", e, err)
		}
	}
}

func path(epoch uint64) string { return dir + "/" + checkpoint.FileName(epoch) }
