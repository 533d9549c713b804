package redact_test

import (
	"testing"

	"github.com/sluice-edge/sluice/engine/redact"
)

// TestWorkingDirectoryNotASecret: $PWD and $OLDPWD name the shell's
// directories, not passwords: a path under them stays readable in error
// messages, while DB_PWD and the like are still masked.
func TestWorkingDirectoryNotASecret(t *testing.T) {
	redact.RegisterEnv([]string{"PWD=/srv/pwd-test-dir", "OLDPWD=/srv/oldpwd-test-dir", "DB_PWD=pwd-test-hunter2"})
	for in, want := range map[string]string{
		"open /srv/pwd-test-dir/sluice.yaml: denied":    "open /srv/pwd-test-dir/sluice.yaml: denied",
		"open /srv/oldpwd-test-dir/sluice.yaml: denied": "open /srv/oldpwd-test-dir/sluice.yaml: denied",
		"login with pwd-test-hunter2 failed":            "login with " + redact.Mask + " failed",
	} {
		if got := redact.String(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}
