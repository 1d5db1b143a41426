package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync/atomic"

	"github.com/tandemdb/tandem/wire"
)

// QueryOptions tune a query.
type QueryOptions struct {
	Consistency Consistency // default Linearizable
	PageSize    uint32      // rows per page; 0: Config.PageSize, then the server's choice
	MinIndex    uint64      // read-your-writes: a Result.Index this read must observe
	Node        string      // Stale reads: node to read from; "" = the first of Config.Addrs
}

// Exec runs a statement through the leader (autocommit, group commit) and returns its
// result. It is retried with the same request id after a lost connection or an "outcome
// unknown" answer, so it is applied at most once.
func (c *Client) Exec(ctx context.Context, db, sql string, args ...any) (Result, error) {
	return c.exec(ctx, db, sql, nil, args)
}

func (c *Client) exec(ctx context.Context, db, sql string, st *Stmt, args []any) (Result, error) {
	vs, err := toValues(args)
	if err != nil {
		return Result{}, err
	}
	reqID := c.nextID()
	resp, _, err := c.call(ctx, route{kind: toLeader, write: true}, wire.TypeResult, func(ctx context.Context, cn *conn) wire.Message {
		m := &wire.Exec{DB: db, SQL: sql, Args: vs, RequestID: reqID, TimeoutMillis: timeoutMillis(ctx, c.cfg.RequestTimeout)}
		if id := st.idOn(cn); id != 0 {
			m.SQL, m.StmtID = "", id
		}
		return m
	})
	if err != nil {
		return Result{}, err
	}
	return *resp.(*wire.Result), nil
}

// Query runs a read and returns its rows, fetched page by page as Rows.Next needs them.
// Linearizable and leader reads go to the leader, stale reads to opts.Node or the first node
// listed in Config.Addrs (failing over to the others).
func (c *Client) Query(ctx context.Context, db, sql string, opts QueryOptions, args ...any) (*Rows, error) {
	return c.query(ctx, db, sql, nil, opts, args)
}

func (c *Client) query(ctx context.Context, db, sql string, st *Stmt, opts QueryOptions, args []any) (*Rows, error) {
	vs, err := toValues(args)
	if err != nil {
		return nil, err
	}
	rt := route{kind: toLeader}
	if opts.Consistency == Stale {
		rt = route{kind: toStale, addr: opts.Node}
	}
	if opts.PageSize == 0 {
		opts.PageSize = c.cfg.PageSize
	}
	// A query may turn out to write (INSERT ... RETURNING); the server then de-duplicates it
	// by this id, which makes the retries below safe for it too.
	reqID := c.nextID()
	resp, cn, err := c.call(ctx, rt, wire.TypeRowsPage, func(ctx context.Context, cn *conn) wire.Message {
		m := &wire.Query{DB: db, SQL: sql, Args: vs, Consistency: opts.Consistency, PageSize: opts.PageSize,
			MinIndex: opts.MinIndex, TimeoutMillis: timeoutMillis(ctx, c.cfg.RequestTimeout), RequestID: reqID}
		if id := st.idOn(cn); id != 0 {
			m.SQL, m.StmtID = "", id
		}
		return m
	})
	if err != nil {
		return nil, err
	}
	return newRows(c, cn, resp.(*wire.RowsPage)), nil
}

// pinned sends m on cn only (no retry elsewhere) and returns the response of type want.
func (c *Client) pinned(ctx context.Context, cn *conn, m wire.Message, want wire.MsgType) (wire.Message, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	f, err := cn.roundTrip(ctx, c.nextID(), m)
	if err != nil {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		if isConnError(err) {
			return nil, fmt.Errorf("%w: %w", &wire.Error{Code: wire.CodeUnavailable, Message: "connection lost"}, err)
		}
		return nil, err
	}
	resp, err := wire.Decode(f)
	if err != nil {
		cn.fail(err)
		return nil, &wire.Error{Code: wire.CodeInternal, Message: "bad response: " + err.Error()}
	}
	switch r := resp.(type) {
	case *wire.Error:
		return nil, r
	case *wire.Redirect:
		return nil, r
	}
	if resp.Type() != want {
		return nil, &wire.Error{Code: wire.CodeInternal, Message: fmt.Sprintf("got %s, want %s", resp.Type(), want)}
	}
	return resp, nil
}

// Rows streams a query's rows. It is not safe for concurrent use.
type Rows struct {
	c         *Client
	cn        *conn
	cursor    uint64
	columns   []string
	declTypes []string
	page      [][]Value
	i         int
	done      bool
	closed    bool
}

func newRows(c *Client, cn *conn, p *wire.RowsPage) *Rows {
	return &Rows{c: c, cn: cn, cursor: p.Cursor, columns: p.Columns, declTypes: p.DeclTypes, page: p.Rows, done: p.Done}
}

