package mqtt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sluice-edge/sluice/engine"
)

// lightClient is the source's connection, MQTT 3.1.1 or 5: a subscriber
// built on the packet codec of the embedded broker (mochi-mqtt), lighter
// per message than the general clients (client3, client5), which the sink
// and the downlink keep using.
//
// Per message it reads the packet from a buffered connection into a slab
// shared by many packets, decodes it in place (the topic and the payload
// point into the slab, which is never written again) and hands it to
// onMessage on the reading goroutine: no allocation per packet, no
// goroutine or channel between the socket and the source. QoS 1
// acknowledgements made together (ackMany) go out in one write.
//
// When packets come faster than one every cfg.readPace, reading pauses
// until readPace has passed since the last read from the socket, so that
// one wake-up and one system call take in many packets instead of one
// each.
type lightClient struct {
	cfg   clientConfig
	state connState
	flaps *flapGuard
	urls  []*url.URL

	ctx    context.Context // ends when the client stops
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns

	mu      sync.Mutex // guards the fields below; writes happen under it
	conn    net.Conn   // nil while down
	gen     uint64     // connection generation, advanced when one ends
	wbuf    bytes.Buffer
	nextID  uint16
	waiting map[uint16]chan *packets.Packet // SUBACK, UNSUBACK and PUBACK awaited
	started bool
	stopped bool

	wrote atomic.Bool // a packet was sent since the last keep-alive tick
	heard atomic.Bool // a packet was received since the last keep-alive tick
	// busy is set while onMessage holds the reader (backpressure): the
	// broker's silence then is the reader's, not the broker's.
	busy atomic.Bool
	// live is the connection up, for stop to cut a write the broker does
	// not take in without waiting for c.mu.
	live atomic.Pointer[net.Conn]
	// stopping is set when stop begins: writes from then on wait no
	// longer than stopWriteGrace.
	stopping atomic.Bool
	// inflight has a bit set for each packet id of a QoS 1 message
	// received on the connection up and not yet acknowledged; inflightN
	// counts them. Both are reset, under c.mu, when a connection goes up.
	inflight  [65536 / 64]atomic.Uint64
	inflightN atomic.Int64
}

// slabSize is the size of the slabs packets are read into; larger packets
// get a slab of their own.
const slabSize = 64 << 10

const (
	// maxControlPacket bounds every packet from the broker but PUBLISH: a
	// larger one closes the connection before its body is read.
	maxControlPacket = 256 << 10
	// publishHeadRoom is the room kept for the topic, packet id and
	// properties of a PUBLISH beyond the payload kept (maxPayload+1
	// bytes); what a longer PUBLISH has beyond is read and dropped.
	publishHeadRoom = 128 << 10
	// defaultMaxPayload is the most payload bytes kept of a PUBLISH when
	// the client's configuration names no limit.
	defaultMaxPayload = 1 << 20
	// stopWriteGrace bounds a write stop waits for: a broker that stopped
	// reading holds no write up longer.
	stopWriteGrace = 200 * time.Millisecond
)

func newLightClient(cfg clientConfig) *lightClient {
	c := &lightClient{cfg: cfg, flaps: newFlapGuard(cfg.ClientOptions), done: make(chan struct{}),
		waiting: map[uint16]chan *packets.Packet{}}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.state.init()
	return c
}

