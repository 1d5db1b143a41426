// Package server serves a Tandem node on one TCP (or TLS) port: the client protocol (package
// wire) and, handed over to the consensus transport, the Raft peer traffic.
//
// Every accepted connection finishes its optional TLS handshake in the server itself (no proxy
// goroutines), then sends a four-byte preamble: "TNDC" for the client protocol, "TNDP" for a
// Raft peer. A client connection has one reader goroutine that decodes frames and starts one
// goroutine per request (bounded per connection, so a client that floods only slows itself),
// and one writer goroutine that coalesces responses into as few writes as possible. A
// connection-level protocol violation closes that connection only; its open transactions roll
// back and its cursors close.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemdb/tandem/internal/consensus"
	"github.com/tandemdb/tandem/internal/store"
	"github.com/tandemdb/tandem/wire"
)

// Consensus is what the server needs of the Raft node.
type Consensus interface {
	LeaderReady(ctx context.Context) (uint64, error)
	ReadIndex(ctx context.Context) (uint64, error)
	Status() consensus.Status
	AddMember(ctx context.Context, id uint64, addr string) error
	RemoveMember(ctx context.Context, id uint64) error
	TransferLeadership(ctx context.Context, to uint64) error
}

// Config configures a Server.
type Config struct {
	Consensus Consensus
	Store     *store.Store
	// TLS, when set, is required of every connection, clients and peers alike.
	TLS *tls.Config
	// PeerConn receives connections that announced themselves as Raft peers, after the
	// preamble was read. It owns the connection from then on.
	PeerConn func(net.Conn)
	Logger   *slog.Logger

	MaxFrameSize     int           // default wire.DefaultMaxFrameSize
	MaxInFlight      int           // concurrent requests per connection, default 256
	MaxCursors       int           // open cursors per connection, default 1024 (one *sql.DB shares a connection)
	PageRows         int           // rows per page when the client asks for 0, default 512
	PageBytes        int           // a page is cut once its values exceed this, default 1 MiB
	HandshakeTimeout time.Duration // TLS handshake + preamble + Hello, default 10s
	RequestTimeout   time.Duration // upper bound on one request, default 60s
	// CursorIdleTimeout closes a cursor that no Next has asked a page of for that long
	// (default 5m): a result left open holds a SQLite connection and keeps its database's
	// WAL from starting again, until its client's connection closes.
	CursorIdleTimeout time.Duration
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxFrameSize <= 0 {
		c.MaxFrameSize = wire.DefaultMaxFrameSize
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 256
	}
	if c.MaxCursors <= 0 {
		c.MaxCursors = 1024
	}
	if c.PageRows <= 0 {
		c.PageRows = 512
	}
	if c.PageBytes <= 0 {
		c.PageBytes = 1 << 20
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 60 * time.Second
	}
	if c.CursorIdleTimeout <= 0 {
		c.CursorIdleTimeout = 5 * time.Minute
	}
}

// Server accepts connections on one listener. Close stops it and every connection.
type Server struct {
	cfg    Config
	ctx    context.Context // cancelled by Close: every request's context derives from it
	cancel context.CancelFunc
	wg     sync.WaitGroup // connection goroutines

	mu    sync.Mutex
	lns   map[net.Listener]struct{}
	conns map[net.Conn]struct{}

	nextID atomic.Uint64 // transaction, cursor and statement ids (unique per server)
	stats  Stats
	// lastTLSWarning (Unix ns) rate-limits the warnings about failed TLS handshakes.
	lastTLSWarning atomic.Int64
}

// Stats counts what the server did; read it with Snapshot.
type Stats struct {
	Connections atomic.Int64 // open client connections
	Handshakes  atomic.Int64 // TLS handshakes completed
	Resumed     atomic.Int64 // of which resumed a session
	Requests    atomic.Int64 // client requests answered
}

// New returns a server; call Serve with a listener.
func New(cfg Config) *Server {
	cfg.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{cfg: cfg, ctx: ctx, cancel: cancel, lns: map[net.Listener]struct{}{}, conns: map[net.Conn]struct{}{}}
}

// Stats returns the server's counters.
func (s *Server) Stats() *Stats { return &s.stats }

