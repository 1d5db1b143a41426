package driver

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemdb/tandem/wire"
	"github.com/tandemdb/tandem/wire/wiretest"
	_ "modernc.org/sqlite"
)

// sqlNode is a fake single-node cluster executing SQL with SQLite (through modernc's
// database/sql driver), enough to exercise the driver end to end.
type sqlNode struct {
	*wiretest.Server
	t   *testing.T
	dir string

	mu       sync.Mutex
	dbs      map[string]*sql.DB
	txs      map[uint64]*sql.Tx
	stmts    map[uint64]string
	cursors  map[uint64][][]wire.Value
	nextID   uint64
	index    uint64
	queries  atomic.Int64
	pageSize atomic.Uint32 // page_size of the last Query
	execs    atomic.Int64
}

func newSQLNode(t *testing.T) *sqlNode {
	n := &sqlNode{t: t, dir: t.TempDir(), dbs: map[string]*sql.DB{}, txs: map[uint64]*sql.Tx{},
		stmts: map[uint64]string{}, cursors: map[uint64][][]wire.Value{}}
	s, err := wiretest.NewServer(1, nil, func(c *wiretest.Conn, id uint64, m wire.Message) { go n.handle(c, id, m) })
	if err != nil {
		t.Fatal(err)
	}
	n.Server = s
	s.SetLeader(1, s.Addr())
	t.Cleanup(func() {
		s.Close()
		n.mu.Lock()
		defer n.mu.Unlock()
		for _, db := range n.dbs {
			db.Close()
		}
	})
	return n
}

func (n *sqlNode) db(name string) (*sql.DB, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if db := n.dbs[name]; db != nil {
		return db, nil
	}
	db, err := sql.Open("sqlite", filepath.Join(n.dir, name+".db"))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1) // one writer, like the real thing; keeps the fake simple
	n.dbs[name] = db
	return db, nil
}

func (n *sqlNode) id() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.nextID++
	return n.nextID
}

func sqlErr(err error) *wire.Error {
	var coder interface{ Code() int }
	e := &wire.Error{Code: wire.CodeSQLite, SQLiteCode: 1, SQLiteExtended: 1, Message: err.Error()}
	if errors.As(err, &coder) {
		e.SQLiteExtended = int32(coder.Code())
		e.SQLiteCode = int32(coder.Code() & 0xff)
	}
	return e
}

