package sqlite

import (
	"bytes"
	"errors"
	"strings"

	lib "modernc.org/sqlite/lib"
)

// This file applies a changeset with statements of our own, cached per table on the
// connection, instead of sqlite3changeset_apply_v2. The library prepares its INSERT, UPDATE,
// DELETE and SELECT statements again on every call and runs PRAGMA defer_foreign_keys, a
// flag pragma that expires every prepared statement of the connection, so the caller's
// cached statements are prepared again after each apply too: 13% of all the CPU of a 3-node
// cluster under a single writer (CPU profile of the write benchmark, 2026-11-23).
//
// It is used only where the library's extra work buys nothing: on a connection without
// foreign keys (no action can fire, nothing to defer) and for tables whose shape it knows
// (tableShape.direct). The checks are the library's: an INSERT whose row exists (PRIMARY KEY)
// is a "conflict"; an UPDATE or DELETE must find the row by its key with the old values the
// changeset records ("notfound" or "data" otherwise); a change that fails another constraint
// (UNIQUE, NOT NULL, CHECK) is retried after the others, as the library does, because a
// changeset lists its rows in no particular order (an INSERT OR REPLACE of a UNIQUE key is a
// DELETE and an INSERT that may come in either order), and is a "constraint" conflict if it
// still fails when no retry makes progress.

// rowidName names the implicit rowid column of a table without PRIMARY KEY.
const rowidName = "_rowid_"

// applyStmts are a table's cached apply statements; closed when the shapes are dropped.
type applyStmts struct {
	insert, delete *Stmt
	insertRowID    *Stmt            // INSERT with the rowid as the last parameter (rowidHints)
	update         map[string]*Stmt // by modified-column mask
	exists         *Stmt            // SELECT by key: tells "notfound" from "data"
}

func (a *applyStmts) close() {
	for _, st := range []*Stmt{a.insert, a.delete, a.exists, a.insertRowID} {
		if st != nil {
			st.Close()
		}
	}
	for _, st := range a.update {
		st.Close()
	}
}

