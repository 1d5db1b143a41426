package sqlite

import (
	"fmt"
	"math/rand"
	"testing"

	lib "modernc.org/sqlite/lib"
)

func TestApplyDirectKeepsStatementsPrepared(t *testing.T) {
	// The library's apply expires every statement of the connection (PRAGMA
	// defer_foreign_keys): the caller's cached statements were prepared again after each
	// apply. On a connection without foreign keys the direct apply leaves them alone.
	for _, fk := range []bool{false, true} {
		t.Run(fmt.Sprintf("foreign_keys=%v", fk), func(t *testing.T) {
			src, dst := pair(t, schema, OpenOptions{DisableTriggers: true, ForeignKeys: fk})
			st, _, err := dst.Prepare("SELECT count(*) FROM pk")
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			step := func() {
				if _, err := st.Step(); err != nil {
					t.Fatal(err)
				}
				_ = st.Reset()
			}
			step()
			for i := range 3 {
				if err := apply(t, dst, capture(t, src, "INSERT INTO pk VALUES (?, 'x', NULL)", i)); err != nil {
					t.Fatal(err)
				}
				step()
			}
			reprepared := lib.Xsqlite3_stmt_status(dst.tls, st.p, lib.SQLITE_STMTSTATUS_REPREPARE, 0)
			if fk && reprepared == 0 {
				t.Fatal("the library's apply no longer expires statements: is the direct apply still worth it?")
			}
			if !fk && reprepared != 0 {
				t.Fatalf("statement prepared again %d times after direct applies", reprepared)
			}
			equalDump(t, dump(t, src), dump(t, dst))
		})
	}
}

func TestApplyDirectRetriesUniqueConstraints(t *testing.T) {
	// Shifting a UNIQUE column by one, row by row, is valid in the source's order but not
	// in every order: the changeset lists the rows in its own order, so some updates fail
	// until others are applied, and are retried.
	const ddl = `CREATE TABLE u(id INTEGER PRIMARY KEY, k INTEGER UNIQUE);
		CREATE TABLE r(key TEXT, v TEXT, UNIQUE(key));`
	src, dst := pair(t, ddl, OpenOptions{DisableTriggers: true})
	var rows string
	for i := 1; i <= 40; i++ {
		rows += fmt.Sprintf("INSERT INTO u VALUES (%d, %d); INSERT INTO r VALUES ('k%d', 'a');", i, i, i)
	}
	if err := apply(t, dst, capture(t, src, rows)); err != nil {
		t.Fatal(err)
	}
	var up, down, replace string
	for i := 40; i >= 1; i-- {
		up += fmt.Sprintf("UPDATE u SET k = k + 1 WHERE id = %d;", i)
	}
	for i := 1; i <= 40; i++ {
		down += fmt.Sprintf("UPDATE u SET k = k - 1 WHERE id = %d;", i)
		// A REPLACE of a UNIQUE key in a rowid table: a DELETE and an INSERT of a new rowid.
		replace += fmt.Sprintf("INSERT OR REPLACE INTO r VALUES ('k%d', 'b');", i)
	}
	for _, sql := range []string{up, down, replace} {
		if err := apply(t, dst, capture(t, src, sql)); err != nil {
			t.Fatal(err)
		}
		equalDump(t, dump(t, src), dump(t, dst))
	}
	if dst.applyRetries == 0 {
		t.Fatal("no change was retried: the shifts did not exercise the retry")
	}
}

func TestApplyDirectUnresolvableConstraint(t *testing.T) {
	// A change that fails a constraint however often it is retried is a conflict, and
	// nothing of the changeset stays.
	const ddl = `CREATE TABLE u(id INTEGER PRIMARY KEY, k INTEGER UNIQUE);`
	src, dst := pair(t, ddl, OpenOptions{DisableTriggers: true})
	if err := apply(t, dst, capture(t, src, "INSERT INTO u VALUES (1, 1)")); err != nil {
		t.Fatal(err)
	}
	mustExec(t, dst, "INSERT INTO u VALUES (99, 2)") // behind the source's back
	before := dump(t, dst)
	err := apply(t, dst, capture(t, src, "INSERT INTO u VALUES (3, 3); UPDATE u SET k = 2 WHERE id = 1"))
	ce, ok := err.(*ConflictError)
	if !ok || ce.Kind != ConflictConstraint || ce.Table != "u" || ce.Op != "UPDATE" {
		t.Fatalf("apply: %v", err)
	}
	equalDump(t, before, dump(t, dst))
}

