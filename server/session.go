package server

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/tandemdb/tandem/internal/sqlite"
	"github.com/tandemdb/tandem/internal/store"
	"github.com/tandemdb/tandem/wire"
)

// session is one client connection: its transactions, cursors and prepared statements.
type session struct {
	srv  *Server
	conn net.Conn
	log  interface {
		Debug(string, ...any)
	}
	clientID uint64

	ctx    context.Context // cancelled when the connection ends
	cancel context.CancelFunc
	out    chan outFrame // to the writer goroutine
	sem    chan struct{} // bounds requests in flight
	wg     sync.WaitGroup

	mu      sync.Mutex // guards the maps; never held across I/O or store calls
	txs     map[uint64]*txState
	cursors map[uint64]*cursor
	stmts   map[uint64]stmtInfo
	// txTail holds, per transaction id, a channel closed when the last request received
	// for that transaction has been answered: the next one waits for it, so that requests
	// touching one transaction run in the order received (protocol §7).
	txTail map[uint64]chan struct{}
	// inflight cancels, per request id, the context of a request being served: a Cancel
	// from the client (its caller gave up) stops it.
	inflight map[uint64]context.CancelFunc
}

type outFrame struct {
	id  uint64
	msg wire.Message
}

type txState struct {
	mu  sync.Mutex    // one statement at a time per transaction
	tx  *store.Tx     // a transaction that may write (on the leader), or
	rtx *store.ReadTx // a read-only one (BeginRead)
}

// end rolls back (or ends) the transaction.
func (t *txState) end() error {
	if t.rtx != nil {
		t.rtx.End()
		return nil
	}
	return t.tx.Rollback()
}

type stmtInfo struct{ db, sql string }

func newSession(s *Server, c net.Conn) *session {
	ctx, cancel := context.WithCancel(s.ctx)
	return &session{
		srv: s, conn: c, log: s.cfg.Logger,
		ctx: ctx, cancel: cancel,
		out:     make(chan outFrame, s.cfg.MaxInFlight),
		sem:     make(chan struct{}, s.cfg.MaxInFlight),
		txs:     map[uint64]*txState{},
		cursors: map[uint64]*cursor{},
		stmts:   map[uint64]stmtInfo{},
		txTail:  map[uint64]chan struct{}{},

		inflight: map[uint64]context.CancelFunc{},
	}
}

// run serves the connection until it ends, then releases everything the client held.
func (ss *session) run() {
	defer ss.cleanup()
	r := wire.NewReader(ss.conn, ss.srv.cfg.MaxFrameSize)
	w := wire.NewWriter(ss.conn, ss.srv.cfg.MaxFrameSize)
	if !ss.hello(r, w) {
		return
	}
	_ = ss.conn.SetDeadline(time.Time{})

	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		ss.writeLoop(w)
	}()
	ss.wg.Add(1)
	go func() {
		defer ss.wg.Done()
		ss.expireCursors()
	}()
	defer func() {
		ss.cancel()
		ss.wg.Wait() // every request goroutine has queued its answer or given up
		close(ss.out)
		<-writerDone
	}()

	for {
		f, err := r.ReadFrame()
		if err != nil {
			if ss.ctx.Err() == nil {
				ss.log.Debug("client connection ends", "remote", ss.conn.RemoteAddr(), "err", err)
			}
			return
		}
		msg, err := wire.Decode(f)
		if err != nil {
			// The frame itself was well delimited, so the stream is still in step: answer
			// this request alone.
			ss.reply(f.ID, &wire.Error{Code: wire.CodeBadRequest, Message: err.Error()})
			continue
		}
		if c, ok := msg.(*wire.Cancel); ok {
			// Served here, not behind the requests in flight it is about.
			ss.mu.Lock()
			if cancel := ss.inflight[c.RequestID]; cancel != nil {
				cancel()
			}
			ss.mu.Unlock()
			ss.reply(f.ID, &wire.OK{})
			continue
		}
		select {
		case ss.sem <- struct{}{}:
		case <-ss.ctx.Done():
			return
		}
		txID, prev, done := ss.order(msg)
		ctx, cancel := context.WithCancel(ss.ctx)
		ss.mu.Lock()
		ss.inflight[f.ID] = cancel
		ss.mu.Unlock()
		ss.wg.Add(1)
		go func() {
			defer func() { <-ss.sem; ss.wg.Done() }()
			defer func() {
				ss.mu.Lock()
				delete(ss.inflight, f.ID)
				ss.mu.Unlock()
				cancel()
			}()
			if done != nil {
				<-prev // the previous request of the same transaction has been answered
				defer ss.ordered(txID, done)
			}
			ss.reply(f.ID, ss.handle(ctx, msg))
		}()
	}
}

