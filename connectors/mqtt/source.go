package mqtt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/assets"
	"github.com/sluice-edge/sluice/engine/spec"
)

// enosTopics are the default subscriptions of the enos format.
var enosTopics = []string{
	"/sys/+/+/thing/measurepoint/post",
	"/sys/+/+/thing/measurepoint/resume",
	"/sys/+/+/thing/measurepoint/post/batch",
	"/sys/+/+/thing/measurepoint/resume/batch",
}

// SourceSpec declares the "mqtt" source.
var SourceSpec = spec.Spec{
	Name:    "mqtt",
	Kind:    spec.KindSource,
	Summary: "Subscribes to device topics on an MQTT broker (3.1.1 or 5) and decodes EnOS, JSON or CSV payloads.",
	Description: "Each message is one payload: an EnOS measure-point post (`enos`, one row per params item), a JSON " +
		"object (`json`, one row) or a CSV line (`csv`, one row). Topic segments can feed columns (`topic_fields`, " +
		"`topic_pattern`); with EnOS topics the key column is the device key of `/sys/{productKey}/{deviceKey}/...`. " +
		"Rows of `.../measurepoint/resume` topics (offline history) have `history` set to true.\n\n" +
		"At QoS 1 a message is acknowledged (PUBACK) only when every effect of the batch holding its rows is durable " +
		"in the sinks (or deliberately filtered out); with a persistent session (the default) the broker delivers " +
		"unacknowledged messages again after a restart. Bad input — malformed payloads, wrong value types, payloads " +
		"over `max_payload`, devices not in `devices`/`assets`, devices over `max_rate_per_device`, device keys over " +
		"`max_key_length`, message ids over 64 bytes — is counted per " +
		"device, answered with an error reply when `reply` is on, logged (at most `log_burst` lines per " +
		"`log_interval`) and acknowledged, so that it is not delivered again; other devices are not held up. See " +
		"docs/mqtt.md. Messages on topics ending in `_reply` (the source's own replies caught by a wildcard, or " +
		"another client's) are never decoded nor answered (`ignored`). Per-device state is bounded by `max_devices` " +
		"and `max_device_bytes`, the devices seen least recently being forgotten first.",
	Fields: slices.Concat(connFields(), []spec.Field{
		{Name: "topics", Type: spec.List, Elem: spec.String, Optional: true,
			Description: "Topic filters to subscribe to (`+` and `#` wildcards, `$share/{group}/...` shared subscriptions). Defaults, for `enos`, to the post and resume topics of every device, single and batch.",
			Example:     []string{"/sys/+/+/thing/measurepoint/post"}},
		{Name: "share_group", Type: spec.String, Optional: true,
			Description: "Subscribe to every topic as a shared subscription of this group, so that several engines split the messages (the broker must support shared subscriptions).",
			Example:     "sluice"},
		{Name: "qos", Type: spec.Int, Default: 1, Description: "Subscription QoS: 0 (at most once) or 1 (at least once, acknowledged when durable).", Example: 0},
		{Name: "format", Type: spec.String, Default: "enos", Enum: []string{"enos", "json", "csv"},
			Description: "`enos` (EnOS measure-point payloads), `json` (one JSON object per message) or `csv` (one CSV line per message)."},
	}, codec.SchemaFields(), codec.TimeFields(), []spec.Field{
		{Name: "key_field", Type: spec.String, Default: "deviceKey",
			Description: "`enos` batch posts: the field of each params item that names its device.", Example: "deviceKey"},
		{Name: "columns", Type: spec.List, Elem: spec.String, Optional: true,
			Description: "`csv`: the names of the fields of each line, in order.", Example: []string{"time", "power", "wind_speed"}},
		{Name: "delimiter", Type: spec.String, Default: ",", Description: "`csv`: the field separator, one character (`tab` for a tab)."},
		{Name: "topic_fields", Type: spec.Map, Elem: spec.Int, Optional: true,
			Description: "Name -> topic segment (0 is before the first slash, so in `/sys/pk/dk/...` segment 2 is `pk`). A string column of the same name takes the segment's value. Defaults, for `enos`, to `{productKey: 2, deviceKey: 3}`.",
			Example:     map[string]any{"site": 1, "deviceKey": 3}},
		{Name: "topic_pattern", Type: spec.String, Optional: true,
			Description: "The same as topic_fields, written as a topic: each `{name}` segment names a field.",
			Example:     "/sys/{productKey}/{deviceKey}/thing/measurepoint/post"},
		{Name: "key_from", Type: spec.String, Default: "deviceKey",
			Description: "The topic field that fills the key column. When no topic field has this name, the key is read from the payload like any column."},
		{Name: "history_column", Type: spec.String, Default: "history",
			Description: "`enos`: a bool column set to true on rows of resume topics (offline history) and false otherwise. It is added to the schema when not declared; empty leaves it out.",
			Example:     "backfill"},
		{Name: "reply", Type: spec.Bool, Default: false,
			Description: "Answer every message on its topic + `_reply`: `{\"id\":...,\"code\":200,\"data\":{}}`, or an error code (400 bad payload, 404 unknown device, 413 too large, 429 too fast) with a message."},
		{Name: "max_payload", Type: spec.Int, Default: 1 << 20, Description: "Largest payload in bytes; larger ones are rejected (`oversized`).", Example: 65536},
		{Name: "max_rate_per_device", Type: spec.Float, Default: 0,
			Description: "Messages per second a device may send (averaged over `rate_burst` messages); beyond it messages are rejected (`rate_limited`). 0 is no limit.",
			Example:     10},
		{Name: "rate_burst", Type: spec.Int, Default: 0, Advanced: true,
			Description: "Messages a device may send at once before max_rate_per_device applies (default: one second's worth)."},
		{Name: "devices", Type: spec.List, Elem: spec.String, Optional: true,
			Description: "Allow-list of device keys; messages from other devices are rejected (`unknown_devices`).",
			Example:     []string{"WT0001", "WT0002"}},
		{Name: "assets", Type: spec.String, Optional: true,
			Description: "Models and assets file (relative to the pipeline file); messages from devices that are not assets are rejected (`unknown_devices`).",
			Example:     "assets.yaml"},
		{Name: "max_key_length", Type: spec.Int, Default: codec.MaxKeyLen, Advanced: true,
			Description: "Longest device key in bytes, from the topic or from a batch post's items; longer keys — and batch item keys holding `/`, `+`, `#` or NUL — are rejected with 400 (`bad_device_keys`) and never tracked."},
		{Name: "max_devices", Type: spec.Int, Default: defaultMaxDevices, Advanced: true,
			Description: "Devices whose statistics and rate limit the source keeps; beyond it the device seen least recently is forgotten (`devices_evicted`)."},
		{Name: "max_device_bytes", Type: spec.Int, Default: defaultMaxDeviceBytes, Advanced: true,
			Description: "Bytes the table of devices may take (about 320 per device plus its key and last error); beyond it the devices seen least recently are forgotten (`devices_evicted`)."},
		{Name: "log_interval", Type: spec.Duration, Default: "10s", Advanced: true, Description: "Bad input is logged at most log_burst times per log_interval; the rest is summarised."},
		{Name: "log_burst", Type: spec.Int, Default: 10, Advanced: true, Description: "See log_interval."},
		{Name: "drain_timeout", Type: spec.Duration, Default: "10s", Advanced: true,
			Description: "On stop, how long to wait for the batches in flight to become durable so that their messages can be acknowledged; messages left unacknowledged are delivered again on the next start."},
		{Name: "queue", Type: spec.Int, Default: 4096, Advanced: true,
			Description: "Messages held between the connection and the decoder; when it is full the connection stops reading (backpressure)."},
		{Name: "queue_bytes", Type: spec.Int, Default: defaultQueueBytes, Advanced: true,
			Description: "Bytes of topics and payloads held between the connection and the decoder; when they reach it the connection stops reading (backpressure). A message larger than it is taken alone."},
	}),
	Example: `sources:
  devices:
    type: mqtt
    urls: [tcp://127.0.0.1:1883]
    qos: 1
    format: enos
    reply: true
    max_rate_per_device: 20
    schema:
      time: time
      key: asset
      fields: {wind_speed: float64, power: float64, power_quality: int64}
    mapping: {power_quality: power.quality}
`,
}

