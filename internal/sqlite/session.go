package sqlite

import (
	"bytes"
	"math"
	"strings"

	"modernc.org/libc"
	lib "modernc.org/sqlite/lib"
)

// Session records the changes made through its Conn (sqlite3_session).
type Session struct {
	c *Conn
	p uintptr
}

// sessionTableFilter keeps SQLite's statistics tables (sqlite_stat1 to sqlite_stat4, which
// ANALYZE fills) out of sessions: they are each node's own, and their rows in a session made
// a later schema change of the same request fail or be refused.
func sessionTableFilter(_ *libc.TLS, _, zTab uintptr) int32 {
	if strings.HasPrefix(goString(zTab), "sqlite_stat") {
		return 0
	}
	return 1
}

var sessionTableFilterPtr = cFunc(sessionTableFilter)

// CreateSession creates a session on schema "main" with
// SQLITE_SESSION_OBJCONFIG_ROWID on (tables without a PRIMARY KEY are
// captured, keyed by rowid), attached to all tables but SQLite's statistics tables.
func (c *Conn) CreateSession() (*Session, error) {
	if c.db == 0 {
		return nil, errClosed()
	}
	tls := c.tls
	zMain := cString(tls, "main")
	if zMain == 0 {
		return nil, errorFor(tls, 0, lib.SQLITE_NOMEM)
	}
	pp := tls.Alloc(8)
	writePtr(pp, 0)
	rc := lib.Xsqlite3session_create(tls, c.db, zMain, pp)
	p := readPtr(pp)
	tls.Free(8)
	lib.Xsqlite3_free(tls, zMain)
	if rc != lib.SQLITE_OK {
		if p != 0 {
			lib.Xsqlite3session_delete(tls, p)
		}
		return nil, errorFor(tls, c.db, rc)
	}
	arg := tls.Alloc(8)
	writeInt32(arg, 1)
	rc = lib.Xsqlite3session_object_config(tls, p, lib.SQLITE_SESSION_OBJCONFIG_ROWID, arg)
	on := readInt32(arg)
	tls.Free(8)
	if rc == lib.SQLITE_OK && on != 1 {
		rc = lib.SQLITE_MISUSE
	}
	if rc == lib.SQLITE_OK {
		lib.Xsqlite3session_table_filter(tls, p, sessionTableFilterPtr, 0)
		rc = lib.Xsqlite3session_attach(tls, p, 0)
	}
	if rc != lib.SQLITE_OK {
		lib.Xsqlite3session_delete(tls, p)
		return nil, errorFor(tls, 0, rc)
	}
	s := &Session{c: c, p: p}
	c.sessions[s] = struct{}{}
	return s, nil
}

// Changeset returns a Go-owned copy of the changeset of everything recorded
// so far; nil when nothing changed.
func (s *Session) Changeset() ([]byte, error) {
	if s.p == 0 {
		return nil, misuse("session is closed")
	}
	tls := s.c.tls
	out := tls.Alloc(16) // int *pnChangeset; void **ppChangeset
	defer tls.Free(16)
	writeInt32(out, 0)
	writePtr(out+8, 0)
	rc := lib.Xsqlite3session_changeset(tls, s.p, out, out+8)
	n := readInt32(out)
	p := readPtr(out + 8)
	if rc != lib.SQLITE_OK {
		lib.Xsqlite3_free(tls, p)
		return nil, errorFor(tls, s.c.db, rc)
	}
	var cs []byte
	if n > 0 {
		cs = goBytes(p, int(n))
	}
	lib.Xsqlite3_free(tls, p)
	return cs, nil
}

// IsEmpty is sqlite3session_isempty: true when no change has been recorded.
func (s *Session) IsEmpty() bool {
	if s.p == 0 {
		return true
	}
	return lib.Xsqlite3session_isempty(s.c.tls, s.p) != 0
}

// Close deletes the session. Closing twice, or after the Conn was closed, is
// a no-op.
func (s *Session) Close() { s.close() }

func (s *Session) close() {
	if s.p == 0 {
		return
	}
	lib.Xsqlite3session_delete(s.c.tls, s.p)
	s.p = 0
	delete(s.c.sessions, s)
}

