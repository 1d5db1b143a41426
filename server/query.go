package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemdb/tandem/internal/sqlite"
	"github.com/tandemdb/tandem/internal/store"
	"github.com/tandemdb/tandem/wire"
)

// cursor is an open query whose remaining rows are sent page by page on request.
type cursor struct {
	mu       sync.Mutex // one page at a time
	rows     *store.Rows
	pageRows int
	used     atomic.Int64 // Unix ns of the last page asked for (the idle timeout)
}

func (c *cursor) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rows != nil {
		_ = c.rows.Close()
		c.rows = nil
	}
}

// page reads up to maxRows rows or about maxBytes of values; ctx is the request's (its end
// stops the statement).
func (c *cursor) page(ctx context.Context, maxRows, maxBytes int) (rows [][]wire.Value, done bool, err error) {
	c.used.Store(time.Now().UnixNano())
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rows == nil {
		return nil, true, nil
	}
	vals, done, err := c.rows.NextPage(ctx, maxRows, maxBytes)
	if err != nil {
		return nil, false, err
	}
	if done {
		_ = c.rows.Close()
		c.rows = nil
	}
	return toWireRows(vals), done, nil
}

// query serves a read at the consistency the client asked for.
func (ss *session) query(ctx context.Context, m *wire.Query) wire.Message {
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
		if t.rtx != nil {
			// A read-only transaction's rows stream from its snapshot like any query's.
			t.mu.Lock()
			rows, err := t.rtx.Query(ctx, sql, args)
			t.mu.Unlock()
			if err != nil {
				return errorMsg(err)
			}
			return ss.firstPage(ctx, rows, m.PageSize, nil)
		}
		// Inside a read-write transaction the read sees the transaction's own writes, so it
		// runs on the writer that the transaction owns; its rows stream from there in pages
		// while the transaction lasts.
		t.mu.Lock()
		rows, err := t.tx.Query(ctx, sql, args, store.ChunkLimits{Rows: ss.pageRows(m.PageSize), Bytes: ss.srv.cfg.PageBytes})
		t.mu.Unlock()
		if err != nil {
			return errorMsg(err)
		}
		return ss.firstPage(ctx, rows, m.PageSize, nil)
	}
	if answer := ss.readBarrier(ctx, m.Consistency, m.MinIndex); answer != nil {
		return answer
	}
	// The statement is cancelled when this request's context ends (a timeout, the client's
	// Cancel); each later page by its Next request's.
	rows, err := ss.srv.cfg.Store.Query(ctx, db, sql, args)
	if isReadOnlyErr(err) {
		return ss.writeQuery(ctx, db, sql, args, m)
	}
	if err != nil {
		return errorMsg(err)
	}
	return ss.firstPage(ctx, rows, m.PageSize, func() wire.Message { return ss.writeQuery(ctx, db, sql, args, m) })
}

// firstPage answers a query with the first page of rows, and keeps the rest as a cursor of
// the connection. A query that turns out to write while its first page is read is answered
// by writeFallback instead (the writer; nil inside a read-only transaction).
func (ss *session) firstPage(ctx context.Context, rows *store.Rows, pageSize uint32, writeFallback func() wire.Message) wire.Message {
	pageRows := ss.pageRows(pageSize)
	c := &cursor{rows: rows, pageRows: pageRows}
	data, done, err := c.page(ctx, pageRows, ss.srv.cfg.PageBytes)
	if err != nil {
		c.close()
		if writeFallback != nil && isReadOnlyErr(err) {
			return writeFallback()
		}
		return errorMsg(err)
	}
	page := &wire.RowsPage{Columns: rows.Columns, DeclTypes: rows.DeclTypes, Rows: data, Done: done}
	if done {
		return page
	}
	if err := rows.Keep(); err != nil {
		c.close()
		return errorMsg(err)
	}
	id := ss.srv.nextID.Add(1)
	ss.mu.Lock()
	if len(ss.cursors) >= ss.srv.cfg.MaxCursors || ss.ctx.Err() != nil {
		ss.mu.Unlock()
		c.close()
		return &wire.Error{Code: wire.CodeTryAgain, Message: fmt.Sprintf("too many open cursors on this connection (limit %d): read or close the others first", ss.srv.cfg.MaxCursors)}
	}
	ss.cursors[id] = c
	ss.mu.Unlock()
	page.Cursor = id
	return page
}

// pageRows is how many rows a page holds at most when the client asks for pageSize.
func (ss *session) pageRows(pageSize uint32) int {
	if pageSize == 0 {
		return ss.srv.cfg.PageRows
	}
	return int(pageSize)
}