func init() {
	engine.RegisterSource(SourceSpec, newSource)
}

// Source subscribes to device topics and emits their rows.
type Source struct {
	opts     ClientOptions
	emb      embeddedConfig
	subs     []subscription
	qos      byte
	format   string
	enos     bool
	keyField string         // enos: the params item field naming a sub-device
	schema   *engine.Schema // what the source emits
	decMap   *codec.Mapping // what the decoder fills (schema without topic and history columns)
	ranges   []engine.ValueRange
	newDec   func() (codec.Decoder, error)
	topicCol []topicColumn
	keySeg   int // topic segment that gives the key, or -1
	devSeg   int // topic segment that names the device, or -1 (the whole topic)
	histCol  int // output column of the history flag, or -1
	outFrom  []colRef
	reply    bool
	maxSize  int
	allow    map[string]bool // nil: every device
	maxKey   int
	rate     float64
	burst    int
	logEvery time.Duration
	logBurst int
	drain    time.Duration
	queue    int
	qbytes   int // queue_bytes
	window   int // QoS 1 messages the broker sends before waiting for acknowledgements
	batch    engine.BatchPolicy
	mem      memory.Allocator
	log      *slog.Logger
	now      func() time.Time
	onReady  func() // called each time the source has subscribed

	devs *devices
	c    sourceCounters
	// alarm raises the engine alert of session takeovers.
	alarm *takeoverAlarm
}

