package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/tandemdb/tandem/wire"
)

// conn is one multiplexed connection to a node. A reader goroutine dispatches responses by
// request id; a writer goroutine sends everything queued since its last write in one flush.
type conn struct {
	c     *Client
	addr  string
	ready chan struct{} // closed once the handshake finished (or failed: dialErr)

	// Set before ready is closed, read-only after.
	dialErr error
	nc      net.Conn
	nodeID  uint64

	mu      sync.Mutex
	pending map[uint64]chan wire.Frame
	// begins holds the Begin requests whose callers gave up before the answer came: the
	// transaction may start later on the leader, and would hold its database's writer
	// until the idle timeout; its answer is met with a Rollback.
	begins map[uint64]bool
	queue  [][]byte
	err    error         // why the connection died
	dead   chan struct{} // closed when it dies
	kick   chan struct{} // wakes the writer
}

func newConn(c *Client, addr string) *conn {
	return &conn{
		c: c, addr: addr,
		ready:   make(chan struct{}),
		pending: map[uint64]chan wire.Frame{},
		begins:  map[uint64]bool{},
		dead:    make(chan struct{}),
		kick:    make(chan struct{}, 1),
	}
}

// dial connects, says Hello and starts the goroutines. It closes cn.ready in all cases.
func (cn *conn) dial(ctx context.Context) {
	defer close(cn.ready)
	c := cn.c
	ctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	nc, err := c.cfg.Dialer(ctx, cn.addr)
	if err != nil {
		cn.dialErr = &connError{addr: cn.addr, err: err}
		return
	}
	if c.tls != nil {
		cfg := c.tls
		if cfg.ServerName == "" {
			cfg = cfg.Clone() // shares the session cache
			host, _, err := net.SplitHostPort(cn.addr)
			if err != nil {
				host = cn.addr
			}
			cfg.ServerName = host
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
				err = fmt.Errorf("%w (the node closed the connection during the TLS handshake: does it run without TLS?)", err)
			}
			if certificateRefused(err) {
				// Another attempt would be refused the same way: say so at once.
				cn.dialErr = fmt.Errorf("%w: %w", &wire.Error{Code: wire.CodeBadRequest,
					Message: fmt.Sprintf("TLS with %s failed on a certificate", cn.addr)}, err)
				return
			}
			cn.dialErr = &connError{addr: cn.addr, err: err}
			return
		}
		nc = tc
	}
	welcome, r, err := cn.handshake(ctx, nc)
	if err != nil {
		nc.Close()
		var we *wire.Error
		if errors.As(err, &we) {
			cn.dialErr = err // the node answered: not a connection problem
		} else {
			cn.dialErr = &connError{addr: cn.addr, err: err}
		}
		return
	}
	cn.nc = nc
	cn.nodeID = welcome.NodeID
	c.log.Debug("tandem: connected", "addr", cn.addr, "node", welcome.NodeID, "leader", welcome.LeaderID)
	c.learnLeader(welcome.LeaderID, welcome.LeaderAddr, cn)
	go cn.readLoop(r)
	go cn.writeLoop(wire.NewWriter(nc, 0))
}

func (cn *conn) handshake(ctx context.Context, nc net.Conn) (wire.Welcome, *wire.Reader, error) {
	c := cn.c
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	// A dial abandoned by its caller (client.New's other addresses, once one connected) ends
	// now rather than at its deadline. The deadline is cleared after that function, if it
	// ran, has finished, so that a handshake that completed anyway leaves a usable connection.
	cancelled := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		nc.SetDeadline(time.Now())
		close(cancelled)
	})
	defer func() {
		if !stop() {
			<-cancelled
		}
		nc.SetDeadline(time.Time{})
	}()
	c.mu.Lock()
	clientID := c.clientID
	c.mu.Unlock()
	w := wire.NewWriter(nc, 0)
	w.Write([]byte(wire.ClientPreamble))
	if err := w.WriteMsg(0, &wire.Hello{Version: wire.Version, ClientID: clientID, Name: c.cfg.Name}); err != nil {
		return wire.Welcome{}, nil, err
	}
	if err := w.Flush(); err != nil {
		return wire.Welcome{}, nil, err
	}
	r := wire.NewReader(nc, 0)
	f, err := r.ReadFrame()
	if errors.Is(err, wire.ErrFrameTooLarge) {
		// An HTTP server's "HTTP/1.1 400" reads as a length of ~1.3 GB, and the like.
		return wire.Welcome{}, nil, fmt.Errorf("tandem: %s does not answer as a Tandem node (%w)", nc.RemoteAddr(), err)
	}
	if err != nil {
		return wire.Welcome{}, nil, err
	}
	m, err := wire.Decode(f)
	if err != nil {
		return wire.Welcome{}, nil, fmt.Errorf("tandem: %s does not answer as a Tandem node (%w)", nc.RemoteAddr(), err)
	}
	switch m := m.(type) {
	case *wire.Welcome:
		if m.Version != wire.Version {
			return wire.Welcome{}, nil, &wire.Error{Code: wire.CodeUnsupportedVersion, Message: fmt.Sprintf("server speaks version %d", m.Version)}
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.clientID == 0 {
			c.clientID = m.ClientID
		} else if m.ClientID != c.clientID {
			return wire.Welcome{}, nil, &wire.Error{Code: wire.CodeInternal, Message: fmt.Sprintf("server assigned client id %d, want %d", m.ClientID, c.clientID)}
		}
		return *m, r, nil
	case *wire.Error:
		return wire.Welcome{}, nil, m
	default:
		return wire.Welcome{}, nil, fmt.Errorf("tandem: unexpected %s in handshake", f.Type)
	}
}

