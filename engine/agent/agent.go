package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sluice-edge/sluice/engine/buffer/disk"
	"github.com/sluice-edge/sluice/engine/bundle"
	"github.com/sluice-edge/sluice/engine/spec"
)

// Steps of an apply, in order, as passed to Options.Hook after each.
const (
	// StepVerified: signature, digests, targets, version and free space
	// checked; nothing written yet.
	StepVerified = "verified"
	// StepUnpacked: the files are in a staging directory.
	StepUnpacked = "unpacked"
	// StepInstalled: the staging directory is renamed into
	// releases/<name>/<version>.
	StepInstalled = "installed"
	// StepChecked: the runner's dry run passed.
	StepChecked = "checked"
	// StepSwitched: the runner switched to the new release.
	StepSwitched = "switched"
	// StepCurrentTemp: current.json's temporary file is written and
	// synced, not yet renamed.
	StepCurrentTemp = "current-temp"
	// StepPersisted: current.json names the new release.
	StepPersisted = "persisted"
	// StepReported: the report is appended.
	StepReported = "reported"
	// StepPruned: old releases are removed.
	StepPruned = "pruned"
)

// Steps lists the steps of a successful apply in order.
var Steps = []string{StepVerified, StepUnpacked, StepInstalled, StepChecked, StepSwitched, StepCurrentTemp, StepPersisted, StepReported, StepPruned}

// Defaults of Options.
const (
	DefaultMaxReportBytes = 1 << 20
	DefaultDiskReserve    = 16 << 20
	// maxPending bounds the bundles staged for the next start.
	maxPending = 64
)

// Runner runs releases: the engine's side of an apply.
type Runner interface {
	// Check dry-runs the release unpacked in dir: it builds every
	// pipeline, rule and model without opening anything. Its error says
	// why the release cannot run (a spec.Errors names file:line:col).
	Check(dir string, m *bundle.Manifest) error
	// Switch makes the release in dir the one that runs, atomically: on
	// error the release that ran before keeps running. The first Switch
	// starts the engine. It returns what changed, for the report.
	Switch(ctx context.Context, dir string, m *bundle.Manifest) (string, error)
}

// PipelineState is the state of one pipeline of the running release.
type PipelineState struct {
	Name  string    `json:"name"`
	State string    `json:"state"`
	Since time.Time `json:"since"`
	Err   string    `json:"err,omitempty"`
}

// Stater is a Runner that also reports its pipelines' states.
type Stater interface {
	Pipelines() []PipelineState
}

