package main

import (
	"runtime/debug"
	"strings"
	"testing"
)

// A test binary carries no version control information and no -ldflags:
// sluice version says "dev" and names no commit rather than a commit
// "unknown".
func TestVersionWithoutBuildInfo(t *testing.T) {
	code, out, _ := run(t, "version")
	if code != 0 || !strings.HasPrefix(out, "sluice dev (go") || strings.Contains(out, "unknown") || strings.Contains(out, "commit") {
		t.Fatalf("version: exit %d, %q", code, out)
	}
}

// The version line in each build mode: -ldflags from make, the build's
// version control stamp (go build in a checkout), a module version (go
// install module@version), and nothing at all (-buildvcs=false).
func TestVersionOf(t *testing.T) {
	vcs := func(kv ...string) []debug.BuildSetting {
		var s []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return s
	}
	const rev = "5c255f7a1b2c3d4e5f60718293a4b5c6d7e8f901"
	cases := []struct {
		name, version, commit string
		bi                    *debug.BuildInfo
		want                  string
	}{
		{"make, clean tree", "v1.4.0", "5c255f7a1b2c", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "v1.4.0 (commit 5c255f7a1b2c"},
		{"make, ldflags win over the stamp", "v1.4.0-dirty", "5c255f7a1b2c-dirty", &debug.BuildInfo{Settings: vcs("vcs.revision", rev, "vcs.modified", "true")}, "v1.4.0-dirty (commit 5c255f7a1b2c-dirty"},
		{"go build in a checkout", "dev", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("vcs.revision", rev, "vcs.modified", "false")}, "dev (commit 5c255f7a1b2c"},
		{"go build of a modified checkout", "dev", "", &debug.BuildInfo{Settings: vcs("vcs.revision", rev, "vcs.modified", "true")}, "dev (commit 5c255f7a1b2c, modified"},
		{"go install module@version", "dev", "", &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}, "v1.4.0 (go"},
		{"go install of a pseudo-version", "dev", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261207082301-5c255f7a1b2c"}}, "v0.0.0-20261207082301-5c255f7a1b2c (go"},
		{"-buildvcs=false", "dev", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev (go"},
		{"no build information", "dev", "", nil, "dev (go"},
	}
	for _, c := range cases {
		got := versionOf(c.version, c.commit, c.bi)
		if !strings.HasPrefix(got, "sluice "+c.want) || strings.Contains(got, "unknown") {
			t.Errorf("%s: %q, want it to start with %q", c.name, got, "sluice "+c.want)
		}
	}
}
