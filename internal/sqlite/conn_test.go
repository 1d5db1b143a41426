package sqlite

import (
	"bytes"
	"errors"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestOpenPragmas(t *testing.T) {
	c := openT(t, "a.db", OpenOptions{ForeignKeys: true, BusyTimeout: time.Second})
	if got := query(t, c, "PRAGMA journal_mode")[0][0]; got != "wal" {
		t.Fatalf("journal_mode = %v", got)
	}
	if got := query(t, c, "PRAGMA synchronous")[0][0]; got != int64(1) {
		t.Fatalf("synchronous = %v, want 1 (NORMAL)", got)
	}
	if got := query(t, c, "PRAGMA foreign_keys")[0][0]; got != int64(1) {
		t.Fatalf("foreign_keys = %v", got)
	}
	if got := query(t, c, "PRAGMA busy_timeout")[0][0]; got != int64(1000) {
		t.Fatalf("busy_timeout = %v", got)
	}
	if !c.Autocommit() {
		t.Fatal("Autocommit false outside a transaction")
	}
	mustExec(t, c, "BEGIN")
	if c.Autocommit() {
		t.Fatal("Autocommit true inside BEGIN")
	}
	mustExec(t, c, "COMMIT")
	v1, err := c.SchemaVersion()
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, c, "CREATE TABLE t(x)")
	v2, err := c.SchemaVersion()
	if err != nil || v2 <= v1 {
		t.Fatalf("SchemaVersion %d -> %d (%v)", v1, v2, err)
	}
}