// Options configure an Agent.
type Options struct {
	// Dir is the state directory (<data dir>/agent); it is created.
	Dir string
	// Edge and Labels are matched against a bundle's targets.
	Edge   string
	Labels map[string]string
	// Trust holds the keys a bundle must be signed with.
	Trust *bundle.Trust
	// MaxBundleBytes bounds a bundle file (default DefaultMaxBundleBytes).
	MaxBundleBytes int64
	// KeepReleases is how many unpacked releases are kept, the running one
	// included (default DefaultKeepReleases).
	KeepReleases int
	// MaxReportBytes is the size at which reports.jsonl is rotated
	// (default DefaultMaxReportBytes).
	MaxReportBytes int64
	// DiskReserve is the free space an unpacked release must leave
	// (default DefaultDiskReserve).
	DiskReserve int64
	// Hook, when set, is called after each step of an apply (Steps).
	Hook func(step string)
	// OnReport, when set, is called with every report once it is written
	// to reports.jsonl, whatever made it: an apply, a rejection, an
	// offline import's refusal, the apply a restart recorded. It runs
	// with the agent's apply lock held: it must not call the Agent and
	// should return soon.
	OnReport func(Report)
	// Log receives what the agent does (default: discarded).
	Log *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Agent applies release bundles to a Runner and keeps the state directory.
// One apply runs at a time; the state directory is locked against other
// processes while the Agent is open.
type Agent struct {
	opts   Options
	runner Runner
	lock   *os.File

	mu  sync.Mutex // one apply at a time; guards ctx, and cur for writing
	smu sync.Mutex // guards cur and last for readers that do not hold mu (status)
	cur *Current
	// last is the last report written to reports.jsonl (nil: none), so
	// that a status does not read the reports.
	last *Report
	ctx  context.Context
}

// Open creates the state directory and takes its lock; it fails with
// ErrLocked when another process holds it, and refuses a state directory
// another user owns or may write. runner may be nil for an agent
// that only stages bundles (an offline import).
func Open(opts Options, runner Runner) (*Agent, error) {
	if opts.Dir == "" {
		return nil, errors.New("agent: no state directory")
	}
	if opts.Trust == nil {
		return nil, errors.New("agent: no trusted keys")
	}
	if opts.MaxBundleBytes <= 0 {
		opts.MaxBundleBytes = DefaultMaxBundleBytes
	}
	if opts.KeepReleases <= 0 {
		opts.KeepReleases = DefaultKeepReleases
	}
	if opts.MaxReportBytes <= 0 {
		opts.MaxReportBytes = DefaultMaxReportBytes
	}
	if opts.DiskReserve <= 0 {
		opts.DiskReserve = DefaultDiskReserve
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	// Checked before anything is written in it.
	if fi, err := os.Lstat(opts.Dir); err == nil {
		if err := checkStateDir(opts.Dir, fi); err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("agent: %w", err)
	}
	for _, d := range []string{opts.Dir, filepath.Join(opts.Dir, releasesDir), filepath.Join(opts.Dir, stagingDir), filepath.Join(opts.Dir, pendingDir), filepath.Join(opts.Dir, incomingDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
	}
	if fi, err := os.Lstat(opts.Dir); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	} else if err := checkStateDir(opts.Dir, fi); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	lock, err := lockDir(opts.Dir, false)
	if err != nil {
		return nil, fmt.Errorf("agent %s: %w", opts.Dir, err)
	}
	cur, err := ReadCurrent(opts.Dir)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("agent: %w", err)
	}
	a := &Agent{opts: opts, runner: runner, lock: lock, cur: cur, ctx: context.Background()}
	if rs, err := ReadReports(opts.Dir, opts.MaxReportBytes); err == nil && len(rs) > 0 {
		a.last = &rs[len(rs)-1]
	}
	return a, nil
}

// checkStateDir refuses a state directory that is a symbolic link, or
// that another user owns or may write.
func checkStateDir(dir string, fi os.FileInfo) error {
	if !fi.IsDir() {
		return fmt.Errorf("state directory %s is not a directory (%s)", dir, spec.FileKind(fi.Mode()))
	}
	if err := checkOwner(dir, fi); err != nil {
		return fmt.Errorf("state directory %w", err)
	}
	return nil
}

// Close releases the state directory's lock.
func (a *Agent) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.lock == nil {
		return nil
	}
	err := a.lock.Close()
	a.lock = nil
	return err
}

// Dir is the state directory.
func (a *Agent) Dir() string { return a.opts.Dir }

// Current is the running release, nil when none has been applied.
func (a *Agent) Current() *Current {
	a.smu.Lock()
	defer a.smu.Unlock()
	if a.cur == nil {
		return nil
	}
	c := *a.cur
	return &c
}

func (a *Agent) hook(step string) {
	if a.opts.Hook != nil {
		a.opts.Hook(step)
	}
}

// Recover brings the state directory back to one complete release after a
// crash: it removes staging and incoming files, removes releases that were
// unpacked but never ran, and appends the "applied" report of the current
// release when a crash came between current.json and the report.
func (a *Agent) Recover() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.recoverLocked()
}

func (a *Agent) recoverLocked() error {
	for _, sub := range []string{stagingDir, incomingDir} {
		if err := clearDir(filepath.Join(a.opts.Dir, sub)); err != nil {
			return err
		}
	}
	for _, pattern := range []string{filepath.Join(pendingDir, ".stage-*"), "." + currentFile + ".tmp-*"} {
		if err := removeGlob(filepath.Join(a.opts.Dir, pattern)); err != nil {
			return err
		}
	}
	if a.cur != nil {
		if _, err := a.releaseManifest(a.cur); err != nil {
			return err
		}
	}
	if err := a.removeUnapplied(); err != nil {
		return err
	}
	if a.cur == nil {
		return nil
	}
	rs, err := ReadReports(a.opts.Dir, a.opts.MaxReportBytes)
	if err != nil {
		return err
	}
	if last := lastApplied(rs); last == nil || last.Bundle != a.cur.Name || last.Version != a.cur.Version {
		a.opts.Log.Info("recording the apply a restart interrupted", "bundle", a.cur.Name, "version", a.cur.Version)
		r := Report{Time: a.cur.Applied, Bundle: a.cur.Name, Version: a.cur.Version, Outcome: Applied, Steps: "recorded after a restart"}
		if err := a.record(r); err != nil {
			return err
		}
	}
	return nil
}

