package store

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tandemdb/tandem/internal/sqlite"
)

// ReadTx is a read-only transaction: every query of it sees the one state of the database
// this node had applied when it began (a SQLite read transaction, pinned at BeginRead), on a
// connection of its own. It holds no writer and no connection of the read pool, so writes
// and other reads go on meanwhile; what it costs is that SQLite cannot start the WAL again
// from its first frame while it is open, so it ends after TxIdleTimeout without a query.
//
// Its connection comes from the database's spare connections of ended transactions when
// there is one (opening a connection and preparing its statements was most of the cost of a
// short transaction), and goes back there when it ends.
type ReadTx struct {
	db    *database
	index uint64     // the database's applied index the snapshot holds
	lease *connLease // conn's connection, for Interrupt without mu

	mu    sync.Mutex         // one statement step at a time; guards the fields below
	conn  *readConn          // nil once ended
	rows  map[*Rows]struct{} // open results, closed by the end
	err   error              // why it ended, for the calls after
	timer *time.Timer        // the idle timeout, re-armed after each query and page; nil until armed
}

// connLease is a read-only transaction's claim on its connection for interrupts, which come
// without the transaction's lock (to stop a running query): once the transaction has ended
// the connection may serve another one, which they must not reach.
type connLease struct {
	mu   sync.Mutex
	conn *sqlite.Conn // nil once revoked
}

func (l *connLease) interrupt() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		l.conn.Interrupt()
	}
}

func (l *connLease) revoke() {
	l.mu.Lock()
	l.conn = nil
	l.mu.Unlock()
}

// maxSpareReadTxConns bounds the connections of ended read-only transactions a database
// keeps for the next ones (each holds SQLite's page cache).
const maxSpareReadTxConns = 8

// BeginRead starts a read-only transaction on the node's current state of dbName. The caller
// picks the consistency level by waiting (WaitApplied) before it calls BeginRead, as for
// Query.
func (s *Store) BeginRead(ctx context.Context, dbName string) (*ReadTx, error) {
	if err := s.Diverged(); err != nil {
		return nil, err
	}
	db, err := s.existing(dbName)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if n := s.readTxs.Add(1); n > int64(s.opts.MaxReadTxs) {
		s.readTxs.Add(-1)
		return nil, fmt.Errorf("%w: %d are open on this node", ErrTooManyReadTxs, s.opts.MaxReadTxs)
	}
	t, err := db.beginRead()
	if err != nil {
		s.readTxs.Add(-1)
		return nil, err
	}
	return t, nil
}

func (db *database) beginRead() (*ReadTx, error) {
	rc, err := db.readTxConn()
	if err != nil {
		return nil, err
	}
	t := &ReadTx{db: db, conn: rc, lease: &connLease{conn: rc.Conn}, rows: map[*Rows]struct{}{}}
	// BEGIN alone takes no snapshot: the first read does. Reading the applied index takes it
	// now and tells which state it is.
	err = rc.Exec("BEGIN")
	if err == nil {
		t.index, err = readApplied(rc.Conn)
	}
	if err != nil {
		rc.Close()
		return nil, fmt.Errorf("store: begin read transaction: %w", err)
	}
	db.poolMu.Lock()
	if db.poolClosed {
		db.poolMu.Unlock()
		rc.Close() // not end: BeginRead gives the count back
		return nil, ErrClosed
	}
	db.readTxs[t] = struct{}{}
	db.poolMu.Unlock()
	// Armed once registered, under t.mu: the database's close may end t already.
	t.mu.Lock()
	if t.conn != nil {
		t.timer = time.AfterFunc(db.s.opts.TxIdleTimeout, t.expire)
	}
	t.mu.Unlock()
	return t, nil
}