// order queues a request that touches an interactive transaction behind the previous one
// received for the same transaction. It returns a nil done for other requests.
func (ss *session) order(m wire.Message) (txID uint64, prev <-chan struct{}, done chan struct{}) {
	switch m := m.(type) {
	case *wire.Exec:
		txID = m.TxID
	case *wire.Query:
		txID = m.TxID
	case *wire.Commit:
		txID = m.TxID
	case *wire.Rollback:
		txID = m.TxID
	}
	if txID == 0 {
		return 0, nil, nil
	}
	done = make(chan struct{})
	ss.mu.Lock()
	p, ok := ss.txTail[txID]
	ss.txTail[txID] = done
	ss.mu.Unlock()
	if !ok {
		p = make(chan struct{})
		close(p)
	}
	return txID, p, done
}

// ordered lets the next request of the transaction start.
func (ss *session) ordered(txID uint64, done chan struct{}) {
	ss.mu.Lock()
	if ss.txTail[txID] == done {
		delete(ss.txTail, txID)
	}
	ss.mu.Unlock()
	close(done)
}

// hello performs the version handshake.
func (ss *session) hello(r *wire.Reader, w *wire.Writer) bool {
	f, err := r.ReadFrame()
	if err != nil {
		return false
	}
	var h wire.Hello
	if f.Type != wire.TypeHello || h.Unmarshal(f.Payload) != nil {
		_ = w.WriteMsg(f.ID, &wire.Error{Code: wire.CodeBadRequest, Message: "the first frame must be Hello"})
		_ = w.Flush()
		return false
	}
	if h.Version != wire.Version {
		_ = w.WriteMsg(f.ID, &wire.Error{Code: wire.CodeUnsupportedVersion,
			Message: fmt.Sprintf("protocol version %d is not supported; this node speaks %d", h.Version, wire.Version)})
		_ = w.Flush()
		return false
	}
	ss.clientID = h.ClientID
	if ss.clientID == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		ss.clientID = binary.LittleEndian.Uint64(b[:]) | 1 // never 0
	}
	st := ss.srv.cfg.Consensus.Status()
	if err := w.WriteMsg(f.ID, &wire.Welcome{Version: wire.Version, ClientID: ss.clientID, NodeID: st.ID,
		LeaderID: st.Leader, LeaderAddr: st.LeaderAddr}); err != nil {
		return false
	}
	return w.Flush() == nil
}

func (ss *session) reply(id uint64, m wire.Message) {
	ss.srv.stats.Requests.Add(1)
	select {
	case ss.out <- outFrame{id, m}:
	case <-ss.ctx.Done():
	}
}

// writeLoop writes answers and flushes only when no more are queued, so that answers to a
// burst of pipelined requests leave in one write.
func (ss *session) writeLoop(w *wire.Writer) {
	broken := false
	for f := range ss.out {
		if broken {
			continue // drain so that request goroutines never block
		}
		if err := w.WriteMsg(f.id, f.msg); err != nil {
			if errors.Is(err, wire.ErrFrameTooLarge) {
				// A row larger than a frame (written before the writer's length limit, or
				// made by the query): say so rather than drop the connection.
				_ = w.WriteMsg(f.id, &wire.Error{Code: wire.CodeBadRequest, Message: fmt.Sprintf(
					"the answer does not fit in one frame of the protocol (%v): read large values in parts, with substr()", err)})
			} else {
				broken = true
				ss.cancel()
				ss.conn.Close()
				continue
			}
		}
		if len(ss.out) == 0 && len(ss.sem) > 1 {
			// Other requests of this connection are in flight; answers to several of them
			// often come at once (one group commit): yield once so that those ready join
			// this write. Alone, write at once.
			runtime.Gosched()
		}
		if len(ss.out) == 0 {
			if err := w.Flush(); err != nil {
				broken = true
				ss.cancel()
				ss.conn.Close()
			}
		}
	}
}