// record appends r to reports.jsonl and hands it to Options.OnReport.
func (a *Agent) record(r Report) error {
	r.bound()
	if err := appendReport(a.opts.Dir, r, a.opts.MaxReportBytes); err != nil {
		return err
	}
	a.smu.Lock()
	a.last = &r
	a.smu.Unlock()
	if a.opts.OnReport != nil {
		a.opts.OnReport(r)
	}
	return nil
}

// clearDir removes everything inside dir.
func clearDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
	}
	return nil
}

// syncDirs syncs every directory of the tree at root (the files are
// synced as they are unpacked), so that a release renamed into place is
// complete on disk after a power loss too.
func syncDirs(root string) error {
	return filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		if d.IsDir() {
			return syncDir(p)
		}
		return nil
	})
}

// removeGlob removes the files matching pattern.
func removeGlob(pattern string) error {
	names, err := filepath.Glob(pattern)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	for _, n := range names {
		if err := os.RemoveAll(n); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
	}
	return nil
}

// releaseDir is a release's directory relative to the state directory.
func releaseDir(name string, version uint64) string {
	return filepath.Join(releasesDir, name, strconv.FormatUint(version, 10))
}

// releaseManifest reads the manifest kept with an installed release and
// checks that it is the release c names.
func (a *Agent) releaseManifest(c *Current) (*bundle.Manifest, error) {
	data, err := readBounded(filepath.Join(a.opts.Dir, c.Dir, manifestFile), maxStateFile)
	if err != nil {
		return nil, fmt.Errorf("current release %s v%d: %w", c.Name, c.Version, err)
	}
	m, err := bundle.ParseManifest(data)
	if err != nil {
		return nil, fmt.Errorf("current release %s v%d: %w", c.Name, c.Version, err)
	}
	if m.Name != c.Name || m.Version != c.Version {
		return nil, fmt.Errorf("current release %s v%d: its directory holds %s v%d", c.Name, c.Version, m.Name, m.Version)
	}
	return m, nil
}

// installed is one release directory.
type installed struct {
	name    string
	version uint64
	rel     string
	mtime   time.Time
}

// listReleases lists the release directories releases/<name>/<version>;
// other entries are returned in junk.
func (a *Agent) listReleases() (rels []installed, junk []string, err error) {
	root := filepath.Join(a.opts.Dir, releasesDir)
	names, err := os.ReadDir(root)
	if err != nil {
		return nil, nil, fmt.Errorf("agent: %w", err)
	}
	for _, n := range names {
		if !n.IsDir() || bundle.CheckName(n.Name()) != nil {
			junk = append(junk, filepath.Join(releasesDir, n.Name()))
			continue
		}
		vs, err := os.ReadDir(filepath.Join(root, n.Name()))
		if err != nil {
			return nil, nil, fmt.Errorf("agent: %w", err)
		}
		for _, v := range vs {
			rel := filepath.Join(releasesDir, n.Name(), v.Name())
			ver, perr := strconv.ParseUint(v.Name(), 10, 64)
			if !v.IsDir() || perr != nil || ver == 0 || strconv.FormatUint(ver, 10) != v.Name() {
				junk = append(junk, rel)
				continue
			}
			var mt time.Time
			if st, err := os.Stat(filepath.Join(a.opts.Dir, rel, manifestFile)); err == nil {
				mt = st.ModTime()
			}
			rels = append(rels, installed{name: n.Name(), version: ver, rel: rel, mtime: mt})
		}
	}
	return rels, junk, nil
}

