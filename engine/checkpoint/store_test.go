package checkpoint_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer/disk"
	"github.com/sluice-edge/sluice/engine/buffer/faultfs"
	"github.com/sluice-edge/sluice/engine/checkpoint"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/statecodec"
)

func TestRoundTrip(t *testing.T) {
	many := &engine.Checkpoint{Epoch: 9, Sources: map[string][]byte{}, States: map[string]*engine.State{}, Sinks: map[string][]byte{}}
	for i := range 1000 {
		many.Sources[fmt.Sprintf("src-%04d", i)] = fmt.Appendf(nil, "%d", i)
		many.States[fmt.Sprintf("op-%04d", i)] = &engine.State{Kind: "k", Version: -i, Data: fmt.Appendf(nil, "%d", i)}
		many.Sinks[fmt.Sprintf("sink-%04d", i)] = nil
	}
	for _, tc := range []struct {
		name string
		c    *engine.Checkpoint
	}{
		{"nil maps, zero time", &engine.Checkpoint{}},
		{"empty maps", &engine.Checkpoint{Epoch: 1, Time: time.Unix(0, 0), Sources: map[string][]byte{}, States: map[string]*engine.State{}, Sinks: map[string][]byte{}}},
		{"empty values", &engine.Checkpoint{Epoch: 2, Time: time.Unix(-1, 999_999_999),
			Sources: map[string][]byte{"": nil, "a": {}},
			States:  map[string]*engine.State{"nil": nil, "empty": {}, "neg": {Kind: "x", Version: math.MinInt}},
			Sinks:   map[string][]byte{"s": {}}}},
		{"ordinary", ck(7)},
		{"max epoch, far future, unicode names", &engine.Checkpoint{Epoch: math.MaxUint64, Time: time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
			Sources: map[string][]byte{"fühler/ä": {0, 255}}, States: map[string]*engine.State{"窓": {Kind: "w", Version: math.MaxInt, Data: []byte{1}}}}},
		{"big state", &engine.Checkpoint{Epoch: 3, States: map[string]*engine.State{"big": {Kind: "window", Version: 1, Data: randomBytes(16<<20, 3)}}}},
		{"many entries", many},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := checkpoint.Encode(tc.c)
			if err != nil {
				t.Fatal(err)
			}
			got, err := checkpoint.Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			if d := same(tc.c, got); d != "" {
				t.Fatalf("decode: %s", d)
			}
			if got.Sources == nil || got.States == nil || got.Sinks == nil {
				t.Error("decoded maps must not be nil")
			}
			again, err := checkpoint.Encode(got)
			if err != nil || !bytes.Equal(again, data) {
				t.Errorf("re-encoding differs (err %v)", err)
			}

			_, s := memStore(t)
			if err := s.Save(tc.c); err != nil {
				t.Fatal(err)
			}
			got, err = s.Load()
			if err != nil {
				t.Fatal(err)
			}
			if d := same(tc.c, got); d != "" {
				t.Fatalf("load: %s", d)
			}
		})
	}
}

