package sqlite

import (
	"errors"
	"fmt"
	"math"
	"strings"

	lib "modernc.org/sqlite/lib"
)

// A changeset names a row by its PRIMARY KEY. In a rowid table whose key is not an INTEGER
// PRIMARY KEY (say `k TEXT PRIMARY KEY`), the rowid is a hidden column of its own that the
// changeset does not carry: a node that applies it numbers the rows it inserts itself, in
// the changeset's order (by key hash, not the order of execution), and an INSERT OR REPLACE
// that moved a row to a new rowid on the leader is an UPDATE in place. Rowids then differ
// between nodes, and so does everything keyed on them (`SELECT rowid`, an FTS5 table with
// content_rowid). ChangesetRowIDs reads those rowids where the changeset was recorded and
// SetChangesetRowIDs gives them to the rows where it is applied.
//
// Not covered: a change the session does not record at all, namely an UPDATE that sets only
// the rowid and an INSERT OR REPLACE of a row with the values it had (the row gets a new
// rowid, its columns do not change); and a table whose columns take all three of the
// rowid's names (rowid, _rowid_, oid).

// TableRowIDs is, for one table whose rowid is not its primary key, the rowid of the row
// each INSERT and UPDATE of a changeset leaves, in the changeset's order.
type TableRowIDs struct {
	Table  string
	RowIDs []int64
}

// rowidStmts are a table's cached statements for rowids (closed with its shape).
type rowidStmts struct {
	get  *Stmt // SELECT rowid WHERE key: parameters numbered by key position
	move *Stmt // UPDATE SET rowid = ?1 WHERE rowid = ?2
	max  *Stmt // SELECT max(rowid), min(rowid)
}

func (r *rowidStmts) close() {
	for _, st := range []*Stmt{r.get, r.move, r.max} {
		if st != nil {
			st.Close()
		}
	}
}

// rowidShape completes sh with what rowids need: whether the table is a rowid table whose
// key is not the rowid (it has an index that implements its PRIMARY KEY), the name that
// reaches its rowid, and its key columns in key order.
func (c *Conn) rowidShape(sh *tableShape) error {
	if sh.rowidChecked {
		return nil
	}
	rows, err := c.queryValues(`SELECT
		(SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?1),
		EXISTS(SELECT 1 FROM pragma_index_list(?1, 'main') WHERE origin = 'pk')`, sh.name)
	if err != nil {
		return err
	}
	wr, _ := rows[0][0].(int64)
	pkIndex, _ := rows[0][1].(int64)
	sh.rowidChecked = true
	if wr != 0 || pkIndex == 0 {
		return nil // WITHOUT ROWID, INTEGER PRIMARY KEY (the key is the rowid), or no key
	}
	names, err := c.queryValues(`SELECT lower(name) FROM pragma_table_xinfo(?1, 'main')`, sh.name)
	if err != nil {
		return err
	}
	taken := map[string]bool{}
	for _, r := range names {
		n, _ := r[0].(string)
		taken[n] = true
	}
	for _, n := range []string{"rowid", "_rowid_", "oid"} {
		if !taken[n] {
			sh.rowidName = n
			break
		}
	}
	keys := make([]int, 0, len(sh.pk))
	for pos := 1; pos <= len(sh.pk); pos++ {
		for i, p := range sh.pk {
			if int(p) == pos {
				keys = append(keys, i)
			}
		}
	}
	sh.keys = keys
	return nil
}

// queryValues runs sql with args and returns every row.
func (c *Conn) queryValues(sql string, args ...Value) ([][]Value, error) {
	st, err := c.prepareOne(sql)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	if err := st.Bind(args); err != nil {
		return nil, err
	}
	var rows [][]Value
	for {
		ok, err := st.Step()
		if err != nil {
			return nil, err
		}
		if !ok {
			return rows, nil
		}
		row := make([]Value, st.ColumnCount())
		for i := range row {
			row[i] = st.Column(i)
		}
		rows = append(rows, row)
	}
}

// rowidOf returns the rowid of the row of sh whose key is key (in key order).
func (c *Conn) rowidOf(sh *tableShape, key []Value) (int64, bool, error) {
	if sh.rowids.get == nil {
		conds := make([]string, len(sh.keys))
		for i, col := range sh.keys {
			conds[i] = quoteIdent(sh.cols[col]) + " = ?" + itoa(i+1)
		}
		st, err := c.prepareOne("SELECT " + sh.rowidName + " FROM main." + quoteIdent(sh.name) +
			" WHERE " + strings.Join(conds, " AND "))
		if err != nil {
			return 0, false, err
		}
		sh.rowids.get = st
	}
	st := sh.rowids.get
	defer st.Reset()
	for i, v := range key {
		if err := st.bindValue(i+1, v); err != nil {
			return 0, false, err
		}
	}
	ok, err := st.Step()
	if err != nil || !ok {
		return 0, false, err
	}
	id, _ := st.Column(0).(int64)
	return id, true, nil
}

