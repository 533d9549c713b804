// Package protocol holds the names and records the hub and the edges share
// over NATS JetStream (docs/format/hub-protocol.md): the object store of
// bundles, the KV bucket of desired releases, the subjects edges report on,
// and the strict decoding of a desired record.
package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/bundle"
)

// Names of the JetStream resources.
const (
	// BundleBucket is the object store of bundles, named by digest.
	BundleBucket = "SLUICE_BUNDLES"
	// DesiredBucket is the KV bucket of each edge's desired release.
	DesiredBucket = "SLUICE_DESIRED"
	// EdgeStream is the stream of what edges send back: reports and
	// heartbeats.
	EdgeStream = "SLUICE_EDGE"
)

// Limits.
const (
	// MaxEdgeIDLen bounds an edge id.
	MaxEdgeIDLen = 64
	// MaxReleaseIDLen bounds a release id.
	MaxReleaseIDLen = 64
	// MaxDesiredBytes bounds an encoded desired record.
	MaxDesiredBytes = 4 << 10
	// MaxBundleBytes bounds a bundle object.
	MaxBundleBytes = 256 << 20
	// MaxLabels bounds the labels of an edge: the edge's configuration
	// refuses more, and the hub stores every heartbeat that has no more.
	MaxLabels = 256
	// MaxLabelBytes bounds a label's key and its value at an edge that
	// talks to a hub, as the hub's text bound does.
	MaxLabelBytes = 4 << 10
)

// DigestPrefix starts a bundle digest.
const DigestPrefix = "sha256:"

// ErrFormat is wrapped by every refusal of a name or record.
var ErrFormat = errors.New("hub protocol")

// checkToken checks s is 1 to max of A-Z a-z 0-9 _ -.
func checkToken(what, s string, max int) error {
	if s == "" || len(s) > max {
		return fmt.Errorf("%w: %s %q must be 1 to %d characters", ErrFormat, what, clip(s), max)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("%w: %s %q: only A-Z a-z 0-9 _ - allowed", ErrFormat, what, clip(s))
		}
	}
	return nil
}

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// CheckEdgeID checks an edge id: 1 to 64 of A-Z a-z 0-9 _ -, so that it is
// one NATS subject token and one KV key token.
func CheckEdgeID(id string) error { return checkToken("edge id", id, MaxEdgeIDLen) }

// DesiredKey is the key of edge's desired release in DesiredBucket.
func DesiredKey(edge string) (string, error) {
	if err := CheckEdgeID(edge); err != nil {
		return "", err
	}
	return "edge." + edge, nil
}

// ReportsSubject is the subject of edge's apply reports.
func ReportsSubject(edge string) (string, error) { return edgeSubject(edge, "reports") }

// HeartbeatSubject is the subject of edge's heartbeats.
func HeartbeatSubject(edge string) (string, error) { return edgeSubject(edge, "heartbeat") }

// EdgeSubjects are the subjects EdgeStream captures: every edge's reports,
// heartbeats and command records.
var EdgeSubjects = []string{"sluice.*.reports", "sluice.*.heartbeat", "sluice.*.control"}

// Stream names of the edge's own records in message ids
// ("<edge>/<stream>/<seq>"): the edge's reports and heartbeats travel as
// rows of these streams through its durable buffer and forwarder, like
// data.
const (
	ReportStream    = "_reports"
	HeartbeatStream = "_heartbeat"
)

// Columns of a report row (ReportSchema). Every row is one apply report
// (agent.Report); empty strings stand for absent fields.
const (
	ColTime     = "time"     // timestamp: when the edge made the report or heartbeat
	ColBundle   = "bundle"   // string: release name ("" when unknown)
	ColVersion  = "version"  // int64: release version (0 when unknown)
	ColOutcome  = "outcome"  // string: applied or rejected
	ColReason   = "reason"   // string: why it was rejected
	ColLocation = "location" // string: where the reason lies
	ColSteps    = "steps"    // string: what the switch did
	ColFile     = "file"     // string: the bundle file (or the desired record) it came from
	ColLabels   = "labels"   // string: JSON object of the edge's labels
	ColRunning  = "running"  // string: JSON array of {"pipeline","state"} the edge runs
	ColBacklog  = "backlog"  // int64: rows waiting in the edge's cloud buffers
	ColSoftware = "software" // string: the engine's version
)

