package sqlite

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
)

const schema = `
CREATE TABLE pk(id INTEGER PRIMARY KEY, v TEXT, b BLOB);
CREATE TABLE nopk(a, b);
CREATE TABLE wr(k1 TEXT, k2 INTEGER, v, PRIMARY KEY (k2, k1)) WITHOUT ROWID;
`

// pair returns a source and a destination database with the same schema.
func pair(t *testing.T, ddl string, dstOpts OpenOptions) (src, dst *Conn) {
	t.Helper()
	src = openT(t, "src.db", OpenOptions{})
	dst = openT(t, "dst.db", dstOpts)
	mustExec(t, src, ddl)
	mustExec(t, dst, ddl)
	return src, dst
}

// capture runs sql on c inside a session and returns the changeset.
func capture(t *testing.T, c *Conn, sql string, args ...Value) []byte {
	t.Helper()
	s, err := c.CreateSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.IsEmpty() {
		t.Fatal("new session not empty")
	}
	mustExec(t, c, sql, args...)
	cs, err := s.Changeset()
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// apply applies cs on c inside BEGIN ... COMMIT, as the store does.
func apply(t *testing.T, c *Conn, cs []byte) error {
	t.Helper()
	mustExec(t, c, "BEGIN IMMEDIATE")
	err := c.ApplyChangeset(cs)
	mustExec(t, c, "COMMIT")
	return err
}

// changes lists (table, op) of every change in cs, using the binding's own
// C iterator through a throw-away helper.
func changes(t *testing.T, c *Conn, cs []byte) []string {
	t.Helper()
	var out []string
	tls := c.tls
	p := cCopy(tls, cs)
	defer freeC(c, p)
	m := tls.Alloc(24)
	defer tls.Free(24)
	if rc := libStart(tls, m, len(cs), p); rc != 0 {
		t.Fatalf("changeset_start: %d", rc)
	}
	it := readPtr(m)
	defer libFinalize(tls, it)
	for libNext(tls, it) == 100 {
		libOp(tls, it, m+8, m+16, m+20)
		out = append(out, fmt.Sprintf("%s:%s", goString(readPtr(m+8)), opName(readInt32(m+20))))
	}
	return out
}

func TestSessionCapturesAllTableKinds(t *testing.T) {
	src, dst := pair(t, schema, OpenOptions{DisableTriggers: true})
	cs := capture(t, src, `
		INSERT INTO pk VALUES (1, 'one', x'01'), (2, 'two', NULL), (3, 'three', x'');
		INSERT INTO nopk VALUES ('a', 1), ('b', 2), ('c', 3);
		INSERT INTO wr VALUES ('x', 1, 'v1'), ('y', 1, 'v2'), ('x', 2, 'v3');`)
	if len(cs) == 0 {
		t.Fatal("empty changeset")
	}
	got := changes(t, src, cs)
	want := map[string]int{"pk:INSERT": 3, "nopk:INSERT": 3, "wr:INSERT": 3}
	for _, g := range got {
		want[g]--
	}
	for k, v := range want {
		if v != 0 {
			t.Fatalf("changes %v: %s off by %d", got, k, v)
		}
	}
	if err := apply(t, dst, cs); err != nil {
		t.Fatal(err)
	}
	equalDump(t, dump(t, src), dump(t, dst))
	equalDump(t, dumpNoRowid(t, src, "wr"), dumpNoRowid(t, dst, "wr"))

	cs = capture(t, src, `
		UPDATE pk SET v = 'ONE', b = x'ff' WHERE id = 1;
		DELETE FROM pk WHERE id = 2;
		UPDATE nopk SET b = 20 WHERE a = 'b';
		DELETE FROM nopk WHERE a = 'c';
		UPDATE wr SET v = 'V2' WHERE k1 = 'y';
		DELETE FROM wr WHERE k1 = 'x' AND k2 = 2;`)
	got = changes(t, src, cs)
	want = map[string]int{"pk:UPDATE": 1, "pk:DELETE": 1, "nopk:UPDATE": 1, "nopk:DELETE": 1, "wr:UPDATE": 1, "wr:DELETE": 1}
	for _, g := range got {
		want[g]--
	}
	for k, v := range want {
		if v != 0 {
			t.Fatalf("changes %v: %s off by %d", got, k, v)
		}
	}
	if err := apply(t, dst, cs); err != nil {
		t.Fatal(err)
	}
	equalDump(t, dump(t, src), dump(t, dst))
	equalDump(t, dumpNoRowid(t, src, "wr"), dumpNoRowid(t, dst, "wr"))
	if n := len(dump(t, dst)["nopk"]); n != 2 {
		t.Fatalf("nopk rows = %d", n)
	}
}

func TestSessionEmpty(t *testing.T) {
	c := openT(t, "e.db", OpenOptions{})
	mustExec(t, c, schema)
	s, err := c.CreateSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustExec(t, c, "SELECT * FROM pk; UPDATE pk SET v = 1 WHERE id = 99")
	cs, err := s.Changeset()
	if err != nil || len(cs) != 0 || !s.IsEmpty() {
		t.Fatalf("changeset %v err %v empty %v", cs, err, s.IsEmpty())
	}
	if err := c.ApplyChangeset(nil); err != nil {
		t.Fatal(err)
	}
	mustExec(t, c, "INSERT INTO pk VALUES (1, 'x', NULL)")
	if s.IsEmpty() {
		t.Fatal("IsEmpty after insert")
	}
}

func TestSavepointRollbackNotCaptured(t *testing.T) {
	src, dst := pair(t, schema, OpenOptions{})
	cs := capture(t, src, `
		BEGIN;
		INSERT INTO pk VALUES (1, 'kept', NULL);
		SAVEPOINT s1;
		INSERT INTO pk VALUES (2, 'rolled back', NULL);
		INSERT INTO nopk VALUES ('rolled', 'back');
		UPDATE pk SET v = 'changed' WHERE id = 1;
		ROLLBACK TO s1;
		RELEASE s1;
		SAVEPOINT s2;
		INSERT INTO pk VALUES (3, 'kept too', NULL);
		RELEASE s2;
		COMMIT;`)
	got := changes(t, src, cs)
	if len(got) != 2 || got[0] != "pk:INSERT" || got[1] != "pk:INSERT" {
		t.Fatalf("changes = %v", got)
	}
	if err := apply(t, dst, cs); err != nil {
		t.Fatal(err)
	}
	equalDump(t, dump(t, src), dump(t, dst))
	if rows := query(t, dst, "SELECT id, v FROM pk ORDER BY id"); len(rows) != 2 || rows[0][1] != "kept" || rows[1][0] != int64(3) {
		t.Fatalf("dst = %v", rows)
	}
}

func TestCaptureAndRollbackLikeTheLeader(t *testing.T) {
	// The leader's write path: BEGIN, session, work, changeset, ROLLBACK.
	src, dst := pair(t, schema, OpenOptions{})
	mustExec(t, src, "BEGIN IMMEDIATE")
	cs := capture(t, src, "INSERT INTO pk VALUES (1, 'a', NULL); INSERT INTO nopk VALUES (1, 2)")
	mustExec(t, src, "ROLLBACK")
	if n := query(t, src, "SELECT count(*) FROM pk")[0][0]; n != int64(0) {
		t.Fatal("rollback kept rows")
	}
	if err := apply(t, src, cs); err != nil {
		t.Fatal(err)
	}
	if err := apply(t, dst, cs); err != nil {
		t.Fatal(err)
	}
	equalDump(t, dump(t, src), dump(t, dst))
}

func TestApplyConflicts(t *testing.T) {
	for _, tc := range []struct {
		name, behind, change, kind, op string
	}{
		{"data", "UPDATE pk SET v = 'behind' WHERE id = 1", "UPDATE pk SET v = 'new' WHERE id = 1", ConflictData, "UPDATE"},
		{"data-delete", "UPDATE pk SET v = 'behind' WHERE id = 1", "DELETE FROM pk WHERE id = 1", ConflictData, "DELETE"},
		{"notfound-update", "DELETE FROM pk WHERE id = 1", "UPDATE pk SET v = 'new' WHERE id = 1", ConflictNotFound, "UPDATE"},
		{"notfound-delete", "DELETE FROM pk WHERE id = 1", "DELETE FROM pk WHERE id = 1", ConflictNotFound, "DELETE"},
		{"conflict", "INSERT INTO pk VALUES (2, 'there', NULL)", "INSERT INTO pk VALUES (2, 'new', NULL)", ConflictConflict, "INSERT"},
		{"constraint", "INSERT INTO pk VALUES (5, 'uniq', NULL)", "INSERT INTO pk VALUES (2, 'uniq', NULL)", ConflictConstraint, "INSERT"},
		{"nopk-notfound", "DELETE FROM nopk", "UPDATE nopk SET b = 9", ConflictNotFound, "UPDATE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ddl := schema + "CREATE UNIQUE INDEX pkv ON pk(v);"
			src, dst := pair(t, ddl, OpenOptions{DisableTriggers: true})
			base := capture(t, src, "INSERT INTO pk VALUES (1, 'one', NULL); INSERT INTO nopk VALUES (1, 1); INSERT INTO wr VALUES ('a', 1, 1)")
			if err := apply(t, dst, base); err != nil {
				t.Fatal(err)
			}
			mustExec(t, dst, tc.behind)
			before := dump(t, dst)
			cs := capture(t, src, "INSERT INTO wr VALUES ('b', 2, 2);"+tc.change)
			err := apply(t, dst, cs)
			var ce *ConflictError
			if !errors.Is(err, ErrConflict) || !errors.As(err, &ce) || errors.Is(err, ErrSchemaMismatch) {
				t.Fatalf("apply: %v", err)
			}
			wantTable := "pk"
			if tc.name == "nopk-notfound" {
				wantTable = "nopk"
			}
			if ce.Kind != tc.kind || ce.Op != tc.op || ce.Table != wantTable {
				t.Fatalf("conflict = %+v, want %s %s", ce, tc.kind, tc.op)
			}
			// Nothing of the changeset stays (not even the wr insert).
			equalDump(t, before, dump(t, dst))
			if !dst.Autocommit() {
				t.Fatal("transaction left open")
			}
		})
	}
}