// removeUnapplied removes release directories newer than the highest
// version applied of their name (unpacked, then a crash or a rejection came
// before they ran) and entries that are no release.
func (a *Agent) removeUnapplied() error {
	rels, junk, err := a.listReleases()
	if err != nil {
		return err
	}
	for _, r := range rels {
		if a.cur != nil && r.rel == a.cur.Dir {
			continue
		}
		if a.cur == nil || r.version > a.cur.Versions[r.name] {
			junk = append(junk, r.rel)
		}
	}
	for _, j := range junk {
		a.opts.Log.Info("removing a release that never ran", "dir", j)
		if err := os.RemoveAll(filepath.Join(a.opts.Dir, j)); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
	}
	return nil
}

// prune keeps the current release and the most recently installed others,
// KeepReleases in all.
func (a *Agent) prune() error {
	rels, _, err := a.listReleases()
	if err != nil {
		return err
	}
	slices.SortFunc(rels, func(x, y installed) int { return y.mtime.Compare(x.mtime) })
	keep := a.opts.KeepReleases - 1
	for _, r := range rels {
		if a.cur != nil && r.rel == a.cur.Dir {
			continue
		}
		if keep > 0 {
			keep--
			continue
		}
		if err := os.RemoveAll(filepath.Join(a.opts.Dir, r.rel)); err != nil {
			return fmt.Errorf("prune %s: %w", r.rel, err)
		}
	}
	for _, n := range uniqueNames(rels) {
		// Remove a name's directory once it holds no release; fails
		// harmlessly when it is not empty.
		os.Remove(filepath.Join(a.opts.Dir, releasesDir, n))
	}
	return nil
}

func uniqueNames(rels []installed) []string {
	var out []string
	for _, r := range rels {
		if !slices.Contains(out, r.name) {
			out = append(out, r.name)
		}
	}
	return out
}

// Start recovers the state directory and runs the current release through
// the runner. It reports whether a release was started; with none applied
// yet, the caller runs what it runs without one. ctx is the runner's for
// every later switch too.
func (a *Agent) Start(ctx context.Context) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ctx = ctx
	if err := a.recoverLocked(); err != nil {
		return false, err
	}
	if a.cur == nil || a.runner == nil {
		return false, nil
	}
	m, err := a.releaseManifest(a.cur)
	if err != nil {
		return false, err
	}
	dir := filepath.Join(a.opts.Dir, a.cur.Dir)
	if _, err := a.runner.Switch(ctx, dir, m); err != nil {
		return false, fmt.Errorf("start release %s v%d: %w", a.cur.Name, a.cur.Version, err)
	}
	a.opts.Log.Info("running release", "bundle", a.cur.Name, "version", a.cur.Version, "applied", a.cur.Applied)
	return true, nil
}

// ApplyPending applies the bundles an offline import staged, oldest first,
// and returns their reports.
func (a *Agent) ApplyPending() ([]Report, error) {
	files, err := a.pendingFiles()
	if err != nil {
		return nil, err
	}
	var out []Report
	for _, f := range files {
		full := filepath.Join(a.opts.Dir, pendingDir, f)
		// A crash after the apply but before the removal left the file
		// of the release that runs: it was applied, not to report again.
		if n, v, ok := parsePending(f); !ok || !a.isCurrent(n, v) {
			r, err := a.Apply(full)
			if err != nil {
				return out, err
			}
			out = append(out, r)
		}
		if err := os.Remove(full); err != nil {
			return out, fmt.Errorf("agent: %w", err)
		}
		if err := syncDir(filepath.Dir(full)); err != nil {
			return out, err
		}
	}
	return out, nil
}

// isCurrent says whether name v is the running release.
func (a *Agent) isCurrent(name string, v uint64) bool {
	a.smu.Lock()
	defer a.smu.Unlock()
	return a.cur != nil && a.cur.Name == name && a.cur.Version == v
}

// pendingFiles lists pending/*.bundle in the order they were staged.
func (a *Agent) pendingFiles() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(a.opts.Dir, pendingDir))
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	var out []string
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".bundle") && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	slices.Sort(out) // names start with the staging time, zero-padded
	return out, nil
}