func (c *lightClient) start(context.Context) error {
	for _, s := range c.cfg.URLs {
		u, err := parseBrokerURL(s)
		if err != nil {
			return err
		}
		c.urls = append(c.urls, u)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped || c.started {
		return errors.New("mqtt: client stopped")
	}
	c.started = true
	go c.run()
	return nil
}

// run connects, and reconnects with backoff, until the client stops.
func (c *lightClient) run() {
	defer close(c.done)
	first := true
	for attempt := 0; ; attempt++ {
		if d := c.flaps.wait(attempt); d > 0 && !engine.Sleep(c.ctx, d) {
			return
		}
		if c.ctx.Err() != nil {
			return
		}
		conn, r, ka, err := c.connect(first)
		if err != nil {
			if c.ctx.Err() != nil {
				return
			}
			c.cfg.Log.Warn("mqtt: connection attempt failed", "client", clientTag(c.cfg.ClientID), "err", err)
			continue
		}
		first, attempt = false, -1
		c.flaps.up()
		c.mu.Lock()
		if c.stopped {
			c.mu.Unlock()
			_ = conn.Close()
			return
		}
		c.conn = conn
		c.live.Store(&conn)
		for i := range c.inflight {
			c.inflight[i].Store(0)
		}
		c.inflightN.Store(0)
		gen := c.gen
		c.mu.Unlock()

		kaStop := make(chan struct{})
		go c.keepAlive(conn, ka, kaStop)
		go c.subscribe(gen)
		err = c.read(r, gen)

		close(kaStop)
		_ = conn.Close()
		c.mu.Lock()
		c.conn = nil
		c.live.Store(nil)
		c.gen++
		for id, ch := range c.waiting {
			close(ch)
			delete(c.waiting, id)
		}
		stopped := c.stopped
		c.mu.Unlock()
		c.state.setDown()
		if stopped || c.ctx.Err() != nil {
			return
		}
		c.cfg.onDown(c.flaps.down(err))
	}
}

// connect opens a connection to the first broker that takes it and
// makes the MQTT connection; it returns the keep-alive interval to keep.
func (c *lightClient) connect(first bool) (net.Conn, *bufio.Reader, time.Duration, error) {
	o := c.cfg.ClientOptions
	ctx, cancel := context.WithTimeout(c.ctx, o.ConnectTimeout)
	defer cancel()
	var errs []error
	for _, u := range c.urls {
		conn, err := dialBroker(ctx, u, o.TLS)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r, ka, err := c.handshake(ctx, conn, first)
		if err != nil {
			_ = conn.Close()
			errs = append(errs, err)
			continue
		}
		return conn, r, ka, nil
	}
	return nil, nil, 0, errors.Join(errs...)
}

// handshake sends CONNECT and reads CONNACK; it returns the keep-alive
// interval: keep_alive, or an MQTT 5 broker's Server Keep Alive when it
// is shorter.
func (c *lightClient) handshake(ctx context.Context, conn net.Conn, first bool) (*bufio.Reader, time.Duration, error) {
	o := c.cfg.ClientOptions
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: byte(o.Version),
		Connect: packets.ConnectParams{
			ProtocolName:     []byte("MQTT"),
			ClientIdentifier: o.ClientID,
			Keepalive:        uint16(max(1, min(o.KeepAlive/time.Second, 65535))),
			// An MQTT 5 session ends with the connection when clean
			// (its expiry is 0): starting clean only the first time
			// keeps a persistent one across reconnections, as MQTT
			// 3.1.1's clean session flag does on every connection.
			Clean: o.CleanSession && (first || o.Version == 4),
		},
	}
	if o.Username != "" {
		pk.Connect.UsernameFlag, pk.Connect.Username = true, []byte(o.Username)
	}
	if o.Password != "" {
		pk.Connect.PasswordFlag, pk.Connect.Password = true, []byte(o.Password)
	}
	if o.Version == 5 {
		pk.Properties.ReceiveMaximum = uint16(o.ReceiveMaximum)
		if !o.CleanSession {
			pk.Properties.SessionExpiryInterval = uint32(min(o.SessionExpiry/time.Second, 1<<32-1))
			pk.Properties.SessionExpiryIntervalFlag = true
		}
	}
	var buf bytes.Buffer
	if err := pk.ConnectEncode(&buf); err != nil {
		return nil, 0, fmt.Errorf("mqtt: encoding CONNECT: %w", err)
	}
	if _, err := conn.Write(buf.Bytes()); err != nil {
		return nil, 0, fmt.Errorf("mqtt: sending CONNECT: %w", err)
	}
	r := bufio.NewReaderSize(conn, readBufferSize)
	var sl slab
	ack, err := readPacket(r, &sl, byte(o.Version), 0)
	if err != nil {
		return nil, 0, fmt.Errorf("mqtt: waiting for CONNACK: %w", err)
	}
	if ack.FixedHeader.Type != packets.Connack {
		return nil, 0, fmt.Errorf("mqtt: expected CONNACK, got packet type %d", ack.FixedHeader.Type)
	}
	if ack.ReasonCode != 0 {
		return nil, 0, fmt.Errorf("mqtt: broker refused the connection (reason code 0x%02x)", ack.ReasonCode)
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, 0, fmt.Errorf("mqtt: %w", err)
	}
	ka := time.Duration(pk.Connect.Keepalive) * time.Second
	// MQTT 5 §3.2.2.3.14: the broker's Server Keep Alive replaces the
	// interval sent in CONNECT, within which the client must send a
	// packet; a client may ping more often (§3.1.2.10: a PINGREQ at any
	// time). A broker may set up to 65,535 s: taken as is, a dead link
	// (a broker gone without a FIN) would go unnoticed for 18 hours, so
	// the client keeps the shorter of the two.
	if ack.Properties.ServerKeepAliveFlag && ack.Properties.ServerKeepAlive > 0 {
		ka = min(ka, time.Duration(ack.Properties.ServerKeepAlive)*time.Second)
	}
	return r, ka, nil
}

