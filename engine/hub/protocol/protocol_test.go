package protocol

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

const goodDigest = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func good() Desired {
	return Desired{Bundle: "windfarm", Version: 7, Digest: goodDigest, Size: 1234,
		ReleasedAt: time.Date(2026, 12, 6, 20, 0, 0, 0, time.UTC), ReleaseID: "r-0007"}
}

func TestCheckEdgeID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"edge-01", true},
		{"A_z-9", true},
		{strings.Repeat("e", 64), true},
		{"", false},
		{strings.Repeat("e", 65), false},
		{"a.b", false},
		{"*", false},
		{">", false},
		{"a b", false},
		{"a\tb", false},
		{"a\x00", false},
		{"ü", false},
		{"a/b", false},
	}
	for _, tt := range tests {
		err := CheckEdgeID(tt.id)
		if (err == nil) != tt.ok {
			t.Errorf("CheckEdgeID(%q) = %v, want ok %v", tt.id, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrFormat) {
			t.Errorf("CheckEdgeID(%q) = %v, not ErrFormat", tt.id, err)
		}
		key, kerr := DesiredKey(tt.id)
		if (kerr == nil) != tt.ok || tt.ok && key != "edge."+tt.id {
			t.Errorf("DesiredKey(%q) = %q, %v", tt.id, key, kerr)
		}
		for _, f := range []func(string) (string, error){ReportsSubject, HeartbeatSubject} {
			if s, err := f(tt.id); (err == nil) != tt.ok || tt.ok && !strings.HasPrefix(s, "sluice."+tt.id+".") {
				t.Errorf("subject of %q = %q, %v", tt.id, s, err)
			}
		}
	}
}

func TestBundleObject(t *testing.T) {
	tests := []struct {
		d  string
		ok bool
	}{
		{goodDigest, true},
		{strings.TrimPrefix(goodDigest, "sha256:"), false},
		{"sha256:" + strings.ToUpper(goodDigest[7:]), false},
		{goodDigest + "0", false},
		{goodDigest[:70], false},
		{"sha512:" + goodDigest[7:], false},
		{"sha256:" + strings.Repeat("g", 64), false},
		{"", false},
		{"sha256:../../" + goodDigest[20:], false},
	}
	for _, tt := range tests {
		name, err := BundleObject(tt.d)
		if (err == nil) != tt.ok || tt.ok && name != tt.d {
			t.Errorf("BundleObject(%q) = %q, %v, want ok %v", tt.d, name, err, tt.ok)
		}
	}
}

