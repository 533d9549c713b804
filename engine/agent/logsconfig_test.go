package agent

import (
	"strings"
	"testing"

	"github.com/sluice-edge/sluice/engine/logfile"
)

func TestLogsConfig(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       LogsConfig
		err        string
	}{
		{"defaults", "", LogsConfig{MaxFileBytes: logfile.DefaultMaxFileBytes, MaxFiles: logfile.DefaultMaxFiles}, ""},
		{"set", "logs: {max_file_bytes: 1MiB, max_files: 3}\n", LogsConfig{MaxFileBytes: 1 << 20, MaxFiles: 3}, ""},
		{"files only", "logs: {max_files: 50}\n", LogsConfig{MaxFileBytes: logfile.DefaultMaxFileBytes, MaxFiles: 50}, ""},
		{"file too small", "logs: {max_file_bytes: 1KiB}\n", LogsConfig{}, "logs.max_file_bytes must be a size from 64KiB to 1GiB"},
		{"share", "logs: {max_file_bytes: 10%}\n", LogsConfig{}, "max_file_bytes"},
		{"not a size", "logs: {max_file_bytes: lots}\n", LogsConfig{}, "max_file_bytes"},
		{"one file", "logs: {max_files: 1}\n", LogsConfig{}, "logs.max_files must be from 2 to 1000"},
		{"unknown field", "logs: {level: debug}\n", LogsConfig{}, "level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, errs := ParseConfig("sluice.yaml", []byte("edge: e1\ntrust: k.pub\n"+tt.yaml))
			if tt.err != "" {
				if len(errs) == 0 || !strings.Contains(errs.Error(), tt.err) {
					t.Fatalf("errors %v, want %q", errs, tt.err)
				}
				return
			}
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			if cfg.Logs != tt.want {
				t.Errorf("logs %+v, want %+v", cfg.Logs, tt.want)
			}
		})
	}
}
