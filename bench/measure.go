package bench

import (
	"bufio"
	"bytes"
	"os"
	"runtime"
	"strconv"
	"time"
)

// sample is the state of the process at one instant.
type sample struct {
	wall       time.Time
	user, sys  time.Duration
	cpuOK      bool
	mallocs    uint64
	allocBytes uint64
	numGC      uint32
	pauseNs    uint64
}

func takeSample() sample {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := sample{mallocs: ms.Mallocs, allocBytes: ms.TotalAlloc, numGC: ms.NumGC, pauseNs: ms.PauseTotalNs}
	s.user, s.sys, s.cpuOK = cpuTimes()
	s.wall = time.Now()
	return s
}

// procStatus returns a field of /proc/self/status in bytes (the kernel
// reports kB), or 0 when it cannot be read (not Linux).
func procStatus(field string) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Bytes()
		name, rest, ok := bytes.Cut(line, []byte(":"))
		if !ok || string(name) != field {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) == 0 {
			return 0
		}
		n, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return 0
		}
		return n * 1024
	}
	return 0
}

// peakRSS is the peak resident set size (VmHWM) in bytes.
func peakRSS() int64 { return procStatus("VmHWM") }

// currentRSS is the resident set size (VmRSS) in bytes.
func currentRSS() int64 { return procStatus("VmRSS") }

// resetPeakRSS resets the peak resident set size to the current one, where
// the kernel permits it, and reports whether it did.
func resetPeakRSS() bool {
	f, err := os.OpenFile("/proc/self/clear_refs", os.O_WRONLY, 0)
	if err != nil {
		return false
	}
	_, err = f.Write([]byte("5"))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err == nil
}
