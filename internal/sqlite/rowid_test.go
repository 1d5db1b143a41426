package sqlite

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
)

const rowidSchema = `
	CREATE TABLE t(k TEXT PRIMARY KEY, v);
	CREATE TABLE c(a, b, v, PRIMARY KEY(b, a));
	CREATE TABLE ipk(id INTEGER PRIMARY KEY, v);
	CREATE TABLE w(k TEXT PRIMARY KEY, v) WITHOUT ROWID;
	CREATE TABLE nopk(a, b);
	CREATE TABLE shadow(k TEXT PRIMARY KEY, rowid, v);`

// rowidDump lists (rowid, row) of each table with a rowid, in key order.
func rowidDump(t *testing.T, c *Conn) map[string][][]Value {
	t.Helper()
	return map[string][][]Value{
		"t":      query(t, c, "SELECT rowid, * FROM t ORDER BY k"),
		"c":      query(t, c, "SELECT rowid, * FROM c ORDER BY b, a"),
		"ipk":    query(t, c, "SELECT rowid, * FROM ipk ORDER BY id"),
		"nopk":   query(t, c, "SELECT rowid, * FROM nopk ORDER BY rowid"),
		"shadow": query(t, c, "SELECT _rowid_, * FROM shadow ORDER BY k"),
	}
}

