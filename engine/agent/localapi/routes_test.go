package localapi

import (
	"io"
	"net/http"
	"testing"
)

// A route with OwnAuth reaches its handler without the bearer token; the
// other routes and the API itself still need it.
func TestRoutesOwnAuth(t *testing.T) {
	hello := func(body string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, body) })
	}
	s, err := Listen("127.0.0.1:0", "tok", &fakeService{}, 16, nil,
		Route{Pattern: "/v1/control/", Handler: hello("control")},
		Route{Pattern: "/status/", Handler: hello("page"), OwnAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tc := range []struct {
		path, token string
		code        int
		body        string
	}{
		{"/status/", "", 200, "page"},
		{"/status/data", "", 200, "page"},
		{"/v1/control/x", "", 401, ""},
		{"/v1/control/x", "tok", 200, "control"},
		{"/v1/status", "", 401, ""},
		{"/statusx", "", 401, ""},
	} {
		req, err := http.NewRequest("GET", "http://"+s.Addr()+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || (tc.body != "" && string(b) != tc.body) {
			t.Errorf("GET %s (token %q): %d %q, want %d %q", tc.path, tc.token, resp.StatusCode, b, tc.code, tc.body)
		}
	}
}
