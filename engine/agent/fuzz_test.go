package agent

import "testing"

// FuzzParseConfig: an edge configuration from hostile bytes gives a
// configuration or located errors, never a panic.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("edge: e\ntrust: k\nlabels: {a: b}\napi: {listen: \":1\"}\npipelines: [p]\n"))
	f.Add([]byte("trust: k\n<<: {edge: x}\nkeep_releases: 9999999999999999999999\n"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, errs := ParseConfig("sluice.yaml", data)
		if (c == nil) == (len(errs) == 0) {
			t.Fatalf("config %v with errors %v", c, errs)
		}
		for _, e := range errs {
			if e.Pos.File != "sluice.yaml" {
				t.Fatalf("error without its file: %v", e)
			}
		}
	})
}
