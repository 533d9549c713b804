package nats_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/connectors/nats"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
)

// userCreds is a credentials file as nsc writes it: a user JWT and the
// user's NKey seed (generated for this test; it grants nothing).
const userCreds = `-----BEGIN NATS USER JWT-----
eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJzdWIiOiJVREczNUNVSFhWV1RWRUhFSjZHM0JGWFpLREZPRUZHTk5QN1FMSUZCM0NBSDNEMjU2WTdFRUFFQiJ9.c2ln
------END NATS USER JWT------

************************* IMPORTANT *************************
NKEY Seed printed below can be used to sign and prove identity.

-----BEGIN USER NKEY SEED-----
SUAOFRLCSQWWNEE7OIPSKRGRQUEI5DLJ3WYABFUOPOZ7FBEFRSOGYMQ2M4
------END USER NKEY SEED------
`

// TestCredentialsFile: the credentials file is read bounded
// (outbound.MaxSecretFileBytes, a regular file) and parsed when the sink is
// built, by validate as by run, so that both refuse the same files and run
// never reads an unbounded one.
func TestCredentialsFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("user.creds", userCreds)
	write("jwt-only.creds", strings.SplitAfter(userCreds, "------END NATS USER JWT------\n")[0])
	write("bad-seed.creds", strings.Replace(userCreds, "SUAOFRLC", "SUAOFRLD", 1))
	write("empty.creds", "")
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	write("big.creds", "")
	if err := os.Truncate(filepath.Join(dir, "big.creds"), outbound.MaxSecretFileBytes+1); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ file, want string }{
		{"user.creds", ""},
		{"/dev/zero", "not a regular file (a character device)"},
		{"fifo", "not a regular file (a named pipe)"},
		{"big.creds", "larger than the 1 MiB limit"},
		{"missing.creds", "no such file"},
		{"empty.creds", "holds no user JWT"},
		{"jwt-only.creds", "holds no usable user seed"},
		{"bad-seed.creds", "holds no usable user seed"},
	} {
		for _, dry := range []bool{true, false} {
			if tt.want == "" && !dry {
				continue // a valid file connects: not what this test is about
			}
			done := make(chan error, 1)
			go func() {
				// An unreachable URL: a file that passes would fail to connect.
				_, err := nats.New(outboundtest.Parse(t, nats.Spec, "url: nats://127.0.0.1:1\nsubject: a\nconnect_timeout: 1s\ncredentials_file: "+tt.file),
					engine.BuildContext{Dir: dir, DryRun: dry})
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("%s (dry run %v): New blocks", tt.file, dry) // the goroutine leaks: the test fails anyway
			}
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("%s: %v", tt.file, err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "credentials_file")):
				t.Errorf("%s (dry run %v): got %v, want %q at credentials_file", tt.file, dry, err, tt.want)
			}
		}
	}
}