func TestRoundTripOnDisk(t *testing.T) {
	d := t.TempDir() + "/pipe/checkpoints"
	s, err := checkpoint.Open(d, checkpoint.Options{Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	save(t, s, 0, 1, 2)
	s, err = checkpoint.Open(d, checkpoint.Options{Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if diff := same(ck(2), got); diff != "" {
		t.Fatal(diff)
	}
	names, err := disk.OS.ReadDir(d)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{checkpoint.FileName(1), checkpoint.FileName(2)}; !slices.Equal(names, want) {
		t.Errorf("files %v, want %v", names, want)
	}
}

func TestNoCheckpoint(t *testing.T) {
	fs, s := memStore(t)
	if err := fs.WriteFile(dir+"/README", []byte("not a checkpoint")); err != nil {
		t.Fatal(err)
	}
	c, err := s.Load()
	if c != nil || err != nil {
		t.Fatalf("Load of an empty directory: %v, %v", c, err)
	}
}

// reseal recomputes the body length and checksum of a file built by hand.
func reseal(header, body []byte) []byte {
	out := append(slices.Clone(header), body...)
	binary.LittleEndian.PutUint64(out[len(checkpoint.Magic)+4:], uint64(len(body)))
	return binary.LittleEndian.AppendUint32(out, disk.CRC(out))
}

func header() []byte {
	h := make([]byte, checkpoint.Overhead-4)
	copy(h, checkpoint.Magic)
	binary.LittleEndian.PutUint32(h[len(checkpoint.Magic):], checkpoint.Version)
	return h
}

func TestDamagedNewestFallsBack(t *testing.T) {
	good, _ := checkpoint.Encode(ck(2))
	body := good[checkpoint.Overhead-4 : len(good)-4]
	// A body with valid framing and checksum but invalid contents.
	w := statecodec.NewWriter(nil)
	w.Uvarint(2)
	w.Varint(0)
	w.Uvarint(0)
	w.Uvarint(2) // two sources, out of order
	w.String("b")
	w.Blob(nil)
	w.String("a")
	w.Blob(nil)
	w.Uvarint(0)
	w.Uvarint(0)
	unordered := reseal(header(), w.Bytes())
	newer := slices.Clone(good)
	binary.LittleEndian.PutUint32(newer[len(checkpoint.Magic):], checkpoint.Version+1)
	newer = reseal(newer[:checkpoint.Overhead-4], body)
	other, _ := checkpoint.Encode(ck(5))

	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
		reason string
	}{
		{"checksum", func(b []byte) []byte { b[40] ^= 1; return b }, "checksum mismatch"},
		{"checksum field", func(b []byte) []byte { b[len(b)-1] ^= 0x80; return b }, "checksum mismatch"},
		{"empty", func(b []byte) []byte { return nil }, "truncated"},
		{"cut in magic", func(b []byte) []byte { return b[:5] }, "truncated"},
		{"cut in header", func(b []byte) []byte { return b[:checkpoint.Overhead-5] }, "truncated"},
		{"cut after header", func(b []byte) []byte { return b[:checkpoint.Overhead-4] }, "truncated"},
		{"cut in body", func(b []byte) []byte { return b[:len(b)/2] }, "truncated"},
		{"cut in checksum", func(b []byte) []byte { return b[:len(b)-1] }, "truncated"},
		{"magic", func(b []byte) []byte { b[0] = 'X'; return b }, "bad magic"},
		{"zeroed", func(b []byte) []byte { return make([]byte, len(b)) }, "bad magic"},
		{"newer version", func([]byte) []byte { return slices.Clone(newer) }, "format version 2"},
		{"trailing byte", func(b []byte) []byte { return append(b, 0) }, "1 bytes after the checksum"},
		{"trailing garbage", func(b []byte) []byte { return append(b, randomBytes(1000, 1)...) }, "1000 bytes after the checksum"},
		{"names out of order", func([]byte) []byte { return slices.Clone(unordered) }, "out of order"},
		{"epoch differs from name", func([]byte) []byte { return slices.Clone(other) }, "epoch 5 in the file named for epoch 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs enginetest.LogBuffer
			fs := faultfs.New()
			s, err := checkpoint.Open(dir, checkpoint.Options{FS: fs, Log: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			save(t, s, 1, 2)
			raw, _ := fs.ReadFile(path(2))
			bad := tc.damage(raw)
			if err := fs.WriteFile(path(2), bad); err != nil {
				t.Fatal(err)
			}
			for range 2 { // a second Load finds the same, counting nothing new
				got, err := s.Load()
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if d := same(ck(1), got); d != "" {
					t.Fatalf("not the previous checkpoint: %s", d)
				}
				if s.Corrupt() != 1 {
					t.Fatalf("Corrupt() = %d", s.Corrupt())
				}
			}
			q, err := fs.ReadFile(dir + "/quarantine/" + checkpoint.FileName(2))
			if err != nil || !bytes.Equal(q, bad) {
				t.Errorf("damaged file not kept in quarantine: %v", err)
			}
			if _, err := fs.ReadFile(path(2)); err == nil {
				t.Error("damaged file still in place")
			}
			l := logs.String()
			if !strings.Contains(l, "level=ERROR") || !strings.Contains(l, path(2)) || !strings.Contains(l, tc.reason) {
				t.Errorf("log does not name the file and the reason %q:\n%s", tc.reason, l)
			}
			// Saving continues above the quarantined epoch.
			save(t, s, 2)
			if got, err := s.Load(); err != nil || same(ck(2), got) != "" {
				t.Errorf("after a new save: %v", err)
			}
		})
	}
}

func TestNoValidCheckpoint(t *testing.T) {
	fs, s := memStore(t)
	save(t, s, 1, 2)
	for _, e := range []uint64{1, 2} {
		raw, _ := fs.ReadFile(path(e))
		raw[len(raw)/2] ^= 0xff
		_ = fs.WriteFile(path(e), raw)
	}
	c, err := s.Load()
	if c != nil || !errors.Is(err, checkpoint.ErrNoValid) {
		t.Fatalf("Load: %v, %v; want ErrNoValid", c, err)
	}
	if s.Corrupt() != 2 {
		t.Errorf("Corrupt() = %d", s.Corrupt())
	}
	// The damaged files are in quarantine; a restart gets the same answer.
	s, err = checkpoint.Open(dir, checkpoint.Options{FS: fs, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := s.Load(); c != nil || !errors.Is(err, checkpoint.ErrNoValid) {
		t.Fatalf("Load after reopening: %v, %v; want ErrNoValid", c, err)
	}
	// Starting afresh: a new epoch-0 checkpoint is what Load returns.
	save(t, s, 0)
	if c, err := s.Load(); err != nil || same(ck(0), c) != "" {
		t.Fatalf("after a fresh start: %v, %v", c, err)
	}
	if got := fs.Names(); !slices.Contains(got, dir+"/quarantine/"+checkpoint.FileName(1)) {
		t.Errorf("quarantine lost: %v", got)
	}
}

func TestQuarantineNamesDoNotCollide(t *testing.T) {
	fs, s := memStore(t)
	for range 3 {
		save(t, s, 1)
		_ = fs.WriteFile(path(1), []byte("junk"))
		if _, err := s.Load(); !errors.Is(err, checkpoint.ErrNoValid) {
			t.Fatalf("Load: %v", err)
		}
	}
	var q []string
	for _, n := range fs.Names() {
		if strings.Contains(n, "/quarantine/") {
			q = append(q, n[strings.LastIndex(n, "/")+1:])
		}
	}
	f := checkpoint.FileName(1)
	if want := []string{f, f + ".1", f + ".2"}; !slices.Equal(q, want) {
		t.Errorf("quarantine %v, want %v", q, want)
	}
}

// allocated returns the bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestHostileLengths(t *testing.T) {
	const huge = math.MaxUint64 >> 1
	body := func(f func(w *statecodec.Writer)) []byte {
		w := statecodec.NewWriter(nil)
		w.Uvarint(1)
		w.Varint(0)
		w.Uvarint(0)
		f(w)
		return reseal(header(), w.Bytes())
	}
	lengthField := reseal(header(), []byte{1, 0, 0, 0, 0, 0})
	binary.LittleEndian.PutUint64(lengthField[len(checkpoint.Magic)+4:], huge)
	for _, tc := range []struct {
		name string
		file []byte
	}{
		{"body length", lengthField},
		{"source count", body(func(w *statecodec.Writer) { w.Uvarint(huge) })},
		{"source name length", body(func(w *statecodec.Writer) { w.Uvarint(1); w.Uvarint(huge) })},
		{"position length", body(func(w *statecodec.Writer) { w.Uvarint(1); w.String("a"); w.Uvarint(huge) })},
		{"state count", body(func(w *statecodec.Writer) { w.Uvarint(0); w.Uvarint(1 << 40) })},
		{"state kind length", body(func(w *statecodec.Writer) {
			w.Uvarint(0)
			w.Uvarint(1)
			w.String("a")
			w.Bool(true)
			w.Uvarint(1 << 30)
		})},
		{"state data length", body(func(w *statecodec.Writer) {
			w.Uvarint(0)
			w.Uvarint(1)
			w.String("a")
			w.Bool(true)
			w.String("k")
			w.Varint(1)
			w.Uvarint(huge)
		})},
		{"sink count", body(func(w *statecodec.Writer) { w.Uvarint(0); w.Uvarint(0); w.Uvarint(math.MaxInt64) })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			n := allocated(func() { _, err = checkpoint.Decode(tc.file) })
			if !errors.Is(err, checkpoint.ErrCorrupt) {
				t.Fatalf("Decode: %v", err)
			}
			if n > 64<<10 {
				t.Errorf("Decode allocated %d bytes for a %d-byte file", n, len(tc.file))
			}
			fs, s := memStore(t)
			save(t, s, 1)
			_ = fs.WriteFile(path(2), tc.file)
			var c *engine.Checkpoint
			n = allocated(func() { c, err = s.Load() })
			if err != nil || same(ck(1), c) != "" || s.Corrupt() != 1 {
				t.Fatalf("Load: %v (corrupt %d)", err, s.Corrupt())
			}
			if n > 256<<10 {
				t.Errorf("Load allocated %d bytes", n)
			}
		})
	}
}

func TestMaxBytes(t *testing.T) {
	fs := faultfs.New()
	s, err := checkpoint.Open(dir, checkpoint.Options{FS: fs, Log: quiet, MaxBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	big := ck(1)
	big.States["window"].Data = make([]byte, 1000)
	if err := s.Save(big); !errors.Is(err, checkpoint.ErrTooLarge) {
		t.Fatalf("Save of a checkpoint above the limit: %v", err)
	}
	if names := fs.Names(); len(names) != 0 {
		t.Fatalf("files left: %v", names)
	}
	data, _ := checkpoint.Encode(big)
	_ = fs.WriteFile(path(1), data)
	if _, err := s.Load(); !errors.Is(err, checkpoint.ErrTooLarge) {
		t.Fatalf("Load of a file above the limit: %v", err)
	}
	if _, err := fs.ReadFile(path(1)); err != nil || s.Corrupt() != 0 {
		t.Errorf("a file above the limit was moved or counted: %v, %d", err, s.Corrupt())
	}
}

func TestKeepsTwoNewest(t *testing.T) {
	fs, s := memStore(t)
	for e := range uint64(6) {
		save(t, s, e)
		var want []string
		for k := max(e, 1) - 1; k <= e; k++ {
			want = append(want, path(k))
		}
		if got := fs.Names(); !slices.Equal(got, want) {
			t.Fatalf("after saving epoch %d: %v, want %v", e, got, want)
		}
	}
}

func TestEpochOrder(t *testing.T) {
	fs, s := memStore(t)
	save(t, s, 4, 5)
	if err := s.Save(ck(3)); !errors.Is(err, checkpoint.ErrOldEpoch) {
		t.Fatalf("Save of an older epoch: %v", err)
	}
	// The same epoch again replaces it.
	c := ck(5)
	c.Sinks["cloud"] = []byte("replaced")
	if err := s.Save(c); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Load(); err != nil || same(c, got) != "" {
		t.Fatalf("Load: %v", err)
	}
	if got := fs.Names(); !slices.Equal(got, []string{path(4), path(5)}) {
		t.Errorf("files %v", got)
	}
}

func TestStaleTempRemovedOnOpen(t *testing.T) {
	fs, s := memStore(t)
	save(t, s, 1)
	_ = fs.WriteFile(path(2)+".tmp", []byte("half a checkpoint"))
	if _, err := checkpoint.Open(dir, checkpoint.Options{FS: fs, Log: quiet}); err != nil {
		t.Fatal(err)
	}
	if got := fs.Names(); !slices.Equal(got, []string{path(1)}) {
		t.Errorf("files after open: %v", got)
	}
	// The removal is durable.
	if got := fs.Crash(faultfs.PowerLoss).Names(); !slices.Equal(got, []string{path(1)}) {
		t.Errorf("files after power loss: %v", got)
	}
}

// saveOps returns the number of file-system operations of a clean
// Save(ck(3)) after epochs 1 and 2.
func saveOps(t *testing.T) int {
	fs, s := memStore(t)
	save(t, s, 1, 2)
	n := fs.Ops()
	save(t, s, 3)
	return fs.Ops() - n
}

func TestCrashAtEveryOperation(t *testing.T) {
	total := saveOps(t)
	if total < 8 {
		t.Fatalf("Save did only %d operations", total)
	}
	for _, tc := range []struct {
		mode   faultfs.CrashMode
		sticky bool
	}{
		{faultfs.PowerLoss, true}, // a crash right at operation i
		{faultfs.PowerLoss, false},
		{faultfs.TornWrites, true},
		{faultfs.TornWrites, false},
		{faultfs.ProcessCrash, true},
		{faultfs.ProcessCrash, false},
	} {
		t.Run(fmt.Sprintf("%s/sticky=%v", tc.mode, tc.sticky), func(t *testing.T) {
			for i := 0; i <= total; i++ {
				fs, s := memStore(t)
				save(t, s, 1, 2)
				fs.FailAt(i, tc.sticky)
				serr := s.Save(ck(3))
				injected := fs.Injected()
				crashed := fs.Crash(tc.mode)
				fail := func(format string, args ...any) {
					t.Helper()
					t.Fatalf("fail at op %d %v (Save: %v): %s\nfiles:\n%s", i, injected, serr, fmt.Sprintf(format, args...), crashed)
				}
				if i == total && serr != nil {
					fail("Save without a failure: %v", serr)
				}
				r, err := checkpoint.Open(dir, checkpoint.Options{FS: crashed, Log: quiet})
				if err != nil {
					fail("Open: %v", err)
				}
				got, err := r.Load()
				if err != nil {
					fail("Load: %v", err)
				}
				if d3, d2 := same(ck(3), got), same(ck(2), got); d3 != "" && (d2 != "" || serr == nil) {
					fail("loaded neither the new nor (after a failed Save) the previous checkpoint: %s / %s", d3, d2)
				}
				if r.Corrupt() != 0 {
					fail("%d damaged files after a crash", r.Corrupt())
				}
				for _, n := range crashed.Names() {
					if strings.HasSuffix(n, ".tmp") {
						fail("temporary file %s after Open", n)
					}
				}
				// The recovered store takes the next checkpoint.
				if err := r.Save(ck(4)); err != nil {
					fail("Save after recovery: %v", err)
				}
				if got, err := r.Load(); err != nil || same(ck(4), got) != "" {
					fail("Load after recovery: %v", err)
				}
			}
		})
	}
}

func TestFailedSaveLeavesNoTemp(t *testing.T) {
	total := saveOps(t)
	for i := 0; i < total; i++ {
		fs, s := memStore(t)
		save(t, s, 1, 2)
		fs.FailAt(i, false)
		serr := s.Save(ck(3))
		fs.FailAt(-1, false)
		for _, n := range fs.Names() {
			if strings.HasSuffix(n, ".tmp") {
				t.Fatalf("fail at op %d %v (Save: %v): temporary file %s left", i, fs.Injected(), serr, n)
			}
		}
		got, err := s.Load()
		if err != nil {
			t.Fatalf("fail at op %d: Load: %v", i, err)
		}
		if same(ck(3), got) != "" && (serr == nil || same(ck(2), got) != "") {
			t.Fatalf("fail at op %d (Save: %v): loaded epoch %d", i, serr, got.Epoch)
		}
	}
}

func TestConcurrentSaveAndLoad(t *testing.T) {
	s, err := checkpoint.Open(t.TempDir(), checkpoint.Options{Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	save(t, s, 0)
	const epochs = 30
	var wg sync.WaitGroup
	errs := make(chan string, 100)
	for range 3 {
		wg.Go(func() {
			last := uint64(0)
			for last < epochs {
				c, err := s.Load()
				if err != nil {
					errs <- err.Error()
					return
				}
				if d := same(ck(c.Epoch), c); d != "" || c.Epoch < last {
					errs <- fmt.Sprintf("epoch %d after %d: %s", c.Epoch, last, d)
					return
				}
				last = c.Epoch
			}
		})
	}
	for e := uint64(1); e <= epochs; e++ {
		save(t, s, e)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func FuzzDecode(f *testing.F) {
	for _, c := range []*engine.Checkpoint{{}, ck(1), ck(300)} {
		data, _ := checkpoint.Encode(c)
		f.Add(data)
	}
	f.Add([]byte(checkpoint.Magic))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := checkpoint.Decode(data)
		if err != nil {
			if !errors.Is(err, checkpoint.ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		// A file that decodes is the one encoding of its checkpoint.
		again, err := checkpoint.Encode(c)
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("re-encoding differs (err %v)", err)
		}
	})
}
