package store

import (
	"context"
	"fmt"

	"github.com/tandemdb/tandem/internal/sqlite"
)

// Rows streams the result of Query (a pooled read connection, held until Close), of
// ReadTx.Query (the transaction's connection) or of Tx.Query (chunks read by the writer).
type Rows struct {
	Columns   []string
	DeclTypes []string // declared types of the columns ("" for expressions)

	db       *database
	conn     *readConn
	rtx      *ReadTx // the read-only transaction whose connection conn is, if any
	st       *sqlite.Stmt
	sql      string // the statement's text, its key in conn's cache when reusable
	reusable bool
	onRow    bool // st is positioned on a row that Next has not returned yet
	done     bool
	pending  error // a failure NextPage returns on its next call (it answered the rows before)
	detached bool  // conn left the read pool's count while the result stays open (Keep)

	// A read inside a read-write transaction (Tx.Query): rows come in chunks from the
	// transaction's writer (txcursor.go).
	tx       *Tx
	txCtx    context.Context
	txCursor uint64
	limits   ChunkLimits
	chunk    [][]sqlite.Value // rows read and not returned yet
}

// Describe compiles sql on a read connection of the database and returns how many
// parameters it takes (the largest parameter index, as sqlite3_bind_parameter_count) and
// the names of its result columns. It runs nothing. ok is false, with no error, when the
// statement cannot be described here: the database does not exist yet, the text holds
// several statements, or it is a PRAGMA (SQLite applies some of them while compiling). err
// is SQLite's error for a statement that does not compile.
func (s *Store) Describe(ctx context.Context, dbName, sql string) (params int, columns []string, ok bool, err error) {
	if err := s.Diverged(); err != nil {
		return 0, nil, false, err
	}
	db, err := s.existing(dbName)
	if err != nil || firstKeyword(sql) == "PRAGMA" {
		return 0, nil, false, nil
	}
	c, err := db.acquireRead(ctx)
	if err != nil {
		return 0, nil, false, err
	}
	defer db.releaseRead(c)
	st, tail, err := c.Prepare(sql)
	if err != nil || st == nil {
		return 0, nil, false, err
	}
	// Not kept in the read connection's cache: that holds checked read-only statements.
	defer st.Close()
	if !isBlank(tail) {
		return 0, nil, false, nil
	}
	columns = make([]string, st.ColumnCount())
	for i := range columns {
		columns[i] = st.ColumnName(i)
	}
	return st.BindCount(), columns, true, nil
}

// Query runs one read-only statement on a pooled read connection, on this node's local state
// (a WAL snapshot taken by its first step). The caller picks the consistency level by waiting
// (WaitApplied) before it calls Query. Statements are prepared once per read connection and
// reused; Query takes the first step itself, because a reused statement that SQLite prepares
// again after a schema change may have other columns than before (SELECT * after ADD COLUMN).
func (s *Store) Query(ctx context.Context, dbName string, sql string, args []sqlite.Value) (*Rows, error) {
	if err := s.Diverged(); err != nil {
		return nil, err
	}
	db, err := s.existing(dbName)
	if err != nil {
		return nil, err
	}
	if err := checkRead(sql); err != nil {
		return nil, err
	}
	c, err := db.acquireRead(ctx)
	if err != nil {
		return nil, err
	}
	r := &Rows{db: db, conn: c, sql: sql}
	if err := r.open(ctx, args, ErrNotReadOnly); err != nil {
		db.releaseRead(c)
		return nil, err
	}
	return r, nil
}

// checkRead refuses what a read may not run although SQLite counts it as read-only, with the
// checks of the write path (checkStatement): BEGIN or SAVEPOINT (on a pooled connection it
// would pin an old snapshot for every later read there), ATTACH (it would open any file the
// node can read, other databases of the node included) and DETACH, Tandem's own tables and
// sqlite_dbpage; and the pragmas checkPragma refuses. It runs before the statement is
// prepared.
func checkRead(sql string) error {
	if firstKeyword(sql) == "PRAGMA" {
		return checkPragma(sql)
	}
	return checkStatement(sql)
}

// open prepares r.sql on r.conn (or takes it from the connection's cache), checks that it is
// one read-only statement (writeErr if it writes), binds args and takes the first step,
// cancelled if ctx ends meanwhile (later steps are cancelled by NextPage's context). On an
// error the statement is closed; the connection stays the caller's.
func (r *Rows) open(ctx context.Context, args []sqlite.Value, writeErr error) error {
	c := r.conn
	if r.st = c.take(r.sql); r.st != nil {
		r.reusable = true
	} else {
		st, tail, err := c.Prepare(r.sql)
		if err == nil && st == nil {
			err = fmt.Errorf("%w: it is empty", ErrNotOneStatement)
		}
		if err == nil && !isBlank(tail) {
			err = fmt.Errorf("%w: send several through Exec", ErrNotOneStatement)
		}
		if err == nil && !st.ReadOnly() {
			err = writeErr
		}
		if err != nil {
			if st != nil {
				st.Close()
			}
			return err
		}
		// PRAGMAs are checked on their text each time: never reused.
		r.st, r.reusable = st, firstKeyword(r.sql) != "PRAGMA"
	}
	fail := func(err error) error {
		r.st.Close()
		r.st = nil
		return err
	}
	if err := r.st.BindAll(args); err != nil {
		return fail(err)
	}
	// CancelOn, not InterruptOn: a read-only transaction's connection may hold other
	// results open, which sqlite3_interrupt's lasting flag would fail too.
	stop := c.CancelOn(ctx)
	ok, err := r.st.Step()
	stop()
	if err != nil {
		return fail(err)
	}
	r.onRow, r.done = ok, !ok
	r.Columns = make([]string, r.st.ColumnCount())
	r.DeclTypes = make([]string, len(r.Columns))
	for i := range r.Columns {
		r.Columns[i] = r.st.ColumnName(i)
		r.DeclTypes[i] = r.st.ColumnDeclType(i)
	}
	return nil
}