func TestApplySchemaMismatch(t *testing.T) {
	for _, tc := range []struct{ name, dstDDL string }{
		{"missing table", "CREATE TABLE other(id INTEGER PRIMARY KEY)"},
		{"fewer columns", "CREATE TABLE t(id INTEGER PRIMARY KEY, a)"},
		{"more columns", "CREATE TABLE t(id INTEGER PRIMARY KEY, a, b, c)"},
		{"other pk", "CREATE TABLE t(id, a PRIMARY KEY, b)"},
		{"no pk", "CREATE TABLE t(id, a, b)"},
		{"composite order", "CREATE TABLE t(id, a, b, PRIMARY KEY (a, id))"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := openT(t, "src.db", OpenOptions{})
			dst := openT(t, "dst.db", OpenOptions{})
			mustExec(t, src, "CREATE TABLE t(id INTEGER PRIMARY KEY, a, b); CREATE TABLE ok(x INTEGER PRIMARY KEY)")
			mustExec(t, dst, tc.dstDDL+"; CREATE TABLE ok(x INTEGER PRIMARY KEY)")
			// ok comes first in the changeset, so a skip-based apply would
			// have written it before reaching t.
			cs := capture(t, src, "INSERT INTO ok VALUES (1); INSERT INTO t VALUES (1, 2, 3)")
			err := apply(t, dst, cs)
			var ce *ConflictError
			if !errors.Is(err, ErrSchemaMismatch) || !errors.Is(err, ErrConflict) || !errors.As(err, &ce) {
				t.Fatalf("apply: %v", err)
			}
			if ce.Kind != ConflictSchema || ce.Table != "t" || ce.Op != "INSERT" {
				t.Fatalf("conflict = %+v", ce)
			}
			if n := query(t, dst, "SELECT count(*) FROM ok")[0][0]; n != int64(0) {
				t.Fatal("changes applied despite the mismatch")
			}
		})
	}
}