// cleanup rolls back the client's transactions and closes its cursors.
func (ss *session) cleanup() {
	ss.cancel()
	ss.conn.Close()
	ss.mu.Lock()
	txs, curs := ss.txs, ss.cursors
	ss.txs, ss.cursors, ss.stmts = map[uint64]*txState{}, map[uint64]*cursor{}, map[uint64]stmtInfo{}
	ss.mu.Unlock()
	for _, t := range txs {
		t.mu.Lock()
		_ = t.end()
		t.mu.Unlock()
	}
	for _, c := range curs {
		c.close()
	}
}

// handle answers one request. It runs on its own goroutine.
func (ss *session) handle(parent context.Context, m wire.Message) wire.Message {
	ctx, cancel := context.WithTimeout(parent, ss.srv.cfg.RequestTimeout)
	defer cancel()
	switch m := m.(type) {
	case *wire.LeaderReq:
		st := ss.srv.cfg.Consensus.Status()
		return &wire.LeaderInfo{ID: st.Leader, Term: st.Term, Addr: st.LeaderAddr}
	case *wire.ClusterReq:
		return ss.cluster()
	case *wire.StatusReq:
		return ss.status()
	case *wire.Exec:
		return ss.exec(ctx, m)
	case *wire.Query:
		return ss.query(ctx, m)
	case *wire.Next:
		return ss.next(ctx, m.Cursor)
	case *wire.CloseCursor:
		return ss.closeCursor(m.Cursor)
	case *wire.Begin:
		return ss.begin(ctx, m)
	case *wire.BeginRead:
		return ss.beginRead(ctx, m)
	case *wire.Commit:
		return ss.commit(ctx, m)
	case *wire.Rollback:
		return ss.rollback(m)
	case *wire.Outcome:
		return ss.outcome(ctx, m)
	case *wire.Prepare:
		return ss.prepare(ctx, m)
	case *wire.CloseStmt:
		ss.mu.Lock()
		_, ok := ss.stmts[m.StmtID]
		delete(ss.stmts, m.StmtID)
		ss.mu.Unlock()
		if !ok {
			return &wire.Error{Code: wire.CodeNoSuchStmt}
		}
		return &wire.OK{}
	case *wire.Join:
		return ss.membership(ctx, func() error { return ss.srv.cfg.Consensus.AddMember(ctx, m.ID, m.Addr) })
	case *wire.Remove:
		return ss.membership(ctx, func() error { return ss.srv.cfg.Consensus.RemoveMember(ctx, m.ID) })
	case *wire.Transfer:
		if r := ss.membership(ctx, func() error { return ss.srv.cfg.Consensus.TransferLeadership(ctx, m.ID) }); r.Type() != wire.TypeOK {
			return r
		}
		st := ss.srv.cfg.Consensus.Status()
		return &wire.LeaderInfo{ID: st.Leader, Term: st.Term, Addr: st.LeaderAddr}
	case *wire.Hello:
		return &wire.Error{Code: wire.CodeBadRequest, Message: "Hello was already received"}
	default:
		return &wire.Error{Code: wire.CodeBadRequest, Message: fmt.Sprintf("%s is not a request", m.Type())}
	}
}

func (ss *session) cluster() wire.Message {
	st := ss.srv.cfg.Consensus.Status()
	ci := &wire.ClusterInfo{LeaderID: st.Leader}
	for _, m := range st.Members {
		ci.Members = append(ci.Members, wire.Member{ID: m.ID, Addr: m.Addr, Role: string(m.Role), Leader: m.ID == st.Leader})
	}
	return ci
}