// Import streams a bundle into the state directory (at most
// MaxBundleBytes) and applies it. file names the bundle in the report (the
// name it had where it came from; "" for none).
func (a *Agent) Import(r io.Reader, file string) (Report, error) {
	file = CleanFileName(file)
	f, err := os.CreateTemp(filepath.Join(a.opts.Dir, incomingDir), "import-*.bundle")
	if err != nil {
		return Report{}, fmt.Errorf("import: %w", err)
	}
	name := f.Name()
	defer os.Remove(name)
	n, err := io.Copy(f, io.LimitReader(r, a.opts.MaxBundleBytes+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Report{}, fmt.Errorf("import: receiving the bundle: %w", err)
	}
	if n > a.opts.MaxBundleBytes {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.reject(Report{File: file}, errBundleSize(-1, a.opts.MaxBundleBytes))
	}
	return a.apply(name, file)
}

// RejectTooLarge records the rejection of a bundle of size bytes, more
// than MaxBundleBytes, without reading it (its sender announced its size),
// and returns the report.
func (a *Agent) RejectTooLarge(file string, size int64) (Report, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.reject(Report{File: CleanFileName(file)}, errBundleSize(size, a.opts.MaxBundleBytes))
}

// errBundleSize refuses a bundle of size bytes, more than limit
// (max_bundle_bytes); size is -1 when only the bound is known (a stream
// that went past it).
func errBundleSize(size, limit int64) error {
	if size < 0 {
		return fmt.Errorf("%w: the bundle exceeds max_bundle_bytes (%d)", bundle.ErrTooLarge, limit)
	}
	return fmt.Errorf("%w: the bundle is %d bytes, more than max_bundle_bytes (%d)", bundle.ErrTooLarge, size, limit)
}

// CleanFileName makes a file name given by a client fit for a report: its
// base name, without control or formatting characters (a terminal would
// obey them), at most 255 bytes.
func CleanFileName(name string) string {
	name = strings.Map(func(r rune) rune {
		if !unicode.IsGraphic(r) || r == utf8.RuneError {
			return -1
		}
		return r
	}, filepath.Base(filepath.ToSlash(name)))
	if name == "." || name == "/" {
		return ""
	}
	for len(name) > 255 {
		_, size := utf8.DecodeLastRuneInString(name)
		name = name[:len(name)-size]
	}
	return name
}

// Apply applies the bundle file name: verify, check, unpack, install,
// dry-run, switch, persist, report. A bundle that is refused returns a
// "rejected" report and a nil error; the error is for failures of the
// agent itself (its state directory).
func (a *Agent) Apply(name string) (Report, error) {
	return a.apply(name, filepath.Base(name))
}

// apply applies the bundle file name, reported as file.
func (a *Agent) apply(name, file string) (Report, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	rep := Report{File: file}
	f, m, b, err := a.verify(name)
	if err != nil {
		if m != nil {
			rep.Bundle, rep.Version = m.Name, m.Version
		}
		return a.reject(rep, err)
	}
	defer f.Close()
	rep.Bundle, rep.Version = m.Name, m.Version
	a.hook(StepVerified)

	// Unpack reads the file a second time, verifying it again as it
	// writes: what is unpacked is what was checked.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return a.reject(rep, err)
	}
	b2, staging, err := bundle.Unpack(f, a.opts.Trust, filepath.Join(a.opts.Dir, stagingDir))
	if err != nil {
		return a.reject(rep, err)
	}
	if !bytes.Equal(b2.ManifestBytes, b.ManifestBytes) {
		os.RemoveAll(staging)
		return a.reject(rep, fmt.Errorf("%w: the bundle changed while it was applied", bundle.ErrFormat))
	}
	if err := writeSynced(filepath.Join(staging, manifestFile), b.ManifestBytes); err != nil {
		os.RemoveAll(staging)
		return rep, err
	}
	if err := syncDirs(staging); err != nil {
		os.RemoveAll(staging)
		return rep, err
	}
	a.hook(StepUnpacked)

	rel := releaseDir(m.Name, m.Version)
	dest := filepath.Join(a.opts.Dir, rel)
	if err := a.install(staging, dest); err != nil {
		os.RemoveAll(staging)
		return rep, err
	}
	a.hook(StepInstalled)

	if a.runner == nil {
		os.RemoveAll(dest)
		return rep, errors.New("agent: no runner to apply a bundle to")
	}
	if err := guard(func() error { return a.runner.Check(dest, m) }); err != nil {
		os.RemoveAll(dest)
		return a.reject(rep, err)
	}
	a.hook(StepChecked)
	var steps string
	err = guard(func() (err error) {
		steps, err = a.runner.Switch(a.ctx, dest, m)
		return err
	})
	if err != nil {
		os.RemoveAll(dest)
		return a.reject(rep, err)
	}
	rep.Steps = steps
	rep.bound()
	a.hook(StepSwitched)

	now := a.opts.Now().UTC()
	next := &Current{Name: m.Name, Version: m.Version, Applied: now, Dir: rel, Versions: map[string]uint64{}}
	if a.cur != nil {
		for k, v := range a.cur.Versions {
			next.Versions[k] = v
		}
	}
	next.Versions[m.Name] = m.Version
	if err := a.persist(next); err != nil {
		// The new release runs but could not be recorded: go back to the
		// one current.json names, which a restart would run.
		a.opts.Log.Error("could not record the new release; switching back", "bundle", m.Name, "version", m.Version, "err", err)
		a.switchBack()
		os.RemoveAll(dest)
		return a.reject(rep, fmt.Errorf("recording the release: %w", err))
	}
	a.smu.Lock()
	a.cur = next
	a.smu.Unlock()
	a.hook(StepPersisted)

	rep.Time = now
	rep.Outcome = Applied
	if err := a.record(rep); err != nil {
		return rep, err
	}
	a.opts.Log.Info(rep.String(), "bundle", m.Name, "version", m.Version, "steps", steps)
	a.hook(StepReported)
	if err := a.prune(); err != nil {
		a.opts.Log.Warn("pruning old releases", "err", err)
	}
	a.hook(StepPruned)
	return rep, nil
}

