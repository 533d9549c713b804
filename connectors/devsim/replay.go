package devsim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/engine"
)

// Replay replays a CSV file as devices: each row becomes one measure-point
// post of its device, in file order per device.
type Replay struct {
	// Path is the CSV file; its first line names the columns.
	Path string
	// KeyColumn names the column holding each row's device key; DeviceKey
	// is one key for every row instead.
	KeyColumn, DeviceKey string
	// TimeColumn names the time column (default "time"); TimeLayout and
	// TimeZone say how it is written (see codec.ParseTimeFormat; default
	// unix_ms).
	TimeColumn, TimeLayout, TimeZone string
	// Points lists the columns to post (default: every column but the key
	// and time). Numbers and true/false are posted as such, other text as
	// strings; empty cells are left out.
	Points []string
	// Comma separates fields (default ',').
	Comma byte
	// Loop starts over at the end of the file.
	Loop bool
}

// replayer reads the file of a Replay.
type replayer struct {
	cfg     Replay
	header  []string
	points  []string
	mapping *codec.Mapping
	tf      codec.TimeFormat
}

func newReplayer(r *Replay) (*replayer, error) {
	cfg := *r
	if cfg.TimeColumn == "" {
		cfg.TimeColumn = "time"
	}
	if (cfg.KeyColumn == "") == (cfg.DeviceKey == "") {
		return nil, errors.New("devsim replay: set KeyColumn or DeviceKey")
	}
	tf, err := codec.ParseTimeFormat(cfg.TimeLayout, cfg.TimeZone)
	if err != nil {
		return nil, fmt.Errorf("devsim replay: %w", err)
	}
	f, err := os.Open(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("devsim replay: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return nil, fmt.Errorf("devsim replay: %s has no header line", cfg.Path)
	}
	header, err := codec.ParseCSVHeader(sc.Bytes(), cfg.Comma)
	if err != nil {
		return nil, fmt.Errorf("devsim replay: %s header: %w", cfg.Path, err)
	}
	for _, c := range []string{cfg.TimeColumn, cfg.KeyColumn} {
		if c != "" && !slices.Contains(header, c) {
			return nil, fmt.Errorf("devsim replay: %s has no column %q", cfg.Path, c)
		}
	}
	points := cfg.Points
	if len(points) == 0 {
		for _, h := range header {
			if h != cfg.TimeColumn && h != cfg.KeyColumn && h != "" {
				points = append(points, h)
			}
		}
	}
	// Every point is read as text and typed when posted; the time and
	// key columns come first.
	fields := []engine.Field{{Name: "time", Type: engine.Timestamp}, {Name: "key", Type: engine.String}}
	sources := map[string]string{"time": cfg.TimeColumn}
	if cfg.KeyColumn != "" {
		sources["key"] = cfg.KeyColumn
	}
	for i, p := range points {
		if !slices.Contains(header, p) {
			return nil, fmt.Errorf("devsim replay: %s has no column %q", cfg.Path, p)
		}
		name := "p" + strconv.Itoa(i)
		fields = append(fields, engine.Field{Name: name, Type: engine.String})
		sources[name] = p
	}
	schema, err := engine.NewSchema(fields, "time", "key")
	if err != nil {
		return nil, err
	}
	m, err := codec.NewMapping(schema, sources)
	if err != nil {
		return nil, err
	}
	if _, err := codec.NewCSV(m, codec.CSVOptions{Header: header, Comma: cfg.Comma, Time: tf}); err != nil {
		return nil, fmt.Errorf("devsim replay: %w", err)
	}
	return &replayer{cfg: cfg, header: header, points: points, mapping: m, tf: tf}, nil
}

// post is one replayed row ready to publish.
type post struct {
	topic   string
	payload []byte
	points  int64
}

// read sends the posts of the file (of every round, with Loop) to out
// until ctx ends; bad lines are counted and skipped.
func (r *replayer) read(ctx context.Context, productKey string, bad *atomic.Int64, out func(device string, p post) bool) error {
	dec, err := codec.NewCSV(r.mapping, codec.CSVOptions{Header: r.header, Comma: r.cfg.Comma, Time: r.tf})
	if err != nil {
		return err
	}
	rb := engine.NewRecordBuilder(memory.DefaultAllocator, r.mapping.Schema)
	defer rb.Release()
	topics := map[string]string{}
	var id int64
	var members []byte
	for {
		f, err := os.Open(r.cfg.Path)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		sc.Scan() // the header
		for sc.Scan() {
			if ctx.Err() != nil {
				f.Close()
				return nil
			}
			if _, err := dec.Decode(rb, sc.Bytes(), r.cfg.DeviceKey); err != nil {
				bad.Add(1)
				continue
			}
			rec := rb.NewRecord()
			ts := rec.Column(0).(*array.Timestamp).Value(0)
			key := rec.Column(1).(*array.String).Value(0)
			members = members[:0]
			n := int64(0)
			for i, name := range r.points {
				col := rec.Column(2 + i).(*array.String)
				if col.IsNull(0) || col.Value(0) == "" {
					continue
				}
				if n > 0 {
					members = append(members, ',')
				}
				members = codec.AppendJSONString(members, name)
				members = append(members, ':')
				members = appendValue(members, col.Value(0))
				n++
			}
			rec.Release()
			topic, ok := topics[key]
			if !ok {
				topic = codec.PostTopicFor(productKey, key)
				topics[key] = topic
			}
			id++
			if !out(key, post{topic: topic, payload: appendPost(nil, id, "thing.measurepoint.post", members, int64(ts)), points: n}) {
				f.Close()
				return nil
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil || !r.cfg.Loop {
			return err
		}
	}
}

// appendValue appends a text cell as a JSON number, bool or string.
func appendValue(dst []byte, v string) []byte {
	if f, err := strconv.ParseFloat(v, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
		return strconv.AppendFloat(dst, f, 'g', -1, 64)
	}
	if b, err := strconv.ParseBool(v); err == nil {
		return strconv.AppendBool(dst, b)
	}
	return codec.AppendJSONString(dst, v)
}

// runReplay publishes the file's rows over the connections; each device's
// rows go through one worker, so they stay in order.
func (s *Sim) runReplay(ctx context.Context, conns []*conn, workers int, budget *atomic.Int64, wg *sync.WaitGroup) {
	chans := make([]chan post, workers)
	for w := range chans {
		chans[w] = make(chan post, 256)
		wg.Go(func() {
			p := newPacer(s.cfg.Rate, workers)
			c := conns[w%len(conns)]
			for item := range chans[w] {
				if !p.wait(ctx) {
					continue // drain
				}
				s.send(ctx, c, item.topic, byte(s.cfg.QoS), item.payload, item.points)
			}
		})
	}
	seed := maphash.MakeSeed()
	wg.Go(func() {
		defer func() {
			for _, ch := range chans {
				close(ch)
			}
		}()
		err := s.replay.read(ctx, s.cfg.ProductKey, &s.skipped, func(device string, p post) bool {
			if !take(budget) {
				return false
			}
			select {
			case chans[maphash.String(seed, device)%uint64(workers)] <- p:
				return true
			case <-ctx.Done():
				return false
			}
		})
		if err != nil {
			s.errCount.Add(1)
			s.cfg.Log.Error("devsim: replay", "err", err)
		}
	})
}