// fail marks the connection dead, closes it and fails every pending request.
func (cn *conn) fail(err error) {
	cn.mu.Lock()
	if cn.err != nil {
		cn.mu.Unlock()
		return
	}
	cn.err = &connError{addr: cn.addr, err: err}
	close(cn.dead)
	cn.pending = nil
	cn.queue = nil
	cn.mu.Unlock()
	cn.nc.Close()
	cn.c.dropConn(cn)
	cn.c.log.Debug("tandem: connection closed", "addr", cn.addr, "node", cn.nodeID, "err", err)
}

func (cn *conn) deadErr() error {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return cn.err
}

func (cn *conn) alive() bool {
	select {
	case <-cn.dead:
		return false
	default:
		return true
	}
}

func (cn *conn) readLoop(r *wire.Reader) {
	for {
		f, err := r.ReadFrame()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			cn.fail(err)
			return
		}
		cn.mu.Lock()
		ch := cn.pending[f.ID]
		delete(cn.pending, f.ID)
		abandonedBegin := cn.begins[f.ID]
		delete(cn.begins, f.ID)
		if ch != nil {
			// Buffered, never blocks. Under the lock: a caller that gives up at this moment
			// finds the answer in ch once it holds the lock (see roundTrip).
			ch <- f
		}
		cn.mu.Unlock()
		// else: a response nobody waits for any more (caller gave up, or fire-and-forget).
		if abandonedBegin {
			cn.rollbackBegun(f)
		}
	}
}

func (cn *conn) writeLoop(w *wire.Writer) {
	var batch [][]byte
	for {
		select {
		case <-cn.dead:
			return
		case <-cn.kick:
		}
		// With other requests of this connection in flight, their callers are likely
		// runnable right now (woken by the same batch of answers): yield once so that their
		// requests join this write. Alone, write at once.
		cn.mu.Lock()
		if len(cn.pending) > 1 {
			cn.mu.Unlock()
			runtime.Gosched()
			cn.mu.Lock()
		}
		batch, cn.queue = cn.queue, batch[:0]
		cn.mu.Unlock()
		for i, b := range batch {
			if _, err := w.Write(b); err != nil {
				cn.fail(err)
				return
			}
			batch[i] = nil
		}
		if err := w.Flush(); err != nil {
			cn.fail(err)
			return
		}
	}
}

// certificateRefused reports whether a TLS handshake failed on a certificate: this side could
// not verify the node's, or the node refused this side's (its alert).
func certificateRefused(err error) bool {
	var verr *tls.CertificateVerificationError
	var alert tls.AlertError
	return errors.As(err, &verr) || errors.As(err, &alert)
}

// rollbackBegun rolls back the transaction f starts, if f is a TxBegun nobody waits for.
func (cn *conn) rollbackBegun(f wire.Frame) {
	if f.Type != wire.TypeTxBegun {
		return
	}
	if m, err := wire.Decode(f); err == nil {
		_ = cn.send(cn.c.nextID(), &wire.Rollback{TxID: m.(*wire.TxBegun).TxID}, nil)
	}
}

// send queues one frame. With ch non-nil the response will be delivered on it.
func (cn *conn) send(id uint64, m wire.Message, ch chan wire.Frame) error {
	b, err := wire.AppendFrame(nil, id, m, 0)
	if err != nil {
		return err
	}
	cn.mu.Lock()
	if cn.err != nil {
		err := cn.err
		cn.mu.Unlock()
		return err
	}
	if ch != nil {
		cn.pending[id] = ch
	}
	cn.queue = append(cn.queue, b)
	cn.mu.Unlock()
	select {
	case cn.kick <- struct{}{}:
	default:
	}
	return nil
}

// errNotSent marks failures that happened before the request left this process.
type errNotSent struct{ error }

func (e errNotSent) Unwrap() error { return e.error }

// roundTrip sends m with request id id and waits for its response.
func (cn *conn) roundTrip(ctx context.Context, id uint64, m wire.Message) (wire.Frame, error) {
	ch := make(chan wire.Frame, 1)
	if err := cn.send(id, m, ch); err != nil {
		return wire.Frame{}, errNotSent{err}
	}
	select {
	case f := <-ch:
		return f, nil
	case <-cn.dead:
		select {
		case f := <-ch:
			return f, nil
		default:
		}
		return wire.Frame{}, cn.deadErr()
	case <-ctx.Done():
		select {
		case f := <-ch:
			return f, nil
		default:
		}
		cn.mu.Lock()
		if cn.pending != nil {
			delete(cn.pending, id)
		}
		_, isBegin := m.(*wire.Begin)
		if isBegin && cn.begins != nil {
			cn.begins[id] = true
		}
		cn.mu.Unlock()
		if isBegin {
			select {
			case f := <-ch: // answered after all, between the two checks above
				cn.mu.Lock()
				delete(cn.begins, id)
				cn.mu.Unlock()
				cn.rollbackBegun(f)
			default:
			}
		}
		// Tell the node, so that it does not start the request or interrupts it (a
		// statement would otherwise run to its end, holding the writer or a reader).
		_ = cn.send(cn.c.nextID(), &wire.Cancel{RequestID: id}, nil)
		return wire.Frame{}, ctx.Err()
	}
}
