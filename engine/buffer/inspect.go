package buffer

import "github.com/sluice-edge/sluice/engine/buffer/disk"

// Inspection is a read-only view of a buffer directory: what Open would
// find there; see disk.Dir.
type Inspection = disk.Dir

// InspectOptions tune Inspect.
type InspectOptions struct {
	// FS is the file system; OS by default. Inspect only reads.
	FS FS
	// VerifyChecksums reads every listed segment and checks its CRC32-C.
	VerifyChecksums bool
}

// Inspect reads the buffer in dir without changing it (and without taking
// its lock: it is safe while an engine runs the buffer; files may change
// between reads, so take it again for a consistent view). It fails only on
// I/O errors; damage is described in the result.
func Inspect(dir string, opts InspectOptions) (*Inspection, error) {
	return disk.Scan(opts.FS, dir, disk.ScanOptions{VerifyChecksums: opts.VerifyChecksums})
}