// applyResult is the C-memory record the conflict handler fills in (the
// handler gets only a C pointer as context, so no Go state is shared).
//
//	int32  kind (SQLITE_CHANGESET_*; 0 = none)
//	int32  op   (SQLITE_INSERT/UPDATE/DELETE)
//	char  *table (sqlite3_malloc'd copy)
const (
	resKind  = 0
	resOp    = 4
	resTable = 8
	resSize  = 16
)

// conflictHandler is the xConflict callback of sqlite3changeset_apply_v2.
// It records the first conflict and aborts the apply.
func conflictHandler(tls *libc.TLS, pCtx uintptr, eConflict int32, pIter uintptr) int32 {
	if readInt32(pCtx+resKind) != 0 {
		return lib.SQLITE_CHANGESET_ABORT
	}
	writeInt32(pCtx+resKind, eConflict)
	if eConflict == lib.SQLITE_CHANGESET_FOREIGN_KEY {
		// The iterator is a dummy carrying only the violation count.
		return lib.SQLITE_CHANGESET_ABORT
	}
	out := tls.Alloc(16) // const char *zTab; int nCol; int op
	writePtr(out, 0)
	if lib.Xsqlite3changeset_op(tls, pIter, out, out+8, out+12, 0) == lib.SQLITE_OK {
		writeInt32(pCtx+resOp, readInt32(out+12))
		if z := readPtr(out); z != 0 {
			n := int(libc.Xstrlen(tls, z))
			writePtr(pCtx+resTable, cCopy(tls, cview(z, n+1)))
		}
	}
	tls.Free(16)
	return lib.SQLITE_CHANGESET_ABORT
}

var conflictHandlerPtr = cFunc(conflictHandler)

func conflictKind(e int32) string {
	switch e {
	case lib.SQLITE_CHANGESET_DATA:
		return ConflictData
	case lib.SQLITE_CHANGESET_NOTFOUND:
		return ConflictNotFound
	case lib.SQLITE_CHANGESET_CONFLICT:
		return ConflictConflict
	case lib.SQLITE_CHANGESET_CONSTRAINT:
		return ConflictConstraint
	case lib.SQLITE_CHANGESET_FOREIGN_KEY:
		return ConflictForeignKey
	}
	return "unknown"
}

func opName(op int32) string {
	switch op {
	case lib.SQLITE_INSERT:
		return "INSERT"
	case lib.SQLITE_UPDATE:
		return "UPDATE"
	case lib.SQLITE_DELETE:
		return "DELETE"
	}
	return ""
}

// ApplyChangeset applies cs with sqlite3changeset_apply_v2, adding
// SQLITE_CHANGESETAPPLY_FKNOACTION when the connection enforces foreign keys, so
// that ON DELETE CASCADE and friends do not fire again (their effects are in the
// changeset already). On a connection opened without ForeignKeys no foreign-key
// action can fire and the flag is left out on purpose: SQLite implements it by
// changing the schema cookie, which makes every prepared statement of the
// connection re-prepare and the schema reload on each call (measured: about a
// fifth of a 3-node cluster's CPU under a write load). It opens no transaction of
// its own (SQLite wraps the apply in a SAVEPOINT, so a failed apply leaves nothing
// behind).
//
// On a connection without foreign keys, changesets whose tables are all known
// (tableShape.direct) are applied with statements of our own, cached per table
// (applyDirect in apply.go), with the same conflict checks: the library prepares
// its statements again on every call and expires those of the caller.
//
// Every table of cs is first checked against the target schema: a missing
// table, or one whose column count or PRIMARY KEY columns differ, gives a
// *ConflictError of Kind "schema" before anything is applied. Any conflict
// reported by SQLite aborts the apply and gives a *ConflictError with the
// conflict kind, table and operation. Other failures are *Error.
func (c *Conn) ApplyChangeset(cs []byte) error {
	return c.applyChangeset(cs, nil)
}

