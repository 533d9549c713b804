package mqtt

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestConnOptionErrors: a tls block with plaintext URLs used to connect in
// plaintext without a word, and a bad URL was echoed with its password.
func TestConnOptionErrors(t *testing.T) {
	tests := []struct {
		name, doc, want, never string
	}{
		{"tls with tcp url", `{urls: ["tcp://h:1883"], tls: {ca: x.pem}}`, "would connect in plaintext", ""},
		{"tls with mqtt url", `{urls: ["mqtt://u:pw@h:1883", "tls://h:8883"], tls: {insecure_skip_verify: true}}`, "mqtt://u:xxxxx@h:1883 would connect in plaintext", "pw@"},
		{"bad url keeps its password", `{urls: ["tcp://user:hunter22@h:xx"]}`, "bad broker url", "hunter22"},
		{"bad scheme keeps its password", `{urls: ["gopher://user:hunter22@h:1"]}`, "is not tcp", "hunter22"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var n yaml.Node
			if err := yaml.Unmarshal([]byte(`{topics: ["a/#"], format: json, schema: {fields: {v: float64}}, `+strings.TrimPrefix(tc.doc, "{")), &n); err != nil {
				t.Fatal(err)
			}
			cfg, errs := SourceSpec.Parse("p.yaml", &n)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			_, _, errs = parseConnConfig(cfg, t.TempDir(), "id")
			got := errs.Error()
			if len(errs) == 0 || !strings.Contains(got, tc.want) {
				t.Fatalf("errors %q, want %q", got, tc.want)
			}
			if tc.never != "" && strings.Contains(got, tc.never) {
				t.Fatalf("errors %q show %q", got, tc.never)
			}
		})
	}
}