// Serve accepts connections until the listener fails or Close is called. It returns nil after
// Close.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		return ln.Close()
	}
	s.lns[ln] = struct{}{}
	s.mu.Unlock()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Out of file descriptors and the like: back off instead of spinning.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		delay = 0
		if !s.track(c) {
			c.Close()
			return nil
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handshake(c)
		}()
	}
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Close stops accepting, closes every client connection and waits for their goroutines.
// Peer connections handed to PeerConn belong to the transport.
func (s *Server) Close() error {
	s.mu.Lock()
	s.cancel()
	for ln := range s.lns {
		ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func plaintextPreamble(p string) bool { return p == wire.ClientPreamble || p == wire.PeerPreamble }

// peekedConn returns the bytes read ahead before reading on from the connection itself.
type peekedConn struct {
	net.Conn
	ahead []byte
}

func (c *peekedConn) Read(p []byte) (int, error) {
	if len(c.ahead) > 0 {
		n := copy(p, c.ahead)
		c.ahead = c.ahead[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// warnTLS logs a failed TLS handshake at warning level at most every 10 s (a flood of bad
// clients must not flood the log), at debug level otherwise.
func (s *Server) warnTLS(msg string, remote net.Addr, err error) {
	now := time.Now().UnixNano()
	last := s.lastTLSWarning.Load()
	if now-last >= int64(10*time.Second) && s.lastTLSWarning.CompareAndSwap(last, now) {
		s.cfg.Logger.Warn(msg, "remote", remote, "err", err, "note", "further ones within 10 s are logged at debug level")
		return
	}
	s.cfg.Logger.Debug(msg, "remote", remote, "err", err)
}

// handshake finishes TLS, reads the preamble and hands the connection to its protocol.
func (s *Server) handshake(raw net.Conn) {
	handedOver := false
	defer func() {
		s.untrack(raw)
		if !handedOver {
			raw.Close()
		}
	}()
	_ = raw.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	conn := raw
	if s.cfg.TLS != nil {
		// A plaintext Tandem client or peer would only see the connection close: tell it.
		ahead := make([]byte, len(wire.ClientPreamble))
		if _, err := io.ReadFull(raw, ahead); err != nil {
			return
		}
		if plaintextPreamble(string(ahead)) {
			s.warnTLS("a plaintext connection to a TLS node", raw.RemoteAddr(), nil)
			if string(ahead) == wire.ClientPreamble {
				w := wire.NewWriter(raw, 0)
				_ = w.WriteMsg(0, &wire.Error{Code: wire.CodeBadRequest,
					Message: "this node requires TLS: connect with a certificate, its key and the CA (--tls-cert, --tls-key, --tls-ca)"})
				_ = w.Flush()
			}
			return
		}
		tc := tls.Server(&peekedConn{Conn: raw, ahead: ahead}, s.cfg.TLS)
		if err := tc.HandshakeContext(s.ctx); err != nil {
			s.warnTLS("tls handshake failed", raw.RemoteAddr(), err)
			return
		}
		s.stats.Handshakes.Add(1)
		if tc.ConnectionState().DidResume {
			s.stats.Resumed.Add(1)
		}
		conn = tc
	}
	var pre [4]byte
	if _, err := io.ReadFull(conn, pre[:]); err != nil {
		return
	}
	switch string(pre[:]) {
	case wire.PeerPreamble:
		if s.cfg.PeerConn == nil {
			return
		}
		_ = raw.SetDeadline(time.Time{})
		handedOver = true
		s.untrack(raw)
		// The transport owns peer connections (and stops them); Close does not wait for them.
		go s.cfg.PeerConn(conn)
	case wire.ClientPreamble:
		s.stats.Connections.Add(1)
		defer s.stats.Connections.Add(-1)
		newSession(s, conn).run()
	default:
		if pre[0] == 0x16 && pre[1] == 0x03 { // a TLS handshake record
			s.warnTLS("a TLS connection to a node without TLS", raw.RemoteAddr(), nil)
			return
		}
		s.cfg.Logger.Debug("unknown preamble", "remote", raw.RemoteAddr(), "preamble", fmt.Sprintf("%q", pre[:]))
	}
}