func args(vs []wire.Value) []any {
	out := make([]any, len(vs))
	for i, v := range vs {
		if nv, ok := v.(wire.Named); ok {
			out[i] = sql.Named(nv.Name, nv.Value)
		} else {
			out[i] = v
		}
	}
	return out
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func (n *sqlNode) target(db string, txID uint64) (execer, *wire.Error) {
	if txID != 0 {
		n.mu.Lock()
		tx := n.txs[txID]
		n.mu.Unlock()
		if tx == nil {
			return nil, &wire.Error{Code: wire.CodeNoSuchTx}
		}
		return tx, nil
	}
	d, err := n.db(db)
	if err != nil {
		return nil, &wire.Error{Code: wire.CodeInternal, Message: err.Error()}
	}
	return d, nil
}

func (n *sqlNode) sqlText(sqlStr string, stmtID uint64) (string, *wire.Error) {
	if stmtID == 0 {
		return sqlStr, nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	s, ok := n.stmts[stmtID]
	if !ok {
		return "", &wire.Error{Code: wire.CodeNoSuchStmt}
	}
	return s, nil
}

func (n *sqlNode) handle(c *wiretest.Conn, id uint64, m wire.Message) {
	ctx := context.Background()
	switch m := m.(type) {
	case *wire.LeaderReq:
		c.Reply(id, &wire.LeaderInfo{ID: 1, Term: 1, Addr: n.Addr()})
	case *wire.StatusReq:
		c.Reply(id, &wire.NodeStatus{ID: 1, Leader: 1, Addr: n.Addr(), Healthy: true})
	case *wire.Exec:
		n.execs.Add(1)
		q, werr := n.sqlText(m.SQL, m.StmtID)
		if werr != nil {
			c.Reply(id, werr)
			return
		}
		t, werr := n.target(m.DB, m.TxID)
		if werr != nil {
			c.Reply(id, werr)
			return
		}
		res, err := t.ExecContext(ctx, q, args(m.Args)...)
		if err != nil {
			c.Reply(id, sqlErr(err))
			return
		}
		r := &wire.Result{}
		r.LastInsertID, _ = res.LastInsertId()
		r.RowsAffected, _ = res.RowsAffected()
		if m.TxID == 0 {
			n.mu.Lock()
			n.index++
			r.Index = n.index
			n.mu.Unlock()
		}
		c.Reply(id, r)
	case *wire.Query:
		n.queries.Add(1)
		n.pageSize.Store(m.PageSize)
		q, werr := n.sqlText(m.SQL, m.StmtID)
		if werr != nil {
			c.Reply(id, werr)
			return
		}
		t, werr := n.target(m.DB, m.TxID)
		if werr != nil {
			c.Reply(id, werr)
			return
		}
		rs, err := t.QueryContext(ctx, q, args(m.Args)...)
		if err != nil {
			c.Reply(id, sqlErr(err))
			return
		}
		defer rs.Close()
		cols, _ := rs.Columns()
		cts, _ := rs.ColumnTypes()
		decl := make([]string, len(cts))
		for i, ct := range cts {
			decl[i] = ct.DatabaseTypeName()
		}
		var all [][]wire.Value
		for rs.Next() {
			row := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range row {
				ptrs[i] = &row[i]
			}
			if err := rs.Scan(ptrs...); err != nil {
				c.Reply(id, sqlErr(err))
				return
			}
			for i, v := range row {
				switch x := v.(type) {
				case time.Time: // modernc parses DATETIME columns; Tandem sends the stored text
					row[i] = x.UTC().Format(time.RFC3339Nano)
				case bool:
					row[i] = map[bool]int64{false: 0, true: 1}[x]
				}
			}
			all = append(all, row)
		}
		if err := rs.Err(); err != nil {
			c.Reply(id, sqlErr(err))
			return
		}
		p := n.page(n.id(), all, int(m.PageSize))
		p.Columns, p.DeclTypes = cols, decl
		c.Reply(id, p)
	case *wire.Next:
		n.mu.Lock()
		rows, ok := n.cursors[m.Cursor]
		n.mu.Unlock()
		if !ok {
			c.Reply(id, &wire.Error{Code: wire.CodeNoSuchCursor})
			return
		}
		c.Reply(id, n.page(m.Cursor, rows, 2))
	case *wire.CloseCursor:
		n.mu.Lock()
		delete(n.cursors, m.Cursor)
		n.mu.Unlock()
		c.Reply(id, &wire.OK{})
	case *wire.Begin:
		d, err := n.db(m.DB)
		if err != nil {
			c.Reply(id, &wire.Error{Code: wire.CodeInternal})
			return
		}
		tx, err := d.BeginTx(ctx, nil)
		if err != nil {
			c.Reply(id, sqlErr(err))
			return
		}
		txID := n.id()
		n.mu.Lock()
		n.txs[txID] = tx
		n.mu.Unlock()
		c.Reply(id, &wire.TxBegun{TxID: txID})
	case *wire.Commit:
		n.mu.Lock()
		tx := n.txs[m.TxID]
		delete(n.txs, m.TxID)
		n.mu.Unlock()
		if tx == nil {
			c.Reply(id, &wire.Error{Code: wire.CodeNoSuchTx})
			return
		}
		if err := tx.Commit(); err != nil {
			c.Reply(id, sqlErr(err))
			return
		}
		c.Reply(id, &wire.Result{Index: 1})
	case *wire.Rollback:
		n.mu.Lock()
		tx := n.txs[m.TxID]
		delete(n.txs, m.TxID)
		n.mu.Unlock()
		if tx != nil {
			tx.Rollback()
		}
		c.Reply(id, &wire.OK{})
	case *wire.Prepare:
		d, err := n.db(m.DB)
		if err != nil {
			c.Reply(id, &wire.Error{Code: wire.CodeInternal})
			return
		}
		// The fake's one connection may be held by an open transaction: compile there.
		prep := d.PrepareContext
		n.mu.Lock()
		for _, tx := range n.txs {
			prep = tx.PrepareContext
			break
		}
		n.mu.Unlock()
		st, err := prep(ctx, m.SQL)
		if err != nil {
			c.Reply(id, sqlErr(err))
			return
		}
		st.Close()
		sid := n.id()
		n.mu.Lock()
		n.stmts[sid] = m.SQL
		n.mu.Unlock()
		c.Reply(id, &wire.Prepared{StmtID: sid, NumParams: uint32(strings.Count(m.SQL, "?"))})
	case *wire.CloseStmt:
		n.mu.Lock()
		delete(n.stmts, m.StmtID)
		n.mu.Unlock()
		c.Reply(id, &wire.OK{})
	default:
		c.Reply(id, &wire.Error{Code: wire.CodeBadRequest, Message: "unexpected " + m.Type().String()})
	}
}

func (n *sqlNode) page(cur uint64, rows [][]wire.Value, size int) *wire.RowsPage {
	if size <= 0 {
		size = 2
	}
	p := &wire.RowsPage{Cursor: cur}
	if len(rows) <= size {
		p.Rows, p.Done = rows, true
		return p
	}
	p.Rows = rows[:size]
	n.mu.Lock()
	n.cursors[cur] = rows[size:]
	n.mu.Unlock()
	return p
}
