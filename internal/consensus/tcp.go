package consensus

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// TCPConfig configures a TCPTransport.
type TCPConfig struct {
	// Addr is this node's advertised address, sent to peers when connecting so that a node
	// that has just joined can answer the leader before it has learned addresses from the log.
	Addr string
	// Dialer opens connections to peers (the server supplies TLS); default net.Dialer.
	Dialer func(ctx context.Context, addr string) (net.Conn, error)
	Logger *slog.Logger
	// QueueSize bounds each peer's outbound queue; default 4096 messages.
	QueueSize int
	// DialTimeout and IOTimeout default to 2s and 10s.
	DialTimeout, IOTimeout time.Duration
}

// TCPTransport is the peer transport used in production.
//
// Outbound: one persistent connection per peer, owned by a writer goroutine that drains the
// peer's bounded queue and writes everything queued as one batch of length-prefixed
// protobuf messages; on failure it reports the peer unreachable, drops what is queued and
// redials with backoff. MsgSnap goes on a connection of its own, followed by the snapshot
// directory's files (streamed from disk, never read whole into memory).
//
// Inbound: the node's listener reads the 4-byte preamble "TNDP" and hands the connection to
// ServeConn.
//
// Connection header after the preamble: kind ('M' messages, 'S' snapshot) | u64 sender id |
// u16 address length | address.
type TCPTransport struct {
	cfg TCPConfig
	log *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	started bool
	stopped bool
	self    uint64
	deliver func(*raftpb.Message) error
	snaps   SnapshotStore
	peers   map[uint64]*tcpPeer
	conns   map[net.Conn]struct{}
}

type tcpPeer struct {
	id     uint64
	addr   string
	queue  chan *raftpb.Message
	ctx    context.Context // canceled by an address change, Stop, or retireGrace after RemovePeer
	cancel context.CancelFunc
	retire chan struct{} // closed by RemovePeer: deliver what is queued, then stop
}

// retireGrace bounds how long a removed peer's connection may take to deliver what was
// queued for it (the removal notice among it).
const retireGrace = 2 * time.Second

// NewTCPTransport returns a transport; the Node starts and stops it.
func NewTCPTransport(cfg TCPConfig) *TCPTransport {
	if cfg.Dialer == nil {
		var d net.Dialer
		cfg.Dialer = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 4096
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 2 * time.Second
	}
	if cfg.IOTimeout <= 0 {
		cfg.IOTimeout = 10 * time.Second
	}
	t := &TCPTransport{cfg: cfg, log: cfg.Logger.With("component", "transport"),
		peers: map[uint64]*tcpPeer{}, conns: map[net.Conn]struct{}{}}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	return t
}

// Start implements Transport.
func (t *TCPTransport) Start(self uint64, deliver func(*raftpb.Message) error, snaps SnapshotStore) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.started || t.stopped {
		return errors.New("consensus: transport already started")
	}
	t.started, t.self, t.deliver, t.snaps = true, self, deliver, snaps
	return nil
}

// SetPeer implements Transport.
func (t *TCPTransport) SetPeer(id uint64, addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.setPeerLocked(id, addr)
}

func (t *TCPTransport) setPeerLocked(id uint64, addr string) {
	if t.stopped || id == t.self || addr == "" {
		return
	}
	if p, ok := t.peers[id]; ok {
		if p.addr == addr {
			return
		}
		p.cancel()
	}
	p := &tcpPeer{id: id, addr: addr, queue: make(chan *raftpb.Message, t.cfg.QueueSize), retire: make(chan struct{})}
	p.ctx, p.cancel = context.WithCancel(t.ctx)
	t.peers[id] = p
	t.wg.Add(1)
	go t.runPeer(p)
}

// RemovePeer implements Transport.
func (t *TCPTransport) RemovePeer(id uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, ok := t.peers[id]; ok {
		// No new messages reach p once it is out of the map; it delivers the queued ones.
		close(p.retire)
		time.AfterFunc(retireGrace, p.cancel)
		delete(t.peers, id)
	}
}

// Stop implements Transport: it closes every connection and waits for every goroutine,
// including ServeConn calls in progress.
func (t *TCPTransport) Stop() {
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		return
	}
	t.stopped = true
	t.cancel()
	for id, p := range t.peers {
		p.cancel()
		delete(t.peers, id)
	}
	for c := range t.conns {
		c.Close()
	}
	t.mu.Unlock()
	t.wg.Wait()
}