func TestOpenReadOnly(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ro.db")
	if _, err := Open(path, OpenOptions{ReadOnly: true}); err == nil {
		t.Fatal("read-only Open of a missing file succeeded")
	}
	w, err := Open(path, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	mustExec(t, w, "CREATE TABLE t(x); INSERT INTO t VALUES (1)")
	r, err := Open(path, OpenOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got := query(t, r, "SELECT x FROM t"); len(got) != 1 || got[0][0] != int64(1) {
		t.Fatalf("read = %v", got)
	}
	err = r.Exec("INSERT INTO t VALUES (2)")
	var se *Error
	if !errors.As(err, &se) || se.Code != 8 /* SQLITE_READONLY */ {
		t.Fatalf("write on read-only conn: %v", err)
	}
}

func TestValueRoundTrip(t *testing.T) {
	c := openT(t, "v.db", OpenOptions{})
	mustExec(t, c, "CREATE TABLE v(id INTEGER PRIMARY KEY, x)")
	large := bytes.Repeat([]byte{0, 1, 2, 0xff}, 1<<18) // 1 MiB
	cases := []struct {
		in, want Value
	}{
		{nil, nil},
		{int64(0), int64(0)},
		{int64(math.MaxInt64), int64(math.MaxInt64)},
		{int64(math.MinInt64), int64(math.MinInt64)},
		{42, int64(42)},
		{true, int64(1)},
		{false, int64(0)},
		{3.25, 3.25},
		{math.Inf(1), math.Inf(1)},
		{math.Inf(-1), math.Inf(-1)},
		{math.NaN(), nil}, // SQLite stores NaN as NULL
		{"", ""},
		{"héllo, 世界 🙂", "héllo, 世界 🙂"},
		{"a\x00b", "a\x00b"},
		{[]byte{}, []byte{}},
		{[]byte(nil), []byte{}}, // a typed []byte is a BLOB, never NULL
		{[]byte{0, 1, 2}, []byte{0, 1, 2}},
		{large, large},
	}
	for i, tc := range cases {
		if err := c.Exec("INSERT INTO v VALUES (?, ?)", int64(i), tc.in); err != nil {
			t.Fatalf("case %d insert %T: %v", i, tc.in, err)
		}
	}
	rows := query(t, c, "SELECT id, x, typeof(x) FROM v ORDER BY id")
	if len(rows) != len(cases) {
		t.Fatalf("%d rows", len(rows))
	}
	for i, tc := range cases {
		got := rows[i][1]
		switch w := tc.want.(type) {
		case []byte:
			g, ok := got.([]byte)
			if !ok || g == nil || !bytes.Equal(g, w) {
				t.Errorf("case %d: got %T (len %d), want blob len %d", i, got, len(g), len(w))
			}
			if rows[i][2] != "blob" {
				t.Errorf("case %d: typeof = %v", i, rows[i][2])
			}
		default:
			if got != tc.want {
				t.Errorf("case %d: got %#v, want %#v", i, got, tc.want)
			}
		}
	}
	if rows[0][2] != "null" {
		t.Errorf("nil stored as %v", rows[0][2])
	}
	// Column copies: mutating the result does not change what SQLite returns.
	b := query(t, c, "SELECT x FROM v WHERE id = 16")[0][0].([]byte)
	b[0] = 99
	if b2 := query(t, c, "SELECT x FROM v WHERE id = 16")[0][0].([]byte); b2[0] != 0 {
		t.Fatal("Column did not copy the blob")
	}
}

func TestBindErrorsAndNamed(t *testing.T) {
	c := openT(t, "b.db", OpenOptions{})
	st, _, err := c.Prepare("SELECT ?1, :a, @b, $c")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if st.BindCount() != 4 {
		t.Fatalf("BindCount = %d", st.BindCount())
	}
	for _, bad := range []Value{int32(1), uint64(1), time.Now(), struct{}{}, []string{"x"}} {
		err := st.Bind([]Value{bad})
		if err == nil {
			t.Fatalf("Bind(%T) succeeded", bad)
		}
		var se *Error
		if !errors.As(err, &se) || !strings.Contains(se.Msg, "unsupported") {
			t.Fatalf("Bind(%T): %v", bad, err)
		}
	}
	if err := st.Bind([]Value{Named{"nope", 1}}); err == nil {
		t.Fatal("unknown name accepted")
	}
	if err := st.Bind([]Value{1, 2, 3, 4, 5}); err == nil {
		t.Fatal("too many args accepted")
	}
	if err := st.Bind([]Value{int64(7), Named{"a", "A"}, Named{"@b", "B"}, Named{"c", []byte("C")}}); err != nil {
		t.Fatal(err)
	}
	if ok, err := st.Step(); !ok || err != nil {
		t.Fatal(ok, err)
	}
	got := []Value{st.Column(0), st.Column(1), st.Column(2), st.Column(3)}
	if got[0] != int64(7) || got[1] != "A" || got[2] != "B" || !bytes.Equal(got[3].([]byte), []byte("C")) {
		t.Fatalf("got %v", got)
	}
	if st.ColumnName(1) != ":a" || st.ColumnCount() != 4 {
		t.Fatalf("ColumnName/Count = %q %d", st.ColumnName(1), st.ColumnCount())
	}
	if err := st.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := st.ClearBindings(); err != nil {
		t.Fatal(err)
	}
	st.Step()
	if st.Column(0) != nil {
		t.Fatal("ClearBindings kept a value")
	}
	// Exec with named and positional arguments.
	mustExec(t, c, "CREATE TABLE n(a, b)")
	mustExec(t, c, "INSERT INTO n VALUES (:x, ?2)", Named{"x", "X"}, int64(2))
	mustExec(t, c, "INSERT INTO n VALUES (?, ?); INSERT INTO n VALUES (?, ?)", 1, 2, 3, 4)
	if err := c.Exec("INSERT INTO n VALUES (?, ?)", 1); err == nil {
		t.Fatal("Exec with too few args succeeded")
	}
	if err := c.Exec("INSERT INTO n VALUES (?, ?)", 1, 2, 3); err == nil {
		t.Fatal("Exec with too many args succeeded")
	}
	if err := c.Exec("INSERT INTO n VALUES (?, ?)", Named{"nope", 1}, 1, 2); err == nil {
		t.Fatal("Exec with an unused named arg succeeded")
	}
	// The failing calls above ran nothing.
	if got := query(t, c, "SELECT count(*) FROM n")[0][0]; got != int64(3) {
		t.Fatalf("count = %v", got)
	}
}

func TestPrepareTail(t *testing.T) {
	c := openT(t, "p.db", OpenOptions{})
	sql := "  -- leading comment\n SELECT 1; ;; SELECT 'a;b' /* c */ ;  -- trailing\n  "
	st, tail, err := c.Prepare(sql)
	if err != nil || st == nil {
		t.Fatal(st, err)
	}
	if !strings.Contains(st.SQL(), "SELECT 1") || strings.Contains(st.SQL(), "'a;b'") {
		t.Fatalf("SQL() = %q", st.SQL())
	}
	if !st.ReadOnly() {
		t.Fatal("SELECT not ReadOnly")
	}
	st.Close()
	if tail != " ;; SELECT 'a;b' /* c */ ;  -- trailing\n  " {
		t.Fatalf("tail = %q", tail)
	}
	st, tail, err = c.Prepare(tail)
	if err != nil || st == nil {
		t.Fatal(st, err)
	}
	if ok, _ := st.Step(); !ok || st.Column(0) != "a;b" {
		t.Fatalf("second statement: %v", st.Column(0))
	}
	st.Close()
	st, tail, err = c.Prepare(tail)
	if st != nil || err != nil || strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(tail), "-- trailing")) != "" {
		t.Fatalf("rest: %v %q %v", st, tail, err)
	}
	for _, empty := range []string{"", "   ", "-- only a comment", "/* x */ ; ;"} {
		st, _, err := c.Prepare(empty)
		if st != nil || err != nil {
			t.Fatalf("Prepare(%q) = %v, %v", empty, st, err)
		}
	}
	if _, _, err := c.Prepare("SELECT 1\x00; DROP TABLE x"); err == nil {
		t.Fatal("NUL byte accepted")
	}
	mustExec(t, c, "CREATE TABLE m(x); INSERT INTO m VALUES (1); -- c\n INSERT INTO m VALUES (2);")
	if got := query(t, c, "SELECT count(*) FROM m")[0][0]; got != int64(2) {
		t.Fatalf("multi-statement Exec: %v", got)
	}
	st, _, _ = c.Prepare("INSERT INTO m VALUES (3)")
	if st.ReadOnly() {
		t.Fatal("INSERT ReadOnly")
	}
	st.Close()
}