// ReportSchema is the schema of report rows, event time ColTime.
func ReportSchema() *engine.Schema {
	return mustSchema([]engine.Field{
		{Name: ColTime, Type: engine.Timestamp},
		{Name: ColBundle, Type: engine.String},
		{Name: ColVersion, Type: engine.Int64},
		{Name: ColOutcome, Type: engine.String},
		{Name: ColReason, Type: engine.String},
		{Name: ColLocation, Type: engine.String},
		{Name: ColSteps, Type: engine.String},
		{Name: ColFile, Type: engine.String},
	})
}

// HeartbeatSchema is the schema of heartbeat rows, event time ColTime: who
// the edge is (labels), what it runs (bundle, version, running pipelines),
// its backlog and software version.
func HeartbeatSchema() *engine.Schema {
	return mustSchema([]engine.Field{
		{Name: ColTime, Type: engine.Timestamp},
		{Name: ColLabels, Type: engine.String},
		{Name: ColBundle, Type: engine.String},
		{Name: ColVersion, Type: engine.Int64},
		{Name: ColRunning, Type: engine.String},
		{Name: ColBacklog, Type: engine.Int64},
		{Name: ColSoftware, Type: engine.String},
	})
}

func mustSchema(fields []engine.Field) *engine.Schema {
	s, err := engine.NewSchema(fields, ColTime, "")
	if err != nil {
		panic("hub protocol: " + err.Error()) // fixed fields: a bug, not input
	}
	return s
}

func edgeSubject(edge, kind string) (string, error) {
	if err := CheckEdgeID(edge); err != nil {
		return "", err
	}
	return "sluice." + edge + "." + kind, nil
}

// CheckDigest checks a bundle digest: "sha256:" and 64 lower-case hex
// digits.
func CheckDigest(d string) error {
	hex, ok := strings.CutPrefix(d, DigestPrefix)
	if !ok || len(hex) != 64 {
		return fmt.Errorf("%w: digest %q must be sha256: and 64 hex digits", ErrFormat, clip(d))
	}
	for i := 0; i < len(hex); i++ {
		c := hex[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return fmt.Errorf("%w: digest %q must be sha256: and 64 lower-case hex digits", ErrFormat, clip(d))
		}
	}
	return nil
}

// BundleObject is the name in BundleBucket of the bundle with digest.
func BundleObject(digest string) (string, error) {
	if err := CheckDigest(digest); err != nil {
		return "", err
	}
	return digest, nil
}

// Desired is the desired release of one edge: the value of its key in
// DesiredBucket.
type Desired struct {
	// Bundle and Version name the release (as in its manifest).
	Bundle  string `json:"bundle"`
	Version uint64 `json:"version"`
	// Digest is the SHA-256 of the bundle file and its object's name.
	Digest string `json:"digest"`
	// Size is the bundle file's size in bytes.
	Size int64 `json:"size"`
	// ReleasedAt is when the hub released it.
	ReleasedAt time.Time `json:"released_at"`
	// ReleaseID is the hub's id of the release.
	ReleaseID string `json:"release_id"`
}

// String names the record in logs: "windfarm v7 (release r1)".
func (d Desired) String() string {
	return fmt.Sprintf("%s v%d (release %s)", d.Bundle, d.Version, d.ReleaseID)
}

// Validate checks every field of d.
func (d Desired) Validate() error {
	if err := bundle.CheckName(d.Bundle); err != nil {
		return fmt.Errorf("%w: bundle: %w", ErrFormat, err)
	}
	if d.Version == 0 {
		return fmt.Errorf("%w: version must be at least 1", ErrFormat)
	}
	if err := CheckDigest(d.Digest); err != nil {
		return err
	}
	if d.Size <= 0 || d.Size > MaxBundleBytes {
		return fmt.Errorf("%w: size %d must be 1 to %d", ErrFormat, d.Size, MaxBundleBytes)
	}
	if d.ReleasedAt.IsZero() {
		return fmt.Errorf("%w: released_at is missing", ErrFormat)
	}
	return checkToken("release id", d.ReleaseID, MaxReleaseIDLen)
}