// Send implements Transport; it never blocks.
func (t *TCPTransport) Send(msgs []*raftpb.Message) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.started || t.stopped {
		return
	}
	for _, m := range msgs {
		p, ok := t.peers[m.GetTo()]
		if !ok {
			t.reportLocked(m, "unknown peer")
			continue
		}
		if m.GetType() == raftpb.MsgSnap {
			t.wg.Add(1)
			go t.sendSnapshot(p.id, p.addr, m)
			continue
		}
		select {
		case p.queue <- m:
		default:
			t.reportLocked(m, "queue full")
		}
	}
}

func (t *TCPTransport) reportLocked(m *raftpb.Message, why string) {
	t.log.Debug("dropping raft message", "to", m.GetTo(), "type", m.GetType(), "why", why)
	if m.GetType() == raftpb.MsgSnap {
		t.snaps.ReportSnapshot(m.GetTo(), raft.SnapshotFailure)
	}
	t.snaps.ReportUnreachable(m.GetTo())
}

// dial connects to addr and writes the preamble and the connection header.
func (t *TCPTransport) dial(ctx context.Context, addr string, kind byte) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.DialTimeout)
	defer cancel()
	conn, err := t.cfg.Dialer(ctx, addr)
	if err != nil {
		return nil, err
	}
	hdr := make([]byte, 0, 16+len(t.cfg.Addr))
	hdr = append(hdr, Preamble...)
	hdr = append(hdr, kind)
	hdr = binary.LittleEndian.AppendUint64(hdr, t.self)
	hdr = binary.LittleEndian.AppendUint16(hdr, uint16(len(t.cfg.Addr)))
	hdr = append(hdr, t.cfg.Addr...)
	conn.SetWriteDeadline(time.Now().Add(t.cfg.IOTimeout))
	if _, err := conn.Write(hdr); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// runPeer is the writer goroutine of one peer.
func (t *TCPTransport) runPeer(p *tcpPeer) {
	defer t.wg.Done()
	defer p.cancel()
	const minBackoff, maxBackoff = 50 * time.Millisecond, 2 * time.Second
	backoff := minBackoff
	var (
		conn    net.Conn
		bw      *bufio.Writer
		buf     []byte
		unwatch = func() bool { return false }
	)
	defer func() {
		if conn != nil {
			unwatch()
			conn.Close()
		}
	}()
	retiring := false
	// A peer that stays unreachable (down, cut off, or refusing this node's certificate) is
	// worth a warning: once a minute, the first one at the first failure.
	var warned time.Time
	for {
		var m *raftpb.Message
		if retiring {
			select {
			case m = <-p.queue:
			default:
				return // everything queued went out
			}
		} else {
			select {
			case m = <-p.queue:
			case <-p.ctx.Done():
				return
			case <-p.retire:
				retiring = true
				continue
			}
		}
		if conn == nil {
			c, err := t.dial(p.ctx, p.addr, streamMessages)
			if err != nil {
				if time.Since(warned) >= time.Minute {
					t.log.Warn("peer unreachable (said again at most once a minute)", "peer", p.id, "addr", p.addr, "err", err)
					warned = time.Now()
				} else {
					t.log.Debug("peer unreachable", "peer", p.id, "addr", p.addr, "err", err)
				}
				t.snaps.ReportUnreachable(p.id)
				drain(p.queue)
				select {
				case <-time.After(backoff):
				case <-p.ctx.Done():
					return
				}
				backoff = min(2*backoff, maxBackoff)
				continue
			}
			conn, bw, backoff = c, bufio.NewWriterSize(c, 64<<10), minBackoff
			warned = time.Time{}                                     // reachable again: the next failure is news
			unwatch = context.AfterFunc(p.ctx, func() { c.Close() }) // unblocks a stalled write
		}
		conn.SetWriteDeadline(time.Now().Add(t.cfg.IOTimeout))
		var err error
		for batch := 0; m != nil && err == nil; batch++ {
			buf, err = proto.MarshalOptions{}.MarshalAppend(buf[:0], m)
			if err == nil {
				err = writeFrame(bw, buf)
			}
			m = nil
			if batch < 1024 {
				select {
				case m = <-p.queue:
				default:
				}
			}
		}
		if err == nil {
			err = bw.Flush()
		}
		if err != nil {
			t.log.Debug("peer connection failed", "peer", p.id, "err", err)
			unwatch()
			conn.Close()
			conn = nil
			t.snaps.ReportUnreachable(p.id)
		}
	}
}

func drain(q chan *raftpb.Message) {
	for {
		select {
		case <-q:
		default:
			return
		}
	}
}

