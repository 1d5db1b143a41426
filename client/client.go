package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemdb/tandem/wire"
)

// Re-exported protocol types.
type (
	Value       = wire.Value
	Named       = wire.Named
	Result      = wire.Result
	LeaderInfo  = wire.LeaderInfo
	ClusterInfo = wire.ClusterInfo
	Member      = wire.Member
	NodeStatus  = wire.NodeStatus
	Consistency = wire.Consistency
)

// Consistency levels for QueryOptions.
const (
	Linearizable = wire.Linearizable
	LeaderLocal  = wire.LeaderLocal
	Stale        = wire.Stale
)

// Config configures a Client.
type Config struct {
	Addrs          []string      // nodes to try, in order; at least one
	TLS            *tls.Config   // nil: plain TCP. A ClientSessionCache is added when missing.
	DialTimeout    time.Duration // per connection attempt (TCP + TLS + handshake); default 5s
	RequestTimeout time.Duration // budget of a call whose context has no deadline; default 30s
	Logger         *slog.Logger  // default: discard
	Name           string        // sent in Hello, for the server's logs

	// Dialer opens the TCP connection; default net.Dialer. Tests use it to count dials.
	Dialer func(ctx context.Context, addr string) (net.Conn, error)
	// PageSize is the default number of rows per page of a query (0: the server's choice).
	PageSize uint32
	// MaxRedirects bounds the redirects one call follows; default 8.
	MaxRedirects int
	// MaxRetryAge is how long after its first attempt a write is still retried with the same
	// request id (then the call ends with an "outcome unknown" error); default and maximum
	// DefaultMaxRetryAge, because the cluster remembers outcomes for a limited time.
	MaxRetryAge time.Duration
}

// Client is a connection to a Tandem cluster. It is safe for concurrent use.
type Client struct {
	cfg Config
	tls *tls.Config
	log *slog.Logger
	ids atomic.Uint64 // request ids: frame ids and de-duplication ids

	mu         sync.Mutex
	clientID   uint64
	leaderID   uint64
	leaderAddr string
	conns      map[string]*conn
	closed     bool
	next       int // rotation over cfg.Addrs when the leader is unknown
}

// CheckAddr reports whether addr is a node address (HOST:PORT with a port): one without a
// port would only fail to connect, over and over, until the caller's deadline.
func CheckAddr(addr string) error {
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		return fmt.Errorf("address %q is not HOST:PORT", addr)
	}
	return nil
}

// New returns a client for the cluster at cfg.Addrs. It connects to the first node that
// answers (to be given a client id and to learn the leader), dialing the addresses in order
// a quarter of a second apart, and fails when none answers before ctx ends, or at once when
// every node refuses (protocol version, TLS certificate).
func New(ctx context.Context, cfg Config) (*Client, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("tandem: client: no addresses")
	}
	cfg.Addrs = append([]string(nil), cfg.Addrs...)
	for _, a := range cfg.Addrs {
		if err := CheckAddr(a); err != nil {
			return nil, fmt.Errorf("tandem: client: %w", err)
		}
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	if cfg.MaxRetryAge <= 0 || cfg.MaxRetryAge > DefaultMaxRetryAge {
		cfg.MaxRetryAge = DefaultMaxRetryAge
	}
	if cfg.MaxRedirects <= 0 {
		cfg.MaxRedirects = 8
	}
	if cfg.Dialer == nil {
		cfg.Dialer = func(ctx context.Context, addr string) (net.Conn, error) {
			// Probe idle connections so that a dead peer is noticed in about 20s.
			d := net.Dialer{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 5 * time.Second, Interval: 5 * time.Second, Count: 3}}
			return d.DialContext(ctx, "tcp", addr)
		}
	}
	c := &Client{cfg: cfg, log: cfg.Logger, conns: map[string]*conn{}}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if cfg.TLS != nil {
		c.tls = cfg.TLS.Clone()
		if c.tls.ClientSessionCache == nil {
			c.tls.ClientSessionCache = tls.NewLRUClientSessionCache(len(cfg.Addrs) * 4)
		}
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	var last error
	for round := 0; ; round++ {
		refused, err := c.connectAny(ctx)
		if err == nil {
			return c, nil
		}
		if last == nil || ctx.Err() == nil {
			last = err // a round cut short by the deadline says less than the one before
		}
		if refused {
			c.Close() // a node answered and refused: asking again would not help
			return nil, err
		}
		if sleep(ctx, backoff(round)) != nil {
			c.Close()
			return nil, unavailable(last)
		}
	}
}