func TestDecodeDesired(t *testing.T) {
	enc, err := good().Encode()
	if err != nil {
		t.Fatal(err)
	}
	d, err := DecodeDesired(enc)
	if err != nil || d != good() {
		t.Fatalf("round trip: %+v, %v", d, err)
	}
	base := `"bundle":"windfarm","version":7,"digest":"` + goodDigest + `","size":1234,"released_at":"2026-12-06T20:00:00Z"`
	tests := []struct {
		name, in string
	}{
		{"empty", ``},
		{"null", `null`},
		{"array", `[]`},
		{"not json", `{"bundle":`},
		{"missing release id", `{` + base + `}`},
		{"unknown field", `{` + base + `,"release_id":"r1","extra":1}`},
		{"case variant", `{` + base + `,"Release_ID":"r1"}`},
		{"duplicate", `{` + base + `,"release_id":"r1","release_id":"r2"}`},
		{"trailing data", `{` + base + `,"release_id":"r1"} {}`},
		{"two objects", `{` + base + `,"release_id":"r1"}{` + base + `,"release_id":"r1"}`},
		{"bad digest", strings.Replace(`{`+base+`,"release_id":"r1"}`, goodDigest, "sha256:abc", 1)},
		{"zero version", strings.Replace(`{`+base+`,"release_id":"r1"}`, `"version":7`, `"version":0`, 1)},
		{"negative version", strings.Replace(`{`+base+`,"release_id":"r1"}`, `"version":7`, `"version":-1`, 1)},
		{"huge version", strings.Replace(`{`+base+`,"release_id":"r1"}`, `"version":7`, `"version":1e30`, 1)},
		{"zero size", strings.Replace(`{`+base+`,"release_id":"r1"}`, `"size":1234`, `"size":0`, 1)},
		{"oversize", strings.Replace(`{`+base+`,"release_id":"r1"}`, `"size":1234`, `"size":268435457`, 1)},
		{"bad name", strings.Replace(`{`+base+`,"release_id":"r1"}`, `windfarm`, `../etc`, 1)},
		{"bad release id", `{` + base + `,"release_id":"r 1"}`},
		{"long release id", `{` + base + `,"release_id":"` + strings.Repeat("r", 65) + `"}`},
		{"bad time", strings.Replace(`{`+base+`,"release_id":"r1"}`, `2026-12-06T20:00:00Z`, `yesterday`, 1)},
		{"zero time", strings.Replace(`{`+base+`,"release_id":"r1"}`, `2026-12-06T20:00:00Z`, `0001-01-01T00:00:00Z`, 1)},
		{"string size", strings.Replace(`{`+base+`,"release_id":"r1"}`, `"size":1234`, `"size":"1234"`, 1)},
		{"too large", `{` + base + `,"release_id":"r1","pad":"` + strings.Repeat("x", MaxDesiredBytes) + `"}`},
		{"deep nesting", `{"bundle":` + strings.Repeat("[", 3000) + `}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := DecodeDesired([]byte(tt.in))
			if err == nil {
				t.Fatalf("accepted %+v", d)
			}
			if !errors.Is(err, ErrFormat) {
				t.Errorf("error %v is not ErrFormat", err)
			}
		})
	}
	if _, err := (Desired{}).Encode(); err == nil {
		t.Error("Encode accepted an empty record")
	}
}

func FuzzDecodeDesired(f *testing.F) {
	enc, _ := good().Encode()
	f.Add(enc)
	f.Add([]byte(`{"bundle":"a","bundle":"b"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := DecodeDesired(data)
		if err != nil {
			return
		}
		if err := d.Validate(); err != nil {
			t.Fatalf("decoded an invalid record %+v: %v", d, err)
		}
		again, err := d.Encode()
		if err != nil {
			t.Fatal(err)
		}
		d2, err := DecodeDesired(again)
		if err != nil || !d2.ReleasedAt.Equal(d.ReleasedAt) || d2.Digest != d.Digest || d2.Size != d.Size || d2.Version != d.Version {
			t.Fatalf("re-decoding %s: %+v, %v", again, d2, err)
		}
	})
}

func TestSubjectEdge(t *testing.T) {
	for subject, want := range map[string]string{
		"sluice.e1.reports":          "e1",
		"sluice.e-2.heartbeat":       "e-2",
		"sluice.e1.alerts":           "e1",
		"sluice.e1.control":          "e1",
		"sluice.e1.commands":         "",
		"sluice.e1.data.stats":       "e1",
		"sluice.e1.data.a.b":         "e1",
		"sluice.e1.data":             "",
		"sluice.e1.data.":            "",
		"sluice.e1.other":            "",
		"sluice.e1.reports.x":        "",
		"sluice.*.reports":           "",
		"sluice..reports":            "",
		"other.e1.reports":           "",
		"sluice.e1":                  "",
		"sluice.e\u00e9.reports":     "",
		"sluice." + long + ".alerts": "",
	} {
		if got := SubjectEdge(subject); got != want {
			t.Errorf("SubjectEdge(%q) = %q, want %q", subject, got, want)
		}
	}
}

var long = strings.Repeat("e", MaxEdgeIDLen+1)

// TestStreamConfigs: the hub's streams capture what the edges publish,
// with the nats sink's duplicate window.
func TestStreamConfigs(t *testing.T) {
	for _, c := range []struct {
		name string
		subs []string
		cfg  func(int) jetstream.StreamConfig
	}{{EdgeStream, EdgeSubjects, EdgeStreamConfig}, {DataStream, DataSubjects, DataStreamConfig}, {CommandStream, CommandSubjects, CommandStreamConfig}} {
		cfg := c.cfg(0)
		if cfg.Name != c.name || cfg.Duplicates != DuplicateWindow || cfg.Replicas != 1 || len(cfg.Subjects) != len(c.subs) {
			t.Errorf("%s: %+v", c.name, cfg)
		}
		cfg.Subjects[0] = "changed"
		if c.subs[0] == "changed" {
			t.Errorf("%s: the configuration shares the subjects slice", c.name)
		}
	}
}
