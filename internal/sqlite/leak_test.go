package sqlite

import (
	"errors"
	"path/filepath"
	"testing"

	"modernc.org/libc"
)

// memStat returns the C heap counters of modernc's allocator. They are only
// maintained when built with -tags memory.counters.
func memStat(t *testing.T) libc.MemAllocatorStat {
	s := libc.MemStat()
	if s.Allocs == 0 {
		t.Skip("C allocation counters unavailable: run with -tags memory.counters")
	}
	return s
}

// TestNoCLeaks runs every code path that allocates C memory many times and
// checks that the C heap does not grow with the number of iterations.
func TestNoCLeaks(t *testing.T) {
	dir := t.TempDir()
	src, err := Open(filepath.Join(dir, "src.db"), OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := Open(filepath.Join(dir, "dst.db"), OpenOptions{DisableTriggers: true, ForeignKeys: true})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	// Without foreign keys the changesets go through applyDirect.
	direct, err := Open(filepath.Join(dir, "direct.db"), OpenOptions{DisableTriggers: true})
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	const keyed = "CREATE TABLE tk(k TEXT PRIMARY KEY, v);" // rowids travel beside the changeset
	mustExec(t, src, schema+keyed)
	mustExec(t, dst, schema+keyed+"CREATE TABLE only_dst(x);")
	mustExec(t, direct, schema+keyed)
	mustExec(t, src, "CREATE TABLE missing(x)")
	blob := make([]byte, 3000)
	round := func(i int) {
		st, _, err := src.Prepare("SELECT ?, ?, ?, ?, :n, x'00ff', 'text'")
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Bind([]Value{int64(i), "some text", blob, 1.5, Named{"n", []byte{}}}); err != nil {
			t.Fatal(err)
		}
		if err := st.Bind([]Value{struct{}{}}); err == nil {
			t.Fatal("bad type accepted")
		}
		st.Step()
		// Binding a stepped statement fails; SQLite must still free our copies.
		if err := st.Bind([]Value{"x", blob}); err == nil {
			t.Fatal("bind on a stepped statement succeeded")
		}
		for j := 0; j < st.ColumnCount(); j++ {
			_ = st.Column(j)
			_ = st.ColumnName(j)
			_ = st.ColumnDeclType(j)
		}
		_ = st.SQL()
		st.Close()
		if err := src.Exec("SELEC"); err == nil {
			t.Fatal("syntax error not reported")
		}
		s, err := src.CreateSession()
		if err != nil {
			t.Fatal(err)
		}
		mustExec(t, src, "BEGIN; INSERT OR REPLACE INTO pk VALUES (?, ?, ?); INSERT INTO nopk VALUES (?, ?); INSERT OR REPLACE INTO wr VALUES ('a', ?, ?); INSERT INTO tk(rowid, k, v) VALUES (?, 'k', ?), (1, 'j', 2)",
			int64(i%7), "v", blob, i, i, i%5, blob, 100+i, blob)
		cs, err := s.Changeset()
		if err != nil || len(cs) == 0 {
			t.Fatal(cs, err)
		}
		s.Close()
		ids, err := src.ChangesetRowIDs(cs)
		if err != nil || len(ids) != 1 {
			t.Fatal(ids, err)
		}
		mustExec(t, src, "ROLLBACK")
		mustExec(t, dst, "BEGIN")
		if err := dst.ApplyChangeset(cs); err != nil {
			t.Fatal(err)
		}
		// Applying the same changeset again conflicts (the rows exist).
		if err := dst.ApplyChangeset(cs); !errors.Is(err, ErrConflict) {
			t.Fatal(err)
		}
		mustExec(t, dst, "ROLLBACK")
		mustExec(t, direct, "BEGIN")
		if err := direct.ApplyChangeset(cs); err != nil {
			t.Fatal(err)
		}
		if err := direct.SetChangesetRowIDs(cs, ids); err != nil {
			t.Fatal(err)
		}
		if err := direct.SetChangesetRowIDs(cs, ids[:0:0]); err != nil {
			t.Fatal(err)
		}
		if err := direct.SetChangesetRowIDs(cs, []TableRowIDs{{Table: "tk", RowIDs: []int64{1}}}); !errors.Is(err, errRowIDs) {
			t.Fatal(err)
		}

		if err := direct.ApplyChangeset(cs); !errors.Is(err, ErrConflict) {
			t.Fatal(err)
		}
		if err := direct.ApplyChangeset(cs[:len(cs)-3]); err == nil {
			t.Fatal("truncated changeset applied")
		}
		mustExec(t, direct, "ROLLBACK")
		mustExec(t, direct, "BEGIN")
		if err := direct.ApplyChangesetRowIDs(cs, ids); err != nil {
			t.Fatal(err)
		}
		mustExec(t, direct, "ROLLBACK")
		s, _ = src.CreateSession()
		mustExec(t, src, "BEGIN; INSERT INTO missing VALUES (1)")
		cs, _ = s.Changeset()
		s.Close()
		mustExec(t, src, "ROLLBACK")
		if err := dst.ApplyChangeset(cs); !errors.Is(err, ErrSchemaMismatch) {
			t.Fatal(err)
		}
	}
	for i := 0; i < 200; i++ { // warm up caches (page cache, schema, lookaside)
		round(i)
	}
	before := memStat(t)
	for i := 0; i < 2000; i++ {
		round(i)
	}
	after := memStat(t)
	t.Logf("C heap: %d allocs / %d bytes before, %d / %d after", before.Allocs, before.Bytes, after.Allocs, after.Bytes)
	if d := after.Allocs - before.Allocs; d > 50 {
		t.Fatalf("C allocations grew by %d over 2000 rounds", d)
	}

	// Open/Close leaves nothing behind either.
	for i := 0; i < 10; i++ {
		c, _ := Open(filepath.Join(dir, "oc.db"), OpenOptions{})
		c.Prepare("SELECT 1")
		c.CreateSession()
		c.Close()
	}
	before = memStat(t)
	for i := 0; i < 300; i++ {
		c, err := Open(filepath.Join(dir, "oc.db"), OpenOptions{ForeignKeys: true, DisableTriggers: true})
		if err != nil {
			t.Fatal(err)
		}
		c.Prepare("SELECT 1") // left open: Close finalizes it
		c.CreateSession()     // left open: Close deletes it
		c.Close()
	}
	after = memStat(t)
	t.Logf("open/close: %d allocs / %d bytes before, %d / %d after", before.Allocs, before.Bytes, after.Allocs, after.Bytes)
	if d := after.Allocs - before.Allocs; d > 20 {
		t.Fatalf("C allocations grew by %d over 300 Open/Close", d)
	}
}
