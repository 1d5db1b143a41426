package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/tandemdb/tandem/internal/sqlite"
)

// Rows streams the result of Query. It holds a pooled read connection until Close.
type Rows struct {
	Columns   []string
	DeclTypes []string // declared types of the columns ("" for expressions)

	db   *database
	conn *sqlite.Conn
	st   *sqlite.Stmt
	stop func() // stops interrupting on the query's context
	done bool
}

// Query runs one read-only statement on a pooled read connection, on this node's local state
// (a WAL snapshot taken by the first Next). The caller picks the consistency level by waiting
// (WaitApplied) before it calls Query.
func (s *Store) Query(ctx context.Context, dbName string, sql string, args []sqlite.Value) (*Rows, error) {
	if err := s.Diverged(); err != nil {
		return nil, err
	}
	db, err := s.existing(dbName)
	if err != nil {
		return nil, err
	}
	if firstKeyword(sql) == "PRAGMA" {
		if err := checkPragma(sql); err != nil {
			return nil, err
		}
	}
	c, err := db.acquireRead(ctx)
	if err != nil {
		return nil, err
	}
	st, tail, err := c.Prepare(sql)
	if err == nil && st == nil {
		err = errors.New("store: empty query")
	}
	if err == nil && !isBlank(tail) {
		err = errors.New("store: a query must be a single statement")
	}
	if err == nil && !st.ReadOnly() {
		err = ErrNotReadOnly
	}
	if err == nil && len(args) > 0 {
		err = st.Bind(args)
	}
	if err != nil {
		if st != nil {
			st.Close()
		}
		db.releaseRead(c)
		return nil, err
	}
	r := &Rows{db: db, conn: c, st: st, stop: c.InterruptOn(ctx)}
	r.Columns = make([]string, st.ColumnCount())
	r.DeclTypes = make([]string, len(r.Columns))
	for i := range r.Columns {
		r.Columns[i] = st.ColumnName(i)
		r.DeclTypes[i] = st.ColumnDeclType(i)
	}
	return r, nil
}

// Next reads the next row into dst (len(dst) >= len(Columns)). It returns false at the end.
func (r *Rows) Next(dst []sqlite.Value) (bool, error) {
	if r.done || r.st == nil {
		return false, nil
	}
	if len(dst) < len(r.Columns) {
		return false, fmt.Errorf("store: Rows.Next: dst has %d slots for %d columns", len(dst), len(r.Columns))
	}
	ok, err := r.st.Step()
	if err != nil || !ok {
		r.done = true
		return false, err
	}
	for i := range r.Columns {
		dst[i] = r.st.Column(i)
	}
	return true, nil
}

// Close releases the statement and its connection. Closing twice is a no-op.
func (r *Rows) Close() error {
	if r.st == nil {
		return nil
	}
	r.stop()
	err := r.st.Close()
	r.st = nil
	r.db.releaseRead(r.conn)
	r.conn = nil
	return err
}
