package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/tandemdb/tandem/internal/sqlite"
)

// A read inside a read-write transaction runs on the writer connection the transaction owns
// (it must see the transaction's own writes), so its statement can only be stepped on the
// writer goroutine. Its rows are read there in chunks, one op per chunk, and the statement
// stays open between chunks as a cursor of the transaction: a large result streams in pages
// like any other query's instead of being collected whole.

// ChunkLimits bounds one chunk of a transaction's cursor: at most Rows rows, and the chunk
// ends after the row that takes its values past Bytes (the server's page limits).
type ChunkLimits struct {
	Rows, Bytes int
}

func (l ChunkLimits) orDefault() ChunkLimits {
	if l.Rows <= 0 {
		l.Rows = 512
	}
	if l.Bytes <= 0 {
		l.Bytes = 1 << 20
	}
	return l
}

// txChunk is the answer to a txQuery or txFetch op.
type txChunk struct {
	columns, declTypes []string // txQuery only
	rows               [][]sqlite.Value
	cursor             uint64 // the statement stays open as this cursor; 0 when done
	done               bool
}

// Query runs a read inside the transaction, seeing its writes. One read-only statement
// streams: Rows reads it chunk by chunk on the transaction's writer, while the transaction
// lasts. Anything else (a PRAGMA, INSERT ... RETURNING) runs as Exec does, and its rows
// come whole; several statements are refused. A statement's own failure is the returned
// error.
//
// ctx bounds the statement until its first chunk is read, and the later chunks that Next
// reads; NextPage takes a context of its own for each page (the server's way: a cursor
// outlives the request that began it).
func (t *Tx) Query(ctx context.Context, sql string, args []sqlite.Value, limits ChunkLimits) (*Rows, error) {
	limits = limits.orDefault()
	res, err := t.call(ctx, &txOp{kind: txQuery, ctx: ctx, sql: sql, args: args, limits: limits})
	if err != nil {
		return nil, err
	}
	if res.res.Err != nil {
		return nil, res.res.Err
	}
	if res.chunk == nil {
		// Ran as Exec: its rows are all here.
		return &Rows{Columns: res.res.Columns, DeclTypes: res.res.DeclTypes, tx: t, chunk: res.res.Rows, done: true}, nil
	}
	ch := res.chunk
	return &Rows{Columns: ch.columns, DeclTypes: ch.declTypes, tx: t, txCtx: ctx, limits: limits,
		txCursor: ch.cursor, chunk: ch.rows, done: ch.done}, nil
}

// nextTx is Rows.Next for a read-write transaction's cursor; ctx bounds a chunk it reads.
func (r *Rows) nextTx(ctx context.Context, dst []sqlite.Value) (bool, error) {
	if len(dst) < len(r.Columns) {
		return false, fmt.Errorf("store: Rows.Next: dst has %d slots for %d columns", len(dst), len(r.Columns))
	}
	for len(r.chunk) == 0 {
		if r.done {
			return false, nil
		}
		res, err := r.tx.call(ctx, &txOp{kind: txFetch, ctx: ctx, cursor: r.txCursor, limits: r.limits})
		if err != nil {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				r.done = true // the writer closed the statement (or the transaction ended)
			} // else the op never reached the writer: the statement is open, and Close closes it
			return false, err
		}
		r.chunk, r.done = res.chunk.rows, res.chunk.done
	}
	copy(dst, r.chunk[0])
	r.chunk[0] = nil
	r.chunk = r.chunk[1:]
	return true, nil
}

// closeTx is Rows.Close for a read-write transaction's cursor: it closes the statement
// unless the writer did already (read to the end, failed, or the transaction ended).
func (r *Rows) closeTx() error {
	r.chunk = nil
	if r.done {
		return nil
	}
	r.done = true
	_, err := r.tx.call(context.Background(), &txOp{kind: txCloseCursor, cursor: r.txCursor})
	if err != nil && r.tx.ended() {
		return nil // ending the transaction closed it
	}
	return err
}

// txCursors are the open statements of one transaction's reads, owned by the writer
// goroutine serving it.
type txCursors struct {
	open   map[uint64]*sqlite.Stmt
	failed map[uint64]error // a statement that failed after a chunk's first rows: the next fetch answers it
	last   uint64
}

// closeAll finalizes every open statement: before the transaction commits or rolls back.
func (cs *txCursors) closeAll() {
	for id, st := range cs.open {
		st.Close()
		delete(cs.open, id)
	}
	clear(cs.failed)
}

