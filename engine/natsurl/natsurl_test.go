package natsurl

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, c := range []struct {
		urls, err string
	}{
		{"nats://127.0.0.1:4222", ""},
		{"127.0.0.1:4222", ""},
		{"tls://hub-1:4222, wss://hub-2:443", ""},
		{"nats://u:secret@hub:4222", ""},
		{"", "no server URL"},
		{"  ", "no server URL"},
		{"nats://a:4222,,nats://b:4222", "empty server URL"},
		{"http://hub:4222", "scheme \"http\""},
		{"nats://:4222", "no host"},
		{"nats://hub:99999", "port"},
		{"nats://u:secret@hub:notaport", "port"},
	} {
		err := Check(c.urls)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%q: %v", c.urls, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: error %v, want one containing %q", c.urls, err, c.err)
		case err != nil && strings.Contains(err.Error(), "secret"):
			t.Errorf("%q: the password is in the error: %v", c.urls, err)
		}
	}
}