// ApplyChangesetRowIDs applies cs like ApplyChangeset and gives its rows the rowids ids
// lists (SetChangesetRowIDs). Where the changeset is applied with statements of our own,
// inserted rows get their rowid as they are inserted, so that few move afterwards (a
// changeset lists rows by key hash: most would arrive at another rowid and move twice).
func (c *Conn) ApplyChangesetRowIDs(cs []byte, ids []TableRowIDs) error {
	var hints map[string]*rowidHints
	if len(ids) > 0 {
		hints = make(map[string]*rowidHints, len(ids))
		for _, t := range ids {
			if h := hints[t.Table]; h != nil {
				h.ids = append(h.ids, t.RowIDs...)
			} else {
				hints[t.Table] = &rowidHints{ids: t.RowIDs}
			}
		}
	}
	if err := c.applyChangeset(cs, hints); err != nil {
		return err
	}
	return c.SetChangesetRowIDs(cs, ids)
}

func (c *Conn) applyChangeset(cs []byte, hints map[string]*rowidHints) error {
	if c.db == 0 {
		return errClosed()
	}
	if len(cs) == 0 {
		return nil
	}
	p, err := c.changesetCopy(cs)
	if err != nil {
		return err
	}
	tls := c.tls
	defer lib.Xsqlite3_free(tls, p)
	direct, err := c.checkChangesetSchema(p, len(cs))
	if err != nil {
		return err
	}
	if direct && !c.foreignKeys {
		return c.applyDirect(p, len(cs), hints)
	}
	res := cMalloc(tls, resSize)
	if res == 0 {
		return errorFor(tls, 0, lib.SQLITE_NOMEM)
	}
	copy(cview(res, resSize), make([]byte, resSize))
	var flags int32
	if c.foreignKeys {
		flags = lib.SQLITE_CHANGESETAPPLY_FKNOACTION
	}
	rc := lib.Xsqlite3changeset_apply_v2(tls, c.db, int32(len(cs)), p,
		0, conflictHandlerPtr, res, 0, 0, flags)
	kind := readInt32(res + resKind)
	op := readInt32(res + resOp)
	zTab := readPtr(res + resTable)
	table := goString(zTab)
	lib.Xsqlite3_free(tls, zTab)
	lib.Xsqlite3_free(tls, res)
	if kind != 0 {
		return &ConflictError{Kind: conflictKind(kind), Table: table, Op: opName(op)}
	}
	if rc != lib.SQLITE_OK {
		return errorFor(tls, c.db, rc)
	}
	return nil
}

// changesetCopy copies cs into C memory for the changeset functions; the caller frees it
// with sqlite3_free.
func (c *Conn) changesetCopy(cs []byte) (uintptr, error) {
	if len(cs) > math.MaxInt32 {
		return 0, &Error{Code: lib.SQLITE_TOOBIG, ExtendedCode: lib.SQLITE_TOOBIG, Msg: "sqlite: changeset too big"}
	}
	p := cCopy(c.tls, cs)
	if p == 0 {
		return 0, errorFor(c.tls, 0, lib.SQLITE_NOMEM)
	}
	return p, nil
}

// tableShape is what the session extension compares: the number of columns
// and, per column, its position in the PRIMARY KEY (0 = not in it).
type tableShape struct {
	pk []byte
	// For applyDirect: the table, its columns in changeset order (the implicit rowid first,
	// as rowidName), whether applyDirect can apply its changes, and its cached statements.
	name   string
	cols   []string
	direct bool
	stmts  applyStmts
	// For rowids (rowid.go), filled in by rowidShape once rowidChecked: the key columns in
	// key order (nil unless the table is a rowid table whose key is not the rowid), the
	// name that reaches the rowid ("" if the columns take all three), and statements.
	rowidChecked bool
	keys         []int
	rowidName    string
	rowids       rowidStmts
}

