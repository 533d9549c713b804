package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-edge/sluice/engine"
)

// Commands from the hub to an edge (docs/format/hub-protocol.md, section 8).
const (
	// CommandStream is the stream of the commands the hub issues, one
	// subject per edge (CommandSubject); the hub creates it.
	CommandStream = "SLUICE_COMMANDS"
	// MaxCommandBytes bounds an encoded command message.
	MaxCommandBytes = 16 << 10
	// MaxCommandExpiry bounds how far ahead of its issue a command's
	// deadline may lie.
	MaxCommandExpiry = 24 * time.Hour
	// CommandMaxAge is how long the stream keeps a command: longer than
	// any deadline, so an edge offline for less never misses one.
	CommandMaxAge = 7 * 24 * time.Hour
	// MaxCommandInputs bounds a command's inputs; MaxCommandName a name
	// (asset, product, service, input); MaxCommandString a string input.
	MaxCommandInputs = 64
	MaxCommandName   = 128
	MaxCommandString = 1024
	// CommandOrigin is the origin of a hub command in the edge's arbiter.
	CommandOrigin = "cloud:hub"
	// ControlStream names the edge's command records in message ids
	// ("<edge>/_control/<seq>"): they travel like reports.
	ControlStream = "_control"
	// MaxRecordBytes bounds the JSON of one command record an edge sends.
	MaxRecordBytes = 96 << 10
)

// CommandSubjects are the subjects CommandStream captures.
var CommandSubjects = []string{"sluice.*.commands"}

// CommandSubject is the subject of the commands to edge.
func CommandSubject(edge string) (string, error) { return edgeSubject(edge, "commands") }

// ControlSubject is the subject of edge's command records.
func ControlSubject(edge string) (string, error) { return edgeSubject(edge, "control") }

// CommandDurable is the name of edge's durable consumer of CommandStream.
func CommandDurable(edge string) (string, error) {
	if err := CheckEdgeID(edge); err != nil {
		return "", err
	}
	return "sluice-edge-" + edge, nil
}

// CommandStreamConfig is the configuration the hub creates CommandStream
// with: CommandSubjects, limits retention on file for CommandMaxAge,
// messages of at most MaxCommandBytes, DuplicateWindow.
func CommandStreamConfig(replicas int) jetstream.StreamConfig {
	c := streamConfig(CommandStream, "commands from the hub, subject sluice.<edge>.commands", CommandSubjects, replicas)
	c.MaxAge = CommandMaxAge
	c.MaxMsgSize = MaxCommandBytes
	return c
}

// CommandConsumerConfig is edge's durable consumer of CommandStream: its
// subject only, every message from the start, explicit acks after ackWait.
func CommandConsumerConfig(edge string, ackWait time.Duration) (jetstream.ConsumerConfig, error) {
	name, err := CommandDurable(edge)
	if err != nil {
		return jetstream.ConsumerConfig{}, err
	}
	subject, _ := CommandSubject(edge)
	return jetstream.ConsumerConfig{
		Durable:       name,
		FilterSubject: subject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		MaxAckPending: 64,
	}, nil
}

// Command is a command the hub sends to an edge: the JSON of one message
// on CommandSubject.
type Command struct {
	// ID is the hub's id of the command: the edge's record id and
	// idempotency key, so a redelivered message is executed once.
	ID string `json:"id"`
	// Edge is the edge it is for (the subject's).
	Edge string `json:"edge"`
	// Product and Asset are the target device; Service the service
	// invoked (measurepoint.set when empty) with Inputs.
	Product string         `json:"product,omitempty"`
	Asset   string         `json:"asset"`
	Service string         `json:"service,omitempty"`
	Inputs  map[string]any `json:"inputs"`
	// Class is the priority class claimed ("" for the origin's default).
	Class string `json:"class,omitempty"`
	// Issued is when the hub issued it; Expiry the absolute deadline
	// after which the edge never executes it.
	Issued time.Time `json:"issued"`
	Expiry time.Time `json:"expiry"`
	// By names who issued it at the hub (for the audit).
	By string `json:"by,omitempty"`
}

// CheckCommandID checks the id of a hub command: 1 to 64 of A-Z a-z 0-9 _
// -.
func CheckCommandID(id string) error { return checkToken("command id", id, MaxReleaseIDLen) }

// Validate checks every field of c.
func (c Command) Validate() error {
	if err := CheckCommandID(c.ID); err != nil {
		return err
	}
	if err := CheckEdgeID(c.Edge); err != nil {
		return err
	}
	if err := checkName("asset", c.Asset, false); err != nil {
		return err
	}
	if err := checkName("product", c.Product, true); err != nil {
		return err
	}
	if err := checkName("service", c.Service, true); err != nil {
		return err
	}
	if err := checkName("class", c.Class, true); err != nil {
		return err
	}
	if len(c.By) > 64 || !utf8.ValidString(c.By) || strings.ContainsFunc(c.By, unicode.IsControl) {
		return fmt.Errorf("%w: by: at most 64 printable bytes", ErrFormat)
	}
	if len(c.Inputs) == 0 && (c.Service == "" || c.Service == "measurepoint.set") {
		return fmt.Errorf("%w: a set-point command sets at least one point", ErrFormat)
	}
	if len(c.Inputs) > MaxCommandInputs {
		return fmt.Errorf("%w: %d inputs, more than %d", ErrFormat, len(c.Inputs), MaxCommandInputs)
	}
	for k, v := range c.Inputs {
		if err := checkName("input name", k, false); err != nil {
			return err
		}
		switch x := v.(type) {
		case bool:
		case float64:
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return fmt.Errorf("%w: input %s is not a finite number", ErrFormat, k)
			}
		case json.Number:
			if f, err := x.Float64(); err != nil || math.IsInf(f, 0) {
				return fmt.Errorf("%w: input %s is not a finite number", ErrFormat, k)
			}
		case string:
			if len(x) > MaxCommandString || !utf8.ValidString(x) {
				return fmt.Errorf("%w: input %s: at most %d bytes of UTF-8", ErrFormat, k, MaxCommandString)
			}
		default:
			return fmt.Errorf("%w: input %s is a %T: inputs are numbers, strings or booleans", ErrFormat, k, v)
		}
	}
	if c.Issued.IsZero() || c.Expiry.IsZero() {
		return fmt.Errorf("%w: issued and expiry are required", ErrFormat)
	}
	if !c.Expiry.After(c.Issued) || c.Expiry.Sub(c.Issued) > MaxCommandExpiry {
		return fmt.Errorf("%w: expiry must lie after issued, at most %s", ErrFormat, MaxCommandExpiry)
	}
	return nil
}

