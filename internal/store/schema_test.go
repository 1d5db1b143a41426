package store

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/sqlite"
)

func execErr(t *testing.T, s *Store, sql string, args ...sqlite.Value) *sqlite.Error {
	t.Helper()
	res, err := s.Exec(context.Background(), testDB, Request{SQL: sql, Args: args})
	if err != nil {
		t.Fatalf("Exec(%q): %v", sql, err)
	}
	if res.Err == nil {
		t.Fatalf("Exec(%q): want a statement error, got %+v", sql, res)
	}
	return res.Err
}

func TestSchemaChangesReplicate(t *testing.T) {
	f := newCluster(t, 3, nil)
	s := f.leader()
	steps := []string{
		"CREATE TABLE p(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, at TEXT DEFAULT (datetime('now')))",
		"CREATE TABLE c(id INTEGER PRIMARY KEY, pid INTEGER REFERENCES p(id) ON DELETE CASCADE, v REAL)",
		"CREATE TABLE audit(n INTEGER PRIMARY KEY AUTOINCREMENT, msg TEXT)",
		"CREATE TRIGGER p_ins AFTER INSERT ON p BEGIN INSERT INTO audit(msg) VALUES('new ' || NEW.name); END",
		"INSERT INTO p(name) VALUES('a'), ('b'), ('c')",
		"INSERT INTO c(pid, v) SELECT id, random() FROM p",
		"CREATE TABLE snap AS SELECT id, name, random() AS r FROM p",
		"CREATE INDEX c_v ON c(v)",
		"CREATE VIEW pv AS SELECT name FROM p",
		"ALTER TABLE c ADD COLUMN note TEXT DEFAULT 'none'",
		"UPDATE c SET note = hex(randomblob(4))",
		"ALTER TABLE snap RENAME COLUMN r TO rnd",
		"ALTER TABLE snap RENAME TO snapshot",
		"ALTER TABLE snapshot DROP COLUMN rnd",
		"DELETE FROM p WHERE name = 'a'", // cascades to c
		"DROP INDEX c_v",
		"CREATE TABLE tmp(x); INSERT INTO tmp VALUES(1); CREATE UNIQUE INDEX tmp_x ON tmp(x)",
		"DROP TABLE tmp",
		"CREATE TABLE w(k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID",
		"INSERT INTO w VALUES('x', randomblob(10)), ('y', zeroblob(3))",
		"CREATE TABLE nopk(a, b)",
		"INSERT INTO nopk VALUES(1, 'x'), (1, 'x'), (NULL, NULL)",
		"DELETE FROM nopk WHERE rowid = 2",
		"UPDATE sqlite_sequence SET seq = 100 WHERE name = 'p'",
		"INSERT INTO p(name) VALUES('d')",
	}
	for _, q := range steps {
		mustExec(t, s, q)
	}
	f.requireSameContent(testDB)
	for i, st := range f.stores {
		if id := queryInt(t, st, "SELECT id FROM p WHERE name = 'd'"); id != 101 {
			t.Fatalf("store %d: AUTOINCREMENT id %d, want 101", i, id)
		}
		if n := queryInt(t, st, "SELECT count(*) FROM audit"); n != 4 {
			t.Fatalf("store %d: trigger rows %d, want 4 (triggers must not fire again on apply)", i, n)
		}
		if n := queryInt(t, st, "SELECT count(*) FROM c"); n != 2 {
			t.Fatalf("store %d: cascade: %d child rows", i, n)
		}
		sql := queryRows(t, st, "SELECT sql FROM sqlite_schema WHERE name = 'snapshot'")
		if !strings.HasPrefix(fmt.Sprint(sql), "[[CREATE TABLE \"snapshot\"(id INT,name TEXT)") {
			t.Fatalf("store %d: CTAS schema %v", i, sql)
		}
	}
	// The trigger exists on the followers (and fires there only when one becomes leader).
	if n := queryInt(t, f.stores[2], "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger'"); n != 1 {
		t.Fatalf("follower triggers: %d", n)
	}
}