func (ss *session) status() wire.Message {
	st := ss.srv.cfg.Consensus.Status()
	ns := &wire.NodeStatus{ID: st.ID, Term: st.Term, Leader: st.Leader, Commit: st.Commit,
		Applied: ss.srv.cfg.Store.AppliedIndex(), Healthy: st.Healthy, Problem: st.Problem}
	for _, m := range st.Members {
		if m.ID == st.ID {
			ns.Addr = m.Addr
		}
	}
	if err := ss.srv.cfg.Store.Diverged(); err != nil {
		ns.Healthy, ns.Problem = false, err.Error()
	}
	ps := ss.srv.cfg.Store.Stats()
	ns.Entries, ns.Requests = ps.Entries, ps.Requests
	srv := ss.srv.Stats()
	ns.OpenConns = uint64(max(0, srv.Connections.Load()))
	ns.Handshakes, ns.Resumed = uint64(srv.Handshakes.Load()), uint64(srv.Resumed.Load())
	return ns
}

// membership runs a leader-only cluster change.
func (ss *session) membership(ctx context.Context, op func() error) wire.Message {
	if _, err := ss.srv.cfg.Consensus.LeaderReady(ctx); err != nil {
		return errorMsg(err)
	}
	if err := op(); err != nil {
		return errorMsg(err)
	}
	return &wire.OK{}
}

func (ss *session) prepare(ctx context.Context, m *wire.Prepare) wire.Message {
	if m.SQL == "" {
		return &wire.Error{Code: wire.CodeBadRequest, Message: "empty SQL"}
	}
	if err := store.CheckName(m.DB); err != nil {
		return errorMsg(err)
	}
	// The statement is compiled where it runs (writer or read pool), which caches compiled
	// statements; here it is compiled once to count its parameters and to report SQLite's
	// error at once, as other SQL databases do at Prepare. A database not created yet, a
	// PRAGMA or several statements leave the count unknown (MaxUint32).
	n, cols, ok, err := ss.srv.cfg.Store.Describe(ctx, m.DB, m.SQL)
	if err != nil {
		return errorMsg(err)
	}
	id := ss.srv.nextID.Add(1)
	ss.mu.Lock()
	ss.stmts[id] = stmtInfo{db: m.DB, sql: m.SQL}
	ss.mu.Unlock()
	p := &wire.Prepared{StmtID: id, NumParams: math.MaxUint32}
	if ok && n < math.MaxUint32 {
		p.NumParams, p.Columns = uint32(n), cols
	}
	return p
}

// resolve returns the database and SQL text of an Exec or Query.
func (ss *session) resolve(db, sql string, stmtID uint64) (string, string, *wire.Error) {
	if stmtID != 0 {
		ss.mu.Lock()
		st, ok := ss.stmts[stmtID]
		ss.mu.Unlock()
		if !ok {
			return "", "", &wire.Error{Code: wire.CodeNoSuchStmt, Message: fmt.Sprintf("statement %d", stmtID)}
		}
		if db == "" {
			db = st.db
		}
		return db, st.sql, nil
	}
	if sql == "" {
		return "", "", &wire.Error{Code: wire.CodeBadRequest, Message: "empty SQL"}
	}
	return db, sql, nil
}

func (ss *session) tx(id uint64) (*txState, *wire.Error) {
	ss.mu.Lock()
	t, ok := ss.txs[id]
	ss.mu.Unlock()
	if !ok {
		return nil, &wire.Error{Code: wire.CodeNoSuchTx, Message: fmt.Sprintf("transaction %d", id)}
	}
	return t, nil
}

// inTx runs one statement inside the connection's transaction t, one statement of the
// transaction at a time, on the writer that a read-write transaction owns (a read sees the
// transaction's own writes). A read-only transaction refuses it: its queries go through
// ReadTx.Query.
func (ss *session) inTx(ctx context.Context, t *txState, sql string, args []sqlite.Value) (store.Result, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.rtx != nil {
		return store.Result{}, fmt.Errorf("%w: it cannot write", store.ErrReadOnlyTx)
	}
	return t.tx.Exec(ctx, sql, args)
}

