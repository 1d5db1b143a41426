package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemdb/tandem/internal/sqlite"
)

// busyTimeout is a safety net on every connection: by construction only the apply connection
// and the writer connection of a database ever want its write lock at the same time, and only
// briefly after a leadership change (see apply.go, preempt).
const busyTimeout = 5 * time.Second

const internalSchema = `
CREATE TABLE IF NOT EXISTS _tandem_applied(id INTEGER PRIMARY KEY CHECK(id=1), idx INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS _tandem_requests(
	client_id INTEGER NOT NULL, request_id INTEGER NOT NULL, idx INTEGER NOT NULL, result BLOB,
	at INTEGER NOT NULL DEFAULT 0, -- the leader's wall clock (Unix ms) when it was proposed
	PRIMARY KEY(client_id, request_id)) WITHOUT ROWID;
`

// requestsAtIndex is created after the migration below (an older file lacks the column).
const requestsAtIndex = `CREATE INDEX IF NOT EXISTS _tandem_requests_at ON _tandem_requests(at);`

// database is one SQLite file with its connections and its writer.
type database struct {
	s    *Store
	name string
	path string

	// applied is the database's own applied index (_tandem_applied.idx) as last committed.
	applied atomic.Uint64

	// Apply side: used only under Store.applyMu (or before the store is shared).
	applyConn *sqlite.Conn
	applyStmt stmtCache

	// Writer side.
	queue      chan *job
	ctx        context.Context // cancelled by close: stops the writer
	cancel     context.CancelFunc
	wmu        sync.Mutex
	started    bool                        // writer goroutine started (under wmu)
	closing    bool                        // close called (under wmu)
	writerDone chan struct{}               // closed when the writer goroutine exits (if it was started)
	writerConn atomic.Pointer[sqlite.Conn] // published so that apply can Interrupt it
	// writerCommitted: the writer has committed a transaction (held entries); from then on
	// the apply connection re-reads the schema before each transaction (beginApply).
	writerCommitted atomic.Bool
	preemptC        chan struct{} // apply asks the writer to give up the write lock

	// Background checkpoints (checkpoint.go).
	ckptC       chan struct{} // wakes the checkpointer
	ckptCommits atomic.Int64  // commits since the last checkpoint (the idle check)
	ckptFrom    atomic.Int64  // WAL frames the last checkpoint found (0 after a WAL restart)
	ckptDone    chan struct{} // closed when the checkpointer exits

	// Read pool.
	poolMu     sync.Mutex
	idle       []*readConn
	open       int
	poolClosed bool
	poolFree   chan struct{}        // signalled when a connection is returned
	readTxs    map[*ReadTx]struct{} // open read-only transactions (ended by close)
	spareTx    []*readConn          // connections of ended read-only transactions (readtx.go)
}

func openDatabase(s *Store, name string) (*database, error) {
	db := &database{
		s:          s,
		name:       name,
		path:       filepath.Join(s.dbDir, name+".sqlite"),
		queue:      make(chan *job, s.opts.QueueSize),
		writerDone: make(chan struct{}),
		preemptC:   make(chan struct{}, 1),
		poolFree:   make(chan struct{}, 1),
		ckptC:      make(chan struct{}, 1),
		readTxs:    map[*ReadTx]struct{}{},
		ckptDone:   make(chan struct{}),
	}
	db.ctx, db.cancel = context.WithCancel(s.ctx)
	// The apply connection: no triggers and no foreign-key actions (their effects travel in
	// the changeset), and foreign keys off rather than FKNOACTION, which would re-prepare
	// every statement on each apply (see sqlite.Conn.ApplyChangeset).
	c, err := sqlite.Open(db.path, sqlite.OpenOptions{DisableTriggers: true, BusyTimeout: 50 * time.Millisecond})
	if err != nil {
		db.cancel()
		return nil, fmt.Errorf("store: open %s: %w", name, err)
	}
	if err := c.TrackWALFrames(); err != nil {
		c.Close()
		db.cancel()
		return nil, fmt.Errorf("store: open %s: %w", name, err)
	}
	if err := c.Exec(internalSchema); err != nil {
		c.Close()
		db.cancel()
		return nil, fmt.Errorf("store: init %s: %w", name, err)
	}
	if err := migrateRequests(c); err != nil {
		c.Close()
		db.cancel()
		return nil, fmt.Errorf("store: init %s: %w", name, err)
	}
	idx, err := readApplied(c)
	if err != nil {
		c.Close()
		db.cancel()
		return nil, fmt.Errorf("store: %s: %w", name, err)
	}
	db.applyConn = c
	db.applyStmt = stmtCache{conn: c}
	db.applied.Store(idx)
	go db.checkpointLoop()
	return db, nil
}