// dropShapes forgets the table shapes and closes their statements.
func (c *Conn) dropShapes() {
	for _, sh := range c.shapes {
		if sh != nil {
			sh.stmts.close()
			sh.rowids.close()
		}
	}
	c.shapes = nil
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func (c *Conn) prepareOne(sql string) (*Stmt, error) {
	st, _, err := c.Prepare(sql)
	if err == nil && st == nil {
		err = misuse("empty statement %q", sql)
	}
	return st, err
}

// insertStmt: INSERT INTO t(c1..cn) VALUES(?1..?n).
func (c *Conn) insertStmt(sh *tableShape) (*Stmt, error) {
	if sh.stmts.insert == nil {
		cols := make([]string, len(sh.cols))
		params := make([]string, len(sh.cols))
		for i, name := range sh.cols {
			cols[i], params[i] = quoteIdent(name), "?"+itoa(i+1)
		}
		st, err := c.prepareOne("INSERT INTO main." + quoteIdent(sh.name) + "(" + strings.Join(cols, ", ") +
			") VALUES(" + strings.Join(params, ", ") + ")")
		if err != nil {
			return nil, err
		}
		sh.stmts.insert = st
	}
	return sh.stmts.insert, nil
}

// insertRowIDStmt: INSERT INTO t(c1..cn, rowid) VALUES(?1..?n, ?n+1), for a table whose
// rowid is not its key (rowidShape has named it).
func (c *Conn) insertRowIDStmt(sh *tableShape) (*Stmt, error) {
	if sh.stmts.insertRowID == nil {
		cols := make([]string, len(sh.cols)+1)
		params := make([]string, len(sh.cols)+1)
		for i, name := range sh.cols {
			cols[i], params[i] = quoteIdent(name), "?"+itoa(i+1)
		}
		cols[len(sh.cols)], params[len(sh.cols)] = sh.rowidName, "?"+itoa(len(sh.cols)+1)
		st, err := c.prepareOne("INSERT INTO main." + quoteIdent(sh.name) + "(" + strings.Join(cols, ", ") +
			") VALUES(" + strings.Join(params, ", ") + ")")
		if err != nil {
			return nil, err
		}
		sh.stmts.insertRowID = st
	}
	return sh.stmts.insertRowID, nil
}

// deleteStmt: DELETE FROM t WHERE every column IS its old value (?i for column i).
func (c *Conn) deleteStmt(sh *tableShape) (*Stmt, error) {
	if sh.stmts.delete == nil {
		conds := make([]string, len(sh.cols))
		for i, name := range sh.cols {
			op := " IS ?"
			if sh.pk[i] != 0 {
				op = " = ?" // a key is never NULL in a changeset; = uses the index
			}
			conds[i] = quoteIdent(name) + op + itoa(i+1)
		}
		st, err := c.prepareOne("DELETE FROM main." + quoteIdent(sh.name) + " WHERE " + strings.Join(conds, " AND "))
		if err != nil {
			return nil, err
		}
		sh.stmts.delete = st
	}
	return sh.stmts.delete, nil
}

// updateStmt: UPDATE t SET each modified column = ?(n+i) WHERE key = ?i AND each modified
// column IS ?i (its old value): parameter i (1-based) is column i's old value, n+i its new.
func (c *Conn) updateStmt(sh *tableShape, mask []byte) (*Stmt, error) {
	key := string(mask)
	if st := sh.stmts.update[key]; st != nil {
		return st, nil
	}
	n := len(sh.cols)
	var sets, conds []string
	for i, name := range sh.cols {
		switch {
		case sh.pk[i] != 0:
			conds = append(conds, quoteIdent(name)+" = ?"+itoa(i+1))
		case mask[i] != 0:
			sets = append(sets, quoteIdent(name)+" = ?"+itoa(n+i+1))
			conds = append(conds, quoteIdent(name)+" IS ?"+itoa(i+1))
		}
	}
	if len(sets) == 0 {
		return nil, nil
	}
	st, err := c.prepareOne("UPDATE main." + quoteIdent(sh.name) + " SET " + strings.Join(sets, ", ") +
		" WHERE " + strings.Join(conds, " AND "))
	if err != nil {
		return nil, err
	}
	if sh.stmts.update == nil {
		sh.stmts.update = map[string]*Stmt{}
	}
	sh.stmts.update[key] = st
	return st, nil
}

// existsStmt: SELECT 1 FROM t WHERE key (parameters numbered as in the changeset's columns).
func (c *Conn) existsStmt(sh *tableShape) (*Stmt, error) {
	if sh.stmts.exists == nil {
		var conds []string
		for i, name := range sh.cols {
			if sh.pk[i] != 0 {
				conds = append(conds, quoteIdent(name)+" = ?"+itoa(i+1))
			}
		}
		st, err := c.prepareOne("SELECT 1 FROM main." + quoteIdent(sh.name) + " WHERE " + strings.Join(conds, " AND "))
		if err != nil {
			return nil, err
		}
		sh.stmts.exists = st
	}
	return sh.stmts.exists, nil
}

// change is one change of a changeset with its values copied out of the iterator, kept to
// be retried after a constraint failure.
type change struct {
	sh       *tableShape
	op       int32
	old, new []Value // per column; nil where the change carries no value
	mask     []byte  // UPDATE: 1 for modified columns
}

// binder binds column col's old or new value of a change as parameter param of st.
type binder func(st *Stmt, param int, old bool, col int) error

// applyDirect applies the changeset at p (n bytes) inside a savepoint: a failure leaves
// nothing behind. Every table was checked by checkChangesetSchema and is in c.shapes.
func (c *Conn) applyDirect(p uintptr, n int, hints map[string]*rowidHints) error {
	if err := c.savepoint(0); err != nil {
		return err
	}
	var retry []change
	var err error
	// Deletes first, then updates, then inserts: a changeset lists a table's rows in no
	// particular order, and this order frees UNIQUE values before they are taken again (an
	// INSERT OR REPLACE that moved a UNIQUE key to a new rowid), so that the retries below
	// are the exception.
	for _, op := range [...]int32{lib.SQLITE_DELETE, lib.SQLITE_UPDATE, lib.SQLITE_INSERT} {
		if retry, err = c.applyChanges(p, n, op, retry, hints); err != nil {
			break
		}
	}
	if err == nil {
		err = c.retryChanges(retry)
	}
	if err != nil {
		_ = c.savepoint(2)
		_ = c.savepoint(1)
		return err
	}
	return c.savepoint(1)
}

// savepoint runs the cached statement k of applySP: 0 SAVEPOINT, 1 RELEASE, 2 ROLLBACK TO.
func (c *Conn) savepoint(k int) error {
	if c.applySP[k] == nil {
		sql := [...]string{"SAVEPOINT tandem_changeset", "RELEASE tandem_changeset", "ROLLBACK TO tandem_changeset"}[k]
		st, err := c.prepareOne(sql)
		if err != nil {
			return err
		}
		c.applySP[k] = st
	}
	st := c.applySP[k]
	_, err := st.Step()
	_ = st.Reset()
	return err
}

// rowidHints are the leader's rowids of one table's inserted and updated rows, in changeset
// order (TableRowIDs); the INSERT pass of applyChanges counts those changes in i.
type rowidHints struct {
	ids []int64
	i   int
}

// applyChanges applies the changes of operation only (SQLITE_INSERT, _UPDATE or _DELETE) and
// returns retry with the changes that failed a constraint added. In the INSERT pass, a row
// of a table in hints is inserted with its rowid from there.
func (c *Conn) applyChanges(p uintptr, n int, only int32, retry []change, hints map[string]*rowidHints) ([]change, error) {
	tls := c.tls
	ci, err := c.startChangeset(p, n)
	if err != nil {
		return nil, err
	}
	defer ci.close()
	bind := func(st *Stmt, param int, old bool, col int) error {
		v := ci.value(old, col)
		if v == 0 {
			return errorFor(tls, 0, lib.SQLITE_CORRUPT) // a value the change must carry is missing
		}
		if rc := lib.Xsqlite3_bind_value(tls, st.p, int32(param), v); rc != lib.SQLITE_OK {
			return errorFor(tls, 0, rc)
		}
		return nil
	}
	var (
		sh      *tableShape
		lastTab []byte // NUL-terminated
		mask    []byte
	)
	for {
		zTab, ncol, op, ok, err := ci.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			return retry, nil
		}
		var rowid *int64
		if only == lib.SQLITE_INSERT && hints != nil && op != lib.SQLITE_DELETE {
			if h := hints[goString(zTab)]; h != nil {
				if op == lib.SQLITE_INSERT && h.i < len(h.ids) {
					rowid = &h.ids[h.i]
				}
				h.i++
			}
		}
		if op != only {
			continue
		}
		// The iterator may reuse its name buffer for the next table: compare the bytes.
		if sh == nil || !bytes.Equal(cview(zTab, len(lastTab)), lastTab) {
			name := goString(zTab)
			if sh = c.shapes[name]; sh == nil {
				return nil, &ConflictError{Kind: ConflictSchema, Table: name, Op: opName(op)}
			}
			lastTab = append(append(lastTab[:0], name...), 0)
		}
		if ncol != len(sh.cols) {
			return nil, &ConflictError{Kind: ConflictSchema, Table: sh.name, Op: opName(op)}
		}
		mask = mask[:0]
		if op == lib.SQLITE_UPDATE {
			for i := range ncol {
				var mod byte
				if sh.pk[i] == 0 && ci.value(false, i) != 0 {
					mod = 1
				}
				mask = append(mask, mod)
			}
		}
		if rowid != nil {
			if err := c.rowidShape(sh); err != nil {
				return nil, err
			}
			if sh.keys == nil || sh.rowidName == "" {
				rowid = nil // SetChangesetRowIDs reports the mismatch
			}
		}
		err = c.applyOne(sh, op, mask, bind, rowid)
		if ce, ok := err.(*ConflictError); ok && ce.Kind == ConflictConstraint {
			retry = append(retry, c.copyChange(sh, op, mask, ci))
			continue
		}
		if err != nil {
			return nil, err
		}
	}
}

