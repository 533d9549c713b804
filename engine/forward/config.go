package forward

import (
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/spec"
)

// Mode is the order in which the forwarder publishes.
type Mode string

// Modes.
const (
	// LiveFirst publishes fresh rows first and drains the backlog
	// oldest-first beside them, rate-capped.
	LiveFirst Mode = "live_first"
	// FIFO publishes strictly in sequence order.
	FIFO Mode = "fifo"
)

// Defaults of the forwarding fields.
const (
	DefaultMaxAttempts  = 5
	DefaultRetryMin     = 100 * time.Millisecond
	DefaultRetryMax     = 30 * time.Second
	DefaultTimeout      = 30 * time.Second
	DefaultDrainTimeout = 5 * time.Second
	// DefaultDiskFullClearAfter is how long appends must go through
	// before a disk-full alert clears.
	DefaultDiskFullClearAfter = 30 * time.Second
	// DefaultLiveQueue is the number of batches the live lane holds in
	// memory before Write hands new rows to the backlog lane instead.
	DefaultLiveQueue = 64
)

// Field names of the common buffered-sink fields.
const (
	FieldEdge          = "edge"
	FieldMessageStream = "message_stream"
	FieldBuffer        = "buffer"
	FieldForward       = "forward"
)

var bufferFields = []spec.Field{
	{Name: "dir", Type: spec.String, Optional: true,
		Description: "Directory of the sink's buffer (default: `<data dir>/<pipeline>/<sink>`); relative paths are resolved against the pipeline file's directory. One directory belongs to one sink.",
		Example:     "/var/lib/sluice/site-a/cloud"},
	{Name: "fsync", Type: spec.String, Default: "always", Enum: []string{"always", "interval", "none"},
		Description: "When appended rows are forced to disk. `always`: before the source is acknowledged (survives power loss); `interval`: every `fsync_interval` (a power loss can lose up to one interval of acknowledged rows, a crash none); `none`: left to the operating system."},
	{Name: "fsync_interval", Type: spec.Duration, Default: "100ms", Advanced: true,
		Description: "Period of background fsyncs with `fsync: interval`."},
	{Name: "max_bytes", Type: spec.String, Default: "auto",
		Description: "Disk quota of the buffer (write-ahead log, segments and dead letters): bytes (`10737418240`, `10GiB`, `500MB`), a share of the free space of its file system when it opens (`30%`), or `unlimited`. `auto` (the default): every sink of the run that leaves it unset shares one quota of " + DefaultDiskShareText + " of the free space (measured when the first of them opens, plus what their buffers then held), each applying its own `on_full`; so an edge never fills its disk with backlog.",
		Example:     "10GiB"},
	{Name: "on_full", Type: spec.String, Default: "reject_new", Enum: []string{"reject_new", "drop_oldest", "downsample"},
		Description: "What happens when the quota is full: `reject_new` holds new rows back (backpressure to the source, nothing is dropped); `drop_oldest` deletes the oldest undelivered segment; `downsample` does that only for raw data and keeps alerts and window statistics. Every drop is counted, logged and raised as an alert."},
	{Name: "ttl", Type: spec.Duration, Default: "0",
		Description: "Undelivered rows whose newest event time is older than this are dropped (counted, logged and raised as an alert); 0 keeps them until delivered.",
		Example:     "30d"},
	{Name: "segment_bytes", Type: spec.Int, Default: buffer.DefaultSegmentBytes, Advanced: true,
		Description: "Size at which a write-ahead log file is sealed into a Parquet segment. Keep it well below max_bytes."},
	{Name: "disk_full_clear_after", Type: spec.Duration, Default: spec.FormatDuration(DefaultDiskFullClearAfter), Advanced: true,
		Description: "How long appends must go through after the disk was last full before the `buffer_disk_full` alert clears: a disk at the edge of full raises one alert for the episode, not one per batch."},
}

var forwardFields = []spec.Field{
	{Name: "mode", Type: spec.String, Default: string(LiveFirst), Enum: []string{string(LiveFirst), string(FIFO)},
		Description: "`live_first`: fresh rows are published first while the backlog drains oldest-first beside them at `backfill_rate`; `fifo`: strictly in sequence order. Per key, rows keep their order within each lane. `live_first` needs `fsync: always` or `none`; with `interval` the sink forwards in fifo order."},
	{Name: "backfill_rate", Type: spec.Float, Default: 0,
		Description: "Most backlog rows published per second in `live_first` mode; 0 is unlimited (live rows still go first).",
		Example:     200000},
	{Name: "max_attempts", Type: spec.Int, Default: DefaultMaxAttempts,
		Description: "Attempts at a message the broker rejects permanently (too large, invalid, not permitted) before its rows go to the dead-letter segment. Transient errors (outages, timeouts) are retried forever."},
	{Name: "retry_min", Type: spec.Duration, Default: spec.FormatDuration(DefaultRetryMin),
		Description: "First delay after a failed publish; it doubles (with jitter) up to retry_max."},
	{Name: "retry_max", Type: spec.Duration, Default: spec.FormatDuration(DefaultRetryMax),
		Description: "Longest delay between retries."},
	{Name: "publish_timeout", Type: spec.Duration, Default: spec.FormatDuration(DefaultTimeout), Advanced: true,
		Description: "How long the forwarder waits for one publish call before it counts the attempt as failed (transient) and backs off. It never starts another publish while one is running."},
	{Name: "drain_timeout", Type: spec.Duration, Default: spec.FormatDuration(DefaultDrainTimeout), Advanced: true,
		Description: "On shutdown, how long the forwarder keeps publishing what is buffered before it stops; what is left stays in the buffer for the next start."},
}

