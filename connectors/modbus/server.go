// Package modbus is a Modbus TCP server on the edge for third-party control
// systems (a plant controller, a SCADA): a map declared in the
// configuration ties holding registers and coils to assets' measure points
// and set-points. A read returns the latest measured value the server was
// fed (see Server.Update and the "modbus" sink); a write becomes a command
// of origin third-party that goes through the command path
// (engine/control's Submitter, the arbiter; engine.BuildContext.Commands
// for the sink) like every other command, so that leases and priorities
// hold for it too.
//
// Modbus has no authentication: the server binds 127.0.0.1 unless told
// otherwise, and a server that listens elsewhere must name the clients it
// serves (Options.Allow). It is built on github.com/simonvetter/modbus.
package modbus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mb "github.com/simonvetter/modbus"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/control"
	"github.com/sluice-edge/sluice/engine/lograte"
)

// DefaultListen is where a server listens unless configured: loopback
// only, on the unprivileged port 5020 (Modbus's own, 502, needs
// privileges).
const DefaultListen = "127.0.0.1:5020"

// Options configures a Server.
type Options struct {
	// Listen is the host:port to listen on (default DefaultListen). A
	// host other than a loopback address needs Allow.
	Listen string
	// Allow lists the clients served: IP addresses or CIDR prefixes. Empty
	// serves loopback clients only. Connections of other clients are
	// closed at once and counted as refused: they hold none of the
	// MaxClients connections.
	Allow []netip.Prefix
	// UnitID, when not 0, is the only unit id answered; others get
	// exception 0x0B as well.
	UnitID uint8
	// MaxClients bounds the concurrent connections of allowed clients
	// (default 8);
	// IdleTimeout closes a connection idle for this long (default 60s).
	MaxClients  int
	IdleTimeout time.Duration
	// Entries is the map.
	Entries []Entry
	// Submitter takes the commands writes become (the control arbiter).
	// Without one, writes are answered with exception 0x04 (server device
	// failure).
	Submitter control.Submitter
	// Origin names the commands' origin; the client's address is
	// appended (default "third-party:modbus", giving
	// "third-party:modbus@10.0.0.7").
	Origin string
	// Expire is how long a command from a write stays valid (default
	// 30s): one still queued then is never executed. SubmitTimeout bounds
	// the wait for the arbiter's decision (default 5s).
	Expire, SubmitTimeout time.Duration
	// Clock is the time source of expiries (default command.SystemClock).
	Clock command.Clock
	// Log receives refused clients and failed commands; nil discards them.
	Log *slog.Logger
	// Counters, when set, holds the server's counts (see Stats) as
	// modbus_reads, modbus_writes, modbus_exceptions, modbus_refused,
	// commands_submitted and commands_rejected.
	Counters *engine.Counters
}

// ref locates one register (or coil) of an entry.
type ref struct {
	entry int32
	word  int32 // 0 or 1
}

// Stats counts what a server did.
type Stats struct {
	// Reads and Writes are the requests answered normally; Exceptions
	// those answered with an exception; Refused the requests of clients
	// not allowed (or for another unit id).
	Reads, Writes, Exceptions, Refused int64
	// Commands submitted, and Rejected by the arbiter (or expired).
	Commands, Rejected int64
}

// Server serves a Modbus map. It is safe for concurrent use.
type Server struct {
	opts    Options
	entries []Entry
	regs    map[uint16]ref
	coils   map[uint16]ref
	// values holds each entry's latest value: ^math.Float64bits, 0 when
	// none has arrived.
	values  []atomic.Uint64
	byPoint map[assetPoint][]int32 // measure points fed by Update
	loopOK  bool

	srv     *mb.ModbusServer
	mu      sync.Mutex
	started bool
	closed  bool

	// The server's own listener takes the connections: a client not
	// allowed is closed at once and holds no slot; an allowed one is
	// piped to the library's server on a loopback port (inner), whose
	// requests name the pipe's address, which clients maps back to the
	// client's.
	ln       net.Listener
	inner    string
	slots    chan struct{}
	clients  map[string]string     // pipe's address -> client's address
	conns    map[net.Conn]struct{} // open client connections
	wg       sync.WaitGroup
	connLogs *logWriter

	reads, writes, exceptions, refused, commands, rejected *atomic.Int64
}