// guard runs a call into the runner, turning a panic into an error: a
// bundle that makes the engine fail is rejected and reported, not retried
// at every start.
func guard(f func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("the engine failed on the release: panic: %v", p)
		}
	}()
	return f()
}

// switchBack runs the release current.json names again after a failed
// persist.
func (a *Agent) switchBack() {
	if a.cur == nil {
		return
	}
	m, err := a.releaseManifest(a.cur)
	if err == nil {
		_, err = a.runner.Switch(a.ctx, filepath.Join(a.opts.Dir, a.cur.Dir), m)
	}
	if err != nil {
		a.opts.Log.Error("switching back to the recorded release", "bundle", a.cur.Name, "version", a.cur.Version, "err", err)
	}
}

// persist writes current.json atomically.
func (a *Agent) persist(c *Current) error {
	data, err := jsonIndent(c)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(a.opts.Dir, currentFile), data, a.opts.Hook)
}

// install renames a complete staging directory to dest.
func (a *Agent) install(staging, dest string) error {
	parent := filepath.Dir(dest)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	// A directory left by an apply that never completed.
	if err := os.RemoveAll(dest); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	if err := os.Rename(staging, dest); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	if err := syncDir(parent); err != nil {
		return err
	}
	return syncDir(filepath.Dir(staging))
}

// verify opens a bundle file and checks everything that can be checked
// without writing: size, signature, digests, targets, version and free
// space. It returns the open file on success.
func (a *Agent) verify(name string) (*os.File, *bundle.Manifest, *bundle.Bundle, error) {
	f, fi, err := spec.OpenRegular(name, spec.NoFollow)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("open bundle: %w", err)
	}
	if fi.Size() > a.opts.MaxBundleBytes {
		f.Close()
		return nil, nil, nil, errBundleSize(fi.Size(), a.opts.MaxBundleBytes)
	}
	b, err := bundle.Verify(io.LimitReader(f, a.opts.MaxBundleBytes), a.opts.Trust)
	var m *bundle.Manifest
	if b != nil {
		m = b.Manifest
	}
	if err == nil {
		err = a.checkManifest(m)
	}
	if err != nil {
		f.Close()
		return nil, m, b, err
	}
	return f, m, b, nil
}

// ErrTarget: the bundle is meant for other edges.
var ErrTarget = errors.New("not targeted at this edge")

// ErrVersion: the bundle is not newer than the version applied of its name.
var ErrVersion = errors.New("not newer than the applied version")

// ErrSpace: the file system lacks room for the release.
var ErrSpace = errors.New("not enough free space")

