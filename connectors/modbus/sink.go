package modbus

import (
	"context"
	"fmt"
	"net/netip"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/assets"
	"github.com/sluice-edge/sluice/engine/control"
	"github.com/sluice-edge/sluice/engine/spec"
)

var entryFields = []spec.Field{
	{Name: "address", Type: spec.Int, Description: "Address of the entry's (first) register or coil, from 0."},
	{Name: "asset", Type: spec.String, Description: "Asset (device key) the entry belongs to."},
	{Name: "product_key", Type: spec.String, Optional: true, Description: "Product key of the asset (default: the sink's `product_key`)."},
	{Name: "point", Type: spec.String, Optional: true, Description: "Measure point a read returns: its latest value in the input (a column of that name). Without it the entry reads back the last value written."},
	{Name: "set", Type: spec.String, Optional: true, Description: "Set-point a write sets, through a command of origin `third-party`. Without it the entry is read-only (writes get exception 0x02)."},
}

var registerFields = append(append([]spec.Field(nil), entryFields...),
	spec.Field{Name: "type", Type: spec.String, Default: string(Uint16), Enum: []string{"uint16", "int16", "uint32", "int32", "float32"},
		Description: "How the value is held: one register (uint16, int16) or two (uint32, int32, float32)."},
	spec.Field{Name: "word_order", Type: spec.String, Default: string(HighFirst), Enum: []string{string(HighFirst), string(LowFirst)},
		Description: "Which register of a two-register value comes first: the most significant (high_first, ABCD) or the least (low_first, CDAB). Bytes within a register are big endian."},
	spec.Field{Name: "scale", Type: spec.Float, Default: 1.0, Description: "value = raw * scale + offset (0.1: the register carries tenths)."},
	spec.Field{Name: "offset", Type: spec.Float, Default: 0.0, Description: "See scale."},
)

// Spec declares the "modbus" sink.
var Spec = spec.Spec{
	Name:    "modbus",
	Kind:    spec.KindSink,
	Summary: "Modbus TCP server for third-party control systems: reads return the latest values of its input, writes become arbitrated commands.",
	Description: "Serves a map of holding registers and coils. A read (function codes 1-4) returns the latest value of the " +
		"mapped measure point in the rows this sink receives (0, or NaN for float32, before the first); a write (5, 6, 15, 16) of " +
		"whole entries becomes one `measurepoint.set` command per asset (per point for a device on a JSON command topic, `control.json_devices`), of origin `third-party:modbus@<client ip>`, submitted to " +
		"the edge's command arbiter (leases, priorities and expiry apply; a rejected command is answered with exception 0x06, " +
		"server busy, or 0x03, illegal data value, when the asset's thing model refuses the value). In a release with thing models, " +
		"an entry whose `set` is not a point of its asset's model, or a text point, is refused at validation. Addresses outside the map get exception 0x02. Modbus has no authentication: the server listens on " +
		"127.0.0.1 unless `listen` names another address, and then `allow` must list the clients served; connections of " +
		"others are closed at once and hold none of the `max_clients` connections. See docs/modbus.md.",
	Fields: []spec.Field{
		{Name: "listen", Type: spec.String, Default: DefaultListen, Description: "host:port to listen on. Another host than a loopback address exposes the server: only on a plant network, deliberately, with `allow`."},
		{Name: "allow", Type: spec.List, Elem: spec.String, Optional: true, Description: "Clients served: IP addresses or CIDR prefixes. Required when `listen` is not a loopback address; without it only loopback clients are served.", Example: []string{"10.0.5.20", "10.0.6.0/28"}},
		{Name: "unit_id", Type: spec.Int, Default: 0, Description: "Unit id answered (0: any)."},
		{Name: "max_clients", Type: spec.Int, Default: 8, Description: "Concurrent connections at most."},
		{Name: "idle_timeout", Type: spec.Duration, Default: "60s", Description: "A connection idle this long is closed."},
		{Name: "expire", Type: spec.Duration, Default: "30s", Description: "A command from a write that is still queued after this long is never executed."},
		{Name: "product_key", Type: spec.String, Optional: true, Description: "Product key of the entries' assets, unless an entry names its own."},
		{Name: "asset_column", Type: spec.String, Optional: true, Description: "String column naming each row's asset (default: the input's key)."},
		{Name: "registers", Type: spec.List, Elem: spec.Object, Optional: true, Children: registerFields, Description: "Holding registers (read also as input registers).",
			Example: []map[string]any{{"address": 0, "asset": "T0001", "point": "power", "type": "float32"}, {"address": 100, "asset": "T0001", "set": "power_limit", "scale": 0.1}}},
		{Name: "coils", Type: spec.List, Elem: spec.Object, Optional: true, Children: entryFields, Description: "Coils (read also as discrete inputs): a value other than 0 reads as on; a write sets 1 or 0.",
			Example: []map[string]any{{"address": 0, "asset": "T0001", "set": "run"}}},
	},
	Example: `sinks:
  plant:
    type: modbus
    input: turbines
    listen: 10.0.5.1:502
    allow: [10.0.5.20]
    product_key: turbine
    registers:
      - {address: 0, asset: T0001, point: power, type: float32}
      - {address: 2, asset: T0001, point: wind_speed, type: uint16, scale: 0.01}
      - {address: 100, asset: T0001, set: power_limit, type: uint16}
`,
}

