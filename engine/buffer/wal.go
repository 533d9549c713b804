package buffer

import "github.com/sluice-edge/sluice/engine/buffer/disk"

// walState is the life cycle of a WAL file.
type walState uint8

const (
	walActive  walState = iota // receiving appends
	walRolled                  // full or idle, waiting to be sealed
	walSealing                 // being rewritten as Parquet
	walRemoved                 // sealed, delivered, dropped or quarantined
)

// walFile is one WAL file and the index of its valid records.
type walFile struct {
	num   uint32
	rel   string // "wal/00000001.wal"
	f     File
	base  uint64
	size  int64
	recs  []disk.WALRec
	state walState
	// refs counts users of f besides the directory entry: the appender
	// while active, syncs, readers and the sealer. f is closed once the
	// file is removed and refs is zero.
	refs  int
	dirty bool // written since the last sync
	// syncedSize and syncedNext describe what is durable: the first
	// syncedSize bytes, holding every sequence below syncedNext.
	syncedSize int64
	syncedNext uint64
	// damage lists corruption found in the file; a damaged file is
	// quarantined, not removed, once its valid records are sealed.
	damage []*CorruptionError
}

// next returns the sequence after the file's last record (its base when
// it has none).
func (w *walFile) next() uint64 {
	if len(w.recs) == 0 {
		return w.base
	}
	return w.recs[len(w.recs)-1].Last() + 1
}

func (w *walFile) lastSeq() uint64 {
	if len(w.recs) == 0 {
		return 0
	}
	return w.recs[len(w.recs)-1].Last()
}