// Columns returns the result's column names.
func (r *Rows) Columns() []string { return r.columns }

// DeclTypes returns the columns' declared types ("" for expressions).
func (r *Rows) DeclTypes() []string { return r.declTypes }

// Next returns the next row, fetching the next page when needed, or io.EOF after the last.
// The row's values are nil, int64, float64, string or []byte.
func (r *Rows) Next(ctx context.Context) ([]Value, error) {
	for r.i >= len(r.page) {
		if r.done || r.closed {
			return nil, io.EOF
		}
		resp, err := r.c.pinned(ctx, r.cn, &wire.Next{Cursor: r.cursor}, wire.TypeRowsPage)
		if err != nil {
			return nil, err
		}
		p := resp.(*wire.RowsPage)
		r.page, r.i, r.done = p.Rows, 0, p.Done
	}
	row := r.page[r.i]
	r.page[r.i] = nil
	r.i++
	return row, nil
}

// Close releases the cursor (without waiting for the server) if rows remain.
func (r *Rows) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	r.page = nil
	if !r.done && r.cn.alive() {
		r.cn.send(r.c.nextID(), &wire.CloseCursor{Cursor: r.cursor}, nil)
	}
	return nil
}

// Tx is an interactive transaction, bound to the connection to the leader that began it.
// It is not safe for concurrent use.
type Tx struct {
	c        *Client
	cn       *conn
	id       uint64
	db       string
	readOnly bool   // BeginRead
	pageSize uint32 // rows per page of its queries (BeginRead's option); 0: Config.PageSize
	done     atomic.Bool
}

var (
	errTxDone     = &wire.Error{Code: wire.CodeNoSuchTx, Message: "transaction already committed or rolled back"}
	errReadOnlyTx = &wire.Error{Code: wire.CodeBadRequest, Message: "read-only transaction: Exec cannot run in it (use Query, or a transaction from Begin)"}
)

// Begin starts an interactive transaction on the leader.
func (c *Client) Begin(ctx context.Context, db string) (*Tx, error) {
	resp, cn, err := c.call(ctx, route{kind: toLeader}, wire.TypeTxBegun, func(context.Context, *conn) wire.Message {
		return &wire.Begin{DB: db}
	})
	if err != nil {
		return nil, err
	}
	return &Tx{c: c, cn: cn, id: resp.(*wire.TxBegun).TxID, db: db}, nil
}

// BeginRead starts a read-only transaction: its queries all see the one state the node had
// applied when it began, and it holds no writer, so writes go on meanwhile. opts choose that
// state as for Query (Consistency, MinIndex) and, for Stale, the node (Node; a follower will
// do), and opts.PageSize the rows per page of its queries. Exec in it fails; Commit and
// Rollback end it. A node holds at most 256 at once: beyond, BeginRead fails at once with an
// error matching ErrTryAgain.
func (c *Client) BeginRead(ctx context.Context, db string, opts QueryOptions) (*Tx, error) {
	// TryAgain here means the node holds as many read-only transactions as it allows: they
	// end when their holders end them, which waiting here would not bring about.
	rt := route{kind: toLeader, busyFinal: true}
	if opts.Consistency == Stale {
		rt = route{kind: toStale, addr: opts.Node, busyFinal: true}
	}
	resp, cn, err := c.call(ctx, rt, wire.TypeTxBegun, func(context.Context, *conn) wire.Message {
		return &wire.BeginRead{DB: db, Consistency: opts.Consistency, MinIndex: opts.MinIndex}
	})
	if err != nil {
		return nil, err
	}
	return &Tx{c: c, cn: cn, id: resp.(*wire.TxBegun).TxID, db: db, readOnly: true, pageSize: opts.PageSize}, nil
}

// ReadOnly reports whether t was started by BeginRead.
func (t *Tx) ReadOnly() bool { return t.readOnly }

// ID is the transaction's id on its connection.
func (t *Tx) ID() uint64 { return t.id }

// Exec runs a statement inside the transaction.
func (t *Tx) Exec(ctx context.Context, sql string, args ...any) (Result, error) {
	if t.done.Load() {
		return Result{}, errTxDone
	}
	if t.readOnly {
		return Result{}, errReadOnlyTx
	}
	vs, err := toValues(args)
	if err != nil {
		return Result{}, err
	}
	resp, err := t.c.pinned(ctx, t.cn, &wire.Exec{DB: t.db, SQL: sql, Args: vs, TxID: t.id, RequestID: t.c.nextID()}, wire.TypeResult)
	if err != nil {
		return Result{}, err
	}
	return *resp.(*wire.Result), nil
}