func TestSessionMissesTableWithRowidNamedColumn(t *testing.T) {
	// SQLite records no change for a table without PRIMARY KEY that has a column named
	// _rowid_ (the store refuses such tables for that reason: store.checkReplicable). If a
	// later SQLite captures them, the direct apply must learn to address their rowid
	// (tableShape.direct is false for them today).
	src, _ := pair(t, `CREATE TABLE odd(_rowid_ TEXT, v);`, OpenOptions{DisableTriggers: true})
	if cs := capture(t, src, "INSERT INTO odd VALUES ('a', 1)"); len(cs) != 0 {
		t.Fatalf("the session now records %d bytes for such a table: revisit checkReplicable and tableShape", len(cs))
	}
}
func TestApplyDirectCorruptChangesets(t *testing.T) {
	src := openT(t, "src.db", OpenOptions{})
	mustExec(t, src, schema)
	cs := capture(t, src, `INSERT INTO pk VALUES (1, 'a', x'00'); INSERT INTO nopk VALUES (1, 2);
		INSERT INTO wr VALUES ('k', 1, 2.5)`)
	mustExec(t, src, "DELETE FROM nopk")
	cs2 := capture(t, src, `UPDATE pk SET v = 'b' WHERE id = 1; INSERT INTO nopk VALUES (3, 4); UPDATE wr SET v = 1`)
	dst := openT(t, "dst.db", OpenOptions{DisableTriggers: true})
	mustExec(t, dst, schema)
	r := rand.New(rand.NewSource(1))
	applied := 0
	for i := 0; i < 5000; i++ {
		data := append([]byte(nil), cs...)
		if i%2 == 1 {
			data = append(data[:0], cs2...)
		}
		for k := 0; k < 1+r.Intn(3); k++ {
			data[r.Intn(len(data))] = byte(r.Intn(256))
		}
		if r.Intn(3) == 0 {
			data = data[:r.Intn(len(data))]
		}
		mustExec(t, dst, "BEGIN")
		err := dst.ApplyChangeset(data)
		if err == nil {
			applied++
		}
		if e := dst.Exec("ROLLBACK"); e != nil {
			t.Fatalf("input %d %x: apply %v; rollback %v", i, data, err, e)
		}
		if !dst.Autocommit() {
			t.Fatalf("input %d: transaction left open", i)
		}
	}
	t.Logf("%d of 5000 damaged changesets applied without error", applied)
}

func TestApplyDirectSameTableWithAnotherShape(t *testing.T) {
	// A changeset is a sequence of table blocks; one made by concatenating two can name the
	// same table twice with different column counts. The schema check once looked at a table
	// only once: the library then skipped the odd block silently, and the direct apply
	// indexed past the table's columns. Both paths must refuse the whole changeset.
	a, _ := pair(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, x);", OpenOptions{})
	b, _ := pair(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, x, y);", OpenOptions{})
	cs := append(capture(t, a, "INSERT INTO t VALUES (1, 'a')"), capture(t, b, "INSERT INTO t VALUES (2, 'b', 'c')")...)
	for _, fk := range []bool{false, true} {
		dst := openT(t, fmt.Sprintf("dst%v.db", fk), OpenOptions{DisableTriggers: true, ForeignKeys: fk})
		mustExec(t, dst, "CREATE TABLE t(id INTEGER PRIMARY KEY, x)")
		err := dst.ApplyChangeset(cs)
		if err == nil {
			t.Fatalf("foreign_keys=%v: a block of another shape was applied", fk)
		}
		if rows := query(t, dst, "SELECT count(*) FROM t"); rows[0][0] != int64(0) {
			t.Fatalf("foreign_keys=%v: %v rows left after a failed apply", fk, rows[0][0])
		}
	}
}
