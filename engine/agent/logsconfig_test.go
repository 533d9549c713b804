package agent

import (
	"testing"

	"github.com/sluice-edge/sluice/engine/logfile"
)

func TestLogsConfig(t *testing.T) {
	testSection(t, "logs", []sectionCase[LogsConfig]{
		{"defaults", "", LogsConfig{MaxFileBytes: logfile.DefaultMaxFileBytes, MaxFiles: logfile.DefaultMaxFiles}, ""},
		{"set", "logs: {max_file_bytes: 1MiB, max_files: 3}\n", LogsConfig{MaxFileBytes: 1 << 20, MaxFiles: 3}, ""},
		{"files only", "logs: {max_files: 50}\n", LogsConfig{MaxFileBytes: logfile.DefaultMaxFileBytes, MaxFiles: 50}, ""},
		{"file too small", "logs: {max_file_bytes: 1KiB}\n", LogsConfig{}, "logs.max_file_bytes must be a size from 64KiB to 1GiB"},
		{"share", "logs: {max_file_bytes: 10%}\n", LogsConfig{}, "max_file_bytes"},
		{"not a size", "logs: {max_file_bytes: lots}\n", LogsConfig{}, "max_file_bytes"},
		{"one file", "logs: {max_files: 1}\n", LogsConfig{}, "logs.max_files must be from 2 to 1000"},
		{"unknown field", "logs: {level: debug}\n", LogsConfig{}, "level"},
	}, func(c *Config) LogsConfig { return c.Logs })
}
