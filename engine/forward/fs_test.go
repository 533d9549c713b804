package forward_test

import (
	"testing"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer/faultfs"
	"github.com/sluice-edge/sluice/engine/forward"
	"github.com/sluice-edge/sluice/engine/spec"
)

// TestFromConfigFileSystem checks that the file system of the build
// context reaches the sink's buffer, and that one of another type is an
// error rather than the real disk.
func TestFromConfigFileSystem(t *testing.T) {
	s := spec.Spec{Fields: forward.Fields()}
	cfg, errs := s.Parse("sink.yaml", nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	fsys := faultfs.New()
	for _, tc := range []struct {
		name string
		fs   any
		ok   bool
	}{
		{"none", nil, true},
		{"faultfs", fsys, true},
		{"not a file system", "disk", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bc := engine.BuildContext{Pipeline: "p", Name: "s", DataDir: "/data", Edge: "e", FS: tc.fs}
			o, err := forward.FromConfig(cfg, nil, bc)
			switch {
			case !tc.ok:
				if err == nil {
					t.Fatalf("FS %T accepted", tc.fs)
				}
			case err != nil:
				t.Fatal(err)
			case tc.fs == nil && o.Buffer.FS != nil:
				t.Fatalf("no FS in the build context gave the buffer %v", o.Buffer.FS)
			case tc.fs != nil && o.Buffer.FS != fsys:
				t.Fatalf("the buffer's FS is %v, want the build context's", o.Buffer.FS)
			}
		})
	}
}