type topicColumn struct {
	out int // output column
	seg int // topic segment
}

// colRef says where an output column comes from: decoder column idx
// (kind 0), topic column idx (kind 1) or the history flag (kind 2).
type colRef struct{ kind, idx int }

type sourceCounters struct {
	messages, rows, bad, oversized, rateLimited, unknownDevices, unknownPoints, ignored *atomic.Int64
	replies, repliesDropped, acked, connects, disconnects                               *atomic.Int64
	badKeys, evicted, takeovers, protocolErrors                                         *atomic.Int64
}

func newSource(cfg *spec.Config, bc engine.BuildContext) (engine.Source, error) {
	var errs spec.Errors
	add := func(err error) {
		if err != nil {
			errs = append(errs, spec.Collect(cfg.Pos(""), err)...)
		}
	}
	opts, emb, es := parseConnConfig(cfg, bc.Dir, defaultClientID(bc.Edge, bc.Pipeline, bc.Name))
	errs = append(errs, es...)
	s := &Source{
		opts:     opts,
		emb:      emb,
		format:   cfg.String("format"),
		reply:    cfg.Bool("reply"),
		maxSize:  int(cfg.Int("max_payload")),
		rate:     cfg.Float("max_rate_per_device"),
		burst:    int(cfg.Int("rate_burst")),
		logEvery: cfg.Duration("log_interval"),
		logBurst: int(cfg.Int("log_burst")),
		drain:    cfg.Duration("drain_timeout"),
		queue:    int(cfg.Int("queue")),
		qbytes:   int(cfg.Int("queue_bytes")),
		maxKey:   int(cfg.Int("max_key_length")),
		batch:    bc.Batch.Normalize(),
		mem:      bc.Mem,
		log:      bc.Log,
		keySeg:   -1,
		devSeg:   -1,
		histCol:  -1,
	}
	s.enos = s.format == "enos"
	switch q := cfg.Int("qos"); q {
	case 0, 1:
		s.qos = byte(q)
	default:
		add(cfg.Errorf("qos", "qos must be 0 or 1, not %d", q))
	}
	if s.maxSize < 1 {
		add(cfg.Errorf("max_payload", "max_payload must be positive"))
	}
	if s.rate < 0 {
		add(cfg.Errorf("max_rate_per_device", "max_rate_per_device must not be negative"))
	}
	if s.burst < 0 {
		add(cfg.Errorf("rate_burst", "rate_burst must not be negative"))
	}
	if s.queue < 1 {
		add(cfg.Errorf("queue", "queue must be positive"))
	}
	if s.qbytes < 64<<10 {
		add(cfg.Errorf("queue_bytes", "queue_bytes must be at least 65536, not %d", s.qbytes))
	}
	if s.maxKey < 1 || s.maxKey > 65535 {
		add(cfg.Errorf("max_key_length", "max_key_length must be between 1 and 65535, not %d", s.maxKey))
	}
	if n := cfg.Int("max_devices"); n < 1 {
		add(cfg.Errorf("max_devices", "max_devices must be positive, not %d", n))
	}
	if n := cfg.Int("max_device_bytes"); n < 1<<20 {
		add(cfg.Errorf("max_device_bytes", "max_device_bytes must be at least 1048576 (1 MiB), not %d", n))
	}
	if s.logBurst < 0 {
		add(cfg.Errorf("log_burst", "log_burst must not be negative"))
	}

	// Subscriptions.
	topics := cfg.Strings("topics")
	if len(topics) == 0 {
		if !s.enos {
			add(cfg.Errorf("topics", "list the topics to subscribe to"))
		}
		topics = enosTopics
	}
	for _, t := range topics {
		t = shareTopic(cfg.String("share_group"), t)
		if err := checkFilter(t); err != nil {
			add(cfg.Errorf("topics", "%v", err))
		}
		s.subs = append(s.subs, subscription{topic: t, qos: s.qos})
	}

	// Topic fields.
	var fields []topicField
	switch {
	case cfg.Has("topic_fields") && cfg.Has("topic_pattern"):
		add(cfg.Errorf("topic_pattern", "set topic_fields or topic_pattern, not both"))
	case cfg.Has("topic_pattern"):
		f, err := parseTopicPattern(cfg.String("topic_pattern"))
		if err != nil {
			add(cfg.Errorf("topic_pattern", "%v", err))
		}
		fields = f
	case cfg.Has("topic_fields"):
		for _, e := range cfg.Entries("topic_fields") {
			seg, _ := e.Value.(int64)
			if seg < 0 || seg > 64 {
				errs = append(errs, spec.Errorf(e.ValuePos, "topic_fields: segment %d of %q is not between 0 and 64", seg, e.Key))
				continue
			}
			fields = append(fields, topicField{name: e.Key, seg: int(seg)})
		}
	case s.enos:
		fields = enosTopicFields
	}

	m, err := codec.ParseMappingFor(cfg, bc)
	add(err)
	tf, err := codec.ParseTimeFormatConfig(cfg)
	add(err)
	if len(errs) > 0 {
		return nil, errs
	}
	if err := s.buildSchema(cfg, m, fields); err != nil {
		return nil, err
	}

	// The decoder.
	switch s.format {
	case "enos":
		s.keyField = cfg.String("key_field")
		s.newDec = func() (codec.Decoder, error) {
			return codec.NewEnOS(s.decMap, codec.EnOSOptions{KeyField: s.keyField, Unknown: s.c.unknownPoints, Time: tf})
		}
	case "json":
		s.newDec = func() (codec.Decoder, error) { return codec.NewJSON(s.decMap, codec.JSONOptions{Time: tf}) }
	case "csv":
		cols := cfg.Strings("columns")
		if len(cols) == 0 {
			return nil, cfg.Errorf("columns", "csv: list the names of the fields of each line")
		}
		var comma byte
		switch d := cfg.String("delimiter"); {
		case d == "tab" || d == "\t":
			comma = '\t'
		case len(d) == 1 && d != `"` && d != "\n" && d != "\r":
			comma = d[0]
		default:
			return nil, cfg.Errorf("delimiter", "delimiter must be one character other than a quote or a line break, not %q", d)
		}
		s.newDec = func() (codec.Decoder, error) {
			return codec.NewCSV(s.decMap, codec.CSVOptions{Header: cols, Comma: comma, Time: tf})
		}
	}
	if cfg.Has("columns") && s.format != "csv" {
		return nil, cfg.Errorf("columns", "columns applies to format csv only")
	}

	// Allowed devices.
	if list := cfg.Strings("devices"); cfg.Has("devices") {
		s.allow = map[string]bool{}
		for _, d := range list {
			s.allow[d] = true
		}
	}
	if p := cfg.String("assets"); p != "" {
		if !filepath.IsAbs(p) {
			p = filepath.Join(bc.Dir, p)
		}
		cat, err := assets.Load(p)
		if err != nil {
			return nil, cfg.Errorf("assets", "%v", err)
		}
		if s.allow == nil {
			s.allow = map[string]bool{}
		}
		for _, a := range cat.Assets {
			s.allow[a.ID] = true
		}
	}

	counters := bc.Counters
	if counters == nil {
		counters = engine.NewCounters()
	}
	s.c = sourceCounters{
		messages: counters.Counter("messages"), rows: counters.Counter("rows"), bad: counters.Counter("bad_payloads"),
		oversized: counters.Counter("oversized"), rateLimited: counters.Counter("rate_limited"),
		unknownDevices: counters.Counter("unknown_devices"), ignored: counters.Counter("ignored"),
		replies: counters.Counter("replies"), repliesDropped: counters.Counter("replies_dropped"),
		acked: counters.Counter("acked"), connects: counters.Counter("connects"), disconnects: counters.Counter("disconnects"),
		badKeys: counters.Counter("bad_device_keys"), evicted: counters.Counter("devices_evicted"),
		takeovers: counters.Counter("takeovers"), protocolErrors: counters.Counter("protocol_errors"),
	}
	if s.enos {
		s.c.unknownPoints = counters.Counter("unknown_points")
	}
	// Build a decoder now so that mapping problems show at load time.
	if _, err := s.newDec(); err != nil {
		return nil, cfg.Errorf("mapping", "%v", err)
	}
	s.window = s.opts.ReceiveMaximum
	if s.opts.Version == 4 && !cfg.Has("receive_maximum") {
		s.window = 20
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.alarm = &takeoverAlarm{asset: bc.Pipeline + "/" + bc.Name, client: clientTag(s.opts.ClientID),
		shared: bc.Shared, mem: bc.Mem, log: s.log, quiet: takeoverQuiet}
	s.opts.Log = s.log
	s.now = time.Now
	s.devs = newDevices(s.rate, s.burst, int(cfg.Int("max_devices")), cfg.Int("max_device_bytes"), s.c.evicted)
	return s, nil
}

// buildSchema derives the output schema, the decoder's mapping and the
// topic columns.
func (s *Source) buildSchema(cfg *spec.Config, m *codec.Mapping, fields []topicField) error {
	out := m.Schema
	keyFrom := cfg.String("key_from")
	for _, f := range fields {
		if f.name == keyFrom && out.Key != "" {
			s.keySeg = f.seg
		}
		if f.name == "deviceKey" || f.name == keyFrom && s.devSeg < 0 {
			s.devSeg = f.seg
		}
	}
	if s.enos && out.Key != "" && s.keySeg < 0 {
		return cfg.Errorf("key_from", "EnOS payloads carry no device key: key_from must name a topic field (topic fields: %s)", fieldNames(fields))
	}
	histName := ""
	if s.enos {
		histName = cfg.String("history_column")
	}
	if histName != "" {
		if f, ok := out.Lookup(histName); ok && f.Type != engine.Bool {
			return cfg.Errorf("history_column", "column %q must be bool to carry the history flag, not %s", histName, f.Type)
		}
		if _, ok := out.Lookup(histName); !ok {
			fs := append(slices.Clone(out.Fields), engine.Field{Name: histName, Type: engine.Bool})
			sc, err := engine.NewSchema(fs, out.Time, out.Key)
			if err != nil {
				return cfg.Errorf("history_column", "%v", err)
			}
			out = sc
		}
	}
	// Decoder columns: everything but topic columns and the history flag.
	var decFields []engine.Field
	sources := map[string]string{}
	isTopic := map[string]int{}
	for _, f := range fields {
		isTopic[f.name] = f.seg
	}
	for i, f := range out.Fields {
		seg, topic := isTopic[f.Name]
		switch {
		case f.Name == histName:
			s.histCol = i
			s.outFrom = append(s.outFrom, colRef{kind: 2})
		case topic && f.Name != out.Key && f.Name != out.Time:
			if f.Type != engine.String {
				return cfg.Errorf("schema", "column %q comes from the topic and must be a string, not %s", f.Name, f.Type)
			}
			s.outFrom = append(s.outFrom, colRef{kind: 1, idx: len(s.topicCol)})
			s.topicCol = append(s.topicCol, topicColumn{out: i, seg: seg})
		default:
			s.outFrom = append(s.outFrom, colRef{kind: 0, idx: len(decFields)})
			decFields = append(decFields, f)
			if j := m.Schema.Index(f.Name); j >= 0 {
				sources[f.Name] = m.Sources[j]
			}
		}
	}
	dec, err := engine.NewSchema(decFields, out.Time, out.Key)
	if err != nil {
		return cfg.Errorf("schema", "%v", err)
	}
	dm, err := codec.NewMapping(dec, sources)
	if err != nil {
		return cfg.Errorf("mapping", "%v", err)
	}
	s.schema, s.decMap, s.ranges = out, dm, m.Ranges
	return nil
}

func fieldNames(fs []topicField) string {
	if len(fs) == 0 {
		return "none"
	}
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.name
	}
	return strings.Join(names, ", ")
}

