//go:build !unix

package disk

import "errors"

// FreeBytes is not available here.
func FreeBytes(string) (int64, error) { return 0, errors.New("free space unknown on this system") }

// DeviceID is not available here.
func DeviceID(string) (uint64, bool) { return 0, false }