// dialStagger is how long connectAny waits for one address before it also dials the next.
const dialStagger = 250 * time.Millisecond

// connectAny connects to one of the addresses: it dials the first, and the next one each
// dialStagger, or at once when a dial fails, until one connects (the dials still in flight
// are then abandoned). So an address that is down or black-holed costs the others a stagger,
// not its dial timeout. When all fail, the error is a refusal (refused true: a node answered
// and would not have this client, so asking again would not help) if there was one, else
// the most telling failure.
func (c *Client) connectAny(ctx context.Context) (refused bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	addrs := c.cfg.Addrs
	results := make(chan error, len(addrs)) // buffered: a dial finishing late never blocks
	next := time.NewTimer(0)
	defer next.Stop()
	started, failed := 0, 0
	for {
		select {
		case <-next.C:
			if started < len(addrs) {
				addr := addrs[started]
				started++
				go func() {
					_, err := c.getConn(ctx, addr)
					results <- err
				}()
				next.Reset(dialStagger)
			}
		case e := <-results:
			if e == nil {
				return false, nil
			}
			failed++
			var we *wire.Error
			switch {
			case errors.As(e, &we) && (we.Code == wire.CodeUnsupportedVersion || we.Code == wire.CodeBadRequest):
				err, refused = e, true
			case !refused && (err == nil || ctx.Err() == nil):
				err = e
			}
			if failed == len(addrs) {
				return refused, err
			}
			next.Reset(0)
		}
	}
}

// ClientID is the id the cluster gave this client (request ids are de-duplicated per
// client id).
func (c *Client) ClientID() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.clientID
}

// Close closes every connection. Calls in flight fail.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	conns := c.conns
	c.conns = map[string]*conn{}
	c.mu.Unlock()
	for _, cn := range conns {
		<-cn.ready
		if cn.dialErr == nil {
			cn.fail(errors.New("client closed"))
		}
	}
	return nil
}

func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.cfg.RequestTimeout)
}

func (c *Client) nextID() uint64 { return c.ids.Add(1) }

// DefaultMaxRetryAge bounds Config.MaxRetryAge. The cluster remembers request outcomes for
// 2 minutes of leader time (store.RequestRetention); retrying for at most half of that leaves
// room for clock skew between leaders.
const DefaultMaxRetryAge = time.Minute

// getConn returns the live connection to addr, dialing it (once, shared by concurrent
// callers) when there is none.
func (c *Client) getConn(ctx context.Context, addr string) (*conn, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, errClosed
	}
	cn := c.conns[addr]
	if cn != nil {
		c.mu.Unlock()
		select {
		case <-cn.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if cn.dialErr != nil {
			return nil, cn.dialErr
		}
		return cn, nil
	}
	cn = newConn(c, addr)
	c.conns[addr] = cn
	c.mu.Unlock()
	cn.dial(ctx)
	if cn.dialErr != nil {
		c.dropConn(cn)
		return nil, cn.dialErr
	}
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		cn.fail(errors.New("client closed"))
		return nil, errClosed
	}
	return cn, nil
}

// existingConn returns a live connection, preferring the leader's, without dialing.
func (c *Client) existingConn() *conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cn := c.conns[c.leaderAddr]; cn != nil && c.leaderAddr != "" && cn.usable() {
		return cn
	}
	for _, a := range c.cfg.Addrs {
		if cn := c.conns[a]; cn != nil && cn.usable() {
			return cn
		}
	}
	for _, cn := range c.conns {
		if cn.usable() {
			return cn
		}
	}
	return nil
}

// usable reports whether the connection finished its handshake and is alive.
func (cn *conn) usable() bool {
	select {
	case <-cn.ready:
		return cn.dialErr == nil && cn.alive()
	default:
		return false
	}
}

func (c *Client) dropConn(cn *conn) {
	c.mu.Lock()
	if c.conns[cn.addr] == cn {
		delete(c.conns, cn.addr)
	}
	c.mu.Unlock()
}