// walkRowIDChanges calls fn for every INSERT and UPDATE of cs whose table keep selects,
// with the table's shape and the row's key values in key order. keep is called once per
// run of changes to one table, with its name, its shape (nil if it does not exist now, or
// if the changeset's records are too short for its key), the shape completed by rowidShape.
func (c *Conn) walkRowIDChanges(cs []byte, keep func(name string, sh *tableShape) (bool, error),
	fn func(sh *tableShape, key []Value) error) error {
	if len(cs) == 0 {
		return nil
	}
	p, err := c.changesetCopy(cs)
	if err != nil {
		return err
	}
	defer lib.Xsqlite3_free(c.tls, p)
	ci, err := c.startChangeset(p, len(cs))
	if err != nil {
		return err
	}
	defer ci.close()
	version := int64(-1)
	var (
		lastName string
		last     *tableShape
		lastKeep bool
	)
	for {
		zTab, nCol, op, ok, err := ci.next()
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		if op == lib.SQLITE_DELETE {
			continue
		}
		if name := goString(zTab); last == nil || name != lastName {
			sh, err := c.cachedTableShape(name, &version)
			if err != nil {
				return err
			}
			if sh != nil {
				if err := c.rowidShape(sh); err != nil {
					return err
				}
				for _, col := range sh.keys {
					if col >= nCol {
						sh = nil // (the table changed shape since)
						break
					}
				}
			}
			if lastKeep, err = keep(name, sh); err != nil {
				return err
			}
			last, lastName = sh, name
		}
		if !lastKeep {
			continue
		}
		key := make([]Value, len(last.keys))
		for i, col := range last.keys {
			// An UPDATE carries its key in the old record, an INSERT in the new one.
			key[i] = c.goValue(ci.value(op == lib.SQLITE_UPDATE, col))
		}
		if err := fn(last, key); err != nil {
			return err
		}
	}
}

// ChangesetRowIDs returns the rowids that the rows inserted or updated by cs have on this
// connection, for the tables whose rowid is not their key (see the top of this file). Call
// it where cs was recorded, before the transaction that holds those rows ends.
func (c *Conn) ChangesetRowIDs(cs []byte) ([]TableRowIDs, error) {
	if c.db == 0 {
		return nil, errClosed()
	}
	if len(cs) == 0 {
		return nil, nil
	}
	// Most schemas have no such table: then one read of the schema version answers.
	c.schemaCachesCheck()
	v, err := c.SchemaVersion()
	if err != nil {
		return nil, err
	}
	if c.keyedVersion != v {
		rows, err := c.queryValues(`SELECT EXISTS(SELECT 1 FROM main.sqlite_schema s WHERE s.type = 'table'
			AND (SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = s.name) = 0
			AND EXISTS(SELECT 1 FROM pragma_index_list(s.name, 'main') WHERE origin = 'pk'))`)
		if err != nil {
			return nil, err
		}
		k, _ := rows[0][0].(int64)
		c.keyedTables, c.keyedVersion = k != 0, v
	}
	if !c.keyedTables {
		return nil, nil
	}
	var out []TableRowIDs
	err = c.walkRowIDChanges(cs, func(_ string, sh *tableShape) (bool, error) {
		return sh != nil && sh.keys != nil && sh.rowidName != "", nil
	}, func(sh *tableShape, key []Value) error {
		id, found, err := c.rowidOf(sh, key)
		if err != nil {
			return fmt.Errorf("sqlite: rowid of a changed row of %s: %w", sh.name, err)
		}
		if !found {
			return fmt.Errorf("sqlite: a row that the changeset changes in %s is not in the table", sh.name)
		}
		if n := len(out); n == 0 || out[n-1].Table != sh.name {
			out = append(out, TableRowIDs{Table: sh.name})
		}
		out[len(out)-1].RowIDs = append(out[len(out)-1].RowIDs, id)
		return nil
	})
	return out, err
}

// errRowIDs reports rowids that do not fit the changeset they came with: the entry is
// corrupt or this node's schema is not the leader's.
var errRowIDs = errors.New("sqlite: the rowids do not match the changeset")