// applyOne applies one change: it picks the table's statement for op (and, for an UPDATE,
// the modified columns in mask), binds the values the change carries with bind and checks
// the outcome (runChange).
//
// An INSERT with a rowid inserts the row there; if another row holds that rowid (one that
// moves later), it inserts the row where SQLite puts it, and SetChangesetRowIDs moves it.
func (c *Conn) applyOne(sh *tableShape, op int32, mask []byte, bind binder, rowid *int64) error {
	var (
		st  *Stmt
		err error
	)
	switch op {
	case lib.SQLITE_INSERT:
		if rowid != nil {
			st, err = c.insertRowIDStmt(sh)
		} else {
			st, err = c.insertStmt(sh)
		}
	case lib.SQLITE_DELETE:
		st, err = c.deleteStmt(sh)
	case lib.SQLITE_UPDATE:
		st, err = c.updateStmt(sh, mask)
		if err == nil && st == nil {
			return nil // nothing modified
		}
	default:
		return misuse("changeset operation %d", op)
	}
	if err != nil {
		return err
	}
	n := len(sh.cols)
	for i := range n {
		switch {
		case op == lib.SQLITE_INSERT:
			err = bind(st, i+1, false, i) // every new value
		case op == lib.SQLITE_DELETE:
			err = bind(st, i+1, true, i) // every old value
		case sh.pk[i] != 0:
			err = bind(st, i+1, true, i) // the key
		case mask[i] != 0:
			if err = bind(st, i+1, true, i); err == nil { // the modified column's old value
				err = bind(st, n+i+1, false, i) // and its new one
			}
		}
		if err != nil {
			return err
		}
	}
	if rowid != nil {
		if err := st.bindValue(n+1, *rowid); err != nil {
			return err
		}
	}
	err = c.runChange(sh, op, st, func(ex *Stmt) error {
		for i := range n {
			if sh.pk[i] != 0 {
				if err := bind(ex, i+1, true, i); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if rowid != nil && errors.Is(err, errRowIDTaken) {
		return c.applyOne(sh, op, mask, bind, nil)
	}
	return err
}

// errRowIDTaken: an INSERT with a rowid found another row there.
var errRowIDTaken = errors.New("sqlite: rowid taken")

// runChange steps st, bound for one change, and checks the outcome. bindKey binds the
// change's key to the SELECT that tells a missing row from one with other values.
func (c *Conn) runChange(sh *tableShape, op int32, st *Stmt, bindKey func(*Stmt) error) error {
	_, err := st.Step()
	changed := c.Changes()
	_ = st.Reset() // repeats Step's error
	if err != nil {
		e, ok := err.(*Error)
		if !ok || e.Code != lib.SQLITE_CONSTRAINT {
			return err
		}
		if op == lib.SQLITE_INSERT && e.ExtendedCode == lib.SQLITE_CONSTRAINT_ROWID && sh.keys != nil {
			return errRowIDTaken // the rowid is not the key: inserted with one (applyOne)
		}
		if op == lib.SQLITE_INSERT && (e.ExtendedCode == lib.SQLITE_CONSTRAINT_PRIMARYKEY || e.ExtendedCode == lib.SQLITE_CONSTRAINT_ROWID) {
			return &ConflictError{Kind: ConflictConflict, Table: sh.name, Op: opName(op)}
		}
		return &ConflictError{Kind: ConflictConstraint, Table: sh.name, Op: opName(op)}
	}
	if op == lib.SQLITE_INSERT || changed == 1 {
		return nil
	}
	// No row matched the key and the old values: is the row there at all?
	ex, err := c.existsStmt(sh)
	if err != nil {
		return err
	}
	if err := bindKey(ex); err != nil {
		return err
	}
	row, err := ex.Step()
	_ = ex.Reset()
	if err != nil {
		return err
	}
	kind := ConflictNotFound
	if row {
		kind = ConflictData
	}
	return &ConflictError{Kind: kind, Table: sh.name, Op: opName(op)}
}

// copyChange copies the values of the iterator's current change (those it does not carry
// stay nil), to retry it after the others.
func (c *Conn) copyChange(sh *tableShape, op int32, mask []byte, ci *changesetIter) change {
	n := len(sh.cols)
	ch := change{sh: sh, op: op, mask: append([]byte(nil), mask...), old: make([]Value, n), new: make([]Value, n)}
	for i := range n {
		ch.old[i] = c.goValue(ci.value(true, i))
		ch.new[i] = c.goValue(ci.value(false, i))
	}
	return ch
}

// goValue copies an sqlite3_value (0: NULL).
func (c *Conn) goValue(v uintptr) Value {
	if v == 0 {
		return nil
	}
	tls := c.tls
	switch lib.Xsqlite3_value_type(tls, v) {
	case lib.SQLITE_INTEGER:
		return lib.Xsqlite3_value_int64(tls, v)
	case lib.SQLITE_FLOAT:
		return lib.Xsqlite3_value_double(tls, v)
	case lib.SQLITE_TEXT:
		z := lib.Xsqlite3_value_text(tls, v)
		return string(cview(z, int(lib.Xsqlite3_value_bytes(tls, v))))
	case lib.SQLITE_BLOB:
		z := lib.Xsqlite3_value_blob(tls, v)
		return goBytes(z, int(lib.Xsqlite3_value_bytes(tls, v)))
	}
	return nil
}

// retryChanges applies the changes that failed a constraint again, as long as a round
// makes progress; the first that still fails is the conflict.
func (c *Conn) retryChanges(retry []change) error {
	c.applyRetries += len(retry)
	for len(retry) > 0 {
		var still []change
		var first error
		for _, ch := range retry {
			err := c.applyCopied(ch)
			if ce, ok := err.(*ConflictError); ok && ce.Kind == ConflictConstraint {
				still = append(still, ch)
				if first == nil {
					first = err
				}
				continue
			}
			if err != nil {
				return err
			}
		}
		if len(still) == len(retry) {
			return first
		}
		retry = still
	}
	return nil
}

// applyCopied applies a change kept by copyChange.
func (c *Conn) applyCopied(ch change) error {
	return c.applyOne(ch.sh, ch.op, ch.mask, func(st *Stmt, param int, old bool, col int) error {
		v := ch.new[col]
		if old {
			v = ch.old[col]
		}
		return st.bindValue(param, v)
	}, nil)
}