// learnLeader records the leader reported by a node (id 0: that node knows none).
func (c *Client) learnLeader(id uint64, addr string, from *conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if id == 0 {
		return
	}
	// Prefer the address this client already reached the leader by.
	if from != nil && from.nodeID == id {
		addr = from.addr
	} else {
		for a, cn := range c.conns {
			if cn.usable() && cn.nodeID == id {
				addr = a
				break
			}
		}
	}
	if addr == "" {
		return
	}
	if c.leaderID != id || c.leaderAddr != addr {
		c.log.Debug("tandem: leader", "id", id, "addr", addr)
	}
	c.leaderID, c.leaderAddr = id, addr
}

// forgetLeader drops the remembered leader if it is at addr.
func (c *Client) forgetLeader(addr string) {
	c.mu.Lock()
	if c.leaderAddr == addr {
		c.leaderID, c.leaderAddr = 0, ""
	}
	c.mu.Unlock()
}

// KnownLeader returns the leader the client remembers, without asking anyone.
func (c *Client) KnownLeader() (id uint64, addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leaderID, c.leaderAddr
}

// route says where a call goes and how it may be retried.
type route struct {
	kind  routeKind
	addr  string // toNode: that node; toStale: preferred node ("" = first listed)
	write bool   // a write carrying a request id: resent on connection loss / outcome unknown (same id)
	// busyFinal: a TryAgain answer is returned, not retried.
	busyFinal bool
}

type routeKind int

const (
	toLeader routeKind = iota // follow redirects
	toNode                    // exactly that node
	toStale                   // preferred node, failing over to the others
)

