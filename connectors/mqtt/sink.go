package mqtt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/control"
	"github.com/sluice-edge/sluice/engine/spec"
)

// SinkSpec declares the "mqtt" sink.
var SinkSpec = spec.Spec{
	Name:    "mqtt",
	Kind:    spec.KindSink,
	Summary: "Sends each row as a command to an EnOS device (measure-point set or service invocation) and tracks the device's reply.",
	Description: "Each row becomes one command to the device named by `device_column` (default: the input's key) on " +
		"`/sys/{productKey}/{deviceKey}/thing/service/{service}`: for `measurepoint.set` the row's columns are the " +
		"points to set, for another service its inputs. A write returns once the broker has the commands; the " +
		"devices' replies (`..._reply`, matched by message id) move each command to `acked` or `failed`, and a " +
		"missing reply to `timeout` after `timeout`. Counters: commands_sent, commands_acked, commands_failed, " +
		"commands_timeout; rows without a device are counted as rows_skipped. A command that cannot be handed to " +
		"the broker within `send_timeout` fails and is not retried (a stale command must not reach a device " +
		"late). See docs/mqtt.md.",
	Fields: slices.Concat(connFields(), []spec.Field{
		{Name: "service", Type: spec.String, Default: command.SetPoints,
			Description: "Service to invoke; `measurepoint.set` sets measure points.", Example: "reboot"},
		{Name: "product_key", Type: spec.String, Optional: true, Description: "Product key of every device.", Example: "turbineProduct"},
		{Name: "product_key_column", Type: spec.String, Optional: true, Description: "String column holding each row's product key.", Example: "productKey"},
		{Name: "device_column", Type: spec.String, Optional: true, Description: "String column holding each row's device key (default: the input's key column).", Example: "asset"},
		{Name: "params", Type: spec.Map, Elem: spec.String, Optional: true,
			Description: "Point (or service input) name -> column: the `params` of each command. Default: every column but the time, product and device columns, under its own name. Null values are left out.",
			Example:     map[string]any{"power_limit": "limit_kw"}},
		{Name: "timeout", Type: spec.Duration, Default: "30s", Description: "How long to wait for a device's reply."},
		{Name: "send_timeout", Type: spec.Duration, Default: "10s", Advanced: true, Description: "How long a command may wait for the broker before it fails."},
		{Name: "qos", Type: spec.Int, Default: 1, Description: "QoS of command messages (0 or 1)."},
		{Name: "command_topic", Type: spec.String, Optional: true,
			Description: "For devices that are not EnOS devices: the template of a generic JSON command topic. Each non-null point of a row becomes one command, `{\"id\":...,\"point\":...,\"value\":...}` on this topic; `{asset}` (required), `{product}` and `{point}` stand for whole segments. The device answers `{\"id\":...,\"code\":200}` on `reply_topic`. With a `control` section in the edge configuration, the topic must be declared in `control.json_devices` and the commands go through the arbiter. See docs/mqtt.md.",
			Example:     "plant/{asset}/set/{point}"},
		{Name: "reply_topic", Type: spec.String, Optional: true,
			Description: "Template of the replies to `command_topic` (`{asset}` required; default: command_topic + `/reply`).", Example: "plant/{asset}/reply"},
	}),
	Example: `sinks:
  setpoints:
    type: mqtt
    input: control
    urls: [tcp://127.0.0.1:1883]
    product_key: turbineProduct
    params: {power_limit: limit_kw}
    timeout: 30s
`,
}

func init() { engine.RegisterSink(SinkSpec, newSink) }

// Sink sends rows as device commands.
type Sink struct {
	opts       DownlinkOptions
	emb        embeddedConfig
	service    string
	timeout    time.Duration
	product    string
	productCol int
	deviceCol  int
	inputs     []sinkInput
	origin     string
	log        *slog.Logger
	// control, when set, is the edge's command arbiter: commands go
	// through it (writeControlled) under ruleOrigin.
	control    control.Submitter
	ruleOrigin string

	json      *JSONDownlinkOptions // set for a generic JSON command topic
	noProduct bool                 // the JSON command topic names no product
	mu        sync.Mutex
	dl        sender
	release   func()
	closed    bool

	sent, skipped, failed *atomic.Int64
}