// checkChangesetSchema walks the changeset at p and compares each table's
// shape with the target's.
func (c *Conn) checkChangesetSchema(p uintptr, n int) (direct bool, err error) {
	ci, err := c.startChangeset(p, n)
	if err != nil {
		return false, err
	}
	defer ci.close()
	direct = true
	var (
		lastName  []byte // NUL-terminated
		lastPtr   uintptr
		lastNCol  = -1
		firstDone bool
		version   int64 = -1 // schema_version, read once per apply when needed
	)
	for {
		zTab, nCol, op, ok, err := ci.next()
		if err != nil {
			return false, err
		}
		if !ok {
			return direct, nil
		}
		if firstDone && zTab == lastPtr && nCol == lastNCol && bytes.Equal(cview(zTab, len(lastName)), lastName) {
			continue // same table as the previous change
		}
		firstDone = true
		nameLen := int(libc.Xstrlen(c.tls, zTab))
		lastName = goBytes(zTab, nameLen+1)
		lastPtr, lastNCol = zTab, nCol
		name := string(lastName[:nameLen])
		// Every block is checked, even for a table seen before: a concatenation of changesets
		// can name a table twice with different shapes, and the library would skip the odd one.
		csPK, err := ci.pk()
		if err != nil {
			return false, err
		}
		target, err := c.cachedTableShape(name, &version)
		if err != nil {
			return false, err
		}
		if target == nil || len(target.pk) != nCol || !bytes.Equal(target.pk, csPK) {
			return false, &ConflictError{Kind: ConflictSchema, Table: name, Op: opName(op)}
		}
		direct = direct && target.direct
	}
}

// cachedTableShape is tableShape with a per-connection cache that is valid
// for one schema_version. *version holds the schema version read during this
// apply (-1 before it is read).
func (c *Conn) cachedTableShape(name string, version *int64) (*tableShape, error) {
	if *version < 0 {
		c.schemaCachesCheck()
		v, err := c.SchemaVersion()
		if err != nil {
			return nil, err
		}
		*version = v
		if c.shapes == nil || c.shapesVersion != *version {
			c.dropShapes()
			c.shapes = make(map[string]*tableShape)
			c.shapesVersion = *version
		}
	}
	if sh, ok := c.shapes[name]; ok {
		return sh, nil
	}
	sh, err := c.tableShape(name)
	if err != nil {
		return nil, err
	}
	c.shapes[name] = sh
	return sh, nil
}

// tableShape computes the shape of table name in "main" the way the session
// extension does (sessionTableInfo): visible columns of PRAGMA table_xinfo
// (generated and hidden columns excluded) with their pk positions, and for a
// table without PRIMARY KEY an implicit leading rowid column that is the key.
// nil when the table does not exist.
func (c *Conn) tableShape(name string) (*tableShape, error) {
	if name == "sqlite_stat1" {
		// The session extension pretends (tbl, idx) is the primary key.
		exists, err := c.tableExists(name)
		if err != nil || !exists {
			return nil, err
		}
		return &tableShape{pk: []byte{1, 2, 0}}, nil
	}
	if c.xinfo == nil || c.xinfo.p == 0 {
		st, _, err := c.Prepare("SELECT pk, hidden, name FROM pragma_table_xinfo(?1, 'main')")
		if err != nil {
			return nil, err
		}
		c.xinfo = st
	}
	st := c.xinfo
	defer st.Reset()
	if err := st.bindValue(1, name); err != nil {
		return nil, err
	}
	var pk []byte
	var cols []string
	havePK := false
	for {
		row, err := st.Step()
		if err != nil {
			return nil, err
		}
		if !row {
			break
		}
		k, _ := st.Column(0).(int64)
		hidden, _ := st.Column(1).(int64)
		if hidden != 0 {
			continue
		}
		col, _ := st.Column(2).(string)
		pk = append(pk, byte(k))
		cols = append(cols, col)
		if k != 0 {
			havePK = true
		}
	}
	if len(pk) == 0 {
		return nil, nil
	}
	direct := true
	if !havePK {
		pk = append([]byte{1}, pk...)
		for _, col := range cols {
			if strings.EqualFold(col, rowidName) {
				direct = false // the name would mean the column, not the rowid
			}
		}
		cols = append([]string{rowidName}, cols...)
	}
	return &tableShape{pk: pk, name: name, cols: cols, direct: direct}, nil
}

func (c *Conn) tableExists(name string) (bool, error) {
	st, _, err := c.Prepare("SELECT 1 FROM main.sqlite_schema WHERE type='table' AND name=?1")
	if err != nil {
		return false, err
	}
	defer st.Close()
	if err := st.bindValue(1, name); err != nil {
		return false, err
	}
	return st.Step()
}