// Schema is the schema of the rows the source emits.
func (s *Source) Schema() *engine.Schema { return s.schema }

// Devices returns what the source counted per device.
func (s *Source) Devices() []DeviceStats { return s.devs.snapshot() }

// TrackedDevices returns the number of devices the source keeps
// statistics of and the bytes they take (at most max_devices and
// max_device_bytes).
func (s *Source) TrackedDevices() (devices int, bytes int64) { return s.devs.tracked() }

// Run subscribes and emits batches until ctx is cancelled. Then it stops
// reading, emits the rows it holds, waits (up to drain_timeout) until the
// batches in flight are durable so that their messages are acknowledged,
// and disconnects.
func (s *Source) Run(ctx context.Context, emit engine.Emit) error {
	if s.emb.enabled {
		_, release, err := acquireBroker(s.emb.listen, s.log)
		if err != nil {
			return err
		}
		defer release()
	}
	r, err := s.newRunner()
	if err != nil {
		return err
	}
	defer r.release()

	// MQTT 3.1.1 reports each lost connection on a goroutine of its own.
	var takeoverMu sync.Mutex
	takeoverLogs := logLimiter{Interval: time.Minute, Burst: 1}
	msgs := make(chan message, s.queue)
	stop := make(chan struct{})
	subErr := make(chan error, 1)
	cl, err := newClient(clientConfig{
		ClientOptions: s.opts,
		subs:          s.subs,
		manualAck:     s.qos == 1,
		light:         true,
		readPace:      readPace(s.batch.Linger),
		maxPayload:    s.maxSize,
		onMessage: func(m message) {
			// Waiting for room holds the connection's reader: the socket
			// is not read, and TCP holds the broker back.
			n := queuedBytes(m)
			if !r.gate.take(n, stop) {
				return
			}
			select {
			case msgs <- m:
			case <-stop:
				r.gate.give(n)
			}
		},
		onUp: func() {
			s.c.connects.Add(1)
			s.alarm.up()
			s.log.Info("mqtt: connected", "client", clientTag(s.opts.ClientID), "urls", maskURLs(s.opts.URLs))
			if s.onReady != nil {
				s.onReady()
			}
		},
		onDown: func(d downInfo) {
			s.c.disconnects.Add(1)
			if d.protocol {
				s.c.protocolErrors.Add(1)
				s.log.Warn("mqtt: the broker sent a packet that breaks the protocol; connection closed, reconnecting",
					"client", clientTag(s.opts.ClientID), "err", d.err, "in", d.delay, "protocol_errors", s.c.protocolErrors.Load())
				return
			}
			if !d.takenOver {
				s.log.Warn("mqtt: connection lost; reconnecting", "client", clientTag(s.opts.ClientID), "err", d.err, "in", d.delay)
				return
			}
			s.c.takeovers.Add(1)
			s.alarm.takenOver(time.Now())
			takeoverMu.Lock()
			ok, suppressed := takeoverLogs.Allow(time.Now())
			takeoverMu.Unlock()
			if ok {
				s.log.Error("mqtt: session taken over: another client connected with this source's client id, "+
					"and may be receiving its messages; set a secret client_id",
					"client", clientTag(s.opts.ClientID), "err", d.err, "connected_for", d.lived, "in_a_row", d.flaps,
					"reconnect_in", d.delay, "takeovers", s.c.takeovers.Load(), "not_logged", suppressed)
			}
		},
		onSubscribeError: func(topic string, err error) {
			select {
			case subErr <- fmt.Errorf("mqtt: subscribing to %q: %w", topic, err):
			default:
			}
		},
	})
	if err != nil {
		return err
	}
	if err := cl.start(ctx); err != nil {
		return err
	}
	r.client = cl
	defer s.alarm.stop()
	go r.sendReplies()

	err = r.loop(ctx, msgs, subErr, emit)
	close(stop)
	if err == nil {
		// Take what was received before the stop, so a QoS 0 stream loses
		// nothing already read.
		for drained := false; !drained; {
			select {
			case m := <-msgs:
				r.handle(m)
				r.gate.give(queuedBytes(m))
			default:
				drained = true
			}
		}
		err = r.flush(emit)
	}
	close(r.replies)
	if err == nil {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.drain)
		if !r.acks.wait(dctx) {
			s.log.Warn("mqtt: stopping with unacknowledged messages; the broker delivers them again on the next start",
				"unacknowledged", r.acks.outstanding())
		}
		cancel()
	}
	<-r.repliesDone
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if s.qos == 1 {
		// Let the broker take in the last acknowledgements before the
		// disconnection, which a broker may act on first when the same
		// client id connects again at once.
		_ = cl.sync(sctx)
	}
	_ = cl.stop(sctx)
	if errors.Is(err, engine.ErrStopped) || ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// defaultQueueBytes is the default of queue_bytes: 16 MiB of messages
