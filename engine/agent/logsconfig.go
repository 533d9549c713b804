package agent

import (
	"github.com/sluice-edge/sluice/engine/forward"
	"github.com/sluice-edge/sluice/engine/logfile"
	"github.com/sluice-edge/sluice/engine/spec"
)

// Defaults of the logs section.
const (
	DefaultLogFileBytes = "10MiB"
	DefaultLogFiles     = logfile.DefaultMaxFiles
)

// LogsConfig is the logs section: the rotating log file under
// <data_dir>/logs.
type LogsConfig struct {
	// MaxFileBytes is the size at which the current file is rotated.
	MaxFileBytes int64
	// MaxFiles is the number of files kept, the current one included.
	MaxFiles int
}

func logsField() spec.Field {
	return spec.Field{
		Name: "logs", Type: spec.Object, Optional: true,
		Description: "The engine's log file: every log record (JSON, masked like stderr's, at level info or the command line's level when lower) also goes to " +
			"`<data_dir>/logs/sluice.log`, which is rotated by size; `sluice logs` queries it and the hub asks for it (`sluice hub logs`). " +
			"The log takes at most about `max_files` × `max_file_bytes` on disk.",
		Example: map[string]any{"max_file_bytes": "10MiB", "max_files": 10},
		Children: []spec.Field{
			{Name: "max_file_bytes", Type: spec.String, Default: DefaultLogFileBytes, Description: "Size at which the current file is renamed `sluice-<UTC time>.log` and a new one started: 64KiB to 1GiB."},
			{Name: "max_files", Type: spec.Int, Default: DefaultLogFiles, Description: "Files kept, the current one included: 2 to 1000; the oldest are removed."},
		},
	}
}

// parseLogs reads the logs section (defaults when absent).
func parseLogs(cfg *spec.Config) (LogsConfig, spec.Errors) {
	lc := LogsConfig{MaxFileBytes: logfile.DefaultMaxFileBytes, MaxFiles: logfile.DefaultMaxFiles}
	l := cfg.Object("logs")
	if l == nil {
		return lc, nil
	}
	var errs spec.Errors
	mb, err := forward.ParseMaxBytes(l.String("max_file_bytes"))
	switch {
	case err != nil:
		errs = append(errs, l.Errorf("max_file_bytes", "logs.max_file_bytes: %v", err))
	case mb.Share > 0 || mb.Bytes < logfile.MinFileBytes || mb.Bytes > logfile.MaxFileBytesLimit:
		errs = append(errs, l.Errorf("max_file_bytes", "logs.max_file_bytes must be a size from 64KiB to 1GiB"))
	default:
		lc.MaxFileBytes = mb.Bytes
	}
	lc.MaxFiles = int(l.Int("max_files"))
	if lc.MaxFiles < 2 || lc.MaxFiles > logfile.MaxFilesLimit {
		errs = append(errs, l.Errorf("max_files", "logs.max_files must be from 2 to %d", logfile.MaxFilesLimit))
	}
	return lc, errs
}