func readApplied(c *sqlite.Conn) (uint64, error) {
	rows, err := queryAll(c, `SELECT idx FROM _tandem_applied WHERE id=1`)
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	v, _ := rows[0][0].(int64)
	return uint64(v), nil
}

// close stops the writer (failing what it holds) and closes every connection; open read-only
// transactions end with why.
func (db *database) close(why error) error {
	db.wmu.Lock()
	db.closing = true
	started := db.started
	db.wmu.Unlock()
	db.cancel()
	if started {
		<-db.writerDone
	}
	<-db.ckptDone
	db.failQueued(ErrClosed)
	db.poolMu.Lock()
	db.poolClosed = true
	idle := append(db.idle, db.spareTx...)
	db.idle, db.spareTx = nil, nil
	var rtxs []*ReadTx
	for t := range db.readTxs {
		rtxs = append(rtxs, t)
	}
	db.poolMu.Unlock()
	for _, t := range rtxs {
		t.end(why)
	}
	var errs []error
	for _, c := range idle {
		errs = append(errs, c.Close())
	}
	db.applyStmt.close()
	errs = append(errs, db.applyConn.Close())
	return errors.Join(errs...)
}

// startWriter starts the writer goroutine once; false after close.
func (db *database) startWriter() bool {
	db.wmu.Lock()
	defer db.wmu.Unlock()
	if db.closing {
		return false
	}
	if !db.started {
		db.started = true
		go db.writerLoop()
	}
	return true
}

func (db *database) failQueued(err error) {
	for {
		select {
		case j := <-db.queue:
			j.finish(Result{}, err)
		default:
			return
		}
	}
}

// acquireRead takes a read-only connection from the pool, opening one if the pool is not full.
func (db *database) acquireRead(ctx context.Context) (*readConn, error) {
	for {
		db.poolMu.Lock()
		if db.poolClosed {
			db.poolMu.Unlock()
			return nil, ErrClosed
		}
		if n := len(db.idle); n > 0 {
			c := db.idle[n-1]
			db.idle = db.idle[:n-1]
			db.poolMu.Unlock()
			return c, nil
		}
		if db.open < db.s.opts.ReadPoolSize {
			db.open++
			db.poolMu.Unlock()
			c, err := sqlite.Open(db.path, sqlite.OpenOptions{ReadOnly: true, BusyTimeout: busyTimeout})
			if err != nil {
				db.poolMu.Lock()
				db.open--
				db.poolMu.Unlock()
				return nil, fmt.Errorf("store: open read connection: %w", err)
			}
			return &readConn{Conn: c}, nil
		}
		db.poolMu.Unlock()
		select {
		case <-db.poolFree:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-db.ctx.Done():
			return nil, ErrClosed
		}
	}
}

// detachRead takes a connection handed out by acquireRead out of the pool's count (see
// Rows.Keep): another may be opened in its place.
func (db *database) detachRead() {
	db.poolMu.Lock()
	db.open--
	db.poolMu.Unlock()
	select {
	case db.poolFree <- struct{}{}:
	default:
	}
}

// reattachRead takes back a detached connection: into the pool if it has room, else closed.
func (db *database) reattachRead(c *readConn) {
	db.poolMu.Lock()
	if db.poolClosed || db.open >= db.s.opts.ReadPoolSize {
		db.poolMu.Unlock()
		c.Close()
		return
	}
	db.open++
	db.poolMu.Unlock()
	db.releaseRead(c)
}

func (db *database) releaseRead(c *readConn) {
	db.poolMu.Lock()
	if db.poolClosed {
		db.open--
		db.poolMu.Unlock()
		c.Close()
		return
	}
	db.idle = append(db.idle, c)
	db.poolMu.Unlock()
	select {
	case db.poolFree <- struct{}{}:
	default:
	}
}

// stmtCache keeps prepared statements of one connection for the store's own fixed SQL.
type stmtCache struct {
	conn  *sqlite.Conn
	stmts map[string]*sqlite.Stmt
}