// Encode validates d and returns its JSON.
func (d Desired) Encode() ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(d)
}

// desiredFields are the fields of a desired record, each required once.
var desiredFields = []string{"bundle", "version", "digest", "size", "released_at", "release_id"}

// DecodeDesired decodes a desired record strictly: at most MaxDesiredBytes,
// one JSON object with every field once and no other, nothing after it,
// and every field valid.
func DecodeDesired(data []byte) (Desired, error) {
	var d Desired
	if len(data) > MaxDesiredBytes {
		return d, fmt.Errorf("%w: desired record of %d bytes, more than %d", ErrFormat, len(data), MaxDesiredBytes)
	}
	raw, err := objectFields("desired record", data, desiredFields)
	if err != nil {
		return d, err
	}
	for _, f := range desiredFields {
		if _, ok := raw[f]; !ok {
			return d, fmt.Errorf("%w: desired record: %s is missing", ErrFormat, f)
		}
	}
	if err := decodeStrict(data, &d, "desired record", false); err != nil {
		return Desired{}, err
	}
	if err := d.Validate(); err != nil {
		return Desired{}, fmt.Errorf("desired record: %w", err)
	}
	return d, nil
}

// DesiredConfig is the configuration the hub creates DesiredBucket with:
// history 1 (latest wins), values of at most MaxDesiredBytes, on file.
// replicas is the deployment's choice (1 for a single server).
func DesiredConfig(replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:       DesiredBucket,
		Description:  "desired release of every edge, key edge.<edge id>",
		History:      1,
		MaxValueSize: MaxDesiredBytes,
		Storage:      jetstream.FileStorage,
		Replicas:     max(replicas, 1),
	}
}

// BundlesConfig is the configuration the hub creates BundleBucket with.
func BundlesConfig(replicas int) jetstream.ObjectStoreConfig {
	return jetstream.ObjectStoreConfig{
		Bucket:      BundleBucket,
		Description: "release bundles, named sha256:<hex> of the bundle file",
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	}
}

// DataStream is the stream of what edges' nats sinks publish: data rows and
// alert transitions (docs/format/hub-protocol.md, section 6). An edge's sink
// names it as its stream.
const DataStream = "SLUICE_DATA"

// DataSubjects are the subjects DataStream captures: every edge's data
// streams and its alerts.
var DataSubjects = []string{"sluice.*.data.>", "sluice.*.alerts"}

// DuplicateWindow is the duplicate window of EdgeStream and DataStream: the
// nats sink's default, within which JetStream drops a message whose id it
// already holds.
const DuplicateWindow = 2 * time.Minute

// EdgeStreamConfig is the configuration the hub creates EdgeStream with:
// EdgeSubjects, limits retention on file, DuplicateWindow.
func EdgeStreamConfig(replicas int) jetstream.StreamConfig {
	return streamConfig(EdgeStream, "reports and heartbeats of every edge", EdgeSubjects, replicas)
}

// DataStreamConfig is the configuration the hub creates DataStream with:
// DataSubjects, limits retention on file, DuplicateWindow.
func DataStreamConfig(replicas int) jetstream.StreamConfig {
	return streamConfig(DataStream, "data and alerts of every edge", DataSubjects, replicas)
}

func streamConfig(name, desc string, subjects []string, replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        name,
		Description: desc,
		Subjects:    append([]string(nil), subjects...),
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Duplicates:  DuplicateWindow,
		Replicas:    max(replicas, 1),
	}
}

// SubjectEdge returns the edge id a subject of EdgeSubjects or DataSubjects
// names (its second token), or "" when the subject is not one of them.
func SubjectEdge(subject string) string {
	rest, ok := strings.CutPrefix(subject, "sluice.")
	if !ok {
		return ""
	}
	edge, kind, ok := strings.Cut(rest, ".")
	if !ok || CheckEdgeID(edge) != nil {
		return ""
	}
	switch {
	case kind == "reports", kind == "heartbeat", kind == "control", kind == "alerts", strings.HasPrefix(kind, "data.") && len(kind) > 5:
		return edge
	}
	return ""
}
