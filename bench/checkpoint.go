package bench

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/checkpoint"
)

// Checkpoint is the scenario of durable operator state: the enos scenario
// run twice, without checkpoints and with the pipeline setting
// `checkpoint: {interval: 5s, ingest_fsync: always}` (the in-memory source
// then writes every batch to an ingest log, fsynced before it is emitted,
// and the windows and alerts are checkpointed every interval, at the
// start and at the end). It is not part of the default set: ask for it
// with --scenario checkpoint.
const Checkpoint = "checkpoint"

// Names of the two runs of the checkpoint scenario in Report.Results.
const (
	CheckpointOff = "checkpoint-off"
	CheckpointOn  = "checkpoint-on"
)

// DefaultCheckpointInterval is the default Options.CheckpointInterval.
const DefaultCheckpointInterval = 5 * time.Second

// CheckpointGoal is the share of the throughput without checkpoints that a
// run with them is meant to keep.
const CheckpointGoal = 0.9

// checkpointFsync is the ingest_fsync policy of the checkpoint scenario:
// the strictest, every batch on disk before it is emitted.
const checkpointFsync = "always"

func init() {
	descriptions[CheckpointOff] = "enos without checkpoints (the first half of the checkpoint scenario)"
	descriptions[CheckpointOn] = "enos with checkpoint {interval, ingest_fsync: always}: ingest log for the in-memory source, windows and alerts checkpointed"
}

// CheckpointStats are the checkpoints one run took.
type CheckpointStats struct {
	IntervalSeconds float64 `json:"interval_seconds"`
	IngestFsync     string  `json:"ingest_fsync"`
	// Checkpoints counts every checkpoint saved: the first (epoch 0, before
	// any input), those taken every interval and the last one at the end
	// of the input.
	Checkpoints int `json:"checkpoints"`
	// Pauses counts the checkpoints taken while the pipeline ran (all but
	// the first); PauseMaxSeconds and PauseAvgSeconds are the time their
	// sources were held (engine.CheckpointOptions.OnCheckpoint).
	Pauses          int     `json:"pauses"`
	PauseMaxSeconds float64 `json:"pause_max_seconds"`
	PauseAvgSeconds float64 `json:"pause_avg_seconds"`
	// SizeMaxBytes and SizeAvgBytes are the sizes of the checkpoint files.
	SizeMaxBytes int64 `json:"size_max_bytes"`
	SizeAvgBytes int64 `json:"size_avg_bytes"`
	// StateMaxBytes is the largest sum of the steps' states in one
	// checkpoint (open windows, alert states).
	StateMaxBytes int64 `json:"state_max_bytes"`
	// StepsWithState names the steps some checkpoint held open state of.
	StepsWithState []string `json:"steps_with_state,omitempty"`
	// IngestRowsLogged is the number of rows the source's ingest log
	// appended.
	IngestRowsLogged int64 `json:"ingest_rows_logged"`
}

// CheckpointResult compares the two runs of the checkpoint scenario.
type CheckpointResult struct {
	Off string `json:"off"`
	On  string `json:"on"`
	// Throughput is rows/s with checkpoints over rows/s without; PerCore
	// the same per CPU second. Goal is CheckpointGoal; MeetsGoal says
	// whether Throughput reached it.
	Throughput float64 `json:"throughput"`
	PerCore    float64 `json:"per_core"`
	Goal       float64 `json:"goal"`
	MeetsGoal  bool    `json:"meets_goal"`
	// NsPerRow and AllocsPerRow of each run (a row is one reading, one
	// event).
	NsPerRowOff     float64 `json:"ns_per_row_off"`
	NsPerRowOn      float64 `json:"ns_per_row_on"`
	AllocsPerRowOff float64 `json:"allocs_per_row_off"`
	AllocsPerRowOn  float64 `json:"allocs_per_row_on"`
	// PeakRSS*Bytes are the peaks less the pre-rendered payloads.
	PeakRSSOffBytes int64 `json:"peak_rss_excl_input_off_bytes"`
	PeakRSSOnBytes  int64 `json:"peak_rss_excl_input_on_bytes"`
	// Stats are the checkpoints of the run with them.
	Stats *CheckpointStats `json:"stats"`
}

// checkpointYAML is the checkpoint section the run with checkpoints adds
// to the reference pipeline.
func checkpointYAML(interval time.Duration) []byte {
	return fmt.Appendf(nil, "\ncheckpoint:\n  interval: %s\n  ingest_fsync: %s\n", interval, checkpointFsync)
}

// ckptProbe stands between the pipeline's graph and its checkpoint store
// and records what every checkpoint cost.
type ckptProbe struct {
	store    *checkpoint.Store
	interval time.Duration

	mu     sync.Mutex
	sizes  []int64
	state  int64
	steps  map[string]bool
	pauses []time.Duration
}

var _ engine.CheckpointStore = (*ckptProbe)(nil)

// Save saves c and records the size of its file and of its states.
func (p *ckptProbe) Save(c *engine.Checkpoint) error {
	if err := p.store.Save(c); err != nil {
		return err
	}
	var size int64
	if st, err := os.Stat(filepath.Join(p.store.Dir(), checkpoint.FileName(c.Epoch))); err == nil {
		size = st.Size()
	}
	var state int64
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, s := range c.States {
		if s != nil && len(s.Data) > 0 {
			state += int64(len(s.Data))
			p.steps[name] = true
		}
	}
	p.sizes = append(p.sizes, size)
	p.state = max(p.state, state)
	return nil
}

// Load loads from the store (a bench run starts from an empty one).
func (p *ckptProbe) Load() (*engine.Checkpoint, error) { return p.store.Load() }