// SetChangesetRowIDs gives the rows that cs inserted or updated (cs was just applied on
// this connection) the rowids ids lists, as ChangesetRowIDs read them where cs was
// recorded. Rows that already have theirs are not touched; the others are first moved
// past the table's largest rowid, then to theirs, because a row's rowid may be held by
// another row that moves. A row whose rowid is held by a row not in cs (the rowids
// differed before) moves that row out of the way.
func (c *Conn) SetChangesetRowIDs(cs []byte, ids []TableRowIDs) error {
	if len(ids) == 0 {
		return nil
	}
	if c.db == 0 {
		return errClosed()
	}
	type cursor struct {
		ids []int64
		i   int
	}
	byTable := make(map[string]*cursor, len(ids))
	for _, t := range ids {
		if byTable[t.Table] != nil {
			byTable[t.Table].ids = append(byTable[t.Table].ids, t.RowIDs...)
			continue
		}
		byTable[t.Table] = &cursor{ids: t.RowIDs}
	}
	type fix struct {
		sh              *tableShape
		have, want, tmp int64
	}
	var fixes []fix
	err := c.walkRowIDChanges(cs, func(name string, sh *tableShape) (bool, error) {
		if byTable[name] == nil {
			return false, nil
		}
		if sh == nil || sh.keys == nil || sh.rowidName == "" {
			return false, fmt.Errorf("%w: rowids for %s, whose rowid here is its key, unnamed, or not a column of the changeset", errRowIDs, name)
		}
		return true, nil
	}, func(sh *tableShape, key []Value) error {
		cur := byTable[sh.name]
		if cur.i >= len(cur.ids) {
			return fmt.Errorf("%w: %s has more changed rows than rowids (%d)", errRowIDs, sh.name, len(cur.ids))
		}
		want := cur.ids[cur.i]
		cur.i++
		have, found, err := c.rowidOf(sh, key)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("%w: a changed row of %s is not in the table", errRowIDs, sh.name)
		}
		if have != want {
			fixes = append(fixes, fix{sh: sh, have: have, want: want})
		}
		return nil
	})
	if err != nil {
		return err
	}
	for name, cur := range byTable {
		if cur.i != len(cur.ids) {
			return fmt.Errorf("%w: %s has %d changed rows and %d rowids", errRowIDs, name, cur.i, len(cur.ids))
		}
	}
	// Spare rowids lie beyond every row of the table and every target, so that a row
	// parked on one is in nobody's way.
	spares := map[*tableShape]*spare{}
	for _, f := range fixes {
		s := spares[f.sh]
		if s == nil {
			hi, lo, err := c.rowidRange(f.sh)
			if err != nil {
				return err
			}
			s = &spare{hi: hi, lo: lo}
			spares[f.sh] = s
		}
		s.hi, s.lo = max(s.hi, f.want), min(s.lo, f.want)
	}
	for i := range fixes {
		f := &fixes[i]
		tmp, err := spares[f.sh].take(f.sh.name)
		if err != nil {
			return err
		}
		if err := c.moveRowID(f.sh, f.have, tmp); err != nil {
			return err
		}
		f.tmp = tmp
	}
	for _, f := range fixes {
		err := c.moveRowID(f.sh, f.tmp, f.want)
		var e *Error
		if errors.As(err, &e) && e.Code == lib.SQLITE_CONSTRAINT {
			// Held by a row that this changeset does not name: its rowid differs from
			// the leader's already. Make way; the leader's row is the one named here.
			tmp, err2 := spares[f.sh].take(f.sh.name)
			if err2 != nil {
				return err2
			}
			if err2 := c.moveRowID(f.sh, f.want, tmp); err2 != nil {
				return err2
			}
			err = c.moveRowID(f.sh, f.tmp, f.want)
		}
		if err != nil {
			return fmt.Errorf("sqlite: setting a rowid of %s: %w", f.sh.name, err)
		}
	}
	return nil
}

// spare hands out rowids above hi, or below lo once none is left above: hi and lo bound
// every rowid of the table and every target of the fixes.
type spare struct {
	hi, lo int64
	down   bool
}

func (s *spare) take(table string) (int64, error) {
	if !s.down {
		if s.hi < math.MaxInt64 {
			s.hi++
			return s.hi, nil
		}
		s.down = true
	}
	if s.lo > math.MinInt64 {
		s.lo--
		return s.lo, nil
	}
	return 0, fmt.Errorf("sqlite: no spare rowid in %s", table)
}

// rowidRange returns the largest and smallest rowid of sh (0, 0 when it is empty).
func (c *Conn) rowidRange(sh *tableShape) (hi, lo int64, err error) {
	if sh.rowids.max == nil {
		st, err := c.prepareOne("SELECT max(" + sh.rowidName + "), min(" + sh.rowidName + ") FROM main." + quoteIdent(sh.name))
		if err != nil {
			return 0, 0, err
		}
		sh.rowids.max = st
	}
	st := sh.rowids.max
	defer st.Reset()
	if _, err := st.Step(); err != nil {
		return 0, 0, err
	}
	hi, _ = st.Column(0).(int64)
	lo, _ = st.Column(1).(int64)
	return hi, lo, nil
}

// moveRowID gives the row of sh with rowid from the rowid to.
func (c *Conn) moveRowID(sh *tableShape, from, to int64) error {
	if sh.rowids.move == nil {
		st, err := c.prepareOne("UPDATE main." + quoteIdent(sh.name) + " SET " + sh.rowidName + " = ?1 WHERE " +
			sh.rowidName + " = ?2")
		if err != nil {
			return err
		}
		sh.rowids.move = st
	}
	st := sh.rowids.move
	defer st.Reset()
	if err := st.bindValue(1, to); err != nil {
		return err
	}
	if err := st.bindValue(2, from); err != nil {
		return err
	}
	if _, err := st.Step(); err != nil {
		return err
	}
	if n := c.Changes(); n != 1 {
		return fmt.Errorf("sqlite: moving the row of %s at rowid %d to %d changed %d rows", sh.name, from, to, n)
	}
	return nil
}