// sendSnapshot streams a MsgSnap and its files on a connection of its own and reports the
// outcome to raft.
func (t *TCPTransport) sendSnapshot(to uint64, addr string, m *raftpb.Message) {
	defer t.wg.Done()
	status := raft.SnapshotFailure
	defer func() { t.snaps.ReportSnapshot(to, status) }()
	index := m.GetSnapshot().GetMetadata().GetIndex()
	err := func() error {
		dir, files, release, err := t.snaps.OpenSnapshot(index)
		if err != nil {
			return err
		}
		defer release()
		conn, err := t.dial(t.ctx, addr, streamSnapshot)
		if err != nil {
			return err
		}
		defer conn.Close()
		stop := context.AfterFunc(t.ctx, func() { conn.Close() })
		defer stop()
		dc := &deadlineConn{Conn: conn, timeout: t.cfg.IOTimeout}
		bw := bufio.NewWriterSize(dc, 256<<10)
		b, err := proto.Marshal(m)
		if err != nil {
			return err
		}
		if err := writeFrame(bw, b); err != nil {
			return err
		}
		if err := writeSnapshotFiles(bw, dir, files); err != nil {
			return err
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		var ack [1]byte
		if _, err := io.ReadFull(dc, ack[:]); err != nil {
			return err
		}
		if ack[0] != 0 {
			return errSnapshotRejected
		}
		return nil
	}()
	if err != nil {
		t.log.Warn("snapshot send failed", "peer", to, "index", index, "err", err)
		t.snaps.ReportUnreachable(to)
		return
	}
	t.log.Info("snapshot sent", "peer", to, "index", index)
	status = raft.SnapshotFinish
}

// ServeConn serves an inbound peer connection whose preamble "TNDP" the caller has already
// read. It returns when the connection ends or the transport stops; run it on its own
// goroutine. The connection is closed on return.
func (t *TCPTransport) ServeConn(conn net.Conn) {
	t.mu.Lock()
	if !t.started || t.stopped {
		t.mu.Unlock()
		conn.Close()
		return
	}
	t.conns[conn] = struct{}{}
	t.wg.Add(1)
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.conns, conn)
		t.mu.Unlock()
		conn.Close()
		t.wg.Done()
	}()
	if err := t.serve(conn); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		t.log.Debug("peer connection ended", "remote", conn.RemoteAddr(), "err", err)
	}
}

func (t *TCPTransport) serve(conn net.Conn) error {
	// The header is read unbuffered: what follows goes to a reader chosen by kind.
	conn.SetReadDeadline(time.Now().Add(t.cfg.IOTimeout))
	var hdr [11]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		return err
	}
	kind, from := hdr[0], binary.LittleEndian.Uint64(hdr[1:9])
	addr := make([]byte, binary.LittleEndian.Uint16(hdr[9:11]))
	if _, err := io.ReadFull(conn, addr); err != nil {
		return err
	}
	t.learn(from, string(addr))
	switch kind {
	case streamMessages:
		conn.SetReadDeadline(time.Time{})
		br := bufio.NewReaderSize(conn, 64<<10)
		for {
			m, err := readMessage(br)
			if err != nil {
				return err
			}
			if err := t.deliver(m); err != nil {
				return err
			}
		}
	case streamSnapshot:
		dc := &deadlineConn{Conn: conn, timeout: t.cfg.IOTimeout}
		err := t.receiveSnapshot(bufio.NewReaderSize(dc, 256<<10))
		ack := []byte{0}
		if err != nil {
			t.log.Warn("snapshot receive failed", "from", from, "err", err)
			ack[0] = 1
		}
		_, werr := dc.Write(ack)
		return errors.Join(err, werr)
	}
	return fmt.Errorf("consensus: unknown peer stream kind %q", kind)
}

func (t *TCPTransport) receiveSnapshot(r io.Reader) error {
	m, err := readMessage(r)
	if err != nil {
		return err
	}
	if m.GetType() != raftpb.MsgSnap {
		return fmt.Errorf("consensus: snapshot stream carries %v", m.GetType())
	}
	index := m.GetSnapshot().GetMetadata().GetIndex()
	dir, err := t.snaps.ReceiveDir(index)
	if err != nil {
		return err
	}
	if err := readSnapshotFiles(r, dir); err != nil {
		return err
	}
	return t.deliver(m)
}

// learn records the address a peer announced, unless the node already told us one.
func (t *TCPTransport) learn(id uint64, addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.peers[id]; !ok {
		t.setPeerLocked(id, addr)
	}
}

// deadlineConn pushes the deadline forward before every read and write, so that a stalled
// peer fails the stream while a slow but moving one does not.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
}

func (c *deadlineConn) Read(b []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	return c.Conn.Read(b)
}

func (c *deadlineConn) Write(b []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	return c.Conn.Write(b)
}
