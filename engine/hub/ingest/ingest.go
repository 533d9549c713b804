package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/hub/store"
)

// Store is what Ingest writes to; *store.Store is one.
type Store interface {
	InsertRows(ctx context.Context, rows []store.Row) (store.Inserted, error)
	ApplyAlert(ctx context.Context, a store.AlertRecord, msgID string) error
}

// AlertBatcher is a Store that applies the alert records of a batch in
// one transaction (*store.Store): when one fails, none is applied and the
// error is a *store.RowError whose Index is that record's.
type AlertBatcher interface {
	ApplyAlerts(ctx context.Context, alerts []store.AlertRecord, msgIDs []string) error
}

// Defaults of Options.
const (
	DefaultFetchMessages = 256
	DefaultFetchWait     = time.Second
	DefaultAckWait       = 30 * time.Second
	DefaultMaxAckPending = 4096
	DefaultNakDelay      = 2 * time.Second
)

// Options configure an Ingest.
type Options struct {
	// Stream is the JetStream stream the edges' data lands in.
	Stream string
	// Durable names the consumer. Every hub instance uses the same name,
	// so they share the work.
	Durable string
	// FilterSubjects select the stream's subjects to read (all when
	// empty).
	FilterSubjects []string
	// FetchMessages bounds the messages of one batch; FetchWait how long a
	// fetch waits for them. The bytes of a batch are then bounded by
	// FetchMessages × the server's maximum payload.
	FetchMessages int
	FetchWait     time.Duration
	// FetchBytes, when positive, bounds a batch by bytes instead of
	// FetchMessages (its messages are then bounded by MaxAckPending).
	FetchBytes int
	// AckWait is how long the server waits for the ack of a delivered
	// message before redelivering it: how soon another instance takes
	// over the messages of an instance that died holding them. A batch
	// whose write takes longer is kept (InProgress every AckWait/3).
	AckWait time.Duration
	// MaxAckPending bounds the messages delivered and not yet acked,
	// across all instances.
	MaxAckPending int
	// NakDelay is how long a message waits before redelivery after a
	// store error.
	NakDelay time.Duration
	// Limits bound each message.
	Limits Limits
	// Check, when set, is asked about every decoded message with the
	// subject it came on; an error makes the message poison. A hub uses
	// it to tie a message's edge to its subject's.
	Check func(subject string, d *Decoded) error
	// Log receives poison messages and store errors (default: discard).
	Log *slog.Logger
}

// Stats is a snapshot of an Ingest's counters.
type Stats struct {
	// Rows and Alerts count rows and alert records written (including
	// those the store already held); Messages the messages acked after a
	// write; Poison the messages terminated as poison; Redelivered the
	// messages delivered more than once; Batches the fetched batches
	// written; StoreErrors the batches nak'ed after a store error.
	Rows, Alerts, Messages, Poison, Redelivered, Batches, StoreErrors uint64
	// Conflicts counts the rows whose key the store held with other
	// content, kept apart (store.Inserted.Conflicts): the edge sent a
	// sequence again with other data, as after its buffer was reset.
	Conflicts uint64
	// Lag is the number of messages of the consumer not yet delivered, as
	// of the last consumer info (at most a second old while running).
	Lag uint64
}

// Ingest reads edge data and alerts from a durable JetStream consumer
// and writes them to a Store.
type Ingest struct {
	js    jetstream.JetStream
	st    Store
	opts  Options
	log   *slog.Logger
	stats struct {
		rows, alerts, messages, poison, redelivered, batches, storeErrors, conflicts, lag atomic.Uint64
	}
	infoMu sync.Mutex
	infoAt time.Time
}