func TestApplyCompositeAndGeneratedColumns(t *testing.T) {
	ddl := `CREATE TABLE c(a, b, c, d AS (a || b), PRIMARY KEY (c, a));
		CREATE TABLE g(id INTEGER PRIMARY KEY, x, y AS (x * 2) STORED);`
	src, dst := pair(t, ddl, OpenOptions{})
	cs := capture(t, src, "INSERT INTO c(a, b, c) VALUES (1, 2, 3), (4, 5, 6); INSERT INTO g(id, x) VALUES (1, 10); UPDATE c SET b = 9 WHERE a = 1")
	if err := apply(t, dst, cs); err != nil {
		t.Fatal(err)
	}
	equalDump(t, dump(t, src), dump(t, dst))
}

func TestForeignKeyCascade(t *testing.T) {
	ddl := `CREATE TABLE parent(id INTEGER PRIMARY KEY, name TEXT);
		CREATE TABLE child(id INTEGER PRIMARY KEY, pid INTEGER REFERENCES parent(id) ON DELETE CASCADE, v);`
	src := openT(t, "src.db", OpenOptions{ForeignKeys: true})
	dst := openT(t, "dst.db", OpenOptions{ForeignKeys: true, DisableTriggers: true})
	mustExec(t, src, ddl)
	mustExec(t, dst, ddl)
	cs := capture(t, src, `INSERT INTO parent VALUES (1, 'a'), (2, 'b');
		INSERT INTO child VALUES (10, 1, 'x'), (11, 1, 'y'), (12, 2, 'z');`)
	if err := apply(t, dst, cs); err != nil {
		t.Fatal(err)
	}
	cs = capture(t, src, "DELETE FROM parent WHERE id = 1")
	got := changes(t, src, cs)
	n := map[string]int{}
	for _, g := range got {
		n[g]++
	}
	if n["parent:DELETE"] != 1 || n["child:DELETE"] != 2 || len(got) != 3 {
		t.Fatalf("cascade not captured: %v", got)
	}
	if err := apply(t, dst, cs); err != nil {
		t.Fatalf("apply cascade: %v", err)
	}
	equalDump(t, dump(t, src), dump(t, dst))
	if rows := query(t, dst, "SELECT id FROM child ORDER BY id"); len(rows) != 1 || rows[0][0] != int64(12) {
		t.Fatalf("child = %v", rows)
	}
	if fk := query(t, dst, "PRAGMA foreign_key_check"); len(fk) != 0 {
		t.Fatalf("fk violations: %v", fk)
	}
}