// readBarrier waits until this node's state may serve a read at consistency c that must see
// at least index minIndex. Otherwise it returns the answer to send instead: an error, or on a
// follower, for linearizable and leader reads, a redirect.
func (ss *session) readBarrier(ctx context.Context, c wire.Consistency, minIndex uint64) wire.Message {
	st := ss.srv.cfg.Store
	if err := st.Diverged(); err != nil {
		return errorMsg(err)
	}
	switch c {
	case wire.Linearizable:
		idx, err := ss.srv.cfg.Consensus.ReadIndex(ctx)
		if err != nil {
			return errorMsg(err)
		}
		if err := st.WaitApplied(ctx, idx); err != nil {
			return errorMsg(err)
		}
	case wire.LeaderLocal:
		if _, err := ss.srv.cfg.Consensus.LeaderReady(ctx); err != nil {
			return errorMsg(err)
		}
	case wire.Stale:
	default:
		return &wire.Error{Code: wire.CodeBadRequest, Message: fmt.Sprintf("unknown consistency %d", c)}
	}
	if minIndex != 0 {
		if err := st.WaitApplied(ctx, minIndex); err != nil {
			return errorMsg(err)
		}
	}
	return nil
}

func (ss *session) next(ctx context.Context, id uint64) wire.Message {
	ss.mu.Lock()
	c, ok := ss.cursors[id]
	ss.mu.Unlock()
	if !ok {
		return &wire.Error{Code: wire.CodeNoSuchCursor, Message: fmt.Sprintf(
			"cursor %d: not open (read to its end, closed, or closed after %v without a page)", id, ss.srv.cfg.CursorIdleTimeout)}
	}
	data, done, err := c.page(ctx, c.pageRows, ss.srv.cfg.PageBytes)
	if err != nil || done {
		ss.mu.Lock()
		delete(ss.cursors, id)
		ss.mu.Unlock()
		c.close()
	}
	if err != nil {
		return errorMsg(err)
	}
	return &wire.RowsPage{Cursor: id, Rows: data, Done: done}
}

// expireCursors closes the cursors of the connection that no page was asked of for
// CursorIdleTimeout; it runs until the connection ends.
func (ss *session) expireCursors() {
	timeout := ss.srv.cfg.CursorIdleTimeout
	t := time.NewTicker(min(timeout/4, 30*time.Second))
	defer t.Stop()
	for {
		select {
		case <-ss.ctx.Done():
			return
		case <-t.C:
		}
		cutoff := time.Now().Add(-timeout).UnixNano()
		var idle []*cursor
		ss.mu.Lock()
		for id, c := range ss.cursors {
			if c.used.Load() < cutoff {
				delete(ss.cursors, id)
				idle = append(idle, c)
			}
		}
		ss.mu.Unlock()
		for _, c := range idle {
			c.close() // waits for a page being read
		}
	}
}

func (ss *session) closeCursor(id uint64) wire.Message {
	ss.mu.Lock()
	c, ok := ss.cursors[id]
	delete(ss.cursors, id)
	ss.mu.Unlock()
	if !ok {
		return &wire.Error{Code: wire.CodeNoSuchCursor, Message: fmt.Sprintf("cursor %d", id)}
	}
	c.close()
	return &wire.OK{}
}

func toWireRows(rows [][]sqlite.Value) [][]wire.Value {
	out := make([][]wire.Value, len(rows))
	for i, r := range rows {
		out[i] = make([]wire.Value, len(r))
		copy(out[i], r)
	}
	return out
}

// sqliteReadOnly is SQLITE_READONLY: a statement that writes reached a read-only connection.
const sqliteReadOnly = 8

func isReadOnlyErr(err error) bool {
	var se *sqlite.Error
	return errors.Is(err, store.ErrNotReadOnly) || errors.As(err, &se) && se.Code == sqliteReadOnly
}

// writeQuery runs a query that turned out to write (INSERT ... RETURNING sent as a query)
// through the writer, like Exec, and answers with its rows in one page. Only the leader
// writes: on a follower the client is redirected.
func (ss *session) writeQuery(ctx context.Context, db, sql string, args []sqlite.Value, m *wire.Query) wire.Message {
	req := store.Request{ClientID: ss.clientID, RequestID: m.RequestID, SQL: sql, Args: args}
	if dl, ok := ctx.Deadline(); ok {
		req.Deadline = dl
	}
	res, err := ss.srv.cfg.Store.Exec(ctx, db, req)
	if err != nil {
		return errorMsg(err)
	}
	if res.Err != nil {
		return errorMsg(res.Err)
	}
	return &wire.RowsPage{Columns: res.Columns, DeclTypes: res.DeclTypes, Rows: toWireRows(res.Rows), Done: true}
}