type assetPoint struct{ asset, point string }

// New checks opts and returns a server; Start listens.
func New(opts Options) (*Server, error) {
	if opts.Listen == "" {
		opts.Listen = DefaultListen
	}
	host, port, err := net.SplitHostPort(opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("modbus: listen %q: %w", opts.Listen, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return nil, fmt.Errorf("modbus: listen %q: bad port", opts.Listen)
	}
	if !isLoopback(host) && len(opts.Allow) == 0 {
		return nil, fmt.Errorf("modbus: listen %q is not a loopback address: Modbus has no authentication, so name the clients to serve (allow)", opts.Listen)
	}
	if opts.MaxClients <= 0 {
		opts.MaxClients = 8
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = time.Minute
	}
	if opts.Origin == "" {
		opts.Origin = control.OriginThirdParty + ":modbus"
	}
	if opts.Expire <= 0 {
		opts.Expire = 30 * time.Second
	}
	if opts.SubmitTimeout <= 0 {
		opts.SubmitTimeout = 5 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = command.SystemClock{}
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if len(opts.Entries) > MaxEntries {
		return nil, fmt.Errorf("modbus: %d map entries, more than %d", len(opts.Entries), MaxEntries)
	}
	s := &Server{opts: opts, entries: make([]Entry, len(opts.Entries)), regs: map[uint16]ref{}, coils: map[uint16]ref{},
		values: make([]atomic.Uint64, len(opts.Entries)), byPoint: map[assetPoint][]int32{}, loopOK: len(opts.Allow) == 0}
	copy(s.entries, opts.Entries)
	counter := func(name string) *atomic.Int64 {
		if opts.Counters != nil {
			return opts.Counters.Counter(name)
		}
		return new(atomic.Int64)
	}
	s.reads, s.writes, s.exceptions = counter("modbus_reads"), counter("modbus_writes"), counter("modbus_exceptions")
	s.refused, s.commands, s.rejected = counter("modbus_refused"), counter("commands_submitted"), counter("commands_rejected")
	for i := range s.entries {
		e := &s.entries[i]
		if err := e.check(); err != nil {
			return nil, fmt.Errorf("modbus: map entry %d (%s %d): %w", i, tableName(e.Table), e.Address, err)
		}
		tab := s.regs
		if e.Table == Coils {
			tab = s.coils
		}
		for w := range e.words() {
			a := e.Address + uint16(w)
			if prev, ok := tab[a]; ok {
				return nil, fmt.Errorf("modbus: map entry %d (%s %d) overlaps entry %d at address %d", i, tableName(e.Table), e.Address, prev.entry, a)
			}
			tab[a] = ref{entry: int32(i), word: int32(w)}
		}
		if e.Point != "" {
			k := assetPoint{e.Asset, e.Point}
			s.byPoint[k] = append(s.byPoint[k], int32(i))
		}
	}
	return s, nil
}

func tableName(t Table) string {
	if t == Coils {
		return "coil"
	}
	return "holding register"
}

// isLoopback reports whether host names only the loopback interface.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// Start listens and serves until Close.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("modbus: server closed")
	}
	if s.started {
		return nil
	}
	ln, err := net.Listen("tcp", s.opts.Listen)
	if err != nil {
		return fmt.Errorf("modbus: listen %s: %w", s.opts.Listen, err)
	}
	// The library binds the port it is given and does not say which:
	// a free loopback port is picked, again if another took it meanwhile.
	var srv *mb.ModbusServer
	for range 10 {
		var l net.Listener
		if l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			break
		}
		inner := l.Addr().String()
		_ = l.Close()
		// Its own bound leaves room beyond MaxClients (enforced by accept)
		// for local processes connecting to it directly: their requests
		// are refused (no client behind them), but they hold a connection
		// until idle.
		srv, err = mb.NewServer(&mb.ServerConfiguration{
			URL: "tcp://" + inner, Timeout: s.opts.IdleTimeout, MaxClients: uint(s.opts.MaxClients) + 64,
			Logger: log.New(newLogWriter(s.opts.Log, 10*time.Second, 10), "", 0),
		}, handler{s})
		if err != nil {
			break
		}
		if err = srv.Start(); err == nil {
			s.inner = inner
			break
		}
	}
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("modbus: %w", err)
	}
	s.srv, s.ln, s.started = srv, ln, true
	s.slots = make(chan struct{}, s.opts.MaxClients)
	s.clients, s.conns = map[string]string{}, map[net.Conn]struct{}{}
	s.connLogs = newLogWriter(s.opts.Log, 10*time.Second, 10)
	s.wg.Add(1)
	go s.accept()
	return nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return s.ln.Addr().String()
	}
	return s.opts.Listen
}