// slab hands out the space packets are read into. A slab is never
// written again once handed out: the messages decoded from it keep
// pointing into it until they are done with, and the garbage collector
// frees it after the last one.
type slab struct{ buf []byte }

func (s *slab) take(n int) []byte {
	if n > slabSize/4 {
		return make([]byte, n)
	}
	if len(s.buf) < n {
		s.buf = make([]byte, slabSize)
	}
	b := s.buf[:n:n]
	s.buf = s.buf[n:]
	return b
}

// readPacket reads and decodes one packet; see readPacketInto.
func readPacket(r *bufio.Reader, sl *slab, version byte, maxPayload int) (*packets.Packet, error) {
	pk := &packets.Packet{ProtocolVersion: version}
	if _, err := readPacketInto(r, sl, pk, maxPayload); err != nil {
		return nil, err
	}
	return pk, nil
}

// protocolError is a packet from the broker that breaks MQTT: the
// connection ends, and the source counts it (protocol_errors).
type protocolError struct{ err error }

func (e *protocolError) Error() string { return e.err.Error() }
func (e *protocolError) Unwrap() error { return e.err }

// brokerBroke marks err as a protocolError.
func brokerBroke(err error) error { return &protocolError{err} }

// isProtocolError tells whether err is, or wraps, a protocolError.
func isProtocolError(err error) bool {
	var pe *protocolError
	return errors.As(err, &pe)
}

// errMalformedLength reports a remaining length of more than 4 bytes.
var errMalformedLength = errors.New("malformed remaining length: more than 4 bytes")

// decodeLength reads an MQTT variable byte integer of at most 4 bytes
// (MQTT 3.1.1 §2.2.3, MQTT 5 §1.5.5); the codec's own decoder takes any
// number of continuation bytes.
func decodeLength(r io.ByteReader) (int, error) {
	n := 0
	for i := range 4 {
		b, err := r.ReadByte()
		if err != nil {
			return 0, err
		}
		n |= int(b&0x7f) << (7 * i)
		if b&0x80 == 0 {
			return n, nil
		}
	}
	return 0, errMalformedLength
}