func TestForeignKeyViolationIsConflict(t *testing.T) {
	ddl := `CREATE TABLE parent(id INTEGER PRIMARY KEY);
		CREATE TABLE child(id INTEGER PRIMARY KEY, pid INTEGER REFERENCES parent(id));`
	src := openT(t, "src.db", OpenOptions{ForeignKeys: false})
	dst := openT(t, "dst.db", OpenOptions{ForeignKeys: true, DisableTriggers: true})
	mustExec(t, src, ddl)
	mustExec(t, dst, ddl)
	cs := capture(t, src, "INSERT INTO child VALUES (1, 42)") // no parent 42
	err := apply(t, dst, cs)
	var ce *ConflictError
	if !errors.As(err, &ce) || ce.Kind != ConflictForeignKey || !errors.Is(err, ErrConflict) {
		t.Fatalf("apply: %v", err)
	}
	if n := query(t, dst, "SELECT count(*) FROM child")[0][0]; n != int64(0) {
		t.Fatal("violating row applied")
	}
}

func TestApplyDoesNotFireTriggers(t *testing.T) {
	ddl := `CREATE TABLE t(id INTEGER PRIMARY KEY, x);
		CREATE TABLE log(id INTEGER PRIMARY KEY AUTOINCREMENT, x);
		CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO log(x) VALUES (new.x); END;`
	src, dst := pair(t, ddl, OpenOptions{DisableTriggers: true})
	cs := capture(t, src, "INSERT INTO t VALUES (1, 'a')")
	// The trigger's insert into log is part of the changeset already.
	if err := apply(t, dst, cs); err != nil {
		t.Fatal(err)
	}
	if rows := query(t, dst, "SELECT x FROM log"); len(rows) != 1 {
		t.Fatalf("log = %v (trigger fired on apply?)", rows)
	}
	equalDump(t, query(t, src, "SELECT * FROM t"), query(t, dst, "SELECT * FROM t"))
}