// accept takes the connections: those of clients not allowed are closed
// at once (counted as refused), the others served while a slot is free.
func (s *Server) accept() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // out of descriptors, say
			continue
		}
		client := conn.RemoteAddr().String()
		if !s.allowedClient(client) {
			s.refused.Add(1)
			fmt.Fprintf(s.connLogs, "connection of a client not allowed closed: %s", client)
			_ = conn.Close()
			continue
		}
		select {
		case s.slots <- struct{}{}:
		default:
			fmt.Fprintf(s.connLogs, "max_clients (%d) connections open: %s refused", s.opts.MaxClients, client)
			_ = conn.Close()
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = conn.Close()
			<-s.slots
			return
		}
		s.conns[conn] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.pipe(conn, client)
	}
}

// pipe serves one allowed client through the library's server.
func (s *Server) pipe(conn net.Conn, client string) {
	defer s.wg.Done()
	defer func() { <-s.slots }()
	defer func() {
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
		_ = conn.Close()
	}()
	up, err := net.DialTimeout("tcp", s.inner, 5*time.Second)
	if err != nil {
		return
	}
	key := up.LocalAddr().String()
	s.mu.Lock()
	s.clients[key] = client
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.clients, key)
		s.mu.Unlock()
	}()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(conn, up) // answers; ends when the library closes (idle)
		_ = conn.Close()
	}()
	_, _ = io.Copy(up, conn) // requests; ends when the client closes
	_ = up.Close()
	<-done
}

// client returns the address of the client behind the library's view
// of a connection (the pipe's address); "" when it is no pipe of ours.
func (s *Server) client(libAddr string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clients[libAddr]
}

// logWriter passes the library's log lines on at level warn, at most
// burst lines per period (a flood of refused connections must not flood
// the log); the number left out is logged with the next line let through.
type logWriter struct {
	log   *slog.Logger
	mu    sync.Mutex
	limit lograte.Limiter
}

func newLogWriter(log *slog.Logger, every time.Duration, burst int) *logWriter {
	return &logWriter{log: log, limit: lograte.Limiter{Interval: every, Burst: burst}}
}

func (w *logWriter) Write(p []byte) (int, error) {
	n := len(p)
	w.mu.Lock()
	ok, left := w.limit.Allow(time.Now())
	w.mu.Unlock()
	if !ok {
		return n, nil
	}
	if len(p) > 512 {
		p = p[:512]
	}
	if left > 0 {
		w.log.Warn("modbus: "+strings.TrimSpace(string(p)), "left_out_before", left)
	} else {
		w.log.Warn("modbus: " + strings.TrimSpace(string(p)))
	}
	return n, nil
}

// Close stops listening and closes every connection. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.srv == nil {
		return nil
	}
	_ = s.ln.Close()
	for c := range s.conns {
		_ = c.Close()
	}
	err := s.srv.Stop()
	s.mu.Unlock()
	s.wg.Wait()
	s.mu.Lock()
	return err
}

// Update records the latest value of an asset's measure point; reads of
// the entries mapping it return it from then on. It reports whether the
// map has such an entry. It does not allocate.
func (s *Server) Update(asset, point string, v float64) bool {
	idx, ok := s.byPoint[assetPoint{asset, point}]
	for _, i := range idx {
		s.values[i].Store(^math.Float64bits(v))
	}
	return ok
}

// entryValue returns the entry's latest value, NaN when none arrived.
func (s *Server) entryValue(i int32) float64 {
	b := s.values[i].Load()
	if b == 0 {
		return math.NaN()
	}
	return math.Float64frombits(^b)
}

// Stats returns what the server has done so far.
func (s *Server) Stats() Stats {
	return Stats{Reads: s.reads.Load(), Writes: s.writes.Load(), Exceptions: s.exceptions.Load(), Refused: s.refused.Load(),
		Commands: s.commands.Load(), Rejected: s.rejected.Load()}
}

