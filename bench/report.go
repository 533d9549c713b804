package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluice-edge/sluice/connectors/sim"
)

// FormatVersion is the version of the JSON document; it changes when a
// field changes meaning or goes away.
const FormatVersion = 1

// Report is the outcome of a run.
type Report struct {
	FormatVersion int       `json:"format_version"`
	Time          time.Time `json:"time"`
	Machine       Machine   `json:"machine"`
	Workload      Workload  `json:"workload"`
	// Results holds one entry per scenario, in the order run.
	Results []*Result `json:"results"`
	// Ratios compares each scenario with the baseline of the same run.
	Ratios []Ratio `json:"ratios,omitempty"`
	// Agreement says whether the scenarios produced the same results.
	Agreement Agreement `json:"agreement"`
	// Checkpoint compares the runs without and with checkpoints of the
	// checkpoint scenario, when it ran.
	Checkpoint *CheckpointResult `json:"checkpoint,omitempty"`
	// Buffer holds the figures of the buffer scenario, when it ran.
	Buffer *BufferResult `json:"buffer,omitempty"`
	// Forward holds the figures of the forward scenario, when it ran.
	Forward *ForwardResult `json:"forward,omitempty"`
	// Infer holds the figures of the infer scenario, when it ran.
	Infer *InferResult `json:"infer,omitempty"`
	// MQTT holds the figures of the mqtt scenario, when it ran.
	MQTT *MQTTResult `json:"mqtt,omitempty"`
	// Notes explain how to read the figures.
	Notes []string `json:"notes,omitempty"`
}