func TestApplyCorruptChangeset(t *testing.T) {
	src, dst := pair(t, schema, OpenOptions{})
	cs := capture(t, src, "INSERT INTO pk VALUES (1, 'a', NULL)")
	err := dst.ApplyChangeset(cs[:len(cs)-3])
	var se *Error
	if !errors.As(err, &se) {
		t.Fatalf("truncated changeset: %v", err)
	}
	if err := dst.ApplyChangeset([]byte("garbage that is no changeset")); err == nil {
		t.Fatal("garbage accepted")
	}
	if n := query(t, dst, "SELECT count(*) FROM pk")[0][0]; n != int64(0) {
		t.Fatal("partial apply")
	}
}

func TestRandomizedEquivalence(t *testing.T) {
	src, dst := pair(t, schema, OpenOptions{DisableTriggers: true})
	seed := uint64(0x9e3779b97f4a7c15)
	next := func(n int) int {
		seed ^= seed << 13
		seed ^= seed >> 7
		seed ^= seed << 17
		return int(seed % uint64(n))
	}
	for round := 0; round < 30; round++ {
		mustExec(t, src, "BEGIN IMMEDIATE")
		s, err := src.CreateSession()
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 40; i++ {
			k := next(50)
			var err error
			switch next(7) {
			case 0:
				err = src.Exec("INSERT OR REPLACE INTO pk VALUES (?, ?, ?)", k, fmt.Sprint(next(1000)), []byte{byte(k)})
			case 1:
				err = src.Exec("UPDATE pk SET v = ? WHERE id = ?", next(100), k)
			case 2:
				err = src.Exec("DELETE FROM pk WHERE id = ?", k)
			case 3:
				err = src.Exec("INSERT INTO nopk VALUES (?, ?)", k, next(3))
			case 4:
				err = src.Exec("UPDATE nopk SET b = b + 1 WHERE a = ?", k)
			case 5:
				err = src.Exec("DELETE FROM nopk WHERE a = ?", k)
			case 6:
				err = src.Exec("INSERT OR REPLACE INTO wr VALUES (?, ?, ?)", fmt.Sprint(k%5), k%7, float64(k)/3)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		cs, err := s.Changeset()
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		mustExec(t, src, "COMMIT")
		if err := apply(t, dst, cs); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		equalDump(t, dump(t, src), dump(t, dst))
		equalDump(t, dumpNoRowid(t, src, "wr"), dumpNoRowid(t, dst, "wr"))
	}
	_ = filepath.Join
}

// TestChangesetShapes pins what SQLite 3.54 writes in a changeset's table
// headers: a table without PRIMARY KEY (captured thanks to
// SQLITE_SESSION_OBJCONFIG_ROWID) gets an implicit leading rowid column that
// is the key, and PK flags are the 1-based positions in the PRIMARY KEY.
// tableShape must compute the same for the target.
func TestChangesetShapes(t *testing.T) {
	c := openT(t, "s.db", OpenOptions{})
	mustExec(t, c, schema+"CREATE TABLE gen(a, b AS (a+1), c);")
	cs := capture(t, c, `INSERT INTO pk VALUES (1, 'a', NULL); INSERT INTO nopk VALUES (1, 2);
		INSERT INTO wr VALUES ('x', 1, 2); INSERT INTO gen(a, c) VALUES (1, 3)`)
	want := map[string][]byte{
		"pk":   {1, 0, 0},
		"nopk": {1, 0, 0}, // rowid, a, b
		"wr":   {2, 1, 0}, // k1 is 2nd, k2 1st in PRIMARY KEY (k2, k1)
		"gen":  {1, 0, 0}, // rowid, a, c (generated b is not captured)
	}
	tls := c.tls
	p := cCopy(tls, cs)
	defer freeC(c, p)
	m := tls.Alloc(48)
	defer tls.Free(48)
	if rc := libStart(tls, m, len(cs), p); rc != 0 {
		t.Fatal(rc)
	}
	it := readPtr(m)
	defer libFinalize(tls, it)
	seen := 0
	for libNext(tls, it) == 100 {
		libOp(tls, it, m+8, m+16, m+20)
		libPK(tls, it, m+24, m+32)
		name := goString(readPtr(m + 8))
		got := goBytes(readPtr(m+24), int(readInt32(m+32)))
		if int(readInt32(m+16)) != len(got) || string(got) != string(want[name]) {
			t.Errorf("%s: nCol %d pk %v, want %v", name, readInt32(m+16), got, want[name])
		}
		shape, err := c.tableShape(name)
		if err != nil || shape == nil || string(shape.pk) != string(got) {
			t.Errorf("%s: tableShape %v (%v), changeset %v", name, shape, err, got)
		}
		seen++
	}
	if seen != 4 {
		t.Fatalf("%d changes", seen)
	}
}

// TestSchemaCheckFollowsSchemaChanges: the shape cache of ApplyChangeset must
// notice DDL made on the same connection and on another one.
func TestSchemaCheckFollowsSchemaChanges(t *testing.T) {
	src, dst := pair(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, a)", OpenOptions{})
	cs1 := capture(t, src, "INSERT INTO t VALUES (1, 'x')")
	cs2 := capture(t, src, "INSERT INTO t VALUES (2, 'y')")
	cs3 := capture(t, src, "INSERT INTO t VALUES (3, 'z')")
	if err := apply(t, dst, cs1); err != nil {
		t.Fatal(err)
	}
	mustExec(t, dst, "ALTER TABLE t ADD COLUMN b")
	if err := apply(t, dst, cs2); !errors.Is(err, ErrSchemaMismatch) {
		t.Fatalf("after ALTER on the same conn: %v", err)
	}
	// Another connection restores the original shape.
	other, err := Open(filepath.Join(filepath.Dir(dbPath(t, dst)), "dst.db"), OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	mustExec(t, other, "ALTER TABLE t DROP COLUMN b")
	if err := apply(t, dst, cs2); err != nil {
		t.Fatalf("after DROP COLUMN on another conn: %v", err)
	}
	mustExec(t, other, "DROP TABLE t")
	if err := apply(t, dst, cs3); !errors.Is(err, ErrSchemaMismatch) {
		t.Fatalf("after DROP TABLE on another conn: %v", err)
	}
}

func dbPath(t *testing.T, c *Conn) string {
	t.Helper()
	rows := query(t, c, "SELECT file FROM pragma_database_list WHERE name = 'main'")
	return rows[0][0].(string)
}
