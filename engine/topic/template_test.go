package topic

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, in, err string
	}{
		{"asset and point", "plant/{asset}/set/{point}", ""},
		{"all three", "{product}/{asset}/{point}", ""},
		{"empty", "", "empty topic template"},
		{"too long", strings.Repeat("a", MaxTemplateLen) + "/{asset}", "exceeds"},
		{"wildcard +", "plant/+/{asset}", "wildcard"},
		{"wildcard #", "plant/{asset}/#", "wildcard"},
		{"NUL", "plant/{asset}\x00", "wildcard or NUL"},
		{"broker topic", "$SYS/{asset}", "starts with $"},
		{"twice", "{asset}/{asset}", "twice"},
		{"partial placeholder", "plant/x{asset}", "whole segments"},
		{"unknown placeholder", "plant/{asset}/{site}", "whole segments"},
		{"no asset", "plant/{point}", "does not name the device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.in)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("Parse(%q): %v", tc.in, err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("Parse(%q) = %v, want an error containing %q", tc.in, err, tc.err)
			}
		})
	}
}

func TestTopicMatchRoundTrip(t *testing.T) {
	tpl, err := Parse("site/{product}/{asset}/set/{point}")
	if err != nil {
		t.Fatal(err)
	}
	topic := tpl.Topic("turbine", "T1", "power_limit")
	if topic != "site/turbine/T1/set/power_limit" {
		t.Fatalf("Topic = %q", topic)
	}
	p, a, pt, ok := tpl.Match(topic)
	if !ok || p != "turbine" || a != "T1" || pt != "power_limit" {
		t.Fatalf("Match(%q) = %q %q %q %v", topic, p, a, pt, ok)
	}
	if got := tpl.Filter(); got != "site/+/+/set/+" {
		t.Fatalf("Filter = %q", got)
	}
	for _, bad := range []string{"site/turbine/T1/set", "site/turbine//set/p", "other/turbine/T1/set/p", "site/turbine/T1/set/p/x"} {
		if _, _, _, ok := tpl.Match(bad); ok {
			t.Errorf("Match(%q) matched", bad)
		}
	}
}

func TestOverlaps(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"plant/{asset}/set", "plant/{asset}/reply", false},
		{"plant/{asset}/set", "plant/T1/{asset}", true},
		{"plant/{asset}", "plant/{asset}/x", false},
		{"a/{asset}", "{asset}/b", true},
	} {
		a, err := Parse(tc.a)
		if err != nil {
			t.Fatal(err)
		}
		b, err := Parse(tc.b)
		if err != nil {
			t.Fatal(err)
		}
		if got := Overlaps(a, b); got != tc.want || Overlaps(b, a) != tc.want {
			t.Errorf("Overlaps(%q, %q) = %v, want %v both ways", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestCheckKey(t *testing.T) {
	for _, tc := range []struct {
		key string
		ok  bool
	}{
		{"T1", true}, {"", false}, {strings.Repeat("k", 9), false}, {"a/b", false},
		{"a+b", false}, {"a#", false}, {"a\x00", false}, {"üni", true},
	} {
		if err := CheckKey(tc.key, 8); (err == nil) != tc.ok {
			t.Errorf("CheckKey(%q) = %v, want ok %v", tc.key, err, tc.ok)
		}
	}
}
