//go:build !unix

package control

import "os"

// lockLog does nothing where flock is not available: the edge agent's own
// lock of the data directory keeps a second engine away.
func lockLog(*os.File) error { return nil }