// checkManifest checks a verified manifest against this edge: targets,
// version and free space.
func (a *Agent) checkManifest(m *bundle.Manifest) error {
	if err := CheckTargets(m.Targets, a.opts.Edge, a.opts.Labels); err != nil {
		return err
	}
	if a.cur != nil {
		if have := a.cur.Versions[m.Name]; m.Version <= have {
			return fmt.Errorf("%w: %s v%d is applied (a rollback is a new, higher version)", ErrVersion, m.Name, have)
		}
	}
	if free, err := disk.FreeBytes(a.opts.Dir); err == nil {
		if need := m.TotalSize() + a.opts.DiskReserve; free < need {
			return fmt.Errorf("%w: the release needs %d bytes and %d must stay free; %d are free", ErrSpace, m.TotalSize(), a.opts.DiskReserve, free)
		}
	}
	return nil
}

// CheckTargets says whether a bundle with targets t is meant for the edge
// with this id and labels: its edges, when it lists any, must name the
// edge, and every label it names must have that value on the edge.
func CheckTargets(t *bundle.Targets, edge string, labels map[string]string) error {
	if t == nil {
		return nil
	}
	if len(t.Edges) > 0 && !slices.Contains(t.Edges, edge) {
		return fmt.Errorf("%w: the bundle is for edges %s, this is %q", ErrTarget, strings.Join(t.Edges, ", "), edge)
	}
	keys := make([]string, 0, len(t.Labels))
	for k := range t.Labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if v, ok := labels[k]; !ok || v != t.Labels[k] {
			return fmt.Errorf("%w: the bundle needs label %s=%s, this edge has %s", ErrTarget, k, t.Labels[k], labelText(labels, k))
		}
	}
	return nil
}

func labelText(labels map[string]string, k string) string {
	v, ok := labels[k]
	if !ok {
		return "none"
	}
	return k + "=" + v
}

// reject appends a "rejected" report for err and returns it.
func (a *Agent) reject(rep Report, err error) (Report, error) {
	rep.Time = a.opts.Now().UTC()
	rep.Outcome = Rejected
	rep.Reason, rep.Location = reason(err)
	// What a report says is printed on terminals: a bundle's entry
	// names, unsigned ones included, must not drive them.
	rep.Reason, rep.Location, rep.File = escapeText(rep.Reason, true), escapeText(rep.Location, false), CleanFileName(rep.File)
	rep.bound()
	if werr := a.record(rep); werr != nil {
		return rep, werr
	}
	attrs := []any{"bundle", rep.Bundle, "version", rep.Version, "file", rep.File}
	if rep.Location != "" {
		attrs = append(attrs, "location", rep.Location)
	}
	a.opts.Log.Warn(rep.String(), attrs...)
	a.hook(StepReported)
	return rep, nil
}

// reason splits an apply error into its text and its location: the first
// file:line:col of configuration errors, or the bundle entry.
func reason(err error) (string, string) {
	var es spec.Errors
	if errors.As(err, &es) && len(es) > 0 {
		return err.Error(), es[0].Pos.String()
	}
	var e *spec.Error
	if errors.As(err, &e) {
		return err.Error(), e.Pos.String()
	}
	var ee *bundle.EntryError
	if errors.As(err, &ee) {
		return err.Error(), ee.Entry
	}
	return err.Error(), ""
}

// Bounds of a report's text, well within maxReportLine together: an
// entry name may be a megabyte long, a release may have a thousand
// pipelines.
const (
	maxReason   = 8 << 10
	maxLocation = 1 << 10
	maxSteps    = 32 << 10
)

// clip cuts s to at most max bytes, on a character boundary, saying how
// much was cut.
func clip(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max - 32
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s… (%d more bytes)", s[:cut], len(s)-cut)
}

// escapeText writes the characters of s that are not printable (control
// and formatting characters, invalid UTF-8) as Go escapes, as %q does;
// newline says whether '\n' is kept.
func escapeText(s string, newline bool) string {
	clean := func(r rune) bool {
		return r == ' ' || newline && r == '\n' || unicode.IsPrint(r) && r != utf8.RuneError
	}
	if utf8.ValidString(s) && strings.IndexFunc(s, func(r rune) bool { return !clean(r) }) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if clean(r) {
			b.WriteRune(r)
			continue
		}
		q := strconv.QuoteRune(r)
		b.WriteString(q[1 : len(q)-1])
	}
	return b.String()
}

// writeSynced creates name with data and syncs it.
func writeSynced(name string, data []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	return nil
}