// waiting for the decoder, 16 payloads of the default max_payload, and
// far more than 4096 (queue) messages of the sizes devices usually send.
const defaultQueueBytes = 16 << 20

// readPace is the shortest interval between two reads from the socket
// while messages keep coming: 2ms, or half the batch linger when that is
// shorter. At 10,000 messages/s one read takes in about 20 of them, where
// reading each as it comes costs a wake-up and a system call per message;
// a message is held at most that long, and one after a quiet spell is
// read at once.
func readPace(linger time.Duration) time.Duration {
	return min(2*time.Millisecond, linger/2)
}

// runner holds the state of one run; the loop goroutine owns it.
type runner struct {
	s       *Source
	client  client
	gate    *byteGate // bytes of the messages queued for the loop
	dec     codec.Decoder
	rb      *engine.RecordBuilder
	topicB  []*array.StringBuilder
	histB   *array.BooleanBuilder
	acks    *ackQueue
	pending bool // rows or messages wait for the next flush
	logs    logLimiter

	replies     chan outgoing
	repliesDone chan struct{}
}

type outgoing struct {
	topic   string
	payload []byte
}

func (s *Source) newRunner() (*runner, error) {
	dec, err := s.newDec()
	if err != nil {
		return nil, err
	}
	r := &runner{
		s:           s,
		dec:         dec,
		rb:          engine.NewRecordBuilder(s.mem, s.decMap.Schema),
		acks:        newAckQueue(s.c.acked),
		gate:        newByteGate(int64(s.qbytes)),
		logs:        logLimiter{Interval: s.logEvery, Burst: s.logBurst},
		replies:     make(chan outgoing, 1024),
		repliesDone: make(chan struct{}),
	}
	for range s.topicCol {
		r.topicB = append(r.topicB, array.NewStringBuilder(r.mem()))
	}
	if s.histCol >= 0 {
		r.histB = array.NewBooleanBuilder(r.mem())
	}
	return r, nil
}

