package enginetest

import (
	"strings"
	"sync"
)

// LogBuffer collects the text a logger writes, from any number of
// goroutines: slog.New(slog.NewTextHandler(&buf, nil)), then buf.String().
type LogBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

// Write implements io.Writer.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