// DefaultDiskShare is the share of the free disk space the buffers of a run
// may use together when they set no max_bytes.
const DefaultDiskShare = 0.5

// DefaultDiskShareText is DefaultDiskShare in words, for docs.
const DefaultDiskShareText = "50%"

// MaxBytes is a parsed max_bytes value.
type MaxBytes struct {
	// Bytes is a fixed quota (0: unlimited, unless Share is set).
	Bytes int64
	// Share is a share of the free space (0..1); Auto makes it the run's
	// default quota, shared by the sinks that set none.
	Share float64
	Auto  bool
}

// ParseMaxBytes parses a max_bytes value: "auto", "unlimited" (or 0), a
// byte count with an optional unit (KB, MB, GB, TB, KiB, MiB, GiB, TiB) or
// a percentage of the free space.
func ParseMaxBytes(s string) (MaxBytes, error) {
	t := strings.TrimSpace(s)
	switch strings.ToLower(t) {
	case "", "auto":
		return MaxBytes{Share: DefaultDiskShare, Auto: true}, nil
	case "unlimited", "0":
		return MaxBytes{}, nil
	}
	if p, ok := strings.CutSuffix(t, "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || !(v > 0 && v <= 100) {
			return MaxBytes{}, fmt.Errorf("max_bytes %q: a share must be above 0%% and at most 100%%", s)
		}
		return MaxBytes{Share: v / 100}, nil
	}
	num := strings.TrimRightFunc(t, unicode.IsLetter)
	unit := strings.ToLower(strings.TrimSpace(t[len(num):]))
	mult, ok := map[string]float64{"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}[unit]
	v, err := strconv.ParseFloat(strings.ReplaceAll(strings.TrimSpace(num), "_", ""), 64)
	if !ok || err != nil || v < 0 || v*mult >= 1<<62 || math.IsNaN(v) {
		return MaxBytes{}, fmt.Errorf("max_bytes %q: want bytes (10737418240, 10GiB, 500MB), a share of the free space (30%%), auto or unlimited", s)
	}
	return MaxBytes{Bytes: int64(v * mult)}, nil
}

// Fields returns the configuration fields every buffered sink has, to be
// appended to a publisher's own fields: edge, message_stream, buffer and
// forward.
func Fields() []spec.Field {
	return []spec.Field{
		{Name: FieldEdge, Type: spec.String, Optional: true,
			Description: "Edge name in message IDs and metadata (default: the engine's edge name, the host name unless set). No `/` or white space.",
			Example:     "site-a"},
		{Name: FieldMessageStream, Type: spec.String, Optional: true,
			Description: "Stream name in message IDs and metadata, `<edge>/<message_stream>/<seq>` (default: `<pipeline>.<sink>`). Keep it stable: changing it changes every ID. No `/` or white space.",
			Example:     "stats"},
		{Name: FieldBuffer, Type: spec.Object, Optional: true, Children: bufferFields,
			Description: "The sink's durable buffer (write-ahead log, Parquet segments, quota). See docs/forwarding.md.",
			Example:     map[string]any{"max_bytes": 1073741824, "on_full": "drop_oldest"}},
		{Name: FieldForward, Type: spec.Object, Optional: true, Children: forwardFields,
			Description: "How the forwarder publishes the buffer: order, backfill rate, retries, dead letters. See docs/forwarding.md.",
			Example:     map[string]any{"mode": "live_first", "backfill_rate": 200000}},
	}
}

// object returns the named object field, or an object of defaults when it
// is absent.
func object(cfg *spec.Config, name string, fields []spec.Field) *spec.Config {
	if o := cfg.Object(name); o != nil {
		return o
	}
	s := spec.Spec{Fields: fields}
	o, _ := s.Parse(cfg.File(), nil)
	return o
}