func (r *runner) mem() memory.Allocator {
	if r.s.mem == nil {
		return memory.DefaultAllocator
	}
	return r.s.mem
}

func (r *runner) release() {
	r.rb.Release()
	for _, b := range r.topicB {
		b.Release()
	}
	if r.histB != nil {
		r.histB.Release()
	}
}

// loop receives messages and flushes batches when full, when the oldest
// pending input has waited the linger, or when the broker waits for
// acknowledgements; it returns when ctx ends or emit fails.
func (r *runner) loop(ctx context.Context, msgs <-chan message, subErr <-chan error, emit engine.Emit) error {
	s := r.s
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	defer linger.Stop()
	for {
		select {
		case m := <-msgs:
			wasPending := r.pending
			r.handle(m)
			r.gate.give(queuedBytes(m))
			switch {
			case r.rb.Rows() >= s.batch.Size:
			case s.qos == 1 && len(msgs) == 0 && r.pending && r.acks.outstanding() >= s.window:
				// The broker sends nothing more until we acknowledge.
			default:
				if r.pending && !wasPending {
					linger.Reset(s.batch.Linger)
				}
				continue
			}
			linger.Stop()
			if err := r.flush(emit); err != nil {
				return err
			}
		case <-linger.C:
			if err := r.flush(emit); err != nil {
				return err
			}
		case err := <-subErr:
			return err
		case <-ctx.Done():
			linger.Stop()
			return nil
		}
	}
}