// readPacketInto reads and decodes one packet into pk, whose
// ProtocolVersion must be set. Memory is bounded whatever the broker
// sends: a packet other than PUBLISH above maxControlPacket is an error,
// read no further; of a PUBLISH whose payload is longer than maxPayload
// bytes (defaultMaxPayload when 0), maxPayload+1 are kept, and the rest
// is read and dropped, their number returned, so that the receiver can
// tell the payload's size and refuse it.
func readPacketInto(r *bufio.Reader, sl *slab, pk *packets.Packet, maxPayload int) (int, error) {
	if maxPayload <= 0 {
		maxPayload = defaultMaxPayload
	}
	hb, err := r.ReadByte()
	if err != nil {
		return 0, err
	}
	if err := pk.FixedHeader.Decode(hb); err != nil {
		return 0, brokerBroke(fmt.Errorf("mqtt: bad packet header: %w", err))
	}
	n, err := decodeLength(r)
	if err != nil {
		if errors.Is(err, errMalformedLength) {
			err = brokerBroke(err)
		}
		return 0, fmt.Errorf("mqtt: bad packet length: %w", err)
	}
	pk.FixedHeader.Remaining = n
	keep := n
	if pk.FixedHeader.Type == packets.Publish {
		keep = min(n, maxPayload+1+publishHeadRoom)
	} else if n > maxControlPacket {
		return 0, brokerBroke(fmt.Errorf("mqtt: packet of type %d and %d bytes from the broker, more than %d", pk.FixedHeader.Type, n, maxControlPacket))
	}
	buf := sl.take(keep)
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, err
	}
	dropped := n - keep
	if dropped > 0 {
		if _, err := r.Discard(dropped); err != nil {
			return 0, err
		}
	}
	switch pk.FixedHeader.Type {
	case packets.Publish:
		noProps := 0 // bytes of an MQTT 5 property length of 0
		if pk.ProtocolVersion == 5 {
			noProps, err = checkPublishProperties(buf, pk.FixedHeader.Qos)
		}
		if err == nil && noProps > 0 {
			// No properties (the usual case): decoded as 3.1.1, whose
			// body is the same but for the property length ahead of the
			// payload, the codec's property decoder, which allocates a
			// reader per packet, is skipped.
			pk.ProtocolVersion = 4
			err = pk.PublishDecode(buf)
			pk.ProtocolVersion = 5
			if err == nil {
				pk.Payload = pk.Payload[noProps:]
			}
		} else if err == nil {
			err = pk.PublishDecode(buf)
		}
		if err == nil && dropped > 0 && len(pk.Payload) > maxPayload+1 {
			dropped += len(pk.Payload) - (maxPayload + 1)
			pk.Payload = pk.Payload[: maxPayload+1 : maxPayload+1]
		}
	case packets.Connack:
		if err = checkSection(pk, buf, 2, 2); err == nil {
			err = pk.ConnackDecode(buf)
		}
	case packets.Suback:
		if err = checkSection(pk, buf, 2, 2); err == nil {
			err = pk.SubackDecode(buf)
		}
	case packets.Unsuback:
		if err = checkSection(pk, buf, 2, 2); err == nil {
			err = pk.UnsubackDecode(buf)
		}
	case packets.Puback:
		if err = checkSection(pk, buf, 3, 3); err == nil {
			err = pk.PubackDecode(buf)
		}
	case packets.Disconnect:
		if err = checkSection(pk, buf, 1, 2); err == nil {
			err = pk.DisconnectDecode(buf)
		}
	case packets.Pingresp:
	default:
		err = fmt.Errorf("unexpected packet type %d", pk.FixedHeader.Type)
	}
	if err != nil {
		return 0, brokerBroke(fmt.Errorf("mqtt: bad packet from the broker: %w", err))
	}
	return dropped, nil
}

// checkPublishProperties checks the property section of an MQTT 5
// PUBLISH body (see checkProperties). When it is empty (no properties),
// it returns the number of bytes its length takes, else 0.
func checkPublishProperties(buf []byte, qos byte) (int, error) {
	if len(buf) < 2 {
		return 0, packets.ErrMalformedTopic
	}
	start := 2 + (int(buf[0])<<8 | int(buf[1]))
	if qos > 0 {
		start += 2
	}
	if start < len(buf) && buf[start] == 0 {
		return 1, nil
	}
	_, err := checkProperties(buf, start)
	return 0, err
}