func TestSchemaRules(t *testing.T) {
	f := newCluster(t, 2, nil)
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
	mustExec(t, s, "CREATE TABLE tp(k TEXT PRIMARY KEY, v)")
	mustExec(t, s, "CREATE TABLE cp(a TEXT, b TEXT, PRIMARY KEY(a, b))")

	// A table without PRIMARY KEY with a column named _rowid_: the session extension records
	// none of its changes, so it is refused (SQLite itself refuses to add such a column later).
	if e := execErr(t, s, "CREATE TABLE odd(_Rowid_ TEXT, v)"); !strings.Contains(e.Msg, "named _rowid_") {
		t.Fatalf("table with a _rowid_ column: %v", e)
	}
	mustExec(t, s, "CREATE TABLE odd(a, v)")
	if e := execErr(t, s, "ALTER TABLE odd ADD COLUMN _rowid_"); !strings.Contains(e.Msg, "rowid") {
		t.Fatalf("_rowid_ column added: %v", e)
	}
	mustExec(t, s, "CREATE TABLE fine(_rowid_ TEXT PRIMARY KEY, v)")
	if e := execErr(t, s, "INSERT INTO t VALUES(1, 1); ALTER TABLE t ADD COLUMN x"); !strings.Contains(e.Msg, "drops or alters") {
		t.Fatalf("DDL after DML: %v", e)
	}
	if e := execErr(t, s, "INSERT INTO tp VALUES(NULL, 1)"); !strings.Contains(e.Msg, "NULL in PRIMARY KEY") || e.Code != 19 {
		t.Fatalf("NULL primary key: %v", e)
	}
	mustExec(t, s, "INSERT INTO tp VALUES('a', 1)")
	if e := execErr(t, s, "UPDATE tp SET k = NULL"); !strings.Contains(e.Msg, "NULL in PRIMARY KEY") {
		t.Fatalf("NULL primary key by update: %v", e)
	}
	if e := execErr(t, s, "INSERT INTO cp VALUES('x', NULL)"); !strings.Contains(e.Msg, "cp.b") {
		t.Fatalf("NULL in 2nd primary key column: %v", e)
	}
	if e := execErr(t, s, "INSERT INTO t VALUES(?, 1); INSERT INTO t VALUES(9, 9)", int64(5)); !strings.Contains(e.Msg, "single statement") {
		t.Fatalf("args with several statements: %v", e)
	}
	// A parameter without an argument is an error, not a NULL (nor, from a cached
	// statement, the previous request's value): in one statement, in a script, in a query.
	mustExec(t, s, "INSERT INTO t VALUES(?, ?)", int64(50), int64(51))
	if e := execErr(t, s, "INSERT INTO t VALUES(?, ?)", int64(52)); !strings.Contains(e.Msg, "no argument for parameter ?2") {
		t.Fatalf("missing argument: %v", e)
	}
	if e := execErr(t, s, "INSERT INTO t VALUES(53, 1); INSERT INTO t VALUES(?, 2)"); !strings.Contains(e.Msg, "no argument for parameter ?1") {
		t.Fatalf("parameter in a script: %v", e)
	}
	if _, err := s.Query(context.Background(), testDB, "SELECT v FROM t WHERE id = ?", nil); err == nil || !strings.Contains(err.Error(), "no argument") {
		t.Fatalf("query without its argument: %v", err)
	}
	if n := queryInt(t, s, "SELECT count(*) FROM t WHERE id IN (52, 53)"); n != 0 {
		t.Fatalf("refused statements wrote %d rows", n)
	}
	for _, q := range []string{"BEGIN", "COMMIT", "VACUUM", "PRAGMA temp.user_version = 3", "PRAGMA query_only(1)", "pragma main.recursive_triggers=1", "PRAGMA writable_schema=ON", "DROP TABLE _tandem_requests", "DELETE FROM _TANDEM_applied"} {
		if e := execErr(t, s, q); !strings.Contains(e.Msg, "tandem:") {
			t.Fatalf("%q: %v", q, e)
		}
	}
	// Refused pragmas never reached the connection (SQLite applies flag pragmas at prepare).
	mustExec(t, s, "INSERT INTO t VALUES(100, 1)")
	mustExec(t, s, "PRAGMA main.user_version")
	mustExec(t, s, "PRAGMA defer_foreign_keys = ON")
	res := mustExec(t, s, "PRAGMA table_info(t)")
	if len(res.Rows) != 2 {
		t.Fatalf("PRAGMA table_info: %+v", res)
	}
	f.requireSameContent(testDB)
	if n := queryInt(t, f.stores[1], "SELECT count(*) FROM tp"); n != 1 {
		t.Fatalf("follower tp rows %d", n)
	}
}