// readTxConn returns a spare connection of an ended read-only transaction, or a new one.
func (db *database) readTxConn() (*readConn, error) {
	db.poolMu.Lock()
	if n := len(db.spareTx); n > 0 {
		rc := db.spareTx[n-1]
		db.spareTx = db.spareTx[:n-1]
		db.poolMu.Unlock()
		return rc, nil
	}
	db.poolMu.Unlock()
	c, err := sqlite.Open(db.path, sqlite.OpenOptions{ReadOnly: true, BusyTimeout: busyTimeout})
	if err != nil {
		return nil, fmt.Errorf("store: open read connection: %w", err)
	}
	return &readConn{Conn: c}, nil
}

// recycleReadTx keeps the connection of an ended read-only transaction for the next one, or
// closes it. Every statement of the transaction is finalized by then, and its interrupts
// stopped: the ROLLBACK, the first statement to run with none active, clears an interrupt
// that landed after the last query.
func (db *database) recycleReadTx(rc *readConn) {
	if err := rc.Exec("ROLLBACK"); err != nil || !rc.Autocommit() {
		rc.Close()
		return
	}
	db.poolMu.Lock()
	if db.poolClosed || len(db.spareTx) >= maxSpareReadTxConns {
		db.poolMu.Unlock()
		rc.Close()
		return
	}
	db.spareTx = append(db.spareTx, rc)
	db.poolMu.Unlock()
}

// expire is the idle timeout. A query or page that is running holds t.mu: the transaction
// is not idle then, and the step re-arms the timer when it ends.
func (t *ReadTx) expire() {
	if !t.mu.TryLock() {
		return
	}
	defer t.mu.Unlock()
	t.endLocked(ErrTxTimeout)
}

// rearm restarts the idle timeout; t.mu must be held.
func (t *ReadTx) rearm() {
	if t.timer != nil {
		t.timer.Reset(t.db.s.opts.TxIdleTimeout)
	}
}

// Index is the database's applied index that the transaction's snapshot holds.
func (t *ReadTx) Index() uint64 { return t.index }

// Query runs one read-only statement in the transaction and returns its rows, streamed from
// the transaction's snapshot: several may be open at once, and they fail (with the reason)
// once the transaction has ended. The statement is interrupted when ctx ends. A statement's
// own failure is the error; the transaction goes on.
func (t *ReadTx) Query(ctx context.Context, sql string, args []sqlite.Value) (*Rows, error) {
	switch firstKeyword(sql) {
	case "BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE":
		return nil, fmt.Errorf("%w: end a read-only transaction with Commit or Rollback", ErrReadOnlyTx)
	}
	if err := checkRead(sql); err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conn == nil {
		return nil, t.err
	}
	defer t.rearm() // idle from the end of the first step
	r := &Rows{db: t.db, conn: t.conn, rtx: t, sql: sql}
	if err := r.open(ctx, args, fmt.Errorf("%w: SQLite counts this statement as one that may write", ErrReadOnlyTx)); err != nil {
		return nil, err
	}
	t.rows[r] = struct{}{}
	return r, nil
}

// End ends the transaction (there is nothing to commit). Ending twice is a no-op.
func (t *ReadTx) End() {
	t.end(ErrTxDone)
}

// end closes the connection; later calls fail with why. A statement running on it is
// interrupted first, so that ending (a snapshot install, the node closing) does not wait for
// a long query.
func (t *ReadTx) end(why error) {
	t.lease.interrupt()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.endLocked(why)
}

// endLocked ends t: its open results are closed (their later calls answer why), and the
// connection goes back to the database for another transaction.
func (t *ReadTx) endLocked(why error) {
	if t.conn == nil {
		return
	}
	if t.timer != nil {
		t.timer.Stop()
	}
	for r := range t.rows {
		if r.st != nil {
			r.st.Close()
			r.st = nil
		}
		r.conn = nil
	}
	t.rows = nil
	t.lease.revoke() // from here on, interrupts aimed at t do nothing
	rc := t.conn
	t.conn, t.err = nil, why
	t.db.s.readTxs.Add(-1)
	t.db.poolMu.Lock()
	delete(t.db.readTxs, t)
	t.db.poolMu.Unlock()
	t.db.recycleReadTx(rc)
}
