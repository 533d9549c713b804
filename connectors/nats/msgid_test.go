package nats_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	natsgo "github.com/nats-io/nats.go"

	"github.com/sluice-edge/sluice/connectors/nats"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer/disk"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
)

// buildIn builds a publisher from YAML fields for an engine whose data
// directory is dataDir.
func buildIn(t testing.TB, dataDir, yaml string) *outbound.Publisher {
	t.Helper()
	p, err := nats.New(outboundtest.Parse(t, nats.Spec, yaml), engine.BuildContext{DataDir: dataDir, Pipeline: "p", Name: "cloud"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// victimRows encodes 3 entries of 4 rows of edge "victim", stream "raw".
func victimRows(t testing.TB, p *outbound.Publisher) []*message.Message {
	t.Helper()
	var out []*message.Message
	for _, e := range outboundtest.Entries(1, 4, 4, 4) {
		msgs, err := p.Encoder("victim", "raw").Encode(e)
		e.Rec.Release()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, msgs...)
	}
	return out
}

// storedOn returns the Nats-Msg-Id and id headers of the messages of a
// stream on one subject.
func storedOn(t testing.TB, js natsgo.JetStreamContext, stream, subject string) (msgIDs, ids []string) {
	t.Helper()
	info, err := js.StreamInfo(stream)
	if err != nil {
		t.Fatal(err)
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		raw, err := js.GetMsg(stream, seq)
		if err != nil {
			t.Fatal(err)
		}
		if raw.Subject == subject {
			msgIDs = append(msgIDs, raw.Header.Get(natsgo.MsgIdHdr))
			ids = append(ids, raw.Header.Get(outbound.MetaID))
		}
	}
	return msgIDs, ids
}

// TestForgedMessageIDsLoseNoRows: another publisher of the same stream
// (an edge whose credentials were stolen) publishes, on its own subject,
// messages carrying the next message ids of a victim edge before the
// victim sends them. Every row of the victim must still be stored: the
// forgeries cannot carry the victim's Nats-Msg-Id, which is signed with
// the key of the victim's data directory.
func TestForgedMessageIDsLoseNoRows(t *testing.T) {
	nc := local(t)
	defer nc.Close()
	js, _ := nc.JetStream()
	sfx := outboundtest.Suffix()
	stream := "SLUICE_FORGE_" + sfx
	victim, attacker := "sluice.forge."+sfx+".victim", "sluice.forge."+sfx+".attacker"
	deleteStream(t, localURL, stream)
	if _, err := js.AddStream(&natsgo.StreamConfig{Name: stream, Subjects: []string{victim, attacker},
		Storage: natsgo.MemoryStorage, Duplicates: 2 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	for _, enc := range []string{"json", "json_batch", "arrow"} {
		p := buildIn(t, t.TempDir(), fmt.Sprintf("subject: %s\nstream: %s\nencoding: %s", victim, stream, enc))
		want := victimRows(t, p)
		// The ids are predictable: <edge>/<stream>/<seq> or <first>-<last>.
		for _, m := range want {
			forged := natsgo.NewMsg(attacker)
			forged.Header.Set(outbound.MetaID, m.UUID)
			forged.Data = []byte("forged")
			for _, id := range []string{m.UUID, m.UUID + "#"} {
				if _, err := js.PublishMsg(forged, natsgo.MsgId(id)); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := p.Publish(p.Topic, want...); err != nil {
			t.Fatal(err)
		}
		_ = p.Close()
		_, ids := storedOn(t, js, stream, victim)
		if len(ids) != len(want) {
			t.Fatalf("%s: the stream holds %d of the victim's %d messages: %v", enc, len(ids), len(want), ids)
		}
		for i, m := range want {
			if ids[i] != m.UUID {
				t.Fatalf("%s: message %d has id %q, want %q", enc, i, ids[i], m.UUID)
			}
		}
		if err := js.PurgeStream(stream); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMessageIDsStableAcrossRestarts: the same rows sent again by a new
// publisher on the same data directory (a restart, a replay) carry the
// same Nats-Msg-Id and are stored once; a publisher on another data
// directory signs them with another key, so its copies are stored too.
// The id header stays the plain stable id.
func TestMessageIDsStableAcrossRestarts(t *testing.T) {
	nc := local(t)
	defer nc.Close()
	js, _ := nc.JetStream()
	sfx := outboundtest.Suffix()
	stream, subject := "SLUICE_RESTART_"+sfx, "sluice.restart."+sfx
	deleteStream(t, localURL, stream)
	dir := t.TempDir()
	yaml := fmt.Sprintf("subject: %s\nstream: %s\nencoding: json", subject, stream)
	var want []*message.Message
	for range 2 {
		p := buildIn(t, dir, yaml)
		want = victimRows(t, p)
		if err := p.Publish(p.Topic, want...); err != nil {
			t.Fatal(err)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}
	msgIDs, ids := storedOn(t, js, stream, subject)
	if len(ids) != len(want) {
		t.Fatalf("after a restart the stream holds %d messages, want %d", len(ids), len(want))
	}
	for i, m := range want {
		if ids[i] != m.UUID || !strings.HasPrefix(msgIDs[i], m.UUID+"#") || len(msgIDs[i]) < len(m.UUID)+1+22 {
			t.Fatalf("message %d: id %q, Nats-Msg-Id %q; want id %q and Nats-Msg-Id %q#<mac>", i, ids[i], msgIDs[i], m.UUID, m.UUID)
		}
	}

	p := buildIn(t, t.TempDir(), yaml)
	if err := p.Publish(p.Topic, victimRows(t, p)...); err != nil {
		t.Fatal(err)
	}
	_ = p.Close()
	msgIDs2, ids2 := storedOn(t, js, stream, subject)
	if len(ids2) != 2*len(want) {
		t.Fatalf("another data directory's copies: the stream holds %d messages, want %d", len(ids2), 2*len(want))
	}
	for i := range want {
		if ids2[len(want)+i] != ids[i] || msgIDs2[len(want)+i] == msgIDs[i] {
			t.Fatalf("message %d: ids %q and %q, Nats-Msg-Ids %q and %q; want the same id, other Nats-Msg-Ids", i, ids[i], ids2[len(want)+i], msgIDs[i], msgIDs2[len(want)+i])
		}
	}
}

// TestLoadKey: the key of a data directory is created once, mode 0600,
// by whichever of several concurrent loaders links it first, and read
// back the same; a damaged key file is refused, not replaced.
func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	got := make(chan []byte, n)
	errs := make(chan error, n)
	for range n {
		go func() {
			k, err := nats.LoadKey(dir)
			errs <- err
			got <- k
		}()
	}
	var first []byte
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		k := <-got
		if first == nil {
			first = k
		}
		if string(k) != string(first) || len(k) != 32 {
			t.Fatalf("keys differ or are not 32 bytes: %x, %x", first, k)
		}
	}
	path := filepath.Join(dir, nats.KeyFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	onDisk, err := os.ReadFile(path)
	if err != nil || string(onDisk) != string(first) {
		t.Fatalf("key file holds %x (%v), loaded %x", onDisk, err, first)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("data directory holds %d files, want only the key", len(entries))
	}
	if nats.MsgID(first, "e/s/1") == nats.MsgID(first, "e/s/2") || nats.MsgID(first, "e/s/1") != nats.MsgID(onDisk, "e/s/1") {
		t.Error("MsgID is not a function of key and id")
	}

	// Through the file system seam of the engine's durable state.
	seam := t.TempDir()
	k1, err := nats.LoadKeyFS(disk.OS, seam)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := nats.LoadKeyFS(disk.OS, seam)
	if err != nil || string(k1) != string(k2) || len(k1) != 32 {
		t.Fatalf("keys through the seam: %x, %x (%v)", k1, k2, err)
	}
	if k3, err := nats.LoadKey(seam); err != nil || string(k3) != string(k1) {
		t.Fatalf("the key written through the seam reads %x (%v), want %x", k3, err, k1)
	}
	if fi, err := os.Stat(filepath.Join(seam, nats.KeyFile)); err != nil || (runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600) {
		t.Fatalf("key file through the seam: %v %v", fi, err)
	}
	if entries, _ := os.ReadDir(seam); len(entries) != 1 {
		t.Errorf("data directory holds %d files, want only the key", len(entries))
	}

	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, nats.KeyFile), []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := nats.LoadKey(bad); err == nil || strings.Contains(err.Error(), "short") {
		t.Fatalf("damaged key: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(bad, nats.KeyFile)); string(b) != "short" {
		t.Error("a damaged key file was replaced")
	}
}