type sinkInput struct {
	name string
	col  int
}

func newSink(cfg *spec.Config, in *engine.Schema, bc engine.BuildContext) (engine.Sink, error) {
	var errs spec.Errors
	opts, emb, es := parseConnConfig(cfg, bc.Dir, defaultClientID(bc.Edge, bc.Pipeline, bc.Name))
	errs = append(errs, es...)
	s := &Sink{emb: emb, service: cfg.String("service"), timeout: cfg.Duration("timeout"),
		product: cfg.String("product_key"), productCol: -1, deviceCol: -1,
		origin: "pipeline:" + bc.Pipeline + "/" + bc.Name, log: bc.Log}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	opts.Log = s.log
	q := cfg.Int("qos")
	if q != 0 && q != 1 {
		errs = append(errs, cfg.Errorf("qos", "qos must be 0 or 1, not %d", q))
	}
	if s.service == "" {
		errs = append(errs, cfg.Errorf("service", "service is empty"))
	}
	if s.timeout <= 0 {
		errs = append(errs, cfg.Errorf("timeout", "timeout must be positive"))
	}
	stringCol := func(field, name string) int {
		f, ok := in.Lookup(name)
		switch {
		case !ok:
			errs = append(errs, cfg.Errorf(field, "the input has no column %q (columns: %s)", name, in.Names()))
			return -1
		case f.Type != engine.String:
			errs = append(errs, cfg.Errorf(field, "column %q must be a string, not %s", name, f.Type))
			return -1
		}
		return in.Index(name)
	}
	if cfg.Has("command_topic") {
		jo := &JSONDownlinkOptions{Topic: cfg.String("command_topic"), ReplyTopic: cfg.String("reply_topic")}
		tt, err := ParseTopicTemplate(jo.Topic)
		if err != nil {
			errs = append(errs, cfg.Errorf("command_topic", "%v", err))
		}
		if jo.ReplyTopic != "" {
			if _, err := ParseTopicTemplate(jo.ReplyTopic); err != nil {
				errs = append(errs, cfg.Errorf("reply_topic", "%v", err))
			}
		}
		if s.service != command.SetPoints {
			errs = append(errs, cfg.Errorf("service", "a command_topic carries set-points only (service %s)", command.SetPoints))
		}
		// A topic without {product} needs none: the commands name no product.
		s.noProduct = err == nil && !tt.Has(PlaceholderProduct) && s.product == "" && !cfg.Has("product_key_column")
		s.json = jo
	} else if cfg.Has("reply_topic") {
		errs = append(errs, cfg.Errorf("reply_topic", "reply_topic goes with command_topic"))
	}
	switch {
	case s.noProduct:
	case s.product != "" && cfg.Has("product_key_column"):
		errs = append(errs, cfg.Errorf("product_key_column", "set product_key or product_key_column, not both"))
	case cfg.Has("product_key_column"):
		s.productCol = stringCol("product_key_column", cfg.String("product_key_column"))
	case s.product == "":
		errs = append(errs, cfg.Errorf("product_key", "set product_key or product_key_column"))
	}
	device := cfg.String("device_column")
	if device == "" {
		device = in.Key
	}
	if device == "" {
		errs = append(errs, cfg.Errorf("device_column", "the input has no key column: set device_column"))
	} else {
		s.deviceCol = stringCol("device_column", device)
	}
	if entries := cfg.Entries("params"); len(entries) > 0 {
		for _, e := range entries {
			col, _ := e.Value.(string)
			if i := in.Index(col); i >= 0 {
				s.inputs = append(s.inputs, sinkInput{name: e.Key, col: i})
			} else {
				errs = append(errs, spec.Errorf(e.ValuePos, "params: the input has no column %q", col))
			}
		}
	} else {
		for i, f := range in.Fields {
			if i != s.productCol && i != s.deviceCol && f.Name != in.Time {
				s.inputs = append(s.inputs, sinkInput{name: f.Name, col: i})
			}
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	counters := bc.Counters
	if counters == nil {
		counters = engine.NewCounters()
	}
	s.sent, s.skipped, s.failed = counters.Counter("commands_sent"), counters.Counter("rows_skipped"), counters.Counter("commands_failed")
	acked, timedOut := counters.Counter("commands_acked"), counters.Counter("commands_timeout")
	rejected, unmatched := counters.Counter("commands_rejected"), counters.Counter("replies_unmatched")
	log := s.log
	tracker := command.New(command.Options{OnTransition: func(tr command.Transition) {
		switch tr.To {
		case command.Acked:
			acked.Add(1)
		case command.Failed:
			s.failed.Add(1)
			log.Warn("mqtt: command failed", "id", tr.ID, "device", tr.Asset, "reason", tr.Reason)
		case command.Rejected:
			rejected.Add(1)
			log.Warn("mqtt: command rejected", "id", tr.ID, "reason", tr.Reason)
		case command.Timeout:
			timedOut.Add(1)
			log.Warn("mqtt: command timed out", "id", tr.ID, "device", tr.Asset, "reason", tr.Reason)
		}
	}})
	s.opts = DownlinkOptions{Client: opts, Tracker: tracker, QoS0: q == 0, SendTimeout: cfg.Duration("send_timeout"), Log: s.log, Unmatched: unmatched}
	if bc.Commands != nil {
		if jr, ok := bc.Commands.(jsonRoutes); ok && s.json != nil {
			reply := s.json.ReplyTopic
			if reply == "" {
				reply = s.json.Topic + "/reply"
			}
			if !jr.JSONCommandTopic(s.json.Topic, reply) {
				return nil, spec.Errors{cfg.Errorf("command_topic", "command_topic %q (reply_topic %q) is not declared in the edge's control.json_devices: "+
					"with a control section every command goes through the arbiter, which reaches JSON devices over the topics declared there", s.json.Topic, reply)}
			}
		}
		s.control, s.ruleOrigin = bc.Commands, control.OriginRule+":"+bc.Pipeline+"."+bc.Name
	}
	if s.json != nil {
		s.json.Client, s.json.Tracker, s.json.QoS0, s.json.SendTimeout, s.json.Log, s.json.Unmatched = opts, tracker, q == 0, s.opts.SendTimeout, s.log, unmatched
		if _, err := NewJSONDownlink(*s.json); err != nil { // checks the pair of templates
			return nil, spec.Errors{cfg.Errorf("reply_topic", "%v", err)}
		}
	}
	return s, nil
}

// jsonRoutes is implemented by the edge's arbiter as the pipelines see it
// (engine.BuildContext.Commands): it says whether the control section
// declares a generic JSON command topic with its reply topic.
type jsonRoutes interface {
	JSONCommandTopic(commandTopic, replyTopic string) bool
}

// Tracker returns the tracker of the sink's commands.
func (s *Sink) Tracker() *command.Tracker { return s.opts.Tracker }

// sender is the downlink a sink sends its commands with: EnOS
// (Downlink) or a generic JSON command topic (JSONDownlink).
type sender interface {
	Start(ctx context.Context) error
	Send(ctx context.Context, c command.Command) (command.Command, error)
	Close() error
}

// downlink connects on first use.
func (s *Sink) downlink(ctx context.Context) (sender, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("mqtt sink: closed")
	}
	if s.dl != nil {
		return s.dl, nil
	}
	if s.emb.enabled {
		_, release, err := acquireBroker(s.emb.listen, s.log)
		if err != nil {
			return nil, err
		}
		s.release = release
	}
	var dl sender
	var err error
	if s.json != nil {
		dl, err = NewJSONDownlink(*s.json)
	} else {
		dl, err = NewDownlink(s.opts)
	}
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, s.opts.SendTimeout)
	defer cancel()
	if err := dl.Start(sctx); err != nil {
		// Commands wait for the connection up to send_timeout each.
		s.log.Warn("mqtt sink: broker not reachable yet", "err", err)
	}
	s.dl = dl
	return dl, nil
}

