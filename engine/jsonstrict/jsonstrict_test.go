package jsonstrict

import (
	"strings"
	"testing"
)

func TestCheckKeys(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		dup      string // the key named, "" for none
		err      bool   // an error other than a duplicate key
	}{
		{"flat", `{"a":1,"b":2}`, "", false},
		{"empty object and array", `{"a":{},"b":[]}`, "", false},
		{"same key in sibling objects", `[{"a":1},{"a":2}]`, "", false},
		{"same key at two depths", `{"a":{"a":1}}`, "", false},
		{"twice at the top", `{"p":1,"p":900}`, "p", false},
		{"twice after a nested object", `{"a":{"x":[1,{"y":2}]},"a":3}`, "a", false},
		{"twice inside an array", `{"list":[{"k":1,"k":2}]}`, "k", false},
		{"twice deep", `{"a":{"b":{"c":{"d":1,"d":2}}}}`, "d", false},
		{"not JSON", `{"a":`, "", true},
		{"too deep", strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1), "", true},
		{"at the depth bound", strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth), "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckKeys([]byte(tc.in))
			key, dup := IsDuplicateKey(err)
			switch {
			case tc.dup != "" && (!dup || key != tc.dup):
				t.Fatalf("CheckKeys(%s) = %v, want duplicate key %q", tc.in, err, tc.dup)
			case tc.dup == "" && dup:
				t.Fatalf("CheckKeys(%s) = %v, want no duplicate", tc.in, err)
			case tc.err != (err != nil && !dup):
				t.Fatalf("CheckKeys(%s) = %v, want error %v", tc.in, err, tc.err)
			}
		})
	}
}