// New returns an Ingest; Run starts it.
func New(js jetstream.JetStream, st Store, opts Options) (*Ingest, error) {
	if opts.Stream == "" || opts.Durable == "" {
		return nil, errors.New("ingest: stream and durable name are required")
	}
	if opts.FetchMessages <= 0 {
		opts.FetchMessages = DefaultFetchMessages
	}
	if opts.FetchWait <= 0 {
		opts.FetchWait = DefaultFetchWait
	}
	if opts.AckWait <= 0 {
		opts.AckWait = DefaultAckWait
	}
	if opts.MaxAckPending <= 0 {
		opts.MaxAckPending = DefaultMaxAckPending
	}
	if opts.NakDelay <= 0 {
		opts.NakDelay = DefaultNakDelay
	}
	opts.Limits = opts.Limits.withDefaults()
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Ingest{js: js, st: st, opts: opts, log: log}, nil
}

// Stats returns a snapshot of the counters.
func (g *Ingest) Stats() Stats {
	s := &g.stats
	return Stats{Rows: s.rows.Load(), Alerts: s.alerts.Load(), Messages: s.messages.Load(), Poison: s.poison.Load(),
		Redelivered: s.redelivered.Load(), Batches: s.batches.Load(), StoreErrors: s.storeErrors.Load(),
		Conflicts: s.conflicts.Load(), Lag: s.lag.Load()}
}

// consumerConfig is the durable consumer every instance creates or
// updates identically.
func (g *Ingest) consumerConfig() jetstream.ConsumerConfig {
	c := jetstream.ConsumerConfig{
		Durable:       g.opts.Durable,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       g.opts.AckWait,
		MaxAckPending: g.opts.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	switch len(g.opts.FilterSubjects) {
	case 0:
	case 1:
		c.FilterSubject = g.opts.FilterSubjects[0]
	default:
		c.FilterSubjects = g.opts.FilterSubjects
	}
	return c
}

// Run consumes until ctx ends, and returns nil then; it returns an error
// when the consumer cannot be created. Messages fetched and not yet
// written when ctx ends are nak'ed so another instance takes them at once.
func (g *Ingest) Run(ctx context.Context) error {
	cons, err := g.js.CreateOrUpdateConsumer(ctx, g.opts.Stream, g.consumerConfig())
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("ingest: consumer %s on stream %s: %w", g.opts.Durable, g.opts.Stream, err)
	}
	for ctx.Err() == nil {
		var batch jetstream.MessageBatch
		if g.opts.FetchBytes > 0 {
			batch, err = cons.FetchBytes(g.opts.FetchBytes, jetstream.FetchMaxWait(g.opts.FetchWait))
		} else {
			batch, err = cons.Fetch(g.opts.FetchMessages, jetstream.FetchMaxWait(g.opts.FetchWait))
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if gone(err) {
				return fmt.Errorf("ingest: consumer %s on stream %s: %w", g.opts.Durable, g.opts.Stream, err)
			}
			g.log.Warn("ingest: fetch", "consumer", g.opts.Durable, "err", err)
			if !engine.Sleep(ctx, g.opts.FetchWait) {
				return nil
			}
			continue
		}
		var msgs []jetstream.Msg
		for m := range batch.Messages() {
			msgs = append(msgs, m)
		}
		berr := batch.Error()
		if berr != nil && !errors.Is(berr, jetstream.ErrNoMessages) && ctx.Err() == nil {
			g.log.Debug("ingest: fetch ended", "consumer", g.opts.Durable, "err", berr)
		}
		if len(msgs) > 0 {
			g.process(ctx, msgs)
		}
		if berr != nil && gone(berr) && ctx.Err() == nil {
			return fmt.Errorf("ingest: consumer %s on stream %s: %w", g.opts.Durable, g.opts.Stream, berr)
		}
		g.updateLag(ctx, cons)
	}
	return nil
}

// gone reports whether a fetch failed because the consumer, its stream or
// JetStream itself is not there (NATS came back without its storage or
// without JetStream): fetching again cannot help, the consumer must be
// created again.
func gone(err error) bool {
	return errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
		errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) || errors.Is(err, natsgo.ErrNoResponders)
}