// flush emits the pending rows with the Ack of their messages.
func (r *runner) flush(emit engine.Emit) error {
	r.pending = false
	n := r.rb.Rows()
	ack := r.acks.cut(n > 0)
	if n == 0 {
		return nil
	}
	rec := r.record()
	if err := emit(rec, ack); err != nil {
		return err
	}
	r.s.c.rows.Add(int64(n))
	return nil
}

// record assembles the output record from the decoder's columns, the
// topic columns and the history flag.
func (r *runner) record() arrow.RecordBatch {
	n := r.rb.Rows()
	dec := r.rb.NewRecord()
	if len(r.topicB) == 0 && r.histB == nil {
		return dec
	}
	defer dec.Release()
	extra := make([]arrow.Array, len(r.topicB))
	for i, b := range r.topicB {
		extra[i] = b.NewArray()
	}
	var hist arrow.Array
	if r.histB != nil {
		hist = r.histB.NewArray()
	}
	cols := make([]arrow.Array, len(r.s.outFrom))
	for i, ref := range r.s.outFrom {
		switch ref.kind {
		case 0:
			cols[i] = dec.Column(ref.idx)
		case 1:
			cols[i] = extra[ref.idx]
		case 2:
			cols[i] = hist
		}
	}
	rec := array.NewRecordBatch(r.s.schema.Arrow(), cols, int64(n))
	for _, a := range extra {
		a.Release()
	}
	if hist != nil {
		hist.Release()
	}
	return rec
}