// allowed reports whether a client (ip:port) may be served.
func (s *Server) allowed(clientAddr string, unit uint8) bool {
	if s.opts.UnitID != 0 && unit != s.opts.UnitID {
		return false
	}
	return s.allowedClient(clientAddr)
}

// allowedClient reports whether a client (ip:port) may connect.
func (s *Server) allowedClient(clientAddr string) bool {
	ap, err := netip.ParseAddrPort(clientAddr)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	if s.loopOK {
		return a.IsLoopback()
	}
	for _, p := range s.opts.Allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// handler answers the library's requests.
type handler struct{ s *Server }

// errRefused answers clients that are not allowed: exception 0x0B.
var errRefused = mb.ErrGWTargetFailedToRespond

func (h handler) refuse(clientAddr string) error {
	h.s.refused.Add(1)
	h.s.opts.Log.Debug("modbus: request of a client not allowed", "client", clientAddr)
	return errRefused
}

func (h handler) fail(err error) error {
	h.s.exceptions.Add(1)
	return err
}

// HandleCoils reads and writes coils.
func (h handler) HandleCoils(req *mb.CoilsRequest) ([]bool, error) {
	req.ClientAddr = h.s.client(req.ClientAddr)
	s := h.s
	if !s.allowed(req.ClientAddr, req.UnitId) {
		return nil, h.refuse(req.ClientAddr)
	}
	if req.IsWrite {
		if len(req.Args) != int(req.Quantity) {
			return nil, h.fail(mb.ErrIllegalDataValue)
		}
		vals := make([]float64, len(req.Args))
		for k, b := range req.Args {
			if b {
				vals[k] = 1
			}
		}
		return nil, h.write(s.coils, req.ClientAddr, req.Addr, vals, nil)
	}
	return h.readCoils(req.Addr, req.Quantity)
}

// HandleDiscreteInputs reads the coils' map.
func (h handler) HandleDiscreteInputs(req *mb.DiscreteInputsRequest) ([]bool, error) {
	req.ClientAddr = h.s.client(req.ClientAddr)
	if !h.s.allowed(req.ClientAddr, req.UnitId) {
		return nil, h.refuse(req.ClientAddr)
	}
	return h.readCoils(req.Addr, req.Quantity)
}

func (h handler) readCoils(addr, n uint16) ([]bool, error) {
	return readTable(h, h.s.coils, addr, n, func(r ref) bool {
		v := h.s.entryValue(r.entry)
		return v != 0 && !math.IsNaN(v)
	})
}

// HandleHoldingRegisters reads and writes holding registers.
func (h handler) HandleHoldingRegisters(req *mb.HoldingRegistersRequest) ([]uint16, error) {
	req.ClientAddr = h.s.client(req.ClientAddr)
	s := h.s
	if !s.allowed(req.ClientAddr, req.UnitId) {
		return nil, h.refuse(req.ClientAddr)
	}
	if req.IsWrite {
		if len(req.Args) != int(req.Quantity) {
			return nil, h.fail(mb.ErrIllegalDataValue)
		}
		return nil, h.write(s.regs, req.ClientAddr, req.Addr, nil, req.Args)
	}
	return h.readRegisters(req.Addr, req.Quantity)
}

// HandleInputRegisters reads the holding registers' map.
func (h handler) HandleInputRegisters(req *mb.InputRegistersRequest) ([]uint16, error) {
	req.ClientAddr = h.s.client(req.ClientAddr)
	if !h.s.allowed(req.ClientAddr, req.UnitId) {
		return nil, h.refuse(req.ClientAddr)
	}
	return h.readRegisters(req.Addr, req.Quantity)
}

func (h handler) readRegisters(addr, n uint16) ([]uint16, error) {
	s := h.s
	return readTable(h, s.regs, addr, n, func(r ref) uint16 {
		hi, lo := s.entries[r.entry].encode(s.entryValue(r.entry))
		if r.word == 0 {
			return hi
		}
		return lo
	})
}

// readTable reads n consecutive addresses from addr in tab, turning each
// mapped ref into a value with conv. An unmapped address fails the whole
// read with an illegal-data-address exception; a complete read counts once.
func readTable[T any](h handler, tab map[uint16]ref, addr, n uint16, conv func(ref) T) ([]T, error) {
	out := make([]T, n)
	for k := range int(n) {
		r, ok := tab[addr+uint16(k)]
		if !ok {
			return nil, h.fail(mb.ErrIllegalDataAddress)
		}
		out[k] = conv(r)
	}
	h.s.reads.Add(1)
	return out, nil
}

// write turns a write of whole entries into one command per asset: coils
// carry vals, registers words. Every entry must be writable and wholly
// covered, or nothing is submitted.
func (h handler) write(tab map[uint16]ref, client string, addr uint16, vals []float64, words []uint16) error {
	s := h.s
	n := len(vals) + len(words)
	type set struct {
		entry int32
		v     float64
	}
	var sets []set
	for k := 0; k < n; {
		r, ok := tab[addr+uint16(k)]
		if !ok || r.word != 0 {
			return h.fail(mb.ErrIllegalDataAddress)
		}
		e := &s.entries[r.entry]
		if e.Set == "" {
			return h.fail(mb.ErrIllegalDataAddress) // read-only
		}
		w := e.words()
		if k+w > n {
			return h.fail(mb.ErrIllegalDataAddress) // part of a value
		}
		var v float64
		if vals != nil {
			v = vals[k]
		} else {
			var w1 uint16
			if w == 2 {
				w1 = words[k+1]
			}
			var err error
			if v, err = e.decode(words[k], w1); err != nil {
				return h.fail(mb.ErrIllegalDataValue)
			}
		}
		sets = append(sets, set{r.entry, v})
		k += w
	}
	if s.opts.Submitter == nil {
		return h.fail(mb.ErrServerDeviceFailure)
	}
	// One command per asset, in the order of the registers; one per
	// point for a device whose transport carries one point per command
	// (a generic JSON command topic, control.OnePointer).
	op, _ := s.opts.Submitter.(control.OnePointer)
	var cmds []control.Command
	var which [][]set
	for _, st := range sets {
		e := &s.entries[st.entry]
		onePoint := op != nil && op.OnePoint(e.Product, e.Asset)
		j := -1
		for i := range cmds {
			if cmds[i].Asset == e.Asset && cmds[i].Product == e.Product && !onePoint {
				j = i
				break
			}
		}
		if j < 0 {
			host := client
			if ap, err := netip.ParseAddrPort(client); err == nil {
				host = ap.Addr().Unmap().String()
			}
			cmds = append(cmds, control.Command{Product: e.Product, Asset: e.Asset, Service: command.SetPoints,
				Inputs: map[string]any{}, Origin: s.opts.Origin + "@" + host, Expiry: s.opts.Clock.Now().Add(s.opts.Expire)})
			which = append(which, nil)
			j = len(cmds) - 1
		}
		cmds[j].Inputs[e.Set] = st.v
		which[j] = append(which[j], st)
	}
	var failed error
	for i, c := range cmds {
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.SubmitTimeout)
		rec, err := s.opts.Submitter.Submit(ctx, c)
		cancel()
		if err != nil {
			s.rejected.Add(1)
			s.opts.Log.Warn("modbus: command refused", "asset", c.Asset, "origin", c.Origin, "status", rec.Status, "err", err)
			switch {
			case errors.Is(err, control.ErrBadSetPoint):
				// A value the asset's thing model refuses (or not a
				// finite number): the value is wrong, not the moment.
				failed = cmp(failed, mb.ErrIllegalDataValue)
			case errors.Is(err, control.ErrRejected), errors.Is(err, control.ErrExpired):
				failed = cmp(failed, mb.ErrServerDeviceBusy)
			case errors.Is(err, control.ErrInvalid):
				failed = cmp(failed, mb.ErrIllegalDataValue)
			default:
				failed = cmp(failed, mb.ErrServerDeviceFailure)
			}
			continue
		}
		s.commands.Add(1)
		for _, st := range which[i] {
			if s.entries[st.entry].Point == "" { // write-only: reads give back what was written
				s.values[st.entry].Store(^math.Float64bits(st.v))
			}
		}
	}
	if failed != nil {
		return h.fail(failed)
	}
	s.writes.Add(1)
	return nil
}

// cmp keeps the first error.
func cmp(first, err error) error {
	if first != nil {
		return first
	}
	return err
}