func (p *ckptProbe) onCheckpoint(_ *engine.Checkpoint, paused time.Duration) {
	p.mu.Lock()
	p.pauses = append(p.pauses, paused)
	p.mu.Unlock()
}

// instrument makes the graph of bp take its checkpoints through a probe,
// in a store of its own in the run's data directory.
func (bp *benchPipeline) instrument(interval time.Duration) error {
	st, err := checkpoint.Open(filepath.Join(bp.dataDir, "bench-checkpoints"), checkpoint.Options{Log: bp.log})
	if err != nil {
		return err
	}
	p := &ckptProbe{store: st, interval: interval, steps: map[string]bool{}}
	if err := bp.p.Graph.Checkpoints(engine.CheckpointOptions{Store: p, Interval: interval, OnCheckpoint: p.onCheckpoint}); err != nil {
		return err
	}
	bp.probe = p
	return nil
}

// stats returns what the probe recorded.
func (p *ckptProbe) stats() *CheckpointStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := &CheckpointStats{
		IntervalSeconds: p.interval.Seconds(),
		IngestFsync:     checkpointFsync,
		Checkpoints:     len(p.sizes),
		Pauses:          len(p.pauses),
		StateMaxBytes:   p.state,
	}
	var sum time.Duration
	for _, d := range p.pauses {
		sum += d
		s.PauseMaxSeconds = max(s.PauseMaxSeconds, d.Seconds())
	}
	if len(p.pauses) > 0 {
		s.PauseAvgSeconds = sum.Seconds() / float64(len(p.pauses))
	}
	var total int64
	for _, b := range p.sizes {
		total += b
		s.SizeMaxBytes = max(s.SizeMaxBytes, b)
	}
	if len(p.sizes) > 0 {
		s.SizeAvgBytes = total / int64(len(p.sizes))
	}
	for name := range p.steps {
		s.StepsWithState = append(s.StepsWithState, name)
	}
	slices.Sort(s.StepsWithState)
	return s
}

// finishCheckpoint compares the two runs of the checkpoint scenario, when
// both ran.
func (r *Report) finishCheckpoint() {
	off, on := r.Result(CheckpointOff), r.Result(CheckpointOn)
	if off == nil || on == nil {
		return
	}
	q := func(a, b float64) float64 {
		if a <= 0 || b <= 0 {
			return 0
		}
		return a / b
	}
	perRow := func(res *Result, total float64) float64 { return q(total, float64(res.Rows)) }
	c := &CheckpointResult{
		Off: off.Scenario, On: on.Scenario,
		Throughput:      q(on.RowsPerSec, off.RowsPerSec),
		PerCore:         q(on.RowsPerCoreSec, off.RowsPerCoreSec),
		Goal:            CheckpointGoal,
		NsPerRowOff:     perRow(off, off.WallSeconds*1e9),
		NsPerRowOn:      perRow(on, on.WallSeconds*1e9),
		AllocsPerRowOff: perRow(off, float64(off.Allocs)),
		AllocsPerRowOn:  perRow(on, float64(on.Allocs)),
		PeakRSSOffBytes: off.PeakRSSExclInputBytes,
		PeakRSSOnBytes:  on.PeakRSSExclInputBytes,
		Stats:           on.Checkpoint,
	}
	c.MeetsGoal = c.Throughput >= c.Goal
	r.Checkpoint = c
	if c.Stats != nil && c.Stats.IngestRowsLogged != on.Rows {
		r.Agreement.Problems = append(r.Agreement.Problems, fmt.Sprintf("%s logged %d rows in its ingest log, processed %d", on.Scenario, c.Stats.IngestRowsLogged, on.Rows))
	}
}

// writeTable writes the checkpoint comparison for people.
func (c *CheckpointResult) writeTable(w io.Writer) error {
	s := c.Stats
	if s == nil {
		s = &CheckpointStats{}
	}
	fmt.Fprintf(w, "\ncheckpoint: enos without and with checkpoint {interval: %s, ingest_fsync: %s}\n",
		time.Duration(s.IntervalSeconds*float64(time.Second)), s.IngestFsync)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tns/row\tallocs/row\tpeak-RSS-excl-input\t")
	fmt.Fprintf(tw, "%s\t%.0f\t%.3f\t%s\t\n", c.Off, c.NsPerRowOff, c.AllocsPerRowOff, mib(c.PeakRSSOffBytes, true))
	fmt.Fprintf(tw, "%s\t%.0f\t%.3f\t%s\t\n", c.On, c.NsPerRowOn, c.AllocsPerRowOn, mib(c.PeakRSSOnBytes, true))
	if err := tw.Flush(); err != nil {
		return err
	}
	verdict := "met"
	if !c.MeetsGoal {
		verdict = "NOT met"
	}
	fmt.Fprintf(w, "throughput with checkpoints: %.1f%% of without (goal >= %.0f%%: %s), per core %.1f%%\n",
		100*c.Throughput, 100*c.Goal, verdict, 100*c.PerCore)
	fmt.Fprintf(w, "checkpoints: %d (the first before any input, %d while running incl. the last); pause max %s, avg %s;\n",
		s.Checkpoints, s.Pauses, secs(s.PauseMaxSeconds, ""), secs(s.PauseAvgSeconds, ""))
	fmt.Fprintf(w, "file size max %s, avg %s; largest state %s; ingest log: %s rows logged\n",
		kib(s.SizeMaxBytes), kib(s.SizeAvgBytes), kib(s.StateMaxBytes), group(s.IngestRowsLogged))
	return nil
}

// kib renders a size in KiB (bytes below 1 KiB).
func kib(b int64) string {
	if b < 1024 {
		return fmt.Sprintf("%dB", b)
	}
	return fmt.Sprintf("%.1fKiB", float64(b)/1024)
}