// checkName checks a device, service or input name: at most
// MaxCommandName bytes, printable, without space, "/", "+" or "#".
func checkName(what, s string, optional bool) error {
	if s == "" {
		if optional {
			return nil
		}
		return fmt.Errorf("%w: no %s", ErrFormat, what)
	}
	if len(s) > MaxCommandName || !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s: at most %d bytes of UTF-8", ErrFormat, what, MaxCommandName)
	}
	for _, r := range s {
		if r == '/' || r == '+' || r == '#' || !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return fmt.Errorf("%w: %s %q holds %q", ErrFormat, what, clip(s), r)
		}
	}
	return nil
}

// Encode validates c and returns its JSON.
func (c Command) Encode() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	if len(b) > MaxCommandBytes {
		return nil, fmt.Errorf("%w: command of %d bytes, more than %d", ErrFormat, len(b), MaxCommandBytes)
	}
	return b, nil
}

// commandFields are the fields a command message may hold.
var commandFields = []string{"id", "edge", "product", "asset", "service", "inputs", "class", "issued", "expiry", "by"}

// DecodeCommand decodes a command message strictly: at most
// MaxCommandBytes, one JSON object with known fields each at most once,
// nothing after it, numbers kept exact (json.Number), every field valid.
func DecodeCommand(data []byte) (Command, error) {
	var c Command
	if len(data) > MaxCommandBytes {
		return c, fmt.Errorf("%w: command of %d bytes, more than %d", ErrFormat, len(data), MaxCommandBytes)
	}
	raw, err := objectFields("command", data, commandFields)
	if err != nil {
		return c, err
	}
	if in, ok := raw["inputs"]; ok && !bytes.Equal(bytes.TrimSpace(in), []byte("null")) {
		if _, err := objectFields("command inputs", in, nil); err != nil {
			return c, err
		}
	}
	if err := decodeStrict(data, &c, "command", true); err != nil {
		return Command{}, err
	}
	if err := c.Validate(); err != nil {
		return Command{}, fmt.Errorf("command: %w", err)
	}
	return c, nil
}

// decodeStrict decodes the one JSON object of data into v, refusing
// unknown fields and anything after the object; numbers are kept as
// json.Number when numbers is set. what names the message in errors.
func decodeStrict(data []byte, v any, what string, numbers bool) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if numbers {
		dec.UseNumber()
	}
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrFormat, what, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: %s: data after the object", ErrFormat, what)
	}
	return nil
}

// objectFields decodes the JSON object data into its fields, refusing
// one whose keys repeat or are not spelled as one of fields (any key when
// fields is nil): encoding/json matches names case-insensitively and
// keeps the last of duplicates.
func objectFields(what string, data []byte, fields []string) (map[string]json.RawMessage, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrFormat, what, err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if _, err := dec.Token(); err != nil { // {
		return nil, fmt.Errorf("%w: %s: %w", ErrFormat, what, err)
	}
	count := 0
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrFormat, what, err)
		}
		key, _ := tok.(string)
		known := fields == nil
		for _, f := range fields {
			known = known || key == f
		}
		if !known {
			return nil, fmt.Errorf("%w: %s: unknown field %q", ErrFormat, what, clip(key))
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrFormat, what, err)
		}
		count++
	}
	if count != len(raw) {
		return nil, fmt.Errorf("%w: %s: a field appears twice", ErrFormat, what)
	}
	return raw, nil
}

// Columns of a command record row (ControlSchema), beside ColTime (when
// the record last changed).
const (
	ColID     = "id"     // string: the record's id
	ColStatus = "status" // string: its status
	ColRecord = "record" // string: the record, JSON of command.Command
	ColAudit  = "audit"  // string: JSON array of the record's last audit entries (command.Transition), oldest first
)

// MaxRecordAudit bounds the audit entries sent with a record.
const MaxRecordAudit = 32

// ControlSchema is the schema of command record rows, event time ColTime:
// one row is one command record as the edge's arbiter holds it after a
// transition, with its last audit entries; of two rows of one id the
// higher ColVersion is the newer.
func ControlSchema() *engine.Schema {
	return mustSchema([]engine.Field{
		{Name: ColTime, Type: engine.Timestamp},
		{Name: ColID, Type: engine.String},
		{Name: ColVersion, Type: engine.Int64},
		{Name: ColStatus, Type: engine.String},
		{Name: ColRecord, Type: engine.String},
		{Name: ColAudit, Type: engine.String},
	})
}