func TestSchemaChangeStartsItsOwnEntry(t *testing.T) {
	f := newCluster(t, 2, nil)
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(v)")
	release := f.gate()
	go s.Exec(context.Background(), testDB, Request{SQL: "INSERT INTO t VALUES(0)"})
	f.waitBlocked(1)
	sqls := []string{
		"INSERT INTO t VALUES(1)",
		"ALTER TABLE t ADD COLUMN w DEFAULT 5",
		"INSERT INTO t VALUES(2, 6)",
		"DELETE FROM t WHERE v = 0",
		"DROP TABLE IF EXISTS nothing_here",
		"CREATE TABLE u AS SELECT * FROM t",
	}
	db, _ := s.database(testDB, false)
	var wg sync.WaitGroup
	res := make([]Result, len(sqls))
	for i, q := range sqls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			res[i], err = s.Exec(context.Background(), testDB, Request{SQL: q})
			if err != nil {
				t.Error(err)
			}
		}()
		for len(db.queue) < i+1 {
			time.Sleep(time.Millisecond)
		}
	}
	release()
	wg.Wait()
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("request %d: %v", i, r.Err)
		}
	}
	if res[1].Index == res[0].Index || res[2].Index == res[1].Index {
		t.Fatalf("schema change shares an entry: %d %d %d", res[0].Index, res[1].Index, res[2].Index)
	}
	f.requireSameContent(testDB)
	if got := queryRows(t, f.stores[1], "SELECT * FROM u ORDER BY v"); fmt.Sprint(got) != "[[1 5] [2 6]]" {
		t.Fatalf("follower u: %v", got)
	}
}

