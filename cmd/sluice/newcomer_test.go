package main

import (
	"strings"
	"testing"
)

// sluice --version prints what sluice version prints.
func TestVersionFlag(t *testing.T) {
	_, want, _ := run(t, "version")
	code, got, stderr := run(t, "--version")
	if code != 0 || got != want || !strings.HasPrefix(got, "sluice ") {
		t.Fatalf("--version: exit %d, %q (stderr %q), want %q", code, got, stderr, want)
	}
}