// Machine describes where the run happened.
type Machine struct {
	GoVersion  string `json:"go_version"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	CPUModel   string `json:"cpu_model,omitempty"`
	NumCPU     int    `json:"num_cpu"`
	GOMAXPROCS int    `json:"gomaxprocs"`
}

// Workload describes what every scenario processed.
type Workload struct {
	Turbines          int     `json:"turbines"`
	Points            int     `json:"points"`
	IntervalSeconds   float64 `json:"interval_seconds"`
	EventTimeSeconds  float64 `json:"event_time_seconds"`
	ReadingsPerDevice int64   `json:"readings_per_turbine"`
	Rows              int64   `json:"rows"`
	PointValues       int64   `json:"point_values"`
	Seed              uint64  `json:"seed"`
	Faults            float64 `json:"faults_per_turbine_hour"`
	Window            string  `json:"window"`
	AlertRules        int     `json:"alert_rules"`
	// ExpectedWindows is turbines x whole minutes started.
	ExpectedWindows int64 `json:"expected_windows"`
}

// Result holds the figures of one scenario. Rows are readings (one payload
// of ten point values each); "per core" divides by CPU time, so it is what
// one fully busy core would do.
type Result struct {
	Scenario    string `json:"scenario"`
	Description string `json:"description"`
	GOMAXPROCS  int    `json:"gomaxprocs"`

	Rows        int64 `json:"rows"`
	PointValues int64 `json:"point_values"`

	WallSeconds float64 `json:"wall_seconds"`
	CPUSeconds  float64 `json:"cpu_seconds"`
	UserSeconds float64 `json:"user_seconds"`
	SysSeconds  float64 `json:"sys_seconds"`
	// CPUMeasured is false where the platform gives no CPU time.
	CPUMeasured bool `json:"cpu_measured"`
	// CoresUsed is CPU time / wall time.
	CoresUsed float64 `json:"cores_used"`

	RowsPerSec       float64 `json:"rows_per_sec"`
	PointsPerSec     float64 `json:"point_values_per_sec"`
	NsPerPoint       float64 `json:"ns_per_point"`
	CPUNsPerPoint    float64 `json:"cpu_ns_per_point"`
	RowsPerCoreSec   float64 `json:"rows_per_core_sec"`
	PointsPerCoreSec float64 `json:"point_values_per_core_sec"`
	AllocsPerPoint   float64 `json:"allocs_per_point"`
	BytesPerPoint    float64 `json:"bytes_per_point"`
	Allocs           uint64  `json:"allocs"`
	AllocBytes       uint64  `json:"alloc_bytes"`
	GCCycles         uint32  `json:"gc_cycles"`
	GCPauseSeconds   float64 `json:"gc_pause_seconds"`

	// PeakRSSBytes is the peak resident set size (VmHWM) during the
	// scenario, when PeakRSSReset; otherwise the peak of the process so far.
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
	PeakRSSReset bool  `json:"peak_rss_reset"`
	// InputBytes is the size of the payloads rendered before the clock
	// started; they are resident during the run and included in the peak.
	InputBytes int64 `json:"input_bytes"`
	// PeakRSSExclInputBytes is the peak less the input.
	PeakRSSExclInputBytes int64 `json:"peak_rss_excl_input_bytes"`

	WindowRows    int64 `json:"window_rows"`
	AlertsRaised  int64 `json:"alerts_raised"`
	AlertsCleared int64 `json:"alerts_cleared"`
	LateRows      int64 `json:"late_rows"`
	DecodeErrors  int64 `json:"decode_errors"`

	// Runs is the number of runs; the figures are those of the run of
	// median wall time. AllWallSeconds and AllCPUSeconds list every run.
	Runs           int       `json:"runs"`
	AllWallSeconds []float64 `json:"all_wall_seconds"`
	AllCPUSeconds  []float64 `json:"all_cpu_seconds"`

	CPUProfile string `json:"cpu_profile,omitempty"`

	// Checkpoint holds the checkpoints the run took, when it took any.
	Checkpoint *CheckpointStats `json:"checkpoint,omitempty"`
}

// Alerts is the number of alert records (raised and cleared).
func (r *Result) Alerts() int64 { return r.AlertsRaised + r.AlertsCleared }

// Ratio compares a scenario with the baseline: each figure is "how many
// times better", so above 1 means the scenario beats the baseline.
type Ratio struct {
	Scenario string `json:"scenario"`
	Baseline string `json:"baseline"`
	// Throughput is rows/s of the scenario over rows/s of the baseline.
	Throughput float64 `json:"throughput"`
	// PerCore is rows per CPU second over the baseline's (CPU efficiency).
	PerCore float64 `json:"per_core"`
	// Allocs is the baseline's allocations per point over the scenario's
	// (0 when the scenario allocates nothing measurable).
	Allocs float64 `json:"allocs"`
	// PeakRSS is the baseline's peak RSS less input over the scenario's.
	PeakRSS float64 `json:"peak_rss"`
}

// Agreement says whether the scenarios produced the same window rows and
// alerts, and lists the differences.
type Agreement struct {
	WindowRows bool     `json:"window_rows"`
	Alerts     bool     `json:"alerts"`
	Problems   []string `json:"problems,omitempty"`
}

func newReport(opts Options, perTurbine int64) *Report {
	rows := perTurbine * int64(opts.Turbines)
	span := time.Duration(perTurbine) * Interval
	minutes := (int64(span) + int64(time.Minute) - 1) / int64(time.Minute)
	return &Report{
		FormatVersion: FormatVersion,
		Time:          time.Now().UTC().Truncate(time.Second),
		Machine: Machine{
			GoVersion:  runtime.Version(),
			OS:         runtime.GOOS,
			Arch:       runtime.GOARCH,
			CPUModel:   cpuModel(),
			NumCPU:     runtime.NumCPU(),
			GOMAXPROCS: runtime.GOMAXPROCS(0),
		},
		Workload: Workload{
			Turbines:          opts.Turbines,
			Points:            sim.NumPoints,
			IntervalSeconds:   Interval.Seconds(),
			EventTimeSeconds:  span.Seconds(),
			ReadingsPerDevice: perTurbine,
			Rows:              rows,
			PointValues:       rows * sim.NumPoints,
			Seed:              opts.Seed,
			Faults:            opts.Faults,
			Window:            "tumbling 1m per turbine: count, and avg, min, max, stddev, p95 of every point",
			AlertRules:        len(baselineRules),
			ExpectedWindows:   minutes * int64(opts.Turbines),
		},
	}
}

func newResult(name string, before, after sample, out outputs) *Result {
	r := &Result{
		Scenario:    name,
		Description: descriptions[name],
		GOMAXPROCS:  runtime.GOMAXPROCS(0),
		Rows:        out.rows,
		PointValues: out.rows * sim.NumPoints,
		WallSeconds: after.wall.Sub(before.wall).Seconds(),
		UserSeconds: (after.user - before.user).Seconds(),
		SysSeconds:  (after.sys - before.sys).Seconds(),
		CPUMeasured: before.cpuOK && after.cpuOK,
		Allocs:      after.mallocs - before.mallocs,
		AllocBytes:  after.allocBytes - before.allocBytes,
		GCCycles:    after.numGC - before.numGC,

		GCPauseSeconds: float64(after.pauseNs-before.pauseNs) / 1e9,
		PeakRSSBytes:   peakRSS(),
		WindowRows:     out.windows,
		AlertsRaised:   out.raised,
		AlertsCleared:  out.cleared,
		LateRows:       out.late,
		DecodeErrors:   out.decodeErrors,
		Checkpoint:     out.checkpoint,
	}
	r.CPUSeconds = r.UserSeconds + r.SysSeconds
	pts := float64(r.PointValues)
	div := func(a, b float64) float64 {
		if b <= 0 {
			return 0
		}
		return a / b
	}
	r.RowsPerSec = div(float64(r.Rows), r.WallSeconds)
	r.PointsPerSec = div(pts, r.WallSeconds)
	r.NsPerPoint = div(r.WallSeconds*1e9, pts)
	r.AllocsPerPoint = div(float64(r.Allocs), pts)
	r.BytesPerPoint = div(float64(r.AllocBytes), pts)
	if r.CPUMeasured {
		r.CoresUsed = div(r.CPUSeconds, r.WallSeconds)
		r.CPUNsPerPoint = div(r.CPUSeconds*1e9, pts)
		r.RowsPerCoreSec = div(float64(r.Rows), r.CPUSeconds)
		r.PointsPerCoreSec = div(pts, r.CPUSeconds)
	}
	return r
}

// finish computes input-excluded RSS, the ratios, the agreement and notes.
func (r *Report) finish() {
	var base *Result
	for _, res := range r.Results {
		res.PeakRSSExclInputBytes = max(0, res.PeakRSSBytes-res.InputBytes)
		if res.Scenario == Baseline {
			base = res
		}
	}
	if base != nil {
		for _, res := range r.Results {
			if res == base {
				continue
			}
			q := func(a, b float64) float64 {
				if b <= 0 || a <= 0 {
					return 0
				}
				return a / b
			}
			r.Ratios = append(r.Ratios, Ratio{
				Scenario:   res.Scenario,
				Baseline:   base.Scenario,
				Throughput: q(res.RowsPerSec, base.RowsPerSec),
				PerCore:    q(res.RowsPerCoreSec, base.RowsPerCoreSec),
				Allocs:     q(base.AllocsPerPoint, res.AllocsPerPoint),
				PeakRSS:    q(float64(base.PeakRSSExclInputBytes), float64(res.PeakRSSExclInputBytes)),
			})
		}
	}
	r.Agreement = Agreement{WindowRows: true, Alerts: true}
	want := r.Workload.Rows
	for _, res := range r.Results {
		if res.Rows != want {
			r.Agreement.Problems = append(r.Agreement.Problems, fmt.Sprintf("%s processed %d rows, want %d", res.Scenario, res.Rows, want))
		}
		if res.DecodeErrors > 0 || res.LateRows > 0 {
			r.Agreement.Problems = append(r.Agreement.Problems, fmt.Sprintf("%s had %d decode errors and %d late rows", res.Scenario, res.DecodeErrors, res.LateRows))
		}
		if res.WindowRows != r.Workload.ExpectedWindows {
			r.Agreement.WindowRows = false
			r.Agreement.Problems = append(r.Agreement.Problems, fmt.Sprintf("%s produced %d window rows, want %d", res.Scenario, res.WindowRows, r.Workload.ExpectedWindows))
		}
		if first := r.Results[0]; res.AlertsRaised != first.AlertsRaised || res.AlertsCleared != first.AlertsCleared {
			r.Agreement.Alerts = false
			r.Agreement.Problems = append(r.Agreement.Problems, fmt.Sprintf("%s raised %d and cleared %d alerts, %s %d and %d",
				res.Scenario, res.AlertsRaised, res.AlertsCleared, first.Scenario, first.AlertsRaised, first.AlertsCleared))
		}
	}
	r.finishCheckpoint()
	r.Notes = []string{
		"rows are readings: one EnOS payload (enos, baseline) or one Arrow row (arrow) of 10 point values each",
		"per-core figures divide by the CPU time (user+sys) of the whole process during the scenario, garbage collection included",
		"the arrow figures include generating the readings (the simulator runs in the source)",
		"the enos and baseline payloads are rendered before the clock starts; peak_rss_excl_input_bytes subtracts them",
		"ratios are scenario over baseline of the same run: above 1 is better than the baseline",
	}
	if r.Machine.GOMAXPROCS != r.Machine.NumCPU {
		r.Notes = append(r.Notes, fmt.Sprintf("GOMAXPROCS was %d of %d CPUs", r.Machine.GOMAXPROCS, r.Machine.NumCPU))
	}
}

// Check returns an error describing how the scenarios disagree, or nil.
func (r *Report) Check() error {
	if len(r.Agreement.Problems) == 0 {
		return nil
	}
	return errors.New("bench: scenarios disagree: " + strings.Join(r.Agreement.Problems, "; "))
}

// Result returns the result of a scenario, or nil.
func (r *Report) Result(scenario string) *Result {
	for _, res := range r.Results {
		if res.Scenario == scenario {
			return res
		}
	}
	return nil
}

// WriteJSON writes the report as an indented JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(r)
}

// WriteTable writes the report for people: the workload, one line per
// scenario, the ratios to the baseline and whether the scenarios agree.
func (r *Report) WriteTable(w io.Writer) error {
	bw := bufio.NewWriter(w)
	wl, m := r.Workload, r.Machine
	fmt.Fprintf(bw, "Sluice bench: %d turbines x %d points, %s of event time = %s readings, %s point values\n",
		wl.Turbines, wl.Points, time.Duration(wl.EventTimeSeconds*float64(time.Second)), group(wl.Rows), group(wl.PointValues))
	fmt.Fprintf(bw, "%s -> 3 alert rules -> discard\n", wl.Window)
	cpu := m.CPUModel
	if cpu == "" {
		cpu = "unknown CPU"
	}
	fmt.Fprintf(bw, "%s %s/%s, %s, %d CPUs, GOMAXPROCS %d\n\n", m.GoVersion, m.OS, m.Arch, cpu, m.NumCPU, m.GOMAXPROCS)

	// Only the pipeline scenarios give the table and the agreement line: a
	// run of others alone (buffer, forward, infer) has nothing to agree on.
	if len(r.Results) > 0 {
		if err := r.writeResults(bw); err != nil {
			return err
		}
	}
	if r.Checkpoint != nil {
		if err := r.Checkpoint.writeTable(bw); err != nil {
			return err
		}
	}
	if r.Buffer != nil {
		if err := r.Buffer.writeTable(bw); err != nil {
			return err
		}
	}
	if r.Forward != nil {
		if err := r.Forward.writeTable(bw); err != nil {
			return err
		}
	}
	if r.Infer != nil {
		if err := r.Infer.writeTable(bw); err != nil {
			return err
		}
	}
	if r.MQTT != nil {
		if err := r.MQTT.writeTable(bw); err != nil {
			return err
		}
	}
	for _, res := range r.Results {
		if !res.PeakRSSReset {
			fmt.Fprintln(bw, "note: the peak RSS could not be reset between scenarios; it is the peak of the process so far")
			break
		}
	}
	return bw.Flush()
}

// writeResults writes the table of the pipeline scenarios (arrow, enos,
// baseline, checkpoint), their ratios and whether they agree.
func (r *Report) writeResults(bw *bufio.Writer) error {
	wl := r.Workload
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\trows/s\tpoints/s\tns/point\tcpu-ns/point\trows/s/core\tcores\tallocs/point\tB/point\twall-s\tcpu-s\tpeak-RSS\texcl-input\twindows\talerts\t")
	for _, res := range r.Results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f\t%s\t%s\t%s\t%.3f\t%.1f\t%.2f\t%s\t%s\t%s\t%d\t%d\t\n",
			res.Scenario, group(int64(res.RowsPerSec)), group(int64(res.PointsPerSec)), res.NsPerPoint,
			ifCPU(res, fmt.Sprintf("%.1f", res.CPUNsPerPoint)), ifCPU(res, group(int64(res.RowsPerCoreSec))),
			ifCPU(res, fmt.Sprintf("%.2f", res.CoresUsed)),
			res.AllocsPerPoint, res.BytesPerPoint, res.WallSeconds, ifCPU(res, fmt.Sprintf("%.2f", res.CPUSeconds)),
			mib(res.PeakRSSBytes, res.PeakRSSReset), mib(res.PeakRSSExclInputBytes, res.PeakRSSReset),
			res.WindowRows, res.Alerts())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, res := range r.Results {
		if res.Runs > 1 {
			fmt.Fprintf(bw, "%s: median of %d runs; wall s of each:", res.Scenario, res.Runs)
			for _, w := range res.AllWallSeconds {
				fmt.Fprintf(bw, " %.2f", w)
			}
			fmt.Fprintln(bw)
		}
	}
	if len(r.Ratios) > 0 {
		fmt.Fprintln(bw, "\nratios to the baseline of this run (above 1 is better):")
		tw = tabwriter.NewWriter(bw, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "\tthroughput\tper-core\tallocs\tpeak-RSS-excl-input\t")
		for _, q := range r.Ratios {
			fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%s\t%s\t\n", q.Scenario, q.Baseline, times(q.Throughput), times(q.PerCore), times(q.Allocs), times(q.PeakRSS))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(bw)
	if len(r.Agreement.Problems) == 0 {
		fmt.Fprintf(bw, "agreement: every scenario produced %d window rows", wl.ExpectedWindows)
		if len(r.Results) > 0 {
			first := r.Results[0]
			fmt.Fprintf(bw, " and %d alerts (%d raised, %d cleared)", first.Alerts(), first.AlertsRaised, first.AlertsCleared)
		}
		fmt.Fprintln(bw)
	} else {
		for _, p := range r.Agreement.Problems {
			fmt.Fprintf(bw, "DISAGREEMENT: %s\n", p)
		}
	}
	return nil
}

func ifCPU(r *Result, s string) string {
	if !r.CPUMeasured {
		return "-"
	}
	return s
}

func times(x float64) string {
	if x <= 0 {
		return "-"
	}
	if x >= 100 {
		return fmt.Sprintf("%.0fx", x)
	}
	return fmt.Sprintf("%.1fx", x)
}

func mib(b int64, reset bool) string {
	if b <= 0 {
		return "-"
	}
	s := fmt.Sprintf("%.1fMiB", float64(b)/(1<<20))
	if !reset {
		s += "*"
	}
	return s
}

// group renders n with thousands separators.
func group(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// cpuModel returns the CPU model name from /proc/cpuinfo, or "".
func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for line := range bytes.Lines(data) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if ok && string(bytes.TrimSpace(k)) == "model name" {
			return string(bytes.TrimSpace(v))
		}
	}
	return ""
}