// keep makes st the cursor of ch (whose rows were read), or, after err, remembers err for
// the cursor's next fetch; ch.cursor is set.
func (cs *txCursors) keep(ch *txChunk, st *sqlite.Stmt, err error) {
	if cs.open == nil {
		cs.open, cs.failed = map[uint64]*sqlite.Stmt{}, map[uint64]error{}
	}
	cs.last++
	ch.cursor = cs.last
	if err != nil {
		st.Close()
		cs.failed[cs.last] = err
		return
	}
	cs.open[cs.last] = st
}

// prepareStreamable prepares text as a cursor if it is one read-only statement that passes
// the checks every statement gets, and not a PRAGMA (whose checks are on its text). It
// returns nil otherwise, and the statement runs as Exec would, which reports any error;
// several statements are refused, as for a query outside a transaction (the Exec path would
// answer the last one's rows only).
func (w *wconn) prepareStreamable(text string) (*sqlite.Stmt, error) {
	pragma := firstKeyword(text) == "PRAGMA"
	if pragma && checkPragma(text) != nil {
		return nil, nil // refused on the Exec path, before it is compiled
	}
	st, tail, err := w.conn.Prepare(text)
	if err != nil || st == nil {
		return nil, nil
	}
	if !isBlank(tail) {
		st.Close()
		return nil, fmt.Errorf("%w: send several through Exec", ErrNotOneStatement)
	}
	if pragma || !st.ReadOnly() || checkStatement(st.SQL()) != nil {
		st.Close()
		return nil, nil
	}
	return st, nil
}

// query serves a txQuery op: a streamable statement becomes a cursor with its first chunk
// read, anything else runs through exec (the caller's).
func (cs *txCursors) query(w *wconn, op *txOp) (*txChunk, error) {
	st, err := w.prepareStreamable(op.sql)
	if err != nil || st == nil {
		return nil, err
	}
	if err := st.BindAll(op.args); err != nil {
		st.Close()
		return nil, asSQLiteError(err)
	}
	ch, err := readChunk(w.conn, st, op.ctx, op.limits, true)
	if err != nil && (ch == nil || len(ch.rows) == 0) || err == nil && ch.done {
		st.Close()
		return ch, err
	}
	cs.keep(ch, st, err)
	return ch, nil
}

// fetch serves a txFetch op.
func (cs *txCursors) fetch(w *wconn, op *txOp) (*txChunk, error) {
	if err, ok := cs.failed[op.cursor]; ok {
		delete(cs.failed, op.cursor)
		return nil, err
	}
	st, ok := cs.open[op.cursor]
	if !ok {
		return nil, fmt.Errorf("store: cursor %d of the transaction is closed", op.cursor)
	}
	ch, err := readChunk(w.conn, st, op.ctx, op.limits, false)
	switch {
	case err != nil && len(ch.rows) > 0:
		// The rows before the failure first, the failure next time.
		st.Close()
		delete(cs.open, op.cursor)
		cs.failed[op.cursor] = err
	case err != nil || ch.done:
		st.Close()
		delete(cs.open, op.cursor)
		return ch, err
	}
	ch.cursor = op.cursor
	return ch, nil
}

// close serves a txCloseCursor op.
func (cs *txCursors) close(id uint64) {
	if st, ok := cs.open[id]; ok {
		st.Close()
		delete(cs.open, id)
	}
	delete(cs.failed, id)
}

// readChunk steps st for up to limits' rows or bytes, interrupted when ctx ends. first:
// the columns are read too (after the first step: a statement SQLite prepared again after a
// schema change may have other columns). A failure comes with the rows read before it.
func readChunk(c *sqlite.Conn, st *sqlite.Stmt, ctx context.Context, limits ChunkLimits, first bool) (*txChunk, error) {
	stop := c.CancelOn(ctx) // not InterruptOn: its flag would stay set while the cursor is open
	defer stop()
	ch := &txChunk{}
	size := 0
	for len(ch.rows) < limits.Rows && size < limits.Bytes {
		ok, err := st.Step()
		if err != nil {
			return ch, asSQLiteError(err)
		}
		if first {
			first = false
			n := st.ColumnCount()
			ch.columns, ch.declTypes = make([]string, n), make([]string, n)
			for i := range n {
				ch.columns[i], ch.declTypes[i] = st.ColumnName(i), st.ColumnDeclType(i)
			}
		}
		if !ok {
			ch.done = true
			return ch, nil
		}
		row := make([]sqlite.Value, st.ColumnCount())
		for i := range row {
			row[i] = st.Column(i)
			size += ValueBytes(row[i])
		}
		ch.rows = append(ch.rows, row)
	}
	return ch, nil
}

// ValueBytes is what a value counts towards the byte limit of a page of rows (the server's)
// or of a chunk of a transaction's cursor.
func ValueBytes(v sqlite.Value) int {
	switch x := v.(type) {
	case string:
		return len(x) + 8
	case []byte:
		return len(x) + 8
	}
	return 8
}