func (c *Client) pick(rt route, attempt int) string {
	switch rt.kind {
	case toNode:
		return rt.addr
	case toStale:
		addrs := c.cfg.Addrs
		if rt.addr != "" {
			if attempt == 0 {
				return rt.addr
			}
			attempt--
		}
		return addrs[attempt%len(addrs)]
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leaderAddr != "" {
		return c.leaderAddr
	}
	a := c.cfg.Addrs[c.next%len(c.cfg.Addrs)]
	c.next++
	return a
}

func backoff(n int) time.Duration {
	d := 10 * time.Millisecond << min(n, 6) // up to 640ms
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// call sends the message made by build (given the connection it will travel on) along rt
// and returns the decoded response of the wanted type and the connection that answered.
func (c *Client) call(ctx context.Context, rt route, want wire.MsgType, build func(ctx context.Context, cn *conn) wire.Message) (wire.Message, *conn, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	var (
		last      error
		sent      bool      // a write may have reached a node
		firstSent time.Time // when it was first sent
		redirects int
		failures  int
	)
	for attempt := 0; ; attempt++ {
		if sent && (rt.write || want == wire.TypeRowsPage) && time.Since(firstSent) > c.cfg.MaxRetryAge {
			// The cluster remembers a request id's outcome for a limited time: a later retry
			// could apply the write (or a query that writes) a second time.
			return nil, nil, outcomeUnknown(fmt.Errorf("tandem: no retry after %v: %w", c.cfg.MaxRetryAge, last))
		}
		if ctx.Err() != nil {
			if last != nil && !sent {
				return nil, nil, fmt.Errorf("%w (last error: %w)", context.Cause(ctx), last)
			}
			return nil, nil, ctxError(ctx, sent && rt.write)
		}
		addr := c.pick(rt, attempt)
		cn, err := c.getConn(ctx, addr)
		if err != nil {
			if errors.Is(err, errClosed) {
				return nil, nil, err
			}
			var we *wire.Error
			if errors.As(err, &we) && !isConnError(err) && !retryable(we.Code) {
				return nil, nil, err
			}
			last = err
			if rt.kind == toLeader {
				c.forgetLeader(addr)
			}
			if rt.kind == toNode {
				return nil, nil, unavailable(err)
			}
			c.pause(ctx, &failures) // a context error is reported at the top of the loop
			continue
		}
		m := build(ctx, cn)
		f, err := cn.roundTrip(ctx, c.nextID(), m)
		if err != nil {
			if errors.Is(err, wire.ErrFrameTooLarge) {
				return nil, nil, fmt.Errorf("%w: %w", &wire.Error{Code: wire.CodeBadRequest, Message: "request too large"}, err)
			}
			var ns errNotSent
			notSent := errors.As(err, &ns)
			if !notSent && !sent {
				sent, firstSent = true, time.Now()
			}
			if ctx.Err() != nil {
				continue
			}
			if !notSent && !isConnError(err) {
				return nil, nil, err // e.g. frame too large
			}
			last = err
			if sent && rt.write && !retryWrites(m) {
				return nil, nil, outcomeUnknown(err)
			}
			if rt.kind == toNode && failures >= 2 {
				return nil, nil, unavailable(err)
			}
			c.pause(ctx, &failures)
			continue
		}
		resp, err := wire.Decode(f)
		if err != nil {
			cn.fail(err) // the server broke the protocol: start afresh
			return nil, nil, &wire.Error{Code: wire.CodeInternal, Message: "bad response: " + err.Error()}
		}
		switch r := resp.(type) {
		case *wire.Redirect:
			if rt.kind != toLeader {
				return nil, nil, r
			}
			redirects++
			if redirects > c.cfg.MaxRedirects {
				return nil, nil, fmt.Errorf("tandem: too many redirects: %w", r)
			}
			last = r
			if r.LeaderID != 0 && r.LeaderAddr != "" && r.LeaderAddr != addr {
				c.learnLeader(r.LeaderID, r.LeaderAddr, nil)
				if redirects == 1 {
					continue // first hop: go straight there
				}
			} else {
				c.forgetLeader(addr)
			}
			c.pause(ctx, &failures)
			continue
		case *wire.Error:
			if !retryable(r.Code) || (r.Code == wire.CodeNotLeader && rt.kind == toNode) {
				return nil, nil, r
			}
			if r.Code == wire.CodeOutcomeUnknown && !rt.write || r.Code == wire.CodeTryAgain && rt.busyFinal {
				return nil, nil, r
			}
			if r.Code == wire.CodeNotLeader && rt.kind == toLeader {
				c.forgetLeader(addr)
			}
			if r.Code == wire.CodeOutcomeUnknown && !sent {
				sent, firstSent = true, time.Now()
			}
			last = r
			c.pause(ctx, &failures)
			continue
		}
		if resp.Type() != want {
			return nil, nil, &wire.Error{Code: wire.CodeInternal, Message: fmt.Sprintf("got %s, want %s", resp.Type(), want)}
		}
		if rt.kind == toLeader && want != wire.TypeClusterInfo {
			c.learnLeader(cn.nodeID, cn.addr, cn) // only the leader answers these
		}
		return resp, cn, nil
	}
}

func (c *Client) pause(ctx context.Context, failures *int) error {
	err := sleep(ctx, backoff(*failures))
	*failures++
	return err
}

// retryWrites reports whether a write may be resent after its connection was lost: only
// autocommit statements and commits carry a request id the cluster de-duplicates.
func retryWrites(m wire.Message) bool {
	switch m := m.(type) {
	case *wire.Exec:
		return m.RequestID != 0 && m.TxID == 0
	}
	return false
}

// retryable reports whether a request answered with code may be sent again.
func retryable(code wire.ErrCode) bool {
	switch code {
	case wire.CodeNotLeader, wire.CodeOutcomeUnknown, wire.CodeTryAgain, wire.CodeUnavailable:
		return true
	}
	return false
}

// timeoutMillis is the budget left in ctx, for the server to drop work it cannot start in time.
func timeoutMillis(ctx context.Context, def time.Duration) uint32 {
	d := def
	if dl, ok := ctx.Deadline(); ok {
		d = time.Until(dl)
	}
	if d <= 0 {
		return 1
	}
	ms := d.Milliseconds()
	if ms > 1<<31 {
		ms = 1 << 31
	}
	if ms < 1 {
		ms = 1
	}
	return uint32(ms)
}

func toValues(args []any) ([]Value, error) {
	if len(args) == 0 {
		return nil, nil
	}
	vs := make([]Value, len(args))
	for i, a := range args {
		if err := wire.CheckValue(a); err != nil {
			return nil, &wire.Error{Code: wire.CodeBadRequest, Message: fmt.Sprintf("argument %d: %v", i+1, err)}
		}
		if b, ok := a.([]byte); ok && b == nil {
			a = nil // a nil slice is NULL, as in modernc.org/sqlite and mattn/go-sqlite3
		}
		vs[i] = a
	}
	return vs, nil
}