func init() { engine.RegisterSink(Spec, newSink) }

// parseOptions reads the server's options from a validated configuration;
// items holds the configuration of each of opts.Entries.
func parseOptions(cfg *spec.Config) (opts Options, items []*spec.Config, errs spec.Errors) {
	opts = Options{Listen: cfg.String("listen"), MaxClients: int(cfg.Int("max_clients")), IdleTimeout: cfg.Duration("idle_timeout"),
		Expire: cfg.Duration("expire")}
	for i, a := range cfg.Strings("allow") {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			ad, aerr := netip.ParseAddr(a)
			if aerr != nil {
				errs = append(errs, cfg.Errorf("allow", "allow[%d]: %q is neither an IP address nor a CIDR prefix", i, a))
				continue
			}
			p = netip.PrefixFrom(ad, ad.BitLen())
		}
		opts.Allow = append(opts.Allow, p.Masked())
	}
	if u := cfg.Int("unit_id"); u < 0 || u > 247 {
		errs = append(errs, cfg.Errorf("unit_id", "unit_id must be between 0 and 247, not %d", u))
	} else {
		opts.UnitID = uint8(u)
	}
	if opts.MaxClients < 1 || opts.MaxClients > 1000 {
		errs = append(errs, cfg.Errorf("max_clients", "max_clients must be between 1 and 1000, not %d", opts.MaxClients))
	}
	if opts.IdleTimeout <= 0 || opts.Expire <= 0 {
		errs = append(errs, cfg.Errorf("expire", "idle_timeout and expire must be positive"))
	}
	product := cfg.String("product_key")
	read := func(table Table, list []*spec.Config) {
		for _, it := range list {
			a := it.Int("address")
			if a < 0 || a > 0xffff {
				errs = append(errs, it.Errorf("address", "address must be between 0 and 65535, not %d", a))
				continue
			}
			e := Entry{Table: table, Address: uint16(a), Asset: it.String("asset"), Product: it.String("product_key"),
				Point: it.String("point"), Set: it.String("set")}
			if e.Product == "" {
				e.Product = product
			}
			if table == HoldingRegisters {
				e.Type, e.Order, e.Scale, e.Offset = DataType(it.String("type")), WordOrder(it.String("word_order")), it.Float("scale"), it.Float("offset")
				if e.Scale == 0 {
					errs = append(errs, it.Errorf("scale", "scale must not be 0"))
					continue
				}
			}
			if err := e.check(); err != nil {
				errs = append(errs, it.Errorf("address", "%s %d: %v", tableName(table), a, err))
				continue
			}
			opts.Entries = append(opts.Entries, e)
			items = append(items, it)
		}
	}
	read(HoldingRegisters, cfg.Objects("registers"))
	read(Coils, cfg.Objects("coils"))
	if len(opts.Entries) == 0 && len(errs) == 0 {
		errs = append(errs, cfg.Errorf("registers", "the map is empty: declare registers or coils"))
	}
	if len(opts.Entries) > MaxEntries {
		errs = append(errs, cfg.Errorf("registers", "%d entries, more than %d", len(opts.Entries), MaxEntries))
	}
	return opts, items, errs
}