// updateLag refreshes Stats.Lag from the consumer info, at most once a
// second.
func (g *Ingest) updateLag(ctx context.Context, cons jetstream.Consumer) {
	g.infoMu.Lock()
	defer g.infoMu.Unlock()
	if time.Since(g.infoAt) < time.Second {
		return
	}
	g.infoAt = time.Now()
	info, err := cons.Info(ctx)
	if err != nil {
		return
	}
	g.stats.lag.Store(info.NumPending)
}

// item is one fetched message and what it decoded to.
type item struct {
	msg jetstream.Msg
	dec *Decoded
}

// process decodes a batch, terminates poison messages, writes the rest and
// acks them after the write, or naks them after a store error.
func (g *Ingest) process(ctx context.Context, msgs []jetstream.Msg) {
	defer g.keepAlive(msgs)()
	items := make([]item, 0, len(msgs))
	for _, m := range msgs {
		if md, err := m.Metadata(); err == nil && md.NumDelivered > 1 {
			g.stats.redelivered.Add(1)
		}
		d, err := Decode(Headers(m.Headers()), m.Data(), g.opts.Limits)
		if err == nil && g.opts.Check != nil {
			if cerr := g.opts.Check(m.Subject(), d); cerr != nil {
				err = fmt.Errorf("%w %.80q: %w", ErrPoison, d.MsgID, cerr)
			}
		}
		if err != nil {
			g.terminate(m, err)
			continue
		}
		items = append(items, item{msg: m, dec: d})
	}
	g.write(ctx, items)
	g.stats.batches.Add(1)
}

// write stores items and acks them, terminates those the store can never
// hold, and naks the rest after any other store error. A data error the
// store does not tie to a row (PostgreSQL refused a value) is narrowed
// down by halving the items until the one message that causes it is
// terminated: one hostile message never blocks the others.
func (g *Ingest) write(ctx context.Context, items []item) {
	for len(items) > 0 {
		n := 0
		for _, it := range items {
			n += len(it.dec.Rows)
		}
		if n > 0 {
			all := make([]store.Row, 0, n)
			for _, it := range items {
				all = append(all, it.dec.Rows...)
			}
			ins, err := g.st.InsertRows(ctx, all)
			if err != nil {
				var re *store.RowError
				switch {
				case errors.As(err, &re) && re.Index >= 0 && re.Index < n:
					// A row the store can never hold: its message is
					// poison; write the others again without it.
					bad := itemOf(items, re.Index)
					g.terminate(items[bad].msg, err)
					items = append(items[:bad], items[bad+1:]...)
					continue
				case store.IsDataError(err) && len(items) == 1:
					g.terminate(items[0].msg, err)
				case store.IsDataError(err):
					half := len(items) / 2
					g.write(ctx, items[:half])
					g.write(ctx, items[half:])
				default:
					g.fail(ctx, items, err)
				}
				return
			}
			g.conflicts(ins)
		}
		if ab, ok := g.st.(AlertBatcher); ok {
			var (
				recs  []store.AlertRecord
				ids   []string
				owner []int
			)
			for k, it := range items {
				for _, a := range it.dec.Alerts {
					recs, ids, owner = append(recs, a.Record), append(ids, a.MsgID), append(owner, k)
				}
			}
			if len(recs) > 0 {
				err := ab.ApplyAlerts(ctx, recs, ids)
				var re *store.RowError
				switch {
				case err == nil:
				case errors.As(err, &re) && re.Index >= 0 && re.Index < len(recs) && store.IsDataError(err):
					// A record that can never be stored: its message
					// is poison; write the others again without it
					// (their rows are stored already, a no-op).
					bad := owner[re.Index]
					g.terminate(items[bad].msg, err)
					items = append(items[:bad], items[bad+1:]...)
					continue
				default:
					g.fail(ctx, items, err)
					return
				}
			}
			g.ack(items)
			return
		}
		for i := 0; i < len(items); i++ {
			for _, a := range items[i].dec.Alerts {
				err := g.st.ApplyAlert(ctx, a.Record, a.MsgID)
				if err == nil {
					continue
				}
				if store.IsDataError(err) {
					// This record can never be stored; its message is
					// poison (its rows, if any, are stored already).
					g.ack(items[:i])
					g.terminate(items[i].msg, err)
					items = items[i+1:]
					i = -1
					break
				}
				g.fail(ctx, items[i:], err)
				g.ack(items[:i])
				return
			}
		}
		g.ack(items)
		return
	}
}

