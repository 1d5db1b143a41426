package store

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tandemdb/tandem/internal/sqlite"
)

// Tx is an interactive transaction. It owns its database's writer from Begin until Commit,
// Rollback, a leadership change, or TxIdleTimeout without a statement.
type Tx struct {
	s        *Store
	db       *database
	clientID uint64
	term     uint64 // set by the writer before Begin returns

	ops      chan *txOp
	quit     chan struct{} // closed by Rollback (or a failed Begin)
	quitOnce sync.Once
	done     chan struct{} // closed when the writer has left the transaction

	mu  sync.Mutex
	err error // why the transaction ended
}

type txOpKind int

const (
	txExec txOpKind = iota
	txCommit
	txQuery       // a read: streamed if it is one read-only statement (txcursor.go)
	txFetch       // the next chunk of a cursor
	txCloseCursor // close a cursor before its end
)

type txOp struct {
	kind      txOpKind
	ctx       context.Context
	sql       string
	args      []sqlite.Value
	requestID uint64
	cursor    uint64      // txFetch, txCloseCursor
	limits    ChunkLimits // txQuery, txFetch
	reply     chan jobResult
}

// Begin starts an interactive transaction on db: once the writer reaches it in its queue, it
// runs BEGIN IMMEDIATE and keeps the write connection for this transaction alone.
func (s *Store) Begin(ctx context.Context, dbName string, clientID uint64) (*Tx, error) {
	if err := s.Diverged(); err != nil {
		return nil, err
	}
	db, err := s.writable(ctx, dbName)
	if err != nil {
		return nil, err
	}
	t := &Tx{s: s, db: db, clientID: clientID, ops: make(chan *txOp),
		quit: make(chan struct{}), done: make(chan struct{})}
	j := &job{ctx: ctx, tx: t, done: make(chan jobResult, 1)}
	if _, err := db.submit(ctx, j); err != nil {
		t.quitOnce.Do(func() { close(t.quit) }) // in case the writer started it after all
		return nil, err
	}
	return t, nil
}

// Exec runs statements inside the transaction (reads too). A statement's own failure is in
// Result.Err and rolls back that call alone; the transaction goes on.
func (t *Tx) Exec(ctx context.Context, sql string, args []sqlite.Value) (Result, error) {
	r, err := t.call(ctx, &txOp{kind: txExec, ctx: ctx, sql: sql, args: args})
	return r.res, err
}

// Commit replicates the transaction as one entry and returns once it is applied here.
// requestID (non-zero) makes a retried Commit return the first outcome. If ctx ends before
// the writer took the commit, the transaction is rolled back.
func (t *Tx) Commit(ctx context.Context, requestID uint64) (Result, error) {
	r, err := t.call(ctx, &txOp{kind: txCommit, ctx: ctx, requestID: requestID})
	return r.res, err
}

// Rollback abandons the transaction. It is a no-op on a finished transaction.
func (t *Tx) Rollback() error {
	t.quitOnce.Do(func() { close(t.quit) })
	<-t.done
	return nil
}

// ended reports whether the writer has left the transaction.
func (t *Tx) ended() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

func (t *Tx) endErr() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err == nil {
		return ErrTxDone
	}
	return t.err
}

func (t *Tx) setErr(err error) {
	t.mu.Lock()
	if t.err == nil {
		t.err = err
	}
	t.mu.Unlock()
}

func (t *Tx) call(ctx context.Context, op *txOp) (jobResult, error) {
	op.reply = make(chan jobResult, 1)
	select {
	case t.ops <- op:
	case <-t.done:
		return jobResult{}, t.endErr()
	case <-ctx.Done():
		if op.kind == txCommit {
			// A commit that never reached the writer ends the transaction: nobody may send
			// it again, and it must not hold the writer until its idle timeout.
			t.quitOnce.Do(func() { close(t.quit) })
		}
		return jobResult{}, ctx.Err()
	}
	select {
	case r := <-op.reply:
		return r, r.err
	case <-ctx.Done():
		if op.kind == txCommit {
			return jobResult{}, fmt.Errorf("%w: %w", ErrOutcomeUnknown, ctx.Err())
		}
		r := <-op.reply // the statement is interrupted; its answer comes soon
		return r, r.err
	}
}