// get returns the prepared statement for sql, reset and with args bound.
func (c *stmtCache) get(sql string, args ...sqlite.Value) (*sqlite.Stmt, error) {
	st := c.stmts[sql]
	if st == nil {
		var err error
		st, _, err = c.conn.Prepare(sql)
		if err != nil {
			return nil, err
		}
		if c.stmts == nil {
			c.stmts = map[string]*sqlite.Stmt{}
		}
		c.stmts[sql] = st
	} else {
		if err := st.Reset(); err != nil {
			return nil, err
		}
		if err := st.ClearBindings(); err != nil {
			return nil, err
		}
	}
	if len(args) > 0 {
		if err := st.Bind(args); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// exec runs a cached statement to completion.
func (c *stmtCache) exec(sql string, args ...sqlite.Value) error {
	st, err := c.get(sql, args...)
	if err != nil {
		return err
	}
	for {
		row, err := st.Step()
		if err != nil {
			st.Reset()
			return err
		}
		if !row {
			return st.Reset()
		}
	}
}

// query runs a cached statement and returns its rows.
func (c *stmtCache) query(sql string, args ...sqlite.Value) ([][]sqlite.Value, error) {
	st, err := c.get(sql, args...)
	if err != nil {
		return nil, err
	}
	rows, err := collect(st)
	if rerr := st.Reset(); err == nil && rerr != nil {
		err = rerr
	}
	return rows, err
}

func (c *stmtCache) close() {
	for _, st := range c.stmts {
		st.Close()
	}
	c.stmts = nil
}

// queryAll prepares, runs and finalizes one statement.
func queryAll(c *sqlite.Conn, sql string, args ...sqlite.Value) ([][]sqlite.Value, error) {
	st, _, err := c.Prepare(sql)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return nil, nil
	}
	defer st.Close()
	if len(args) > 0 {
		if err := st.Bind(args); err != nil {
			return nil, err
		}
	}
	return collect(st)
}

func collect(st *sqlite.Stmt) ([][]sqlite.Value, error) {
	var rows [][]sqlite.Value
	n := st.ColumnCount()
	for {
		ok, err := st.Step()
		if err != nil {
			return rows, err
		}
		if !ok {
			return rows, nil
		}
		row := make([]sqlite.Value, n)
		for i := range row {
			row[i] = st.Column(i)
		}
		rows = append(rows, row)
	}
}

// readConn is a pooled read-only connection with the prepared statements of the queries it
// ran. It belongs to one reader between acquireRead and releaseRead.
type readConn struct {
	*sqlite.Conn
	stmts map[string]*sqlite.Stmt // by SQL text; a statement in use is taken out
}

// readStmtCacheSize bounds readConn.stmts; when full it is emptied.
const readStmtCacheSize = 64

// take returns the cached statement for text, with its bindings cleared, or nil.
func (c *readConn) take(text string) *sqlite.Stmt {
	st := c.stmts[text]
	if st == nil {
		return nil
	}
	delete(c.stmts, text)
	if err := st.ClearBindings(); err != nil {
		st.Close()
		return nil
	}
	return st
}

// keep resets st and caches it under text.
func (c *readConn) keep(text string, st *sqlite.Stmt) {
	if err := st.Reset(); err != nil {
		st.Close()
		return
	}
	if len(c.stmts) >= readStmtCacheSize {
		for _, old := range c.stmts {
			old.Close()
		}
		clear(c.stmts)
	}
	if c.stmts == nil {
		c.stmts = make(map[string]*sqlite.Stmt)
	}
	if old := c.stmts[text]; old != nil {
		// Two cursors of a read-only transaction ran the same text at once.
		old.Close()
	}
	c.stmts[text] = st
}

// migrateRequests adds the retention column to a request table made before it existed (its
// records get at = 0 and go at the next trim) and indexes it.
func migrateRequests(c *sqlite.Conn) error {
	cols, err := queryAll(c, `SELECT name FROM pragma_table_info('_tandem_requests') WHERE name = 'at'`)
	if err != nil {
		return err
	}
	if len(cols) == 0 {
		if err := c.Exec(`ALTER TABLE _tandem_requests ADD COLUMN at INTEGER NOT NULL DEFAULT 0`); err != nil {
			return err
		}
	}
	return c.Exec(requestsAtIndex)
}