// checkProperties checks the MQTT 5 property section at buf[at:] and
// returns where it ends. The codec reads the section's length with no
// bound on its continuation bytes, and reads each property from the
// whole rest of the packet: a property running past the section's end
// would take bytes of what follows (the payload of a PUBLISH, the reason
// codes of a SUBACK), which the decoder then also reads as what follows.
// Here the length takes at most 4 bytes, the section fits in the packet,
// and each property of a known identifier (MQTT 5 §2.2.2.2) fits in the
// section.
func checkProperties(buf []byte, at int) (int, error) {
	n, i := 0, 0
	for ; ; i++ {
		if i == 4 {
			return 0, fmt.Errorf("%w: %w", packets.ErrMalformedProperties, errMalformedLength)
		}
		if at+i >= len(buf) {
			return 0, packets.ErrMalformedProperties
		}
		b := buf[at+i]
		n |= int(b&0x7f) << (7 * i)
		if b&0x80 == 0 {
			break
		}
	}
	at += i + 1
	if n > len(buf)-at {
		return 0, fmt.Errorf("%w: %d bytes of properties in %d", packets.ErrMalformedProperties, n, len(buf)-at)
	}
	sec, end := buf[at:at+n], at+n
	for p := 0; p < len(sec); {
		id := sec[p]
		p++
		size := 0
		switch id {
		case 0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2a: // byte
			size = 1
		case 0x13, 0x21, 0x22, 0x23: // two-byte integer
			size = 2
		case 0x02, 0x11, 0x18, 0x27: // four-byte integer
			size = 4
		case 0x0b: // variable byte integer
			for size = 1; ; size++ {
				if size > 4 || p+size > len(sec) {
					return 0, fmt.Errorf("%w: subscription identifier beyond the properties", packets.ErrMalformedProperties)
				}
				if sec[p+size-1]&0x80 == 0 {
					break
				}
			}
		case 0x03, 0x08, 0x09, 0x12, 0x15, 0x16, 0x1a, 0x1c, 0x1f: // string or binary data
			if p+2 > len(sec) {
				return 0, fmt.Errorf("%w: property 0x%02x beyond the properties", packets.ErrMalformedProperties, id)
			}
			size = 2 + (int(sec[p])<<8 | int(sec[p+1]))
		case 0x26: // string pair
			if p+2 <= len(sec) {
				k := 2 + (int(sec[p])<<8 | int(sec[p+1]))
				if p+k+2 <= len(sec) {
					size = k + 2 + (int(sec[p+k])<<8 | int(sec[p+k+1]))
				} else {
					size = k + 2
				}
			} else {
				size = 2
			}
		default:
			return 0, fmt.Errorf("%w: unknown property 0x%02x", packets.ErrMalformedProperties, id)
		}
		if p+size > len(sec) {
			return 0, fmt.Errorf("%w: property 0x%02x runs %d bytes past the properties", packets.ErrMalformedProperties, id, p+size-len(sec))
		}
		p += size
	}
	return end, nil
}

// checkSection checks the property section of an MQTT 5 packet other
// than PUBLISH, at buf[at:], when the packet is longer than after bytes
// (shorter ones have none, or the codec refuses them).
func checkSection(pk *packets.Packet, buf []byte, at, after int) error {
	if pk.ProtocolVersion != 5 || len(buf) <= after {
		return nil
	}
	_, err := checkProperties(buf, at)
	return err
}

// checkPublish refuses a PUBLISH this client cannot take or the broker
// should not have sent: QoS 2 (subscriptions ask for 1 at most), QoS 1
// without a packet id, no topic, a topic alias (the client allows none),
// a wildcard in the topic.
func checkPublish(pk *packets.Packet) error {
	switch {
	case pk.FixedHeader.Qos > 1:
		return errors.New("mqtt: the broker sent a QoS 2 message on a subscription of QoS 1 at most")
	case pk.FixedHeader.Qos == 1 && pk.PacketID == 0:
		return errors.New("mqtt: the broker sent a QoS 1 message with packet id 0")
	case pk.Properties.TopicAlias != 0:
		return fmt.Errorf("mqtt: the broker sent topic alias %d; the client allows none", pk.Properties.TopicAlias)
	case pk.TopicName == "":
		return errors.New("mqtt: the broker sent a message without a topic")
	case strings.ContainsAny(pk.TopicName, "+#"):
		return errors.New("mqtt: the broker sent a message whose topic holds a wildcard")
	}
	return nil
}