func TestErrors(t *testing.T) {
	c := openT(t, "e.db", OpenOptions{})
	_, _, err := c.Prepare("SELEC 1")
	var se *Error
	if !errors.As(err, &se) || se.Code != 1 || !strings.Contains(se.Error(), `near "SELEC": syntax error`) {
		t.Fatalf("syntax error: %#v", err)
	}
	mustExec(t, c, "CREATE TABLE u(id INTEGER PRIMARY KEY, v UNIQUE NOT NULL)")
	mustExec(t, c, "INSERT INTO u VALUES (1, 'a')")
	err = c.Exec("INSERT INTO u VALUES (2, 'a')")
	if !errors.Is(err, ErrConstraint) || errors.Is(err, ErrBusy) {
		t.Fatalf("unique: %v", err)
	}
	errors.As(err, &se)
	if se.ExtendedCode != 2067 /* SQLITE_CONSTRAINT_UNIQUE */ || se.Msg != "UNIQUE constraint failed: u.v" {
		t.Fatalf("unique: %#v", se)
	}
	if !errors.Is(err, &Error{Code: 19, ExtendedCode: 2067}) || errors.Is(err, &Error{Code: 19, ExtendedCode: 1299}) {
		t.Fatal("extended-code matching")
	}
	err = c.Exec("INSERT INTO u VALUES (3, NULL)")
	if errors.As(err, &se); se == nil || se.ExtendedCode != 1299 /* NOTNULL */ {
		t.Fatalf("not null: %v", err)
	}
	// Locked: DROP TABLE while a statement of the same connection reads it.
	mustExec(t, c, "CREATE TABLE l(x); INSERT INTO l VALUES (1), (2)")
	rd, _, _ := c.Prepare("SELECT x FROM l")
	if ok, err := rd.Step(); !ok || err != nil {
		t.Fatal(ok, err)
	}
	err = c.Exec("DROP TABLE l")
	if !errors.Is(err, ErrLocked) || errors.Is(err, ErrBusy) {
		t.Fatalf("locked: %v", err)
	}
	rd.Close()
	mustExec(t, c, "DROP TABLE l")

	// Busy: a second connection holds the write lock.
	path := filepath.Join(t.TempDir(), "busy.db")
	a, err := Open(path, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(path, OpenOptions{BusyTimeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	mustExec(t, a, "CREATE TABLE t(x)")
	mustExec(t, a, "BEGIN IMMEDIATE; INSERT INTO t VALUES (1)")
	start := time.Now()
	err = b.Exec("BEGIN IMMEDIATE")
	if !errors.Is(err, ErrBusy) || errors.Is(err, ErrLocked) {
		t.Fatalf("busy: %v", err)
	}
	if time.Since(start) < 15*time.Millisecond {
		t.Fatal("busy timeout not honoured")
	}
	errors.As(err, &se)
	if se.Msg != "database is locked" {
		t.Fatalf("busy msg %q", se.Msg)
	}
	mustExec(t, a, "COMMIT")
	mustExec(t, b, "BEGIN IMMEDIATE; COMMIT")
}

func TestCloseFinalizesEverything(t *testing.T) {
	c, err := Open(filepath.Join(t.TempDir(), "c.db"), OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, c, "CREATE TABLE t(x); INSERT INTO t VALUES (1), (2)")
	st, _, _ := c.Prepare("SELECT x FROM t")
	st.Step() // left in the middle of a result set
	st2, _, _ := c.Prepare("SELECT 1")
	s, err := c.CreateSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close with open statements: %v", err)
	}
	// Everything left behind is inert.
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := st2.Step(); err == nil {
		t.Fatal("Step after Conn.Close succeeded")
	}
	s.Close()
	if _, err := s.Changeset(); err == nil {
		t.Fatal("Changeset after Close succeeded")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Exec("SELECT 1"); err == nil {
		t.Fatal("Exec after Close succeeded")
	}
	c.Interrupt() // no-op, no crash
}

func TestInterrupt(t *testing.T) {
	c := openT(t, "i.db", OpenOptions{})
	st, _, err := c.Prepare("WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM r) SELECT count(*) FROM r")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
				c.Interrupt()
			}
		}
	}()
	start := time.Now()
	_, err = st.Step()
	close(done)
	wg.Wait()
	if !errors.Is(err, ErrInterrupt) {
		t.Fatalf("Step: %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatal("interrupt took too long")
	}
	// The connection is usable afterwards.
	st.Reset()
	if got := query(t, c, "SELECT 1")[0][0]; got != int64(1) {
		t.Fatal(got)
	}
}

func TestTriggersDisabled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trg.db")
	a, err := Open(path, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	mustExec(t, a, "CREATE TABLE t(x); CREATE TABLE log(x); CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO log VALUES (new.x); END")
	mustExec(t, a, "INSERT INTO t VALUES (1)")
	b, err := Open(path, OpenOptions{DisableTriggers: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	mustExec(t, b, "INSERT INTO t VALUES (2)")
	if got := query(t, a, "SELECT x FROM log"); len(got) != 1 || got[0][0] != int64(1) {
		t.Fatalf("log = %v", got)
	}
}

func TestChangesCounters(t *testing.T) {
	c := openT(t, "n.db", OpenOptions{})
	mustExec(t, c, "CREATE TABLE t(id INTEGER PRIMARY KEY, x)")
	mustExec(t, c, "INSERT INTO t(x) VALUES (1), (2), (3)")
	if c.Changes() != 3 || c.LastInsertRowID() != 3 {
		t.Fatalf("Changes %d LastInsertRowID %d", c.Changes(), c.LastInsertRowID())
	}
	mustExec(t, c, "UPDATE t SET x = 0 WHERE id < 3")
	if c.Changes() != 2 || c.TotalChanges() != 5 {
		t.Fatalf("Changes %d TotalChanges %d", c.Changes(), c.TotalChanges())
	}
}

func TestColumnMetadata(t *testing.T) {
	c := openT(t, "m.db", OpenOptions{})
	mustExec(t, c, "CREATE TABLE d(a INTEGER, b VARCHAR(10), c)")
	st, _, err := c.Prepare("SELECT a, b AS bee, c, 1 + 1 FROM d")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	want := [][2]string{{"a", "INTEGER"}, {"bee", "VARCHAR(10)"}, {"c", ""}, {"1 + 1", ""}}
	if st.ColumnCount() != len(want) {
		t.Fatal(st.ColumnCount())
	}
	for i, w := range want {
		if st.ColumnName(i) != w[0] || st.ColumnDeclType(i) != w[1] {
			t.Errorf("column %d: %q %q, want %q", i, st.ColumnName(i), st.ColumnDeclType(i), w)
		}
	}
	if st.BindCount() != 0 || !st.ReadOnly() {
		t.Fatal("BindCount/ReadOnly")
	}
}

// TestTrackWALFrames: with TrackWALFrames, WALFrames is the WAL's frame count after each commit,
// SQLite's automatic checkpoint no longer runs, and a checkpoint that copied everything lets
// the next commit start the WAL again.
func TestTrackWALFrames(t *testing.T) {
	c := openT(t, "wal.db", OpenOptions{})
	if err := c.TrackWALFrames(); err != nil {
		t.Fatal(err)
	}
	if n := c.WALFrames(); n != 0 {
		t.Fatalf("%d frames before any commit", n)
	}
	mustExec(t, c, "CREATE TABLE t(b BLOB)")
	first := c.WALFrames()
	if first < 1 {
		t.Fatalf("%d frames after a commit", first)
	}
	// 8 MiB in 64 KiB rows: ~2,100 frames, beyond SQLite's default autocheckpoint of 1,000,
	// which would have started the WAL again.
	prev := first
	for range 128 {
		mustExec(t, c, "INSERT INTO t VALUES(randomblob(65536))")
		n := c.WALFrames()
		if n <= prev {
			t.Fatalf("WAL frames went from %d to %d: was it checkpointed?", prev, n)
		}
		prev = n
	}
	if prev < 2000 {
		t.Fatalf("%d frames after 8 MiB of rows", prev)
	}
	mustExec(t, c, "PRAGMA wal_checkpoint(PASSIVE)")
	mustExec(t, c, "INSERT INTO t VALUES(1)")
	if n := c.WALFrames(); n >= prev || n < 1 {
		t.Fatalf("%d frames after a complete checkpoint and a commit (before: %d)", n, prev)
	}
}
