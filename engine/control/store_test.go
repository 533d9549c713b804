package control

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/command"
)

func frame(payload []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(payload)))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(payload, castagnoli))
	return append(b, payload...)
}

// A log is read up to its first bad frame, whatever the bytes.
func FuzzReadLog(f *testing.F) {
	good := frame([]byte(`{"rec":{"id":"a","asset":"T1","service":"s","status":"acked","version":2},"tr":{"seq":2,"id":"a","to":"acked"}}`))
	f.Add(good)
	f.Add(append(good, 1, 2, 3))
	f.Add(append(good, frame([]byte(`{"lease":{"asset":"T1","holder":"h"}}`))...))
	f.Add(frame([]byte(`not json`)))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		name := filepath.Join(t.TempDir(), "log")
		if err := os.WriteFile(name, data, 0o600); err != nil {
			t.Fatal(err)
		}
		fh, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		st, off, err := readLog(fh)
		if err != nil {
			return
		}
		if off < 0 || off > int64(len(data)) {
			t.Fatalf("good prefix %d of %d bytes", off, len(data))
		}
		// Reading the good prefix alone gives the same state.
		name2 := name + "2"
		os.WriteFile(name2, data[:off], 0o600)
		fh2, _ := os.Open(name2)
		defer fh2.Close()
		st2, off2, _ := readLog(fh2)
		if off2 != off || len(st2.records) != len(st.records) || len(st2.audit) != len(st.audit) {
			t.Fatalf("prefix read differs: %d/%d records, %d/%d offset", len(st2.records), len(st.records), off2, off)
		}
	})
}

// A frame corrupted in the middle of the log ends it there: what precedes
// is kept, the arbiter opens, and appends go on after the good prefix.
func TestCorruptFrameEndsLog(t *testing.T) {
	dir := t.TempDir()
	s, _, err := openStore(dir, 1<<20, true)
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range []string{"a", "b", "c"} {
		rec := command.Command{ID: id, Asset: "T1", Service: "s", Status: command.Acked, Version: uint64(i + 1)}
		if err := s.appendEntry(logEntry{Rec: &rec, Tr: &command.Transition{Seq: uint64(i + 1), ID: id, To: command.Acked, At: time.Unix(0, 0)}}, true); err != nil {
			t.Fatal(err)
		}
	}
	s.close()
	name := filepath.Join(dir, logName)
	data, _ := os.ReadFile(name)
	i := bytes.Index(data, []byte(`"id":"b"`))
	data[i+6] ^= 0x20 // flips a byte of the second frame
	os.WriteFile(name, data, 0o600)
	s, st, err := openStore(dir, 1<<20, true)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if _, ok := st.records["a"]; !ok || len(st.records) != 1 {
		t.Fatalf("records after the corrupt frame: %v", st.records)
	}
	if fi, _ := os.Stat(name); fi.Size() >= int64(len(data)) {
		t.Fatalf("the log was not cut at the corrupt frame: %d bytes", fi.Size())
	}
}