// FromConfig reads the common buffered-sink fields of cfg (declared with
// Fields) into Options for a sink of the given input schema. Errors are
// located at the offending field.
func FromConfig(cfg *spec.Config, in *engine.Schema, bc engine.BuildContext) (Options, error) {
	o := Options{
		Schema:   in,
		Edge:     cfg.String(FieldEdge),
		Stream:   cfg.String(FieldMessageStream),
		Log:      bc.Log,
		Counters: bc.Counters,
		Mem:      bc.Mem,
		Shared:   bc.Shared,
		Labels:   map[string]string{"pipeline": bc.Pipeline, "sink": bc.Name},
		Held:     bc.Checkpoints,
	}
	if o.Edge == "" {
		o.Edge = bc.Edge
	}
	if err := outbound.CheckName(o.Edge); err != nil {
		return o, cfg.Errorf(FieldEdge, "edge: %v", err)
	}
	if o.Stream == "" {
		o.Stream = bc.Name
		if bc.Pipeline != "" {
			o.Stream = bc.Pipeline + "." + bc.Name
		}
	}
	if err := outbound.CheckName(o.Stream); err != nil {
		return o, cfg.Errorf(FieldMessageStream, "message_stream: %v", err)
	}

	if bc.FS != nil {
		fs, ok := bc.FS.(buffer.FS)
		if !ok {
			return o, fmt.Errorf("forward: the build context's FS is a %T, not a buffer.FS", bc.FS)
		}
		o.Buffer.FS = fs
	}
	b := object(cfg, FieldBuffer, bufferFields)
	o.Dir = b.String("dir")
	switch {
	case o.Dir == "":
		o.Dir = filepath.Join(bc.DataDir, bc.Pipeline, bc.Name)
	case !filepath.IsAbs(o.Dir) && bc.Dir != "":
		o.Dir = filepath.Join(bc.Dir, o.Dir)
	}
	var err error
	if o.Buffer.Fsync, err = buffer.ParseFsyncPolicy(b.String("fsync")); err != nil {
		return o, b.Errorf("fsync", "%v", err)
	}
	if o.Buffer.Policy, err = buffer.ParsePolicy(b.String("on_full")); err != nil {
		return o, b.Errorf("on_full", "%v", err)
	}
	o.Buffer.FsyncInterval = b.Duration("fsync_interval")
	o.Buffer.TTL = b.Duration("ttl")
	o.Buffer.SegmentBytes = b.Int("segment_bytes")
	o.DiskFullClearAfter = b.Duration("disk_full_clear_after")
	if o.DiskFullClearAfter <= 0 {
		return o, b.Errorf("disk_full_clear_after", "disk_full_clear_after must be above 0")
	}
	q, err := ParseMaxBytes(b.String("max_bytes"))
	if err != nil {
		return o, b.Errorf("max_bytes", "%v", err)
	}
	o.Buffer.MaxBytes, o.DiskShare, o.DiskShared = q.Bytes, q.Share, q.Auto
	if o.Buffer.SegmentBytes <= 0 {
		return o, b.Errorf("segment_bytes", "segment_bytes must be above 0, got %d", o.Buffer.SegmentBytes)
	}
	if o.Buffer.TTL < 0 || o.Buffer.FsyncInterval <= 0 {
		return o, b.Errorf("ttl", "ttl must be 0 or more and fsync_interval above 0")
	}

	f := object(cfg, FieldForward, forwardFields)
	o.Mode = Mode(f.String("mode"))
	o.BackfillRate = f.Float("backfill_rate")
	o.MaxAttempts = int(f.Int("max_attempts"))
	o.RetryMin = f.Duration("retry_min")
	o.RetryMax = f.Duration("retry_max")
	o.PublishTimeout = f.Duration("publish_timeout")
	o.DrainTimeout = f.Duration("drain_timeout")
	switch {
	case o.BackfillRate < 0:
		return o, f.Errorf("backfill_rate", "backfill_rate must be 0 or more, got %v", o.BackfillRate)
	case o.MaxAttempts < 1:
		return o, f.Errorf("max_attempts", "max_attempts must be at least 1, got %d", o.MaxAttempts)
	case o.RetryMin <= 0:
		return o, f.Errorf("retry_min", "retry_min must be above 0")
	case o.RetryMax < o.RetryMin:
		return o, f.Errorf("retry_max", "retry_max (%v) must be at least retry_min (%v)", o.RetryMax, o.RetryMin)
	case o.PublishTimeout <= 0:
		return o, f.Errorf("publish_timeout", "publish_timeout must be above 0")
	case o.DrainTimeout < 0:
		return o, f.Errorf("drain_timeout", "drain_timeout must be 0 or more")
	}
	return o, nil
}

// normalize fills defaults and checks the options.
func (o *Options) normalize() error {
	if o.Schema == nil {
		return fmt.Errorf("forward: no schema")
	}
	if err := outbound.CheckName(o.Edge); err != nil {
		return fmt.Errorf("forward: edge: %w", err)
	}
	if err := outbound.CheckName(o.Stream); err != nil {
		return fmt.Errorf("forward: stream: %w", err)
	}
	if o.Dir == "" {
		return fmt.Errorf("forward: no buffer directory")
	}
	if o.Mode == "" {
		o.Mode = LiveFirst
	}
	if o.Mode != LiveFirst && o.Mode != FIFO {
		return fmt.Errorf("forward: unknown mode %q", o.Mode)
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.RetryMin <= 0 {
		o.RetryMin = DefaultRetryMin
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = max(DefaultRetryMax, o.RetryMin)
	}
	if o.PublishTimeout <= 0 {
		o.PublishTimeout = DefaultTimeout
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	if o.LiveQueue <= 0 {
		o.LiveQueue = DefaultLiveQueue
	}
	if o.DiskFullClearAfter <= 0 {
		o.DiskFullClearAfter = DefaultDiskFullClearAfter
	}
	return nil
}