// Write sends one command per row.
func (s *Sink) Write(ctx context.Context, b engine.Batch) error {
	if s.control != nil {
		return s.writeControlled(ctx, b)
	}
	defer b.Release()
	dl, err := s.downlink(ctx)
	if err != nil {
		return err
	}
	rec := b.Rec
	unreachable := false // once a command could not reach the broker, the rest of the batch fails at once
	for r := range int(rec.NumRows()) {
		c, ok := s.rowCommand(rec, r, s.origin)
		if !ok {
			continue
		}
		cmds := []command.Command{c}
		if s.json != nil {
			cmds = s.perPoint(c)
		}
		for _, c := range cmds {
			if unreachable {
				if c, err := s.opts.Tracker.Submit(c); err == nil {
					_, _ = s.opts.Tracker.Fail(c.ID, "not sent: the broker was unreachable for an earlier command of the batch")
				}
				continue
			}
			got, err := dl.Send(ctx, c)
			switch {
			case err == nil:
				s.sent.Add(1)
			case got.Status == command.Failed && errors.Is(err, errBrokerUnreachable):
				unreachable = true
			}
		}
	}
	return nil
}

// Close disconnects. It is idempotent.
func (s *Sink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var err error
	if s.dl != nil {
		err = s.dl.Close()
	}
	s.opts.Tracker.Close()
	if s.release != nil {
		s.release()
	}
	return err
}