// receiving records QoS 1 packet id pid as in flight; a broker that sends
// an id again before it is acknowledged, or more messages in flight than
// the receive maximum allows (MQTT 5), breaks the protocol, and the
// connection ends: the ids of the messages received could no longer name
// one message each.
func (c *lightClient) receiving(pid uint16) error {
	bit := uint64(1) << (pid & 63)
	if c.inflight[pid>>6].Or(bit)&bit != 0 {
		return fmt.Errorf("mqtt: the broker sent packet id %d again before it was acknowledged", pid)
	}
	if n := c.inflightN.Add(1); c.cfg.Version == 5 && n > int64(c.cfg.ReceiveMaximum) {
		return fmt.Errorf("mqtt: the broker sent more than the receive maximum (%d) of unacknowledged messages", c.cfg.ReceiveMaximum)
	}
	return nil
}

// read receives packets until the connection fails or the broker ends
// it.
func (c *lightClient) read(r *bufio.Reader, gen uint64) error {
	version := byte(c.cfg.Version)
	var (
		sl       slab
		pk       packets.Packet
		lastFill time.Time
	)
	for {
		if r.Buffered() == 0 {
			if wait := c.cfg.readPace - time.Since(lastFill); wait > 0 {
				time.Sleep(wait)
			}
			if _, err := r.Peek(1); err != nil {
				return err
			}
			lastFill = time.Now()
		}
		pk = packets.Packet{ProtocolVersion: version}
		dropped, err := readPacketInto(r, &sl, &pk, c.cfg.maxPayload)
		if err != nil {
			return err
		}
		c.heard.Store(true)
		switch pk.FixedHeader.Type {
		case packets.Publish:
			if err := checkPublish(&pk); err != nil {
				return brokerBroke(err)
			}
			q := pk.FixedHeader.Qos
			if q == 1 {
				if err := c.receiving(pk.PacketID); err != nil {
					return brokerBroke(err)
				}
			}
			m := message{topic: pk.TopicName, payload: pk.Payload, dropped: dropped, qos: q, sub: c, gen: gen, pid: pk.PacketID}
			c.busy.Store(true)
			c.cfg.onMessage(m)
			c.busy.Store(false)
			if q == 1 && !c.cfg.manualAck {
				c.ackMany([]message{m})
			}
		case packets.Suback, packets.Unsuback, packets.Puback:
			c.mu.Lock()
			ch := c.waiting[pk.PacketID]
			delete(c.waiting, pk.PacketID)
			c.mu.Unlock()
			if ch != nil {
				p := pk
				ch <- &p
			}
		case packets.Disconnect:
			if pk.ReasonCode == packets.ErrSessionTakenOver.Code {
				c.flaps.sessionTakenOver()
			}
			return fmt.Errorf("mqtt: the broker ended the connection (reason code 0x%02x)", pk.ReasonCode)
		case packets.Pingresp:
		default:
			return brokerBroke(fmt.Errorf("mqtt: unexpected packet type %d", pk.FixedHeader.Type))
		}
	}
}

// keepAlive sends PINGREQ when nothing else was sent for half the
// keep-alive interval, and closes a connection on which nothing was
// received for about one and a half, unless the reader is held up by the
// source (backpressure).
func (c *lightClient) keepAlive(conn net.Conn, ka time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(max(ka/2, 100*time.Millisecond))
	defer t.Stop()
	missed := 0
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if c.heard.Swap(false) || c.busy.Load() {
			missed = 0
		} else if missed++; missed >= 3 {
			c.cfg.Log.Warn("mqtt: the broker stopped answering", "client", clientTag(c.cfg.ClientID))
			_ = conn.Close()
			return
		}
		if !c.wrote.Swap(false) || missed > 0 {
			pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}}
			c.mu.Lock()
			if c.conn == conn {
				_ = pk.PingreqEncode(&c.wbuf)
				c.flushLocked()
			}
			c.mu.Unlock()
		}
	}
}

// flushLocked writes what the write buffer holds; c.mu is held. A write
// that fails closes the connection, which the reader then reports.
func (c *lightClient) flushLocked() {
	if c.wbuf.Len() == 0 {
		return
	}
	if c.conn != nil {
		d := c.cfg.ConnectTimeout
		if c.stopping.Load() {
			d = stopWriteGrace
		}
		_ = c.conn.SetWriteDeadline(time.Now().Add(d))
		if _, err := c.conn.Write(c.wbuf.Bytes()); err != nil {
			_ = c.conn.Close()
		}
		c.wrote.Store(true)
	}
	c.wbuf.Reset()
	if c.wbuf.Cap() > 256<<10 {
		c.wbuf = bytes.Buffer{}
	}
}

