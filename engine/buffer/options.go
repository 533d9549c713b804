package buffer

import (
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer/disk"
)

// FsyncPolicy says when appended records are forced to disk.
type FsyncPolicy uint8

// Fsync policies; see docs/format/buffer.md section 3.4.
const (
	// FsyncAlways fsyncs before Append returns; concurrent appenders share
	// one fsync. It is the default.
	FsyncAlways FsyncPolicy = iota
	// FsyncInterval fsyncs in the background every FsyncInterval.
	FsyncInterval
	// FsyncNone never fsyncs the WAL (the OS writes it back when it likes).
	FsyncNone
)

var fsyncNames = [...]string{"always", "interval", "none"}

func (p FsyncPolicy) String() string {
	if int(p) < len(fsyncNames) {
		return fsyncNames[p]
	}
	return fmt.Sprintf("fsync(%d)", p)
}

// ParseFsyncPolicy parses "always", "interval" or "none".
func ParseFsyncPolicy(s string) (FsyncPolicy, error) {
	for i, n := range fsyncNames {
		if strings.EqualFold(strings.TrimSpace(s), n) {
			return FsyncPolicy(i), nil
		}
	}
	return 0, fmt.Errorf("unknown fsync policy %q (want always, interval or none)", s)
}

// Policy says what happens when an append does not fit in the quota.
type Policy uint8

// Policies on full; see docs/format/buffer.md section 10.
const (
	// RejectNew makes Append return ErrFull.
	RejectNew Policy = iota
	// DropOldest deletes the oldest undelivered segments until the append
	// fits.
	DropOldest
	// Downsample deletes the oldest undelivered segments of buffers whose
	// schema the quota's droppable predicate accepts (raw data), keeping
	// alerts and window statistics; when none is left it rejects.
	Downsample
)

var policyNames = [...]string{"reject_new", "drop_oldest", "downsample"}

func (p Policy) String() string {
	if int(p) < len(policyNames) {
		return policyNames[p]
	}
	return fmt.Sprintf("policy(%d)", p)
}

// ParsePolicy parses "reject_new", "drop_oldest" or "downsample".
func ParsePolicy(s string) (Policy, error) {
	for i, n := range policyNames {
		if strings.EqualFold(strings.TrimSpace(s), n) {
			return Policy(i), nil
		}
	}
	return 0, fmt.Errorf("unknown quota policy %q (want reject_new, drop_oldest or downsample)", s)
}

// TTLBasis says what the TTL measures.
type TTLBasis uint8

// TTL bases.
const (
	// ByEventTime expires a segment when its newest event time is older
	// than the TTL.
	ByEventTime TTLBasis = iota
	// ByAge expires a segment when its oldest row was appended longer ago
	// than the TTL.
	ByAge
)

func (t TTLBasis) String() string {
	if t == ByAge {
		return "age"
	}
	return "event_time"
}

// Options configure a buffer. Schema is required; everything else has a
// default.
type Options struct {
	// Schema is the schema of every record appended.
	Schema *engine.Schema
	// FS is the file system; OS by default.
	FS FS
	// Mem allocates the records returned by Next; memory.DefaultAllocator
	// by default.
	Mem memory.Allocator

	// Edge and Stream are the identity the rows are published under
	// (<edge>/<stream>/<sequence>). The buffer records them in its meta
	// file when it is created; see Buffer.Identity for what happens when
	// they change later.
	Edge, Stream string
	// MessageRows cuts every appended batch into messages of at most this
	// many rows, counted from the batch's first row; 0 makes each batch
	// one message. The boundaries are stored with the rows and kept
	// through sealing, export and replay, so that every reader cuts the
	// same messages (docs/format/buffer.md 2).
	MessageRows int
	// ReadOnly opens the buffer without changing anything on disk: no
	// repair, no appends, no acknowledgements. Damage found is reported
	// but not quarantined. Tools use it (export) and it works on a full
	// or read-only file system.
	ReadOnly bool
	// Held opens the buffer for a sink that holds its output back until a
	// checkpoint covers it (the two-phase commit of a checkpointing
	// pipeline; docs/format/buffer.md 13): Next returns only rows at or
	// below the committed sequence (Commit), only committed rows are
	// sealed or evicted, and Rollback forgets rows after a mark.
	Held bool

	// Fsync is the WAL fsync policy; FsyncAlways by default.
	Fsync FsyncPolicy
	// FsyncInterval is the period of background fsyncs under
	// FsyncInterval; 100 ms by default.
	FsyncInterval time.Duration
	// SegmentBytes is the WAL file size limit; DefaultSegmentBytes by
	// default.
	SegmentBytes int64
	// IdleSeal rolls and seals the active WAL file once it has seen no
	// append for this long; 10 s by default, negative to disable.
	IdleSeal time.Duration
	// ManualSeal disables background sealing, idle rolls and TTL checks:
	// the owner calls Seal, Roll and Expire. Tools and tests use it.
	ManualSeal bool
	// ReadRows caps the rows of an entry read from a Parquet segment; 4096
	// by default. Entries read from the WAL are the appended batches.
	ReadRows int

	// MaxBytes is the disk quota of this buffer alone (0: unlimited),
	// applied with Policy and Droppable. Ignored when Quota is set.
	MaxBytes  int64
	Policy    Policy
	Droppable func(*engine.Schema) bool
	// Quota is a quota shared with other buffers. It overrides MaxBytes,
	// Policy and Droppable.
	Quota *Quota

	// TTL drops segments older than this (0: never), measured by TTLBy.
	TTL   time.Duration
	TTLBy TTLBasis

	// OnDrop is called once per dropped unit, after the drop is durable,
	// without any lock held, from the goroutine that caused the drop. It
	// may append to any buffer (for example an alert record).
	OnDrop func(Drop)
	// OnCorruption is called once per corruption found, after the damaged
	// file has been quarantined, without any lock held.
	OnCorruption func(*CorruptionError)
	// Now is the clock for append times and TTLs; time.Now by default.
	Now func() time.Time
	// Log receives drops and corruptions; slog.Default() by default.
	Log *slog.Logger
	// Counters receives the buffer's counters; a private set by default.
	Counters *engine.Counters
}

func (o *Options) normalize() error {
	if o.Schema == nil {
		return fmt.Errorf("buffer: options: no schema")
	}
	if err := disk.CheckSchema(o.Schema); err != nil {
		return fmt.Errorf("buffer: options: %w", err)
	}
	if o.FS == nil {
		o.FS = OS
	}
	if o.MessageRows < 0 || o.MessageRows > math.MaxUint32 {
		return fmt.Errorf("buffer: options: message rows %d out of range", o.MessageRows)
	}
	if o.Mem == nil {
		o.Mem = memory.DefaultAllocator
	}
	if o.Fsync > FsyncNone {
		return fmt.Errorf("buffer: options: unknown fsync policy %d", o.Fsync)
	}
	if o.FsyncInterval <= 0 {
		o.FsyncInterval = 100 * time.Millisecond
	}
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	if o.IdleSeal == 0 {
		o.IdleSeal = 10 * time.Second
	}
	if o.ReadRows <= 0 {
		o.ReadRows = 4096
	}
	if o.Policy > Downsample {
		return fmt.Errorf("buffer: options: unknown policy %d", o.Policy)
	}
	if o.MaxBytes < 0 || o.TTL < 0 {
		return fmt.Errorf("buffer: options: negative quota or TTL")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Counters == nil {
		o.Counters = engine.NewCounters()
	}
	return nil
}