// checkSets refuses the entries whose set-point the asset's thing model
// lacks, or takes as text: the arbiter would reject every write of them.
func checkSets(cat *assets.Catalog, entries []Entry, items []*spec.Config) spec.Errors {
	var errs spec.Errors
	for i, e := range entries {
		if e.Set == "" {
			continue
		}
		tm, ok := cat.ThingModel(e.Asset)
		if !ok {
			continue
		}
		p, ok := tm.Points[e.Set]
		switch {
		case !ok:
			errs = append(errs, items[i].Errorf("set", "asset %s (thing model %s) has no measure point %q%s: every write of it would be rejected",
				e.Asset, tm.ID, e.Set, tm.DidYouMean(e.Set)))
		case p.Type == control.PointString:
			errs = append(errs, items[i].Errorf("set", "point %q of thing model %s takes text: a Modbus write carries a number", e.Set, tm.ID))
		}
	}
	return errs
}

// Sink feeds a Server the latest values of its input and serves it.
type Sink struct {
	srv      *Server
	assetCol int
	cols     []sinkCol
	mu       sync.Mutex
	closed   bool
}

type sinkCol struct {
	col   int
	point string
}

func newSink(cfg *spec.Config, in *engine.Schema, bc engine.BuildContext) (engine.Sink, error) {
	opts, items, errs := parseOptions(cfg)
	if cat := assets.FromContext(bc); cat != nil {
		errs = append(errs, checkSets(cat, opts.Entries, items)...)
	}
	s := &Sink{assetCol: -1}
	assetName := cfg.String("asset_column")
	if assetName == "" {
		assetName = in.Key
	}
	if f, ok := in.Lookup(assetName); !ok || f.Type != engine.String {
		errs = append(errs, cfg.Errorf("asset_column", "the input needs a string column naming the asset (asset_column, or a key); columns: %s", in.Names()))
	} else {
		s.assetCol = in.Index(assetName)
	}
	seen := map[string]bool{}
	for _, e := range opts.Entries {
		if e.Point == "" || seen[e.Point] {
			continue
		}
		seen[e.Point] = true
		f, ok := in.Lookup(e.Point)
		if !ok {
			errs = append(errs, cfg.Errorf("registers", "point %q (asset %s) is not a column of the input (%s)", e.Point, e.Asset, in.Names()))
			continue
		}
		switch f.Type {
		case engine.Float64, engine.Int64, engine.Bool:
		default:
			errs = append(errs, cfg.Errorf("registers", "point %q is a %s column: a Modbus entry reads numbers or booleans", e.Point, f.Type))
			continue
		}
		s.cols = append(s.cols, sinkCol{col: in.Index(e.Point), point: e.Point})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	opts.Log, opts.Counters = bc.Log, bc.Counters
	if bc.DryRun {
		if _, err := New(opts); err != nil {
			return nil, spec.Errors{cfg.Errorf("listen", "%v", err)}
		}
		return s, nil
	}
	opts.Submitter = bc.Commands
	srv, err := New(opts)
	if err != nil {
		return nil, spec.Errors{cfg.Errorf("listen", "%v", err)}
	}
	if opts.Submitter == nil && bc.Log != nil {
		bc.Log.Warn("modbus: no command arbiter (no control section in sluice.yaml): writes are answered with exception 0x04")
	}
	if err := srv.Start(); err != nil {
		return nil, err
	}
	s.srv = srv
	return s, nil
}

// Server returns the sink's server (nil when built for a dry run).
func (s *Sink) Server() *Server { return s.srv }

// Write records the latest value of every mapped point of every row.
func (s *Sink) Write(_ context.Context, b engine.Batch) error {
	defer b.Release()
	if s.srv == nil {
		return nil
	}
	rec := b.Rec
	assets, ok := rec.Column(s.assetCol).(*array.String)
	if !ok {
		return fmt.Errorf("modbus sink: the asset column is a %s", rec.Column(s.assetCol).DataType())
	}
	for r := range int(rec.NumRows()) {
		if assets.IsNull(r) {
			continue
		}
		asset := assets.Value(r)
		for _, c := range s.cols {
			if v, ok := number(rec.Column(c.col), r); ok {
				s.srv.Update(asset, c.point, v)
			}
		}
	}
	return nil
}

// number reads a cell as a float64.
func number(a arrow.Array, r int) (float64, bool) {
	if a.IsNull(r) {
		return 0, false
	}
	switch c := a.(type) {
	case *array.Float64:
		return c.Value(r), true
	case *array.Int64:
		return float64(c.Value(r)), true
	case *array.Boolean:
		if c.Value(r) {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// Close stops the server. It is idempotent.
func (s *Sink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.srv == nil {
		s.closed = true
		return nil
	}
	s.closed = true
	return s.srv.Close()
}