// ackMany acknowledges QoS 1 messages in one write. Messages that came on
// an earlier connection are not acknowledged: the broker delivers them
// again on this one, and their packet ids may by now name other messages.
func (c *lightClient) ackMany(ms []message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// A successful PUBACK without properties is the same 4 bytes in both
	// versions (MQTT 5 §3.4.2.1 lets the reason code and properties go):
	// encoding it as 3.1.1 skips the codec's walk of every property.
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, ProtocolVersion: 4}
	for i := range ms {
		if ms[i].qos != 1 || ms[i].gen != c.gen || c.conn == nil {
			continue
		}
		pk.PacketID = ms[i].pid
		if bit := uint64(1) << (pk.PacketID & 63); c.inflight[pk.PacketID>>6].And(^bit)&bit != 0 {
			c.inflightN.Add(-1)
		}
		_ = pk.PubackEncode(&c.wbuf)
	}
	c.flushLocked()
}

// request sends a packet that the broker answers (SUBSCRIBE, UNSUBSCRIBE,
// PUBLISH at QoS 1) and waits for the answer; encode writes the packet
// with the packet id given. It returns nil and no error when the
// connection ended first.
func (c *lightClient) request(ctx context.Context, gen uint64, encode func(id uint16, b *bytes.Buffer) error) (*packets.Packet, error) {
	ch := make(chan *packets.Packet, 1)
	c.mu.Lock()
	if c.conn == nil || c.gen != gen {
		c.mu.Unlock()
		return nil, errNotConnected
	}
	// Ids count down from the top: brokers number the messages they send
	// from 1, and some refuse a SUBSCRIBE whose id is that of a message
	// in flight to the client.
	id := c.nextID
	for {
		if id <= 1 {
			id = 65535
		} else {
			id--
		}
		if _, used := c.waiting[id]; !used {
			break
		}
	}
	c.nextID = id
	if err := encode(id, &c.wbuf); err != nil {
		c.wbuf.Reset()
		c.mu.Unlock()
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	c.waiting[id] = ch
	c.flushLocked()
	c.mu.Unlock()
	select {
	case p, ok := <-ch:
		if !ok {
			return nil, errNotConnected
		}
		return p, nil
	case <-ctx.Done():
		c.mu.Lock()
		if c.waiting[id] == ch {
			delete(c.waiting, id)
		}
		c.mu.Unlock()
		return nil, ctx.Err()
	}
}

// drop closes connection gen if it is still up; the reader then reports
// it down.
func (c *lightClient) drop(gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil && c.gen == gen {
		_ = c.conn.Close()
	}
}

// current returns the generation of the connection up, if one is.
func (c *lightClient) current() (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen, c.conn != nil
}

// subscribe makes the subscriptions on connection gen and then reports
// the connection up. Refusals are retried a few times (MQTT 3.1.1 gives
// no reason; MQTT 5 only when one of them is 0x91, packet id in use),
// since a broker may refuse a subscription whose packet id is the id of
// a message it is resending to a persistent session.
func (c *lightClient) subscribe(gen uint64) {
	v := byte(c.cfg.Version)
	if len(c.cfg.subs) > 0 {
		filters := make(packets.Subscriptions, 0, len(c.cfg.subs))
		for _, s := range c.cfg.subs {
			filters = append(filters, packets.Subscription{Filter: s.topic, Qos: s.qos})
		}
		for attempt := 0; ; attempt++ {
			ctx, cancel := context.WithTimeout(c.ctx, c.cfg.ConnectTimeout)
			ack, err := c.request(ctx, gen, func(id uint16, b *bytes.Buffer) error {
				pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1},
					ProtocolVersion: v, PacketID: id, Filters: filters}
				return pk.SubscribeEncode(b)
			})
			cancel()
			if ack == nil || ack.FixedHeader.Type != packets.Suback {
				if err == nil {
					err = errors.New("mqtt: the broker answered SUBSCRIBE with another packet")
				}
				c.cfg.Log.Warn("mqtt: subscribe failed", "client", clientTag(c.cfg.ClientID), "err", err)
				// Connected but not subscribed, the source would wait
				// for ever: end the connection, to subscribe again on
				// the next one, after the backoff.
				c.drop(gen)
				return
			}
			// A SUBACK with fewer reason codes than filters refuses
			// those it leaves out.
			for len(ack.ReasonCodes) < len(filters) {
				ack.ReasonCodes = append(ack.ReasonCodes, packets.ErrUnspecifiedError.Code)
			}
			retry, failed := false, false
			for _, code := range ack.ReasonCodes {
				retry = retry || code == 0x91 || v == 4 && code >= 0x80
				failed = failed || code >= 0x80
			}
			if failed && retry && attempt < subscribeRetries {
				if !engine.Sleep(c.ctx, subscribeBackoff(attempt)) {
					return
				}
				continue
			}
			for i, code := range ack.ReasonCodes {
				if code >= 0x80 && i < len(c.cfg.subs) {
					c.cfg.onSubscribeError(c.cfg.subs[i].topic, fmt.Errorf("broker refused the subscription (reason code 0x%02x)", code))
				}
			}
			break
		}
	}
	if g, up := c.current(); !up || g != gen {
		return
	}
	c.state.setUp()
	c.cfg.onUp()
}