// Query runs a read inside the transaction.
func (t *Tx) Query(ctx context.Context, sql string, args ...any) (*Rows, error) {
	if t.done.Load() {
		return nil, errTxDone
	}
	vs, err := toValues(args)
	if err != nil {
		return nil, err
	}
	pageSize := t.pageSize
	if pageSize == 0 {
		pageSize = t.c.cfg.PageSize
	}
	resp, err := t.c.pinned(ctx, t.cn, &wire.Query{DB: t.db, SQL: sql, Args: vs, TxID: t.id, PageSize: pageSize}, wire.TypeRowsPage)
	if err != nil {
		return nil, err
	}
	return newRows(t.c, t.cn, resp.(*wire.RowsPage)), nil
}

// Commit commits the transaction. If the connection breaks while the commit is in flight,
// or the leader answers "outcome unknown" (leadership changed meanwhile), Commit asks the
// leader, over any connection, what became of the commit (Outcome in docs/protocol.md,
// retried until ctx ends): it returns the commit's result if it took effect, and an error
// matching ErrNotCommitted if it did not and never will. Only when ctx ends before the
// leader could tell is the error ErrOutcomeUnknown: the transaction may or may not have
// been committed.
func (t *Tx) Commit(ctx context.Context) (Result, error) {
	if t.readOnly {
		// Nothing to commit: ending it is all, and a lost connection ended it already.
		return Result{}, t.Rollback(ctx)
	}
	if t.done.Swap(true) {
		return Result{}, errTxDone
	}
	reqID := t.c.nextID()
	resp, err := t.c.pinned(ctx, t.cn, &wire.Commit{TxID: t.id, RequestID: reqID}, wire.TypeResult)
	if err == nil {
		return *resp.(*wire.Result), nil
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return Result{}, outcomeUnknown(err)
	}
	var we *wire.Error
	if !errors.As(err, &we) || (we.Code != wire.CodeUnavailable && we.Code != wire.CodeOutcomeUnknown) {
		return Result{}, err
	}
	res, oerr := t.c.outcome(ctx, t.db, reqID)
	switch {
	case oerr == nil:
		return res, nil
	case errors.Is(oerr, ErrNotCommitted):
		return Result{}, fmt.Errorf("%w (the commit failed: %w)", oerr, err)
	}
	return Result{}, outcomeUnknown(fmt.Errorf("%w; asking the leader what became of it failed: %w", err, oerr))
}

// outcome asks the leader for the first outcome of this client's write requestID on db.
func (c *Client) outcome(ctx context.Context, db string, requestID uint64) (Result, error) {
	resp, _, err := c.call(ctx, route{kind: toLeader}, wire.TypeResult, func(context.Context, *conn) wire.Message {
		return &wire.Outcome{DB: db, RequestID: requestID}
	})
	if err != nil {
		return Result{}, err
	}
	return *resp.(*wire.Result), nil
}

// Rollback abandons the transaction. A lost connection already rolled it back.
func (t *Tx) Rollback(ctx context.Context) error {
	if t.done.Swap(true) {
		return errTxDone
	}
	if !t.cn.alive() {
		return nil
	}
	_, err := t.c.pinned(ctx, t.cn, &wire.Rollback{TxID: t.id}, wire.TypeOK)
	if err != nil && !t.cn.alive() {
		return nil
	}
	return err
}

// Stmt is a statement prepared on the leader's connection. Executions use it while that
// connection lives and leads, and send the SQL text otherwise. Safe for concurrent use.
type Stmt struct {
	c         *Client
	cn        *conn
	id        uint64
	db, sql   string
	numParams int
	columns   []string
	closed    atomic.Bool
}

// Prepare prepares sql on the leader (reporting syntax errors at once).
func (c *Client) Prepare(ctx context.Context, db, sql string) (*Stmt, error) {
	resp, cn, err := c.call(ctx, route{kind: toLeader}, wire.TypePrepared, func(context.Context, *conn) wire.Message {
		return &wire.Prepare{DB: db, SQL: sql}
	})
	if err != nil {
		return nil, err
	}
	p := resp.(*wire.Prepared)
	n := int(p.NumParams)
	if p.NumParams == math.MaxUint32 {
		n = -1 // the server could not tell
	}
	return &Stmt{c: c, cn: cn, id: p.StmtID, db: db, sql: sql, numParams: n, columns: p.Columns}, nil
}

// idOn returns the statement id to use on cn, or 0 to send the SQL text.
func (s *Stmt) idOn(cn *conn) uint64 {
	if s == nil || s.cn != cn || s.closed.Load() {
		return 0
	}
	return s.id
}

// NumParams is the number of parameters the statement takes, or -1 when the server could not
// tell (see Prepare in docs/protocol.md).
func (s *Stmt) NumParams() int { return s.numParams }