// Next reads the next row into dst (len(dst) >= len(Columns)). It returns false at the end.
// It cannot be cancelled: NextPage can.
func (r *Rows) Next(dst []sqlite.Value) (bool, error) {
	if r.tx != nil {
		return r.nextTx(r.txCtx, dst)
	}
	if len(dst) < len(r.Columns) {
		return false, fmt.Errorf("store: Rows.Next: dst has %d slots for %d columns", len(dst), len(r.Columns))
	}
	if r.rtx != nil {
		// The connection is the transaction's: one call on it at a time, and none after
		// the transaction ended (the end finalized the statement).
		r.rtx.mu.Lock()
		defer r.rtx.mu.Unlock()
		if r.rtx.conn == nil {
			r.forget()
			return false, r.rtx.err
		}
		defer r.rtx.rearm() // idle from the end of this step
	}
	return r.next(dst)
}

// NextPage reads the next rows: up to maxRows, and no more once their values pass maxBytes
// (ValueBytes). done reports the end of the result. The statement is cancelled if ctx ends
// while the page is read (the request that asked for it). A failure after some rows of the
// page answers those rows, and the next call the failure.
func (r *Rows) NextPage(ctx context.Context, maxRows, maxBytes int) (rows [][]sqlite.Value, done bool, err error) {
	if r.pending != nil {
		err, r.pending = r.pending, nil
		return nil, false, err
	}
	if r.tx == nil {
		if r.rtx != nil {
			r.rtx.mu.Lock()
			defer r.rtx.mu.Unlock()
			if r.rtx.conn == nil {
				r.forget()
				return nil, false, r.rtx.err
			}
			defer r.rtx.rearm()
		}
		if r.st == nil {
			return nil, true, nil
		}
		stop := r.conn.CancelOn(ctx)
		defer stop()
	}
	size := 0
	for len(rows) < maxRows && size < maxBytes {
		dst := make([]sqlite.Value, len(r.Columns))
		var ok bool
		if r.tx != nil {
			ok, err = r.nextTx(ctx, dst)
		} else {
			ok, err = r.next(dst)
		}
		if err != nil {
			if len(rows) > 0 {
				r.pending = err
				return rows, false, nil
			}
			return nil, false, err
		}
		if !ok {
			return rows, true, nil
		}
		for _, v := range dst {
			size += ValueBytes(v)
		}
		rows = append(rows, dst)
	}
	return rows, false, nil
}

// next is Next for a statement of a pooled connection or of a read-only transaction (whose
// lock the caller holds).
func (r *Rows) next(dst []sqlite.Value) (bool, error) {
	if r.st == nil {
		return false, nil
	}
	if !r.onRow {
		if r.done {
			return false, nil
		}
		ok, err := r.st.Step()
		if err != nil || !ok {
			r.done = true
			return false, err
		}
	}
	r.onRow = false
	for i := range r.Columns {
		dst[i] = r.st.Column(i)
	}
	return true, nil
}

// Close releases the statement (back to the connection's cache) and the connection (unless
// it is a read-only transaction's). Closing twice is a no-op.
func (r *Rows) Close() error {
	if r.tx != nil {
		return r.closeTx()
	}
	if r.rtx != nil {
		r.rtx.mu.Lock()
		defer r.rtx.mu.Unlock()
		if r.rtx.conn == nil {
			r.forget()
		} else {
			delete(r.rtx.rows, r)
		}
		// The idle timeout skips its turn while t.mu is held (ReadTx.expire).
		defer r.rtx.rearm()
	}
	if r.st == nil {
		return nil
	}
	return r.release()
}

// forget drops the statement of a read-only transaction that has ended: the end finalized
// it.
func (r *Rows) forget() {
	r.st, r.conn = nil, nil
}

// Keep says that the result stays open beyond the request that began it (a cursor the
// client reads page by page): its pooled connection stops counting towards the read pool,
// which opens another for other reads, so that results left open do not stop every other
// read of the database. At most Options.MaxOpenResults results of the node are kept at
// once: beyond, Keep fails with ErrTooManyResults (the caller closes the result). A
// transaction's result holds no pooled connection; Keep does nothing for it.
func (r *Rows) Keep() error {
	if r.tx != nil || r.rtx != nil || r.detached || r.conn == nil {
		return nil
	}
	s := r.db.s
	if n := s.openResults.Add(1); n > int64(s.opts.MaxOpenResults) {
		s.openResults.Add(-1)
		return fmt.Errorf("%w: %d are open on this node", ErrTooManyResults, s.opts.MaxOpenResults)
	}
	r.detached = true
	r.db.detachRead()
	return nil
}

// release gives the statement and the connection back.
func (r *Rows) release() error {
	var err error
	if r.reusable {
		r.conn.keep(r.sql, r.st)
	} else {
		err = r.st.Close()
	}
	r.st = nil
	switch {
	case r.detached:
		r.detached = false
		r.db.s.openResults.Add(-1)
		r.db.reattachRead(r.conn)
	case r.rtx == nil:
		r.db.releaseRead(r.conn)
	}
	r.conn = nil
	return err
}