// rowCommand builds the command row r of rec asks for, with origin and
// every input the row holds; false (and the row counted as skipped) when
// the row names no device, or no product where one is needed.
func (s *Sink) rowCommand(rec arrow.RecordBatch, r int, origin string) (command.Command, bool) {
	c := command.Command{Product: s.product, Service: s.service, Origin: origin, Timeout: s.timeout}
	if s.productCol >= 0 {
		c.Product = stringAt(rec.Column(s.productCol), r)
	}
	c.Asset = stringAt(rec.Column(s.deviceCol), r)
	if c.Product == "" && !s.noProduct || c.Asset == "" {
		s.skipped.Add(1)
		return c, false
	}
	c.Inputs = make(map[string]any, len(s.inputs))
	for _, in := range s.inputs {
		if v, ok := valueAt(rec.Column(in.col), r); ok {
			c.Inputs[in.name] = v
		}
	}
	return c, true
}

// perPoint splits c into one command per input it holds, in the order of
// params, for a device reached one point at a time.
func (s *Sink) perPoint(c command.Command) []command.Command {
	cmds := make([]command.Command, 0, len(c.Inputs))
	for _, in := range s.inputs {
		if v, ok := c.Inputs[in.name]; ok {
			one := c
			one.Inputs = map[string]any{in.name: v}
			cmds = append(cmds, one)
		}
	}
	return cmds
}

func stringAt(a arrow.Array, r int) string {
	if s, ok := a.(*array.String); ok && s.IsValid(r) {
		return s.Value(r)
	}
	return ""
}

// valueAt returns a cell as a JSON-ready value: float64, int64, string,
// bool, or milliseconds since the epoch for timestamps.
func valueAt(a arrow.Array, r int) (any, bool) {
	if a.IsNull(r) {
		return nil, false
	}
	switch c := a.(type) {
	case *array.Float64:
		return c.Value(r), true
	case *array.Int64:
		return c.Value(r), true
	case *array.String:
		return c.Value(r), true
	case *array.Boolean:
		return c.Value(r), true
	case *array.Timestamp:
		return int64(c.Value(r)), true
	}
	return a.ValueStr(r), true
}