func (c *lightClient) awaitConnection(ctx context.Context) error { return c.state.await(ctx) }

func (c *lightClient) publish(ctx context.Context, topic string, qos byte, payload []byte) error {
	gen, up := c.current()
	if !up || !c.state.up.Load() {
		return errNotConnected
	}
	v := byte(c.cfg.Version)
	if qos == 0 {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, ProtocolVersion: v,
			TopicName: topic, Payload: payload}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.conn == nil || c.gen != gen {
			return errNotConnected
		}
		if err := pk.PublishEncode(&c.wbuf); err != nil {
			c.wbuf.Reset()
			return fmt.Errorf("mqtt: %w", err)
		}
		c.flushLocked()
		return nil
	}
	ack, err := c.request(ctx, gen, func(id uint16, b *bytes.Buffer) error {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, ProtocolVersion: v,
			PacketID: id, TopicName: topic, Payload: payload}
		return pk.PublishEncode(b)
	})
	if err != nil {
		return err
	}
	if ack == nil || ack.FixedHeader.Type != packets.Puback {
		return errors.New("mqtt: the broker answered PUBLISH with another packet")
	}
	if ack.ReasonCode >= 0x80 {
		return fmt.Errorf("mqtt: the broker refused the message (reason code 0x%02x)", ack.ReasonCode)
	}
	return nil
}

func (c *lightClient) sync(ctx context.Context) error {
	gen, up := c.current()
	if !up {
		return errNotConnected
	}
	v := byte(c.cfg.Version)
	ack, err := c.request(ctx, gen, func(id uint16, b *bytes.Buffer) error {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsubscribe, Qos: 1}, ProtocolVersion: v,
			PacketID: id, Filters: packets.Subscriptions{{Filter: syncFilter}}}
		return pk.UnsubscribeEncode(b)
	})
	if ack != nil {
		return nil // answered, whatever the answer
	}
	return err
}

func (c *lightClient) stop(ctx context.Context) error {
	// A write the broker does not take in (it stopped reading) holds c.mu
	// for up to ConnectTimeout: cut it short.
	c.stopping.Store(true)
	if cn := c.live.Load(); cn != nil {
		_ = (*cn).SetWriteDeadline(time.Now().Add(stopWriteGrace))
	}
	c.mu.Lock()
	c.stopped = true
	started := c.started
	if c.conn != nil {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}, ProtocolVersion: byte(c.cfg.Version)}
		_ = pk.DisconnectEncode(&c.wbuf)
		c.flushLocked()
		_ = c.conn.Close()
	}
	c.mu.Unlock()
	c.cancel()
	c.state.setDown()
	if !started {
		return nil
	}
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