func (ss *session) exec(ctx context.Context, m *wire.Exec) wire.Message {
	db, sql, werr := ss.resolve(m.DB, m.SQL, m.StmtID)
	if werr != nil {
		return werr
	}
	args, err := toArgs(m.Args)
	if err != nil {
		return errorMsg(err)
	}
	ctx, cancel := withTimeoutMillis(ctx, m.TimeoutMillis)
	defer cancel()
	if m.TxID != 0 {
		t, werr := ss.tx(m.TxID)
		if werr != nil {
			return werr
		}
		return resultMsg(ss.inTx(ctx, t, sql, args))
	}
	req := store.Request{ClientID: ss.clientID, RequestID: m.RequestID, SQL: sql, Args: args}
	if dl, ok := ctx.Deadline(); ok {
		req.Deadline = dl
	}
	res, err := ss.srv.cfg.Store.Exec(ctx, db, req)
	return resultMsg(res, err)
}

func (ss *session) begin(ctx context.Context, m *wire.Begin) wire.Message {
	tx, err := ss.srv.cfg.Store.Begin(ctx, m.DB, ss.clientID)
	if err != nil {
		return errorMsg(err)
	}
	return ss.addTx(&txState{tx: tx})
}

// addTx makes t a transaction of the connection and answers with its id; if the connection
// ended meanwhile (its cleanup already ran), it ends t instead.
func (ss *session) addTx(t *txState) wire.Message {
	id := ss.srv.nextID.Add(1)
	ss.mu.Lock()
	if ss.ctx.Err() != nil {
		ss.mu.Unlock()
		_ = t.end()
		return &wire.Error{Code: wire.CodeUnavailable, Message: "connection closed"}
	}
	ss.txs[id] = t
	ss.mu.Unlock()
	return &wire.TxBegun{TxID: id}
}

// beginRead starts a read-only transaction on the state the consistency level asks for.
func (ss *session) beginRead(ctx context.Context, m *wire.BeginRead) wire.Message {
	if answer := ss.readBarrier(ctx, m.Consistency, m.MinIndex); answer != nil {
		return answer
	}
	tx, err := ss.srv.cfg.Store.BeginRead(ctx, m.DB)
	if err != nil {
		return errorMsg(err)
	}
	return ss.addTx(&txState{rtx: tx})
}

func (ss *session) takeTx(id uint64) (*txState, *wire.Error) {
	ss.mu.Lock()
	t, ok := ss.txs[id]
	delete(ss.txs, id)
	ss.mu.Unlock()
	if !ok {
		return nil, &wire.Error{Code: wire.CodeNoSuchTx, Message: fmt.Sprintf("transaction %d", id)}
	}
	return t, nil
}

func (ss *session) commit(ctx context.Context, m *wire.Commit) wire.Message {
	t, werr := ss.takeTx(m.TxID)
	if werr != nil {
		return werr
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.rtx != nil {
		t.rtx.End() // nothing to commit
		return &wire.Result{}
	}
	res, err := t.tx.Commit(ctx, m.RequestID)
	return resultMsg(res, err)
}

// outcome answers a client that lost the answer to a write (see wire.Outcome).
func (ss *session) outcome(ctx context.Context, m *wire.Outcome) wire.Message {
	if m.RequestID == 0 {
		return &wire.Error{Code: wire.CodeBadRequest, Message: "Outcome needs the request id of the write"}
	}
	return resultMsg(ss.srv.cfg.Store.Outcome(ctx, m.DB, ss.clientID, m.RequestID))
}

func (ss *session) rollback(m *wire.Rollback) wire.Message {
	t, werr := ss.takeTx(m.TxID)
	if werr != nil {
		return werr
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.end(); err != nil {
		return errorMsg(err)
	}
	return &wire.OK{}
}

func withTimeoutMillis(ctx context.Context, ms uint32) (context.Context, context.CancelFunc) {
	if ms == 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, time.Duration(ms)*time.Millisecond)
}