// replicate captures sql on src, reads its rowids and applies both on dsts (the last one
// without the rowids, for comparison); it returns the rowids.
func replicate(t *testing.T, src *Conn, dsts []*Conn, sql string) []TableRowIDs {
	t.Helper()
	cs := capture(t, src, sql)
	ids, err := src.ChangesetRowIDs(cs)
	if err != nil {
		t.Fatal(err)
	}
	for i, dst := range dsts {
		mustExec(t, dst, "BEGIN IMMEDIATE")
		var err error
		switch {
		case i == len(dsts)-1:
			err = dst.ApplyChangeset(cs)
		case i%2 == 0: // rowids given as rows are inserted (without foreign keys)
			err = dst.ApplyChangesetRowIDs(cs, ids)
		default: // rowids set afterwards
			if err = dst.ApplyChangeset(cs); err == nil {
				err = dst.SetChangesetRowIDs(cs, ids)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		mustExec(t, dst, "COMMIT")
	}
	return ids
}

// A changeset names rows by key; the rowid of a table whose key is not the rowid travels
// beside it, and the rows applied elsewhere get the same rowids. Without them the rowids
// differ (the last destination shows it).
func TestChangesetRowIDs(t *testing.T) {
	for _, foreignKeys := range []bool{false, true} { // the direct applier and the library's
		src, dst := pair(t, rowidSchema, OpenOptions{DisableTriggers: true, ForeignKeys: foreignKeys})
		later := openT(t, "later.db", OpenOptions{DisableTriggers: true})
		mustExec(t, later, rowidSchema)
		plain := openT(t, "plain.db", OpenOptions{DisableTriggers: true})
		mustExec(t, plain, rowidSchema)
		dsts := []*Conn{dst, later, plain}

		ids := replicate(t, src, dsts, `
			INSERT INTO t VALUES ('b', 1), ('a', 2), ('d', 3), ('c', 4), ('f', 5), ('e', 6);
			INSERT INTO t(rowid, k, v) VALUES (1000, 'x', 7), (-5, 'y', 8);
			INSERT INTO c VALUES (1, 'p', 1), (2, 'p', 2), (1, 'q', 3), (3, 'o', 4);
			INSERT INTO ipk VALUES (7, 'seven'), (3, 'three');
			INSERT INTO w VALUES ('w1', 1);
			INSERT INTO nopk VALUES (1, 2), (3, 4);
			INSERT INTO shadow(_rowid_, k, rowid, v) VALUES (50, 'k1', 'not the rowid', 1), (40, 'k2', NULL, 2);`)
		var tables []string
		for _, g := range ids {
			tables = append(tables, g.Table)
		}
		slices.Sort(tables)
		if !slices.Equal(tables, []string{"c", "shadow", "t"}) {
			t.Fatalf("rowids for %v, want c, shadow and t (the tables whose key is not the rowid)", tables)
		}
		for _, d := range dsts[:2] {
			if got, want := rowidDump(t, d), rowidDump(t, src); !reflect.DeepEqual(got, want) {
				t.Fatalf("foreign keys %v, after inserts:\n got %v\nwant %v", foreignKeys, got, want)
			}
		}
		if reflect.DeepEqual(rowidDump(t, plain), rowidDump(t, src)) {
			t.Fatal("without the rowids the copy has the same rowids: the test shows nothing")
		}

		replicate(t, src, dsts, `
			INSERT OR REPLACE INTO t VALUES ('a', 'replaced');
			UPDATE t SET rowid = 5000, v = 'moved' WHERE k = 'b';
			UPDATE t SET v = 'kept' WHERE k = 'c';
			DELETE FROM t WHERE k = 'd';
			INSERT INTO t(rowid, k, v) VALUES (3, 'g', 'takes the rowid of d');
			INSERT INTO t VALUES ('h', 9);
			UPDATE c SET v = 10 WHERE b = 'p';
			INSERT OR REPLACE INTO shadow(k, v) VALUES ('k1', 'again');`)
		for _, d := range dsts[:2] {
			if got, want := rowidDump(t, d), rowidDump(t, src); !reflect.DeepEqual(got, want) {
				t.Fatalf("foreign keys %v, after updates:\n got %v\nwant %v", foreignKeys, got, want)
			}
		}

		// Two rows trade rowids: each one's target is held by the other until it moves.
		replicate(t, src, dsts, `
			UPDATE t SET rowid = -100 WHERE k = 'x';
			UPDATE t SET rowid = 1000, v = 'x was here' WHERE k = 'h';
			UPDATE t SET rowid = 5001, v = 'h was here' WHERE k = 'x';`)
		for _, d := range dsts[:2] {
			if got, want := rowidDump(t, d), rowidDump(t, src); !reflect.DeepEqual(got, want) {
				t.Fatalf("foreign keys %v, after a swap:\n got %v\nwant %v", foreignKeys, got, want)
			}
		}

		// On the copy whose rowids already differ, a row's rowid may be held by a row
		// the changeset does not name: that one makes way.
		var held Value
		for _, r := range rowidDump(t, plain)["t"] {
			if r[1] != "z" {
				held = r[0]
				break
			}
		}
		cs := capture(t, src, `DELETE FROM t WHERE rowid = ?; INSERT INTO t(rowid, k, v) VALUES (?, 'z', 1)`, held, held)
		ids, err := src.ChangesetRowIDs(cs)
		if err != nil {
			t.Fatal(err)
		}
		mustExec(t, plain, "BEGIN IMMEDIATE")
		if err := plain.ApplyChangeset(cs); err != nil {
			t.Fatal(err)
		}
		if err := plain.SetChangesetRowIDs(cs, ids); err != nil {
			t.Fatal(err)
		}
		mustExec(t, plain, "COMMIT")
		if got := query(t, plain, "SELECT rowid FROM t WHERE k = 'z'"); len(got) != 1 || got[0][0] != held {
			t.Fatalf("z's rowid on the copy: %v, want %v", got, held)
		}
		if got, want := len(rowidDump(t, plain)["t"]), len(rowidDump(t, src)["t"]); got != want {
			t.Fatalf("the copy has %d rows, the source %d", got, want)
		}
	}
}

// Targets just past the table's largest rowid, as upserts and inserts give them: the rows
// parked on spare rowids must not sit where another row goes (found by a review: two
// INSERT OR REPLACE of existing keys in one entry swapped rows on the followers).
func TestChangesetRowIDsNextToTheLargest(t *testing.T) {
	for _, sql := range []string{
		"INSERT INTO t(rowid, k, v) VALUES (14, 'a', 1), (13, 'b', 2)",
		"INSERT INTO t(rowid, k, v) VALUES (13, 'a', 1), (14, 'b', 2)",
		"INSERT INTO t(rowid, k, v) VALUES (12, 'b', 1), (11, 'a', 2)",
		"INSERT OR REPLACE INTO t VALUES ('p4', 1); INSERT OR REPLACE INTO t VALUES ('p3', 2)",
		"INSERT OR REPLACE INTO t VALUES ('p3', 1); INSERT OR REPLACE INTO t VALUES ('p4', 2)",
		"INSERT OR REPLACE INTO t VALUES ('p7', 1); INSERT OR REPLACE INTO t VALUES ('p1', 2)",
		"INSERT OR REPLACE INTO t VALUES ('p9', 1); INSERT OR REPLACE INTO t VALUES ('p2', 2); INSERT INTO t VALUES ('q', 3)",
		// z's rowid is p2's until p2 moves: z is inserted elsewhere first, then moved.
		"INSERT OR REPLACE INTO t VALUES ('p2', 1); INSERT INTO t(rowid, k, v) VALUES (2, 'z', 2)",
	} {
		src, dst := pair(t, rowidSchema, OpenOptions{DisableTriggers: true})
		plain := openT(t, "plain.db", OpenOptions{DisableTriggers: true})
		mustExec(t, plain, rowidSchema)
		for i := 1; i <= 10; i++ {
			for _, c := range []*Conn{src, dst, plain} {
				mustExec(t, c, "INSERT INTO t(rowid, k, v) VALUES (?, ?, 0)", int64(i), fmt.Sprintf("p%d", i))
			}
		}
		replicate(t, src, []*Conn{dst, plain}, sql)
		if got, want := rowidDump(t, dst)["t"], rowidDump(t, src)["t"]; !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %v\nwant %v", sql, got, want)
		}
	}
}

// A rolled-back transaction gives its schema_version back, and the next schema change takes
// the same number: what was cached inside the rolled-back one must not answer for it.
func TestChangesetRowIDsAfterARolledBackSchemaChange(t *testing.T) {
	c := openT(t, "c.db", OpenOptions{})
	mustExec(t, c, "CREATE TABLE nopk(a)")
	mustExec(t, c, "BEGIN; CREATE TABLE x(a)")
	cs := capture(t, c, "INSERT INTO x VALUES (1)")
	if ids, err := c.ChangesetRowIDs(cs); err != nil || ids != nil {
		t.Fatal(ids, err)
	}
	mustExec(t, c, "ROLLBACK")
	mustExec(t, c, "BEGIN; CREATE TABLE y(k TEXT PRIMARY KEY, v)")
	cs = capture(t, c, "INSERT INTO y VALUES ('a', 1), ('b', 2)")
	if ids, err := c.ChangesetRowIDs(cs); err != nil || len(ids) != 1 || len(ids[0].RowIDs) != 2 {
		t.Fatalf("rowids of y: %v %v", ids, err)
	}
	mustExec(t, c, "ROLLBACK")
	// And the table shapes: y again, now with the rowid as its key.
	mustExec(t, c, "CREATE TABLE y(k INTEGER PRIMARY KEY, v)")
	cs = capture(t, c, "INSERT INTO y VALUES (1, 1), (2, 2)")
	if ids, err := c.ChangesetRowIDs(cs); err != nil || ids != nil {
		t.Fatalf("rowids of y with an INTEGER PRIMARY KEY: %v %v", ids, err)
	}
}

// Rowids that do not fit their changeset are an error, not a guess.
func TestChangesetRowIDsMismatch(t *testing.T) {
	src, dst := pair(t, rowidSchema, OpenOptions{DisableTriggers: true})
	cs := capture(t, src, `INSERT INTO t VALUES ('a', 1), ('b', 2)`)
	mustExec(t, dst, "BEGIN IMMEDIATE")
	defer mustExec(t, dst, "ROLLBACK")
	if err := dst.ApplyChangeset(cs); err != nil {
		t.Fatal(err)
	}
	for _, ids := range [][]TableRowIDs{
		{{Table: "t", RowIDs: []int64{1}}},
		{{Table: "t", RowIDs: []int64{1, 2, 3}}},
		{{Table: "ipk", RowIDs: []int64{1}}},
	} {
		if err := dst.SetChangesetRowIDs(cs, ids); !errors.Is(err, errRowIDs) {
			t.Errorf("%v: %v, want errRowIDs", ids, err)
		}
	}
}

// What the leader pays per entry: for a schema without tables that need rowids (the write
// benchmark's: its table has no declared key), a read of the schema version; for 16 rows
// of such a table, a look-up of each. Rows of 1 KiB.
//
//	go test -run '^$' -bench ChangesetRowIDs ./internal/sqlite
func BenchmarkChangesetRowIDs(b *testing.B) {
	for _, table := range []string{"nopk", "t"} {
		b.Run(table, func(b *testing.B) {
			c := openT(b, "b.db", OpenOptions{})
			if table == "t" {
				mustExec(b, c, rowidSchema)
			} else {
				mustExec(b, c, "CREATE TABLE nopk(a, b); CREATE TABLE w(k TEXT PRIMARY KEY, v) WITHOUT ROWID")
			}
			s, err := c.CreateSession()
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			for i := range 16 {
				if table == "t" {
					mustExec(b, c, "INSERT INTO t VALUES (?, randomblob(1024))", fmt.Sprintf("%032d", i))
				} else {
					mustExec(b, c, "INSERT INTO nopk VALUES (?, randomblob(1024))", fmt.Sprintf("%032d", i))
				}
			}
			cs, err := s.Changeset()
			if err != nil {
				b.Fatal(err)
			}
			mustExec(b, c, "BEGIN") // the leader reads them inside the batch's transaction
			defer mustExec(b, c, "ROLLBACK")
			b.ResetTimer()
			for b.Loop() {
				if _, err := c.ChangesetRowIDs(cs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// What a follower pays to give 16 inserted rows of 1 KiB the leader's rowids, against
// applying the changeset alone: set afterwards (the changeset lists rows by key hash, so
// most rows arrive at another rowid and move twice), or as the rows are inserted.
//
//	go test -run '^$' -bench SetChangesetRowIDs ./internal/sqlite
func BenchmarkSetChangesetRowIDs(b *testing.B) {
	src := openT(b, "src.db", OpenOptions{})
	mustExec(b, src, rowidSchema)
	for i := range 1000 {
		mustExec(b, src, "INSERT INTO t VALUES (?, randomblob(1024))", fmt.Sprintf("old%06d", i))
	}
	s, err := src.CreateSession()
	if err != nil {
		b.Fatal(err)
	}
	for i := range 16 {
		mustExec(b, src, "INSERT INTO t VALUES (?, randomblob(1024))", fmt.Sprintf("%032d", i))
	}
	cs, err := s.Changeset()
	s.Close()
	if err != nil {
		b.Fatal(err)
	}
	mustExec(b, src, "BEGIN")
	ids, err := src.ChangesetRowIDs(cs)
	mustExec(b, src, "ROLLBACK")
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"none", "afterwards", "as-inserted"} {
		b.Run("rowids="+mode, func(b *testing.B) {
			dst := openT(b, "dst.db", OpenOptions{DisableTriggers: true})
			mustExec(b, dst, rowidSchema)
			for i := range 1000 {
				mustExec(b, dst, "INSERT INTO t VALUES (?, randomblob(1024))", fmt.Sprintf("old%06d", i))
			}
			for b.Loop() {
				// A savepoint, not BEGIN ... ROLLBACK: a rollback drops the connection's
				// cached statements, which a follower's committed applies keep.
				mustExec(b, dst, "SAVEPOINT bench")
				var err error
				switch mode {
				case "none":
					err = dst.ApplyChangeset(cs)
				case "afterwards":
					if err = dst.ApplyChangeset(cs); err == nil {
						err = dst.SetChangesetRowIDs(cs, ids)
					}
				default:
					err = dst.ApplyChangesetRowIDs(cs, ids)
				}
				if err != nil {
					b.Fatal(err)
				}
				mustExec(b, dst, "ROLLBACK TO bench; RELEASE bench")
			}
		})
	}
}
