package protocol

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDecodeCommand(t *testing.T) {
	good := `{"id":"c-1","edge":"e1","product":"pk","asset":"T1","service":"measurepoint.set","inputs":{"power_limit":150},` +
		`"issued":"2026-12-07T06:00:00Z","expiry":"2026-12-07T06:05:00Z","by":"api"}`
	c, err := DecodeCommand([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if c.ID != "c-1" || c.Asset != "T1" || c.Inputs["power_limit"].(interface{ String() string }).String() != "150" ||
		!c.Expiry.Equal(time.Date(2026, 12, 7, 6, 5, 0, 0, time.UTC)) {
		t.Fatalf("%+v", c)
	}
	big := `{"id":"c-1","edge":"e1","asset":"T1","inputs":{"p":"` + strings.Repeat("x", MaxCommandBytes) + `"},"issued":"2026-12-07T06:00:00Z","expiry":"2026-12-07T06:05:00Z"}`
	for _, tc := range []struct{ name, data string }{
		{"unknown field", strings.Replace(good, `"by":"api"`, `"by":"api","lease":"hmi-1"`, 1)},
		{"field twice", strings.Replace(good, `"by":"api"`, `"by":"api","asset":"T2"`, 1)},
		{"field spelled otherwise", strings.Replace(good, `"asset"`, `"Asset"`, 1)},
		{"data after the object", good + ` {}`},
		{"too large", big},
		{"id not a token", strings.Replace(good, `"c-1"`, `"c.1"`, 1)},
		{"edge not a token", strings.Replace(good, `"e1"`, `"e*"`, 1)},
		{"asset with a slash", strings.Replace(good, `"T1"`, `"T1/+"`, 1)},
		{"no inputs", strings.Replace(good, `{"power_limit":150}`, `{}`, 1)},
		{"input an object", strings.Replace(good, `150`, `{"a":1}`, 1)},
		{"number out of range", strings.Replace(good, `150`, `1e400`, 1)},
		{"no expiry", strings.Replace(good, `,"expiry":"2026-12-07T06:05:00Z"`, ``, 1)},
		{"expiry before issue", strings.Replace(good, `06:05:00Z`, `05:05:00Z`, 1)},
		{"expiry too far", strings.Replace(good, `2026-12-07T06:05:00Z`, `2026-12-09T06:05:00Z`, 1)},
		{"not an object", `[1,2]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := DecodeCommand([]byte(tc.data)); !errors.Is(err, ErrFormat) {
				t.Fatalf("got %v, want ErrFormat", err)
			}
		})
	}
}

func TestCommandEncodeRoundTrip(t *testing.T) {
	now := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	c := Command{ID: "c-2", Edge: "e1", Asset: "T1", Inputs: map[string]any{"on": true, "mode": "eco", "kw": 1.5}, Issued: now, Expiry: now.Add(time.Minute)}
	b, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeCommand(b)
	if err != nil || got.ID != c.ID || got.Inputs["mode"] != "eco" || got.Inputs["on"] != true {
		t.Fatalf("%+v %v", got, err)
	}
	if _, err := (Command{ID: "c-3", Edge: "e1", Asset: "T1", Inputs: map[string]any{"kw": 1.0}, Issued: now, Expiry: now.Add(25 * time.Hour)}).Encode(); err == nil {
		t.Fatal("an expiry over 24h encoded")
	}
}
