package outboundtest

import (
	"os"
	"strings"
	"testing"

	"github.com/sluice-edge/sluice/engine/spec"
)

// CheckDoc checks that the Markdown file at path holds the reference of
// the publisher type as spec.Markdown renders it, from its "### `name`
// sink" heading to the next heading. With SLUICE_UPDATE_DOCS=1 in the
// environment it rewrites that section (or appends it) instead; run the
// packages one at a time (-p 1) when doing so.
func CheckDoc(t *testing.T, s spec.Spec, path string) {
	t.Helper()
	s.Kind = spec.KindSink
	var b strings.Builder
	if err := spec.Markdown(&b, "", []*spec.Spec{&s}); err != nil {
		t.Fatal(err)
	}
	want := b.String()
	if i := strings.Index(want, "### "); i >= 0 {
		want = want[i:]
	}
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(src)
	heading := want[:strings.Index(want, "\n")+1]
	start := strings.Index(doc, heading)
	end := len(doc)
	if start >= 0 {
		body := start + len(heading)
		for _, h := range []string{"\n### ", "\n## "} {
			if i := strings.Index(doc[body:], h); i >= 0 {
				end = min(end, body+i+1)
			}
		}
	}
	var got string
	if start >= 0 {
		got = doc[start:end]
	}
	if strings.TrimSpace(got) == strings.TrimSpace(want) {
		return
	}
	if os.Getenv("SLUICE_UPDATE_DOCS") == "1" {
		if start < 0 {
			doc = strings.TrimRight(doc, "\n") + "\n\n" + want
		} else {
			doc = doc[:start] + strings.TrimRight(want, "\n") + "\n\n" + strings.TrimLeft(doc[end:], "\n")
		}
		if err := os.WriteFile(path, []byte(strings.TrimRight(doc, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("updated the %q section of %s", s.Name, path)
		return
	}
	t.Errorf("%s: the reference of %q is out of date; rerun with SLUICE_UPDATE_DOCS=1 to rewrite it. Want:\n%s", path, s.Name, want)
}