// Columns names the statement's result columns.
func (s *Stmt) Columns() []string { return s.columns }

// SQL is the statement's text.
func (s *Stmt) SQL() string { return s.sql }

// Exec runs the statement like Client.Exec.
func (s *Stmt) Exec(ctx context.Context, args ...any) (Result, error) {
	return s.c.exec(ctx, s.db, s.sql, s, args)
}

// Query runs the statement like Client.Query.
func (s *Stmt) Query(ctx context.Context, opts QueryOptions, args ...any) (*Rows, error) {
	return s.c.query(ctx, s.db, s.sql, s, opts, args)
}

// Close releases the statement on the server (without waiting).
func (s *Stmt) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if s.cn.alive() {
		s.cn.send(s.c.nextID(), &wire.CloseStmt{StmtID: s.id}, nil)
	}
	return nil
}

// Leader returns the leader. It asks over a connection the client already has (the
// leader's when there is one), so in the steady state it costs one round trip and no dial;
// it tries other nodes only when the one asked knows no leader.
func (c *Client) Leader(ctx context.Context) (LeaderInfo, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	tried := map[string]bool{}
	var last error
	failures := 0
	for {
		if ctx.Err() != nil {
			if last != nil {
				return LeaderInfo{}, fmt.Errorf("%w (last error: %w)", context.Cause(ctx), last)
			}
			return LeaderInfo{}, context.Cause(ctx)
		}
		cn := c.existingConn()
		if cn != nil && tried[cn.addr] {
			cn = nil
		}
		if cn == nil {
			addr := ""
			for _, a := range c.cfg.Addrs {
				if !tried[a] {
					addr = a
					break
				}
			}
			if addr == "" { // asked everyone: start over after a pause
				clear(tried)
				c.pause(ctx, &failures)
				continue
			}
			var err error
			if cn, err = c.getConn(ctx, addr); err != nil {
				if errors.Is(err, errClosed) {
					return LeaderInfo{}, err
				}
				tried[addr], last = true, err
				continue
			}
		}
		resp, err := c.pinned(ctx, cn, &wire.LeaderReq{}, wire.TypeLeaderInfo)
		if err != nil {
			tried[cn.addr], last = true, err
			continue
		}
		info := *resp.(*wire.LeaderInfo)
		if info.ID == 0 {
			tried[cn.addr], last = true, &wire.Error{Code: wire.CodeNotLeader, Message: "no leader known at " + cn.addr}
			continue
		}
		c.learnLeader(info.ID, info.Addr, cn)
		return info, nil
	}
}

// Cluster returns the membership, as the leader knows it.
func (c *Client) Cluster(ctx context.Context) (ClusterInfo, error) {
	resp, _, err := c.call(ctx, route{kind: toLeader}, wire.TypeClusterInfo, func(context.Context, *conn) wire.Message {
		return &wire.ClusterReq{}
	})
	if err != nil {
		return ClusterInfo{}, err
	}
	return *resp.(*wire.ClusterInfo), nil
}

// Status returns the status of the node at addr (which need not be in Config.Addrs).
func (c *Client) Status(ctx context.Context, addr string) (NodeStatus, error) {
	if addr == "" {
		return NodeStatus{}, errors.New("tandem: Status: empty address")
	}
	resp, _, err := c.call(ctx, route{kind: toNode, addr: addr}, wire.TypeNodeStatus, func(context.Context, *conn) wire.Message {
		return &wire.StatusReq{}
	})
	if err != nil {
		return NodeStatus{}, err
	}
	return *resp.(*wire.NodeStatus), nil
}

// Join adds node id at addr to the cluster (as a learner, promoted once caught up).
func (c *Client) Join(ctx context.Context, id uint64, addr string) error {
	_, _, err := c.call(ctx, route{kind: toLeader}, wire.TypeOK, func(context.Context, *conn) wire.Message {
		return &wire.Join{ID: id, Addr: addr}
	})
	return err
}

// Remove removes node id from the cluster.
func (c *Client) Remove(ctx context.Context, id uint64) error {
	_, _, err := c.call(ctx, route{kind: toLeader}, wire.TypeOK, func(context.Context, *conn) wire.Message {
		return &wire.Remove{ID: id}
	})
	return err
}

// Transfer hands leadership to node id (0: the leader picks) and returns the new leader.
func (c *Client) Transfer(ctx context.Context, id uint64) (LeaderInfo, error) {
	resp, cn, err := c.call(ctx, route{kind: toLeader}, wire.TypeLeaderInfo, func(context.Context, *conn) wire.Message {
		return &wire.Transfer{ID: id}
	})
	if err != nil {
		return LeaderInfo{}, err
	}
	info := *resp.(*wire.LeaderInfo)
	c.learnLeader(info.ID, info.Addr, cn)
	return info, nil
}