// handle decodes one message into the pending rows, or rejects it.
func (r *runner) handle(m message) {
	s := r.s
	s.c.messages.Add(1)
	r.pending = r.pending || m.qos > 0
	r.acks.push(m)
	topic := m.topic
	if codec.IsReplyTopic(topic) {
		// Our own replies (or other clients') on a wildcard subscription,
		// whatever the format: decoding them would answer them, and the
		// answers would come back to be answered in turn.
		s.c.ignored.Add(1)
		return
	}
	var et codec.Topic
	if s.enos {
		et = codec.ParseTopic(topic)
	}
	dev := topic
	if s.devSeg >= 0 {
		if seg, ok := segment(topic, s.devSeg); ok && seg != "" {
			dev = seg
			if len(dev) > s.maxKey {
				r.rejectKey(m, fmt.Sprintf("device key of %d bytes exceeds max_key_length (%d)", len(dev), s.maxKey))
				return
			}
		}
	}
	ds := s.devs.get(dev)
	ds.messages.Add(1)
	if size := len(m.payload) + m.dropped; size > s.maxSize {
		s.c.oversized.Add(1)
		ds.oversized.Add(1)
		r.reject(m, ds, codec.CodePayloadTooLarge, fmt.Sprintf("payload of %d bytes exceeds max_payload (%d)", size, s.maxSize))
		return
	}
	if s.allow != nil && !s.allow[dev] {
		s.c.unknownDevices.Add(1)
		ds.unknown.Add(1)
		r.reject(m, ds, codec.CodeUnknownDevice, fmt.Sprintf("unknown device %q", dev))
		return
	}
	if s.rate > 0 && !s.devs.allow(ds, s.now().UnixNano()) {
		s.c.rateLimited.Add(1)
		ds.rateLimited.Add(1)
		r.reject(m, ds, codec.CodeTooManyRequests, fmt.Sprintf("device %q exceeds %g messages/s", dev, s.rate))
		return
	}
	if len(m.payload) > 0 && m.payload[0] == '{' {
		if v := member(m.payload, 0, "id"); len(v) > maxEchoedID+2 && len(messageID(m.payload)) > maxEchoedID {
			s.c.bad.Add(1)
			ds.bad.Add(1)
			r.reject(m, ds, codec.CodeBadRequest, fmt.Sprintf("the message id is longer than %d bytes", maxEchoedID))
			return
		}
	}
	key := ""
	if s.keySeg >= 0 && !et.Kind.Batch() {
		key, _ = segment(topic, s.keySeg)
		if key == "" {
			s.c.bad.Add(1)
			ds.bad.Add(1)
			r.reject(m, ds, codec.CodeBadRequest, "the topic has no key segment")
			return
		}
	}
	if et.Kind.Batch() {
		unknown, badKey := "", ""
		eachItemKey(m.payload, s.keyField, func(k string) bool {
			if k == "" {
				// The decoder refuses an item without a device key.
				return true
			}
			if err := codec.CheckKey(k, s.maxKey); err != nil {
				badKey = "sub-device " + err.Error()
				return false
			}
			if s.allow != nil && !s.allow[k] {
				unknown = k
				return false
			}
			return true
		})
		if badKey != "" {
			s.c.badKeys.Add(1)
			ds.bad.Add(1)
			r.reject(m, ds, codec.CodeBadRequest, badKey)
			return
		}
		if unknown != "" {
			s.c.unknownDevices.Add(1)
			ds.unknown.Add(1)
			r.reject(m, ds, codec.CodeUnknownDevice, fmt.Sprintf("unknown sub-device %q", unknown))
			return
		}
	}
	n, err := r.dec.Parse(m.payload, key)
	if err != nil {
		s.c.bad.Add(1)
		ds.bad.Add(1)
		r.reject(m, ds, codec.CodeBadRequest, err.Error())
		return
	}
	r.dec.Append(r.rb)
	for i, tc := range s.topicCol {
		v, _ := segment(topic, tc.seg)
		b := r.topicB[i]
		for range n {
			b.Append(v)
		}
	}
	if r.histB != nil {
		h := et.Kind.History()
		for range n {
			r.histB.Append(h)
		}
	}
	if n > 0 {
		r.pending = true
	}
	ds.rows.Add(int64(n))
	if s.reply {
		r.sendReply(topic, m.payload, codec.CodeOK, "")
	}
}

// reject counts, logs and answers a message that yields no rows; it is
// acknowledged with the batch being built.
func (r *runner) reject(m message, ds *deviceStats, code int, reason string) {
	now := r.s.now()
	r.s.devs.fail(ds, reason, now)
	if ok, suppressed := r.logs.Allow(now); ok {
		if suppressed > 0 {
			r.s.log.Warn("mqtt: more bad input was not logged", "count", suppressed)
		}
		r.s.log.Warn("mqtt: bad input rejected", "topic", m.topic, "device", ds.name, "code", code, "reason", reason)
	}
	if r.s.reply {
		r.sendReply(m.topic, m.payload, code, reason)
	}
}

// rejectKey rejects a message whose device key cannot be tracked; it is
// counted under OtherDevices.
func (r *runner) rejectKey(m message, reason string) {
	ds := r.s.devs.other
	ds.messages.Add(1)
	ds.bad.Add(1)
	r.s.c.badKeys.Add(1)
	r.reject(m, ds, codec.CodeBadRequest, reason)
}

// sendReply queues a reply; when the queue is full the reply is dropped
// and counted, so that a slow broker never holds up decoding.
func (r *runner) sendReply(topic string, payload []byte, code int, message string) {
	id := echoedID(payload)
	buf := codec.AppendReply(make([]byte, 0, 48+len(id)+len(message)), id, code, message)
	select {
	case r.replies <- outgoing{topic: codec.ReplyTopicFor(topic), payload: buf}:
	default:
		r.s.c.repliesDropped.Add(1)
	}
}

// sendReplies publishes queued replies at QoS 0 until the queue closes.
func (r *runner) sendReplies() {
	defer close(r.repliesDone)
	for o := range r.replies {
		ctx, cancel := context.WithTimeout(context.Background(), r.s.opts.ConnectTimeout)
		err := r.client.publish(ctx, o.topic, 0, o.payload)
		cancel()
		if err != nil {
			r.s.c.repliesDropped.Add(1)
			continue
		}
		r.s.c.replies.Add(1)
	}
}

// maxEchoedID is the longest message id a reply echoes, in bytes; a
// message with a longer id is rejected, and its reply carries only the
// id's first bytes.
const maxEchoedID = 64

// echoedID returns the id a reply to payload carries: its message id, cut
// to maxEchoedID bytes (on a character boundary).
func echoedID(payload []byte) string {
	return cutUTF8(messageID(payload), maxEchoedID)
}
