package engine_test

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine"
)

// loadFailStore fails Load with err and counts Saves.
type loadFailStore struct {
	err   error
	saves int
}

func (s *loadFailStore) Save(*engine.Checkpoint) error     { s.saves++; return nil }
func (s *loadFailStore) Load() (*engine.Checkpoint, error) { return nil, s.err }

// TestCheckpointUnreadableStoreStopsTheStart gives a checkpointing graph a
// store that cannot be read (an I/O error, a permission refused, a file
// over the size limit): the start fails with that error, and nothing is
// saved or run — starting empty would read the sources again from their
// start into sinks that already hold that output, and the first save
// would then fail beside the newer checkpoints it could not read. Only a
// store whose checkpoints are all damaged (ErrNoValidCheckpoint) starts
// afresh, and says that earlier output may be written again.
func TestCheckpointUnreadableStoreStopsTheStart(t *testing.T) {
	cases := []struct {
		name  string
		err   error
		fresh bool
	}{
		{"io", fmt.Errorf("checkpoint: read x: %w", errors.New("input/output error")), false},
		{"permission", fmt.Errorf("checkpoint: list d: %w", fs.ErrPermission), false},
		{"no valid", fmt.Errorf("%w in d: 2 damaged", engine.ErrNoValidCheckpoint), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := &loadFailStore{err: tc.err}
			src := &replaySource{n: 100, batch: 10}
			err := runSum(t, src, &durable{}, st, time.Hour)
			if tc.fresh {
				if err != nil || st.saves == 0 {
					t.Fatalf("a store with only damaged checkpoints: %v, %d saves; want a fresh start", err, st.saves)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err.Error()) {
				t.Fatalf("Run: %v; want the store's error", err)
			}
			if st.saves != 0 || src.next != 0 {
				t.Fatalf("%d saves, source at %d: the graph ran on an unreadable store", st.saves, src.next)
			}
		})
	}
}