func TestDropTableWithCascade(t *testing.T) {
	f := newCluster(t, 2, nil)
	s := f.leader()
	mustExec(t, s, "CREATE TABLE p(id INTEGER PRIMARY KEY)")
	mustExec(t, s, "CREATE TABLE c(id INTEGER PRIMARY KEY, pid REFERENCES p(id) ON DELETE CASCADE)")
	mustExec(t, s, "INSERT INTO p VALUES(1), (2); INSERT INTO c VALUES(10, 1), (20, 2)")
	res, err := s.Exec(context.Background(), testDB, Request{SQL: "DROP TABLE p"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("DROP TABLE with cascading rows: %v", res.Err)
	f.requireSameContent(testDB)
	for i := range f.stores {
		if err := f.err(i); err != nil {
			t.Fatalf("store %d: %v", i, err)
		}
	}
}

func TestCreateTableAsSelectRows(t *testing.T) {
	f := newCluster(t, 2, nil)
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(k TEXT PRIMARY KEY, v)")
	mustExec(t, s, "INSERT INTO t VALUES('a', 1), ('b', randomblob(4)), ('c', NULL)")
	mustExec(t, s, "CREATE TABLE u AS SELECT k, v, random() AS r FROM t ORDER BY k DESC")
	mustExec(t, s, "INSERT INTO t VALUES('d', 4); CREATE TABLE w AS SELECT * FROM t WHERE k > 'b'")
	f.requireSameContent(testDB)
	for i, st := range f.stores {
		if got := fmt.Sprint(queryRows(t, st, "SELECT rowid, k FROM u ORDER BY rowid")); got != "[[1 c] [2 b] [3 a]]" {
			t.Fatalf("store %d: u %s", i, got)
		}
		if n := queryInt(t, st, "SELECT count(*) FROM w"); n != 2 {
			t.Fatalf("store %d: w has %d rows", i, n)
		}
	}
}

// PRAGMA user_version lives in the database header, where the session extension does not
// look: the entry carries it, only when it changed, and every node ends with the same value.
func TestUserVersionReplicated(t *testing.T) {
	f := newCluster(t, 3, nil)
	s := f.leader()
	ctx := context.Background()
	check := func(want int64) {
		t.Helper()
		f.sync()
		for i, st := range f.stores {
			if got := queryInt(t, st, "PRAGMA user_version"); got != want {
				t.Fatalf("store %d: user_version %d, want %d", i, got, want)
			}
		}
	}
	mustExec(t, s, "CREATE TABLE t(id INTEGER PRIMARY KEY)")
	mustExec(t, s, "PRAGMA user_version = 7")
	check(7)
	mustExec(t, s, "INSERT INTO t VALUES(1); PRAGMA main.user_version = 8") // a migration script
	check(8)
	if e := execErr(t, s, "PRAGMA user_version = 99; INSERT INTO nosuch VALUES(1)"); !strings.Contains(e.Msg, "no such table") {
		t.Fatalf("failing script: %v", e)
	}
	check(8)

	tx, err := s.Begin(ctx, testDB, 1)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := tx.Exec(ctx, "PRAGMA user_version = 20", nil); err != nil || res.Err != nil {
		t.Fatalf("in a transaction: %v %v", err, res.Err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	check(8)
	if tx, err = s.Begin(ctx, testDB, 2); err != nil {
		t.Fatal(err)
	}
	if res, err := tx.Exec(ctx, "PRAGMA user_version = 21", nil); err != nil || res.Err != nil {
		t.Fatalf("in a transaction: %v %v", err, res.Err)
	}
	if _, err := tx.Commit(ctx, 0); err != nil {
		t.Fatal(err)
	}
	check(21)

	mustExec(t, s, "INSERT INTO t VALUES(2)")
	f.sync()
	ents := f.entries()
	last, err := decodeCommand(ents[len(ents)-1].Data)
	if err != nil {
		t.Fatal(err)
	}
	if last.HasUserVersion {
		t.Fatalf("an entry that left user_version alone carries it: %+v", last)
	}
	f.requireSameContent(testDB)
}

// EXPLAIN does not get a PRAGMA past the checks: SQLite applies some pragmas while compiling
// them, EXPLAIN included (EXPLAIN PRAGMA ignore_check_constraints=1 turned CHECK
// constraints off on the leader's writer for every client; found by a review on 2026-12-03).
func TestExplainPragmaChecked(t *testing.T) {
	f := newCluster(t, 1, nil)
	s := f.leader()
	ctx := context.Background()
	mustExec(t, s, "CREATE TABLE ck(a INTEGER CHECK(a > 0))")
	for _, q := range []string{
		"EXPLAIN PRAGMA ignore_check_constraints=1",
		"explain query plan pragma ignore_check_constraints = 1",
		"EXPLAIN /* x */ PRAGMA writable_schema=1",
	} {
		res, err := s.Exec(ctx, testDB, Request{SQL: q})
		if err != nil || res.Err == nil || !strings.Contains(res.Err.Msg, "not allowed") {
			t.Fatalf("Exec(%q): %v %v, want it refused", q, err, res.Err)
		}
		if rows, err := s.Query(ctx, testDB, q, nil); err == nil {
			rows.Close()
			t.Fatalf("Query(%q) was not refused", q)
		}
	}
	res, err := s.Exec(ctx, testDB, Request{SQL: "INSERT INTO ck VALUES(-1)"})
	if err != nil || res.Err == nil || !strings.Contains(res.Err.Msg, "CHECK") {
		t.Fatalf("the CHECK constraint after the attempts: %v %v", err, res.Err)
	}
	if rows, err := s.Query(ctx, testDB, "EXPLAIN PRAGMA table_info(ck)", nil); err != nil {
		t.Fatalf("EXPLAIN of a reading pragma: %v", err)
	} else {
		rows.Close()
	}
}