// runTx serves an interactive transaction on the writer goroutine.
func (wr *writer) runTx(j *job) {
	t := j.tx
	s := wr.s
	term, ok := wr.startAlone(j)
	if !ok {
		return
	}
	w := wr.w
	c := w.conn
	wr.drainPreempt()
	if err := c.Exec("BEGIN IMMEDIATE"); err != nil {
		j.finish(Result{}, fmt.Errorf("store: begin: %w", err))
		wr.resetConn()
		return
	}
	c.SetLastInsertRowID(0) // within the transaction it carries over, as on a connection of its own
	base, sess, err := wr.beginEffects()
	if err != nil {
		_ = c.Exec("ROLLBACK")
		j.finish(Result{}, err)
		wr.resetConn()
		return
	}
	t.term = term
	defer close(t.done)
	j.finish(Result{}, nil)

	var cursors txCursors // closed by end and before the commit
	end := func(err error) {
		cursors.closeAll() // a ROLLBACK would abort them anyway
		if sess != nil {
			sess.Close()
			sess = nil
		}
		if c.Autocommit() {
			// A statement of it rolled it back already.
		} else if rerr := c.Exec("ROLLBACK"); rerr != nil {
			s.log.Warn("store: rollback of interactive transaction", "db", wr.db.name, "err", rerr)
			wr.resetConn()
		}
		t.setErr(err)
	}
	var ddl []string
	idle := time.NewTimer(s.opts.TxIdleTimeout)
	defer idle.Stop()
	lost, changed := s.leaderLost(term)
	for {
		if lost {
			end(errLeadershipAbort)
			return
		}
		select {
		case op := <-t.ops:
			if c.Autocommit() {
				// SQLite rolled the transaction back on its own (an I/O error, out of memory or
				// a full disk, during a read too): a SAVEPOINT now would start a new one, and
				// Commit would replicate only what came after.
				op.reply <- jobResult{err: errRolledBackBySQLite}
				end(errRolledBackBySQLite)
				return
			}
			switch op.kind {
			case txFetch, txCloseCursor:
				var ch *txChunk
				var err error
				if op.kind == txFetch {
					ch, err = cursors.fetch(w, op)
				} else {
					cursors.close(op.cursor)
				}
				op.reply <- jobResult{chunk: ch, err: err}
				idle.Reset(s.opts.TxIdleTimeout)
				continue
			case txQuery:
				ch, err := cursors.query(w, op)
				if ch != nil || err != nil {
					var res Result
					if err != nil {
						res.Err = asSQLiteError(err)
					}
					op.reply <- jobResult{res: res, chunk: ch}
					idle.Reset(s.opts.TxIdleTimeout)
					continue
				}
				// Not a streamable read: it runs like a statement of Exec, below.
			case txCommit:
				cursors.closeAll()
				res, err := wr.commitTx(t, term, base, sess, ddl, op.requestID)
				sess = nil
				if err != nil {
					t.setErr(err)
				} else {
					t.setErr(ErrTxDone)
				}
				op.reply <- jobResult{res: res, err: err}
				return
			}
			if err := c.Exec("SAVEPOINT tandem_stmt"); err != nil {
				op.reply <- jobResult{res: Result{}, err: err}
				end(err)
				return
			}
			stop := c.CancelOn(op.ctx)
			out := w.run(op.sql, op.args, sess.IsEmpty, true)
			stop()
			if c.Autocommit() {
				// The statement ended the whole transaction.
				if wr.rolledBackByApply(out.res.Err, op.ctx) {
					op.reply <- jobResult{res: Result{}, err: errLeadershipAbort}
					end(errLeadershipAbort)
					return
				}
				// ON CONFLICT ROLLBACK, RAISE(ROLLBACK), a write cancelled mid-way: say so
				// with its own error.
				res := out.res
				res.Err = rolledBackBy(res.Err)
				op.reply <- jobResult{res: res}
				end(fmt.Errorf("%w: a statement of it rolled it back: %s", ErrTxAborted, res.Err.Msg))
				return
			}
			undo := "RELEASE tandem_stmt"
			if out.res.Err != nil {
				undo = "ROLLBACK TO tandem_stmt; RELEASE tandem_stmt"
			}
			if err := c.Exec(undo); err != nil {
				op.reply <- jobResult{res: Result{}, err: err}
				end(err)
				return
			}
			if wr.preempted() {
				op.reply <- jobResult{res: Result{}, err: errLeadershipAbort}
				end(errLeadershipAbort)
				return
			}
			if out.res.Err == nil {
				ddl = append(ddl, out.ddl...)
			}
			op.reply <- jobResult{res: out.res, err: nil}
			idle.Reset(s.opts.TxIdleTimeout)
		case <-idle.C:
			end(ErrTxTimeout)
			return
		case <-t.quit:
			end(ErrTxDone)
			return
		case <-wr.db.preemptC:
			end(errLeadershipAbort)
			return
		case <-changed:
			lost, changed = s.leaderLost(term)
		case <-wr.db.ctx.Done():
			end(ErrClosed)
			return
		}
	}
}

// rolledBackBy is the error of a statement that rolled back its whole transaction.
func rolledBackBy(err *sqlite.Error) *sqlite.Error {
	if err == nil {
		return requestError(codeError, "tandem: the statement rolled back the transaction")
	}
	e := *err
	e.Msg += " (the statement rolled back the whole transaction)"
	return &e
}

// commitTx turns the open transaction into one entry. sess is closed in every case.
func (wr *writer) commitTx(t *Tx, term uint64, base effectsBase, sess *sqlite.Session,
	ddl []string, requestID uint64) (Result, error) {
	c := wr.w.conn
	fail := func(err error) (Result, error) {
		if sess != nil {
			sess.Close()
		}
		if rerr := c.Exec("ROLLBACK"); rerr != nil {
			wr.resetConn()
		}
		return Result{}, err
	}
	if requestID != 0 {
		res, found, err := lookupRequest(&wr.w.stmts, reqKey{t.clientID, requestID})
		if err != nil {
			return fail(err)
		}
		if found {
			fail(nil)
			return res, nil
		}
	}
	cmd, err := wr.endEffects(sess, base)
	sess = nil
	if err != nil {
		return fail(err)
	}
	executedHash := wr.verifyBefore()
	if err := c.Exec("ROLLBACK"); err != nil {
		wr.resetConn()
		return Result{}, err
	}
	cmd.DDL = ddl
	if cmd.empty() {
		return Result{Index: wr.s.AppliedIndex()}, nil
	}
	var res Result
	if requestID != 0 {
		cmd.Requests = []requestRecord{{ClientID: t.clientID, RequestID: requestID, Result: encodeResult(nil, &res)}}
	}
	if size := cmd.size(); size > wr.s.opts.MaxEntryBytes {
		return Result{}, entryTooLarge(size, wr.s.opts.MaxEntryBytes) // rolled back above
	}
	cmd.BaseIndex = base.index
	index, err := wr.propose(term, cmd, 1, false)
	if err != nil {
		return Result{}, err
	}
	wr.verifyAfter(executedHash, index)
	res.Index = index
	return res, nil
}
