// Package wiretest provides an in-process fake Tandem node speaking the client protocol, for
// tests of clients and drivers. It does the listening, TLS, preamble and Hello/Welcome
// handshake; a Handler supplies the behaviour of every other request.
package wiretest

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/tandemdb/tandem/wire"
)

// Handler handles one request frame (already decoded into m). It runs on the connection's
// reading goroutine, so requests of one connection are handled in order unless the handler
// replies from goroutines of its own. It answers with c.Reply (exactly once, unless it closes
// the connection).
type Handler func(c *Conn, id uint64, m wire.Message)

// Server is a fake node.
type Server struct {
	NodeID  uint64
	ln      net.Listener
	tls     *tls.Config
	handler Handler

	accepts  atomic.Int64
	clientID atomic.Uint64 // last assigned client id

	mu     sync.Mutex
	leader uint64
	lAddr  string
	conns  map[*Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// NewServer starts a fake node with id nodeID on 127.0.0.1 (TLS when tlsCfg is non-nil).
func NewServer(nodeID uint64, tlsCfg *tls.Config, h Handler) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{NodeID: nodeID, ln: ln, tls: tlsCfg, handler: h, conns: map[*Conn]struct{}{}}
	s.clientID.Store(nodeID * 1000)
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Addr is the address clients dial.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Accepts counts the connections accepted so far.
func (s *Server) Accepts() int64 { return s.accepts.Load() }

// SetLeader sets what Welcome (and Leader()) report as the leader.
func (s *Server) SetLeader(id uint64, addr string) {
	s.mu.Lock()
	s.leader, s.lAddr = id, addr
	s.mu.Unlock()
}

// Leader returns what SetLeader set.
func (s *Server) Leader() (uint64, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leader, s.lAddr
}

// IsLeader reports whether this node believes it leads.
func (s *Server) IsLeader() bool {
	id, _ := s.Leader()
	return id == s.NodeID
}

// DropAll closes every open connection.
func (s *Server) DropAll() {
	s.mu.Lock()
	cs := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

// Close stops listening, closes every connection and waits for their goroutines.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.ln.Close()
	s.DropAll()
	s.wg.Wait()
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.accepts.Add(1)
		c := &Conn{s: s, nc: nc}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go c.serve()
	}
}

// Conn is one client connection to the fake node.
type Conn struct {
	s        *Server
	nc       net.Conn
	ClientID uint64
	resumed  bool

	wmu sync.Mutex
	w   *wire.Writer
}

// DidResume reports whether the TLS handshake resumed a session.
func (c *Conn) DidResume() bool { return c.resumed }

// Server returns the node this connection reached.
func (c *Conn) Server() *Server { return c.s }

// Close closes the connection.
func (c *Conn) Close() { c.nc.Close() }

// Reply sends m as the response to request id.
func (c *Conn) Reply(id uint64, m wire.Message) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.w.WriteMsg(id, m); err != nil {
		return err
	}
	return c.w.Flush()
}

func (c *Conn) serve() {
	defer c.s.wg.Done()
	defer func() {
		c.nc.Close()
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
	}()
	if c.s.tls != nil {
		tc := tls.Server(c.nc, c.s.tls)
		if err := tc.Handshake(); err != nil {
			return
		}
		c.resumed = tc.ConnectionState().DidResume
		c.nc = tc
	}
	var pre [4]byte
	if _, err := io.ReadFull(c.nc, pre[:]); err != nil || string(pre[:]) != wire.ClientPreamble {
		return
	}
	c.w = wire.NewWriter(c.nc, 0)
	r := wire.NewReader(c.nc, 0)
	f, err := r.ReadFrame()
	if err != nil {
		return
	}
	var hello wire.Hello
	if f.Type != wire.TypeHello || hello.Unmarshal(f.Payload) != nil {
		c.Reply(f.ID, &wire.Error{Code: wire.CodeBadRequest, Message: "expected Hello"})
		return
	}
	if hello.Version != wire.Version {
		c.Reply(f.ID, &wire.Error{Code: wire.CodeUnsupportedVersion})
		return
	}
	c.ClientID = hello.ClientID
	if c.ClientID == 0 {
		c.ClientID = c.s.clientID.Add(1)
	}
	lid, laddr := c.s.Leader()
	if c.Reply(f.ID, &wire.Welcome{Version: wire.Version, ClientID: c.ClientID, NodeID: c.s.NodeID, LeaderID: lid, LeaderAddr: laddr}) != nil {
		return
	}
	for {
		f, err := r.ReadFrame()
		if err != nil {
			return
		}
		m, err := wire.Decode(f)
		if err != nil {
			if errors.Is(err, wire.ErrMalformed) {
				c.Reply(f.ID, &wire.Error{Code: wire.CodeBadRequest, Message: err.Error()})
				continue
			}
			return
		}
		c.s.handler(c, f.ID, m)
	}
}