// itemOf returns the index of the item that holds row i of the items'
// rows taken in order.
func itemOf(items []item, i int) int {
	for k, it := range items {
		if i < len(it.dec.Rows) {
			return k
		}
		i -= len(it.dec.Rows)
	}
	return len(items) - 1
}

// keepAlive tells the server every AckWait/3 that msgs are still being
// worked on, until the returned function is called: a slow write is not
// redelivered to another instance, while the messages of an instance that
// died are redelivered after AckWait. A message already acked, nak'ed or
// terminated ignores it.
func (g *Ingest) keepAlive(msgs []jetstream.Msg) (stop func()) {
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		tick := time.NewTicker(max(g.opts.AckWait/3, time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				for _, m := range msgs {
					_ = m.InProgress()
				}
			}
		}
	}()
	return func() { close(done); <-exited }
}

// conflicts counts the rows the store kept as conflicts and logs their
// keys (never their values), one warning for the batch.
func (g *Ingest) conflicts(ins store.Inserted) {
	if ins.Conflicts == 0 {
		return
	}
	g.stats.conflicts.Add(uint64(ins.Conflicts))
	const shown = 8
	ranges := make([]string, 0, min(len(ins.ConflictRanges), shown+1))
	for i, r := range ins.ConflictRanges {
		if i == shown {
			ranges = append(ranges, fmt.Sprintf("%d more", len(ins.ConflictRanges)-shown))
			break
		}
		ranges = append(ranges, fmt.Sprintf("%.80s/%.80s seq %d-%d (%d rows)", r.Edge, r.Stream, r.First, r.Last, r.Rows))
	}
	g.log.Warn("ingest: rows reuse the sequences of stored rows with other content (was the edge's buffer reset?); kept in telemetry_conflicts",
		"consumer", g.opts.Durable, "rows", ins.Conflicts, "keys", strings.Join(ranges, ", "))
}

func (g *Ingest) ack(items []item) {
	for _, it := range items {
		if err := it.msg.Ack(); err != nil {
			g.log.Warn("ingest: ack", "msg", it.dec.MsgID, "err", err)
		}
		g.stats.messages.Add(1)
		g.stats.rows.Add(uint64(len(it.dec.Rows)))
		g.stats.alerts.Add(uint64(len(it.dec.Alerts)))
	}
}

// fail naks items after a store error: at once when ctx ended (another
// instance takes them), after NakDelay otherwise.
func (g *Ingest) fail(ctx context.Context, items []item, err error) {
	if ctx.Err() == nil {
		g.stats.storeErrors.Add(1)
		g.log.Warn("ingest: store", "messages", len(items), "err", err)
	}
	for _, it := range items {
		if ctx.Err() != nil {
			_ = it.msg.Nak()
		} else {
			_ = it.msg.NakWithDelay(g.opts.NakDelay)
		}
	}
}

// terminate sets a poison message aside for good, logging its subject, id
// and a short prefix of its payload.
func (g *Ingest) terminate(m jetstream.Msg, err error) {
	g.stats.poison.Add(1)
	data := m.Data()
	if len(data) > 32 {
		data = data[:32]
	}
	g.log.Error("ingest: poison message", "subject", m.Subject(), "id", fmt.Sprintf("%.80q", m.Headers().Get("Nats-Msg-Id")),
		"prefix", fmt.Sprintf("%q", data), "err", err)
	if terr := m.Term(); terr != nil {
		g.log.Warn("ingest: term", "err", terr)
	}
}
