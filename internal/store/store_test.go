package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/sqlite"
)

const testDB = "app"

func mustExec(t testing.TB, s *Store, sql string, args ...sqlite.Value) Result {
	t.Helper()
	res, err := s.Exec(context.Background(), testDB, Request{SQL: sql, Args: args})
	if err != nil {
		t.Fatalf("Exec(%q): %v", sql, err)
	}
	if res.Err != nil {
		t.Fatalf("Exec(%q): statement error %v", sql, res.Err)
	}
	return res
}

func queryRows(t testing.TB, s *Store, sql string, args ...sqlite.Value) [][]sqlite.Value {
	t.Helper()
	rows, err := s.Query(context.Background(), testDB, sql, args)
	if err != nil {
		t.Fatalf("Query(%q): %v", sql, err)
	}
	defer rows.Close()
	var out [][]sqlite.Value
	for {
		dst := make([]sqlite.Value, len(rows.Columns))
		ok, err := rows.Next(dst)
		if err != nil {
			t.Fatalf("Query(%q): Next: %v", sql, err)
		}
		if !ok {
			return out
		}
		out = append(out, dst)
	}
}

// internalInt reads one number from the database testDB of s on a connection of its own: the
// store's queries may not name its own _tandem_ tables.
func internalInt(t testing.TB, s *Store, sql string) int64 {
	t.Helper()
	c, err := sqlite.Open(filepath.Join(s.dbDir, testDB+".sqlite"), sqlite.OpenOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rows, err := queryAll(c, sql)
	if err != nil || len(rows) != 1 || len(rows[0]) != 1 {
		t.Fatalf("%s: %v, %v", sql, rows, err)
	}
	v, _ := rows[0][0].(int64)
	return v
}

func queryInt(t testing.TB, s *Store, sql string, args ...sqlite.Value) int64 {
	t.Helper()
	rows := queryRows(t, s, sql, args...)
	if len(rows) != 1 || len(rows[0]) != 1 {
		t.Fatalf("Query(%q): want one value, got %v", sql, rows)
	}
	v, _ := rows[0][0].(int64)
	return v
}

func TestExecReplicates(t *testing.T) {
	f := newCluster(t, 3, nil)
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	res := mustExec(t, s, "INSERT INTO t(v) VALUES(?)", "hello")
	if res.RowsAffected != 1 || res.LastInsertID != 1 || res.Index == 0 {
		t.Fatalf("result %+v", res)
	}
	f.sync()
	for i, st := range f.stores {
		if got := queryRows(t, st, "SELECT id, v FROM t"); len(got) != 1 || got[0][1] != "hello" {
			t.Fatalf("store %d: rows %v", i, got)
		}
		if got := st.Databases(); !slices.Equal(got, []string{testDB}) {
			t.Fatalf("store %d: Databases %v", i, got)
		}
	}
	f.requireSameContent(testDB)
	// Reads through Exec return rows and propose nothing.
	before := f.entries()
	res = mustExec(t, s, "SELECT v FROM t WHERE id = ?", int64(1))
	if len(res.Rows) != 1 || res.Rows[0][0] != "hello" || res.Columns[0] != "v" {
		t.Fatalf("read through Exec: %+v", res)
	}
	if after := f.entries(); len(after) != len(before) {
		t.Fatalf("a read proposed an entry")
	}
	if res.Index != s.AppliedIndex() {
		t.Fatalf("read index %d, applied %d", res.Index, s.AppliedIndex())
	}
}

func TestBatchWithFailingRequest(t *testing.T) {
	f := newCluster(t, 3, nil)
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT UNIQUE)")
	mustExec(t, s, "INSERT INTO t(v) VALUES('taken')")

	release := f.gate()
	// A first request occupies the writer (blocked in LeaderReady) while the batch queues up.
	blocker := make(chan error, 1)
	go func() {
		_, err := s.Exec(context.Background(), testDB, Request{SQL: "INSERT INTO t(v) VALUES('first')"})
		blocker <- err
	}()
	f.waitBlocked(1)
	sqls := []string{
		"INSERT INTO t(v) VALUES('a')",
		"INSERT INTO t(v) VALUES('b')",
		"INSERT INTO t(v) VALUES('taken')", // UNIQUE violation
		"INSERT INTO t(v) VALUES('c'); INSERT INTO nosuch VALUES(1)",
		"INSERT INTO t(v) VALUES('d')",
	}
	results := make([]Result, len(sqls))
	errs := make([]error, len(sqls))
	var wg sync.WaitGroup
	db, _ := s.database(testDB, false)
	for i, q := range sqls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = s.Exec(context.Background(), testDB, Request{SQL: q})
		}()
		for len(db.queue) < i+1 { // keep the queue order equal to sqls
			time.Sleep(time.Millisecond)
		}
	}
	entriesBefore := len(f.entries())
	release()
	wg.Wait()
	if err := <-blocker; err != nil {
		t.Fatal(err)
	}
	for i := range sqls {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
	}
	for _, i := range []int{0, 1, 4} {
		if results[i].Err != nil || results[i].RowsAffected != 1 {
			t.Fatalf("request %d: %+v", i, results[i])
		}
	}
	if e := results[2].Err; e == nil || !errors.Is(e, sqlite.ErrConstraint) || !strings.Contains(e.Msg, "UNIQUE") {
		t.Fatalf("request 2: want UNIQUE constraint error, got %+v", results[2])
	}
	if e := results[3].Err; e == nil || !strings.Contains(e.Msg, "no such table: nosuch") {
		t.Fatalf("request 3: want 'no such table', got %+v", results[3])
	}
	if n := len(f.entries()) - entriesBefore; n != 2 {
		t.Fatalf("want 2 entries (blocker, batch), got %d", n)
	}
	if results[0].Index != results[4].Index || results[0].Index == 0 {
		t.Fatalf("batch shares one entry: %d %d", results[0].Index, results[4].Index)
	}
	f.sync()
	for i, st := range f.stores {
		got := queryRows(t, st, "SELECT v FROM t ORDER BY v")
		want := "[[a] [b] [d] [first] [taken]]"
		if fmt.Sprint(got) != want {
			t.Fatalf("store %d: %v, want %s", i, got, want)
		}
	}
	f.requireSameContent(testDB)
}

func TestConcurrentWriters(t *testing.T) {
	f := newCluster(t, 2, nil)
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(id INTEGER PRIMARY KEY, w INTEGER, n INTEGER)")
	const writers, each = 16, 40
	var wg sync.WaitGroup
	var mu sync.Mutex
	ids := map[int64]bool{}
	errc := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < each; n++ {
				res, err := s.Exec(context.Background(), testDB, Request{
					SQL: "INSERT INTO t(w, n) VALUES(?, ?)", Args: []sqlite.Value{int64(w), int64(n)}})
				if err == nil && res.Err != nil {
					err = res.Err
				}
				if err != nil {
					errc <- err
					return
				}
				if res.RowsAffected != 1 {
					errc <- fmt.Errorf("rows affected %d", res.RowsAffected)
					return
				}
				mu.Lock()
				if ids[res.LastInsertID] {
					errc <- fmt.Errorf("id %d returned twice", res.LastInsertID)
				}
				ids[res.LastInsertID] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err) // includes any SQLITE_BUSY / "database is locked"
	}
	f.sync()
	for i, st := range f.stores {
		if n := queryInt(t, st, "SELECT count(*) FROM t"); n != writers*each {
			t.Fatalf("store %d: %d rows", i, n)
		}
		// Every returned id is the row that request inserted.
		if n := queryInt(t, st, "SELECT count(DISTINCT w*1000+n) FROM t"); n != writers*each {
			t.Fatalf("store %d: %d distinct rows", i, n)
		}
	}
	if len(ids) != writers*each {
		t.Fatalf("%d distinct ids", len(ids))
	}
	t.Logf("%d requests in %d entries", writers*each+1, len(f.entries()))
	f.requireSameContent(testDB)
}

func TestDeduplication(t *testing.T) {
	f := newCluster(t, 2, nil)
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER)")
	req := Request{ClientID: 7, RequestID: 1, SQL: "INSERT INTO t(v) VALUES(random()) RETURNING id, v"}
	r1, err := s.Exec(context.Background(), testDB, req)
	if err != nil || r1.Err != nil {
		t.Fatal(err, r1.Err)
	}
	r2, err := s.Exec(context.Background(), testDB, req)
	if err != nil || r2.Err != nil {
		t.Fatal(err, r2.Err)
	}
	if fmt.Sprint(r1) != fmt.Sprint(r2) {
		t.Fatalf("retry result differs:\n%+v\n%+v", r1, r2)
	}
	if n := queryInt(t, s, "SELECT count(*) FROM t"); n != 1 {
		t.Fatalf("executed %d times", n)
	}
	// A failed request alone changes nothing: no entry, no record (a retry fails the same way).
	bad := Request{ClientID: 7, RequestID: 2, SQL: "INSERT INTO t(id, v) VALUES(1, 0)"}
	r3, err := s.Exec(context.Background(), testDB, bad)
	if err != nil || r3.Err == nil {
		t.Fatalf("want constraint error: %v %+v", err, r3)
	}
	// Same request twice in one batch: executed once, both get the same result.
	release := f.gate()
	go s.Exec(context.Background(), testDB, Request{SQL: "INSERT INTO t(v) VALUES(0)"})
	f.waitBlocked(1)
	same := Request{ClientID: 8, RequestID: 1, SQL: "INSERT INTO t(v) VALUES(42)"}
	var wg sync.WaitGroup
	res := make([]Result, 2)
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			res[i], err = s.Exec(context.Background(), testDB, same)
			if err != nil {
				t.Error(err)
			}
		}()
	}
	db, _ := s.database(testDB, false)
	for len(db.queue) < 2 {
		time.Sleep(time.Millisecond)
	}
	release()
	wg.Wait()
	if fmt.Sprint(res[0]) != fmt.Sprint(res[1]) {
		t.Fatalf("duplicate in batch: %+v vs %+v", res[0], res[1])
	}
	if n := queryInt(t, s, "SELECT count(*) FROM t WHERE v = 42"); n != 1 {
		t.Fatalf("executed %d times", n)
	}
	f.requireSameContent(testDB)
	// The follower knows the records too (a new leader would answer retries).
	if n := internalInt(t, f.stores[1], "SELECT count(*) FROM _tandem_requests"); n != 2 {
		t.Fatalf("follower has %d request records", n)
	}
}

func TestExecTermMismatchSkipped(t *testing.T) {
	f := newCluster(t, 3, nil)
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(v)")
	f.mu.Lock()
	f.termHack = func(e *Entry) { e.Term++ } // appended in a later term than executed
	f.mu.Unlock()
	_, err := s.Exec(context.Background(), testDB, Request{SQL: "INSERT INTO t VALUES(1)"})
	if !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("want ErrOutcomeUnknown, got %v", err)
	}
	f.mu.Lock()
	f.termHack = nil
	f.mu.Unlock()
	f.sync()
	last := uint64(len(f.entries()))
	for i, st := range f.stores {
		if n := queryInt(t, st, "SELECT count(*) FROM t"); n != 0 {
			t.Fatalf("store %d applied a stale command", i)
		}
		if st.AppliedIndex() != last || f.err(i) != nil {
			t.Fatalf("store %d: applied %d of %d, err %v", i, st.AppliedIndex(), last, f.err(i))
		}
	}
	mustExec(t, s, "INSERT INTO t VALUES(2)")
	f.requireSameContent(testDB)
}

func TestStaleBaseSkipped(t *testing.T) {
	// Two commands executed on the same state: only the first applied takes effect.
	f := newCluster(t, 2, nil)
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(k PRIMARY KEY, v)")
	mustExec(t, s, "INSERT INTO t VALUES('a', 1)")
	ents := f.entries()
	last := ents[len(ents)-1]
	cmd, err := decodeCommand(last.Data)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Seq += 1000 // a copy of the same effects, executed on the same base
	f.appendEntry(last.Term, encodeCommand(nil, cmd))
	f.sync()
	for i := range f.stores {
		if err := f.err(i); err != nil {
			t.Fatalf("store %d: %v", i, err)
		}
	}
	f.requireSameContent(testDB)
}

func TestDivergenceStops(t *testing.T) {
	f := newCluster(t, 3, nil)
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	mustExec(t, s, "INSERT INTO t VALUES(1, 'x')")
	f.sync()
	// Change the row behind follower 1's back.
	c, err := sqlite.Open(filepath.Join(f.dirs[1], "db", testDB+".sqlite"), sqlite.OpenOptions{BusyTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Exec("UPDATE t SET v = 'tampered' WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	mustExec(t, s, "UPDATE t SET v = 'y' WHERE id = 1")
	f.sync()
	err = f.err(1)
	if !errors.Is(err, ErrDiverged) {
		t.Fatalf("follower: want ErrDiverged, got %v", err)
	}
	if !strings.Contains(err.Error(), `"app"`) || !errors.Is(err, sqlite.ErrConflict) {
		t.Fatalf("divergence error lacks detail: %v", err)
	}
	if !errors.Is(f.stores[1].Diverged(), ErrDiverged) {
		t.Fatal("Diverged() is nil")
	}
	if f.err(0) != nil || f.err(2) != nil {
		t.Fatalf("healthy stores failed: %v %v", f.err(0), f.err(2))
	}
	// Further applies are refused, and so are waits and reads.
	mustExec(t, s, "INSERT INTO t VALUES(2, 'z')")
	f.sync()
	if err := f.stores[1].Apply(f.entries()); !errors.Is(err, ErrDiverged) {
		t.Fatalf("Apply after divergence: %v", err)
	}
	if err := f.stores[1].WaitApplied(context.Background(), 1<<40); !errors.Is(err, ErrDiverged) {
		t.Fatalf("WaitApplied after divergence: %v", err)
	}
	if _, err := f.stores[1].Query(context.Background(), testDB, "SELECT 1", nil); !errors.Is(err, ErrDiverged) {
		t.Fatalf("Query after divergence: %v", err)
	}
	if n := queryInt(t, f.stores[2], "SELECT count(*) FROM t"); n != 2 {
		t.Fatalf("healthy follower: %d rows", n)
	}
}

func TestRestartReplaysIdempotently(t *testing.T) {
	f := newCluster(t, 2, nil)
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(id INTEGER PRIMARY KEY AUTOINCREMENT, v)")
	for i := 0; i < 5; i++ {
		mustExec(t, s, "INSERT INTO t(v) VALUES(?)", int64(i))
	}
	mustExec(t, s, "DELETE FROM t WHERE v = 4") // sqlite_sequence stays at 5
	f.appendEntry(1, nil)
	f.sync()
	want := f.stores[1].AppliedIndex()
	wantHash := f.hashes(testDB)[1]

	// Restart the follower: it reports the applied index and replays the log harmlessly.
	old1 := f.stores[1]
	f.replace(1, nil)
	if err := old1.Close(); err != nil {
		t.Fatal(err)
	}
	s1 := f.open(1)
	if got := s1.AppliedIndex(); got+1 < want || got > want { // the last entry was empty
		t.Fatalf("applied after restart %d, want %d", got, want)
	}
	if err := s1.Apply(f.entries()); err != nil {
		t.Fatalf("replay: %v", err)
	}
	if h, _ := s1.ContentHash(context.Background(), testDB); h != wantHash {
		t.Fatal("content changed by replay")
	}
	f.replace(1, s1)
	// Restart the leader too and keep writing.
	old := f.stores[0]
	f.replace(0, nil)
	old.Close()
	s0 := f.open(0)
	f.replace(0, s0)
	mustExec(t, s0, "INSERT INTO t(v) VALUES('after')")
	f.requireSameContent(testDB)
	if id := queryInt(t, s1, "SELECT max(id) FROM t"); id != 6 {
		t.Fatalf("AUTOINCREMENT after restart: id %d, want 6", id)
	}
}

func TestSnapshotRestore(t *testing.T) {
	f := newCluster(t, 2, nil)
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(id INTEGER PRIMARY KEY AUTOINCREMENT, v)")
	mustExec(t, s, "INSERT INTO t(v) VALUES(randomblob(100)), (datetime('now'))")
	mustExec(t, s, "PRAGMA user_version = 42") // in the content hash: the copy must keep it
	if _, err := s.Exec(context.Background(), "other", Request{SQL: "CREATE TABLE o(x); INSERT INTO o VALUES(1)"}); err != nil {
		t.Fatal(err)
	}
	f.sync()
	snap := t.TempDir()
	if err := s.SaveSnapshot(snap); err != nil {
		t.Fatal(err)
	}
	index := s.AppliedIndex()

	// A fresh store with a stray database that is not in the snapshot.
	dir := t.TempDir()
	fresh, err := Open(Options{Dir: dir, NodeID: 9})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if err := fresh.Apply([]Entry{{Index: 1, Term: 1, Data: encodeCommand(nil, &command{DB: "stray", DDL: []string{"CREATE TABLE x(a)"}, ExecTerm: 1})}}); err != nil {
		t.Fatal(err)
	}
	rt, err := fresh.BeginRead(context.Background(), "stray")
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh.RestoreSnapshot(snap, index); err != nil {
		t.Fatal(err)
	}
	// A read-only transaction open across the restore ends, saying why.
	if _, err := rt.Query(context.Background(), "SELECT 1", nil); !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "snapshot") {
		t.Fatalf("read-only transaction after the restore: %v, want ErrClosed naming the snapshot", err)
	}
	if fresh.AppliedIndex() != index {
		t.Fatalf("applied %d, want %d", fresh.AppliedIndex(), index)
	}
	if got := fresh.Databases(); !slices.Equal(got, []string{testDB, "other"}) {
		t.Fatalf("databases after restore: %v", got)
	}
	for _, db := range []string{testDB, "other"} {
		h1, err1 := s.ContentHash(context.Background(), db)
		h2, err2 := fresh.ContentHash(context.Background(), db)
		if err1 != nil || err2 != nil || h1 != h2 {
			t.Fatalf("%s: hash %s vs %s (%v %v)", db, h1, h2, err1, err2)
		}
	}
	// The restored store follows the log from there on, and survives a restart.
	mustExec(t, s, "INSERT INTO t(v) VALUES('later')")
	f.sync()
	if err := fresh.Apply(f.entries()); err != nil {
		t.Fatal(err)
	}
	h1, _ := s.ContentHash(context.Background(), testDB)
	h2, _ := fresh.ContentHash(context.Background(), testDB)
	if h1 != h2 {
		t.Fatal("hash differs after following the log")
	}
	fresh.Close()
	again, err := Open(Options{Dir: dir, NodeID: 9})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if again.AppliedIndex() < index {
		t.Fatalf("applied after restart %d < snapshot %d", again.AppliedIndex(), index)
	}
	if _, err := os.Stat(filepath.Join(dir, "db", "stray.sqlite")); !os.IsNotExist(err) {
		t.Fatalf("stray database survived the restore: %v", err)
	}
}

// TestBackgroundCheckpoint: once a commit leaves CheckpointFrames more frames in the WAL than
// the last checkpoint saw, a checkpoint runs on the database's own goroutine (not in the
// COMMIT) and copies the WAL's frames; below that, none runs.
func TestBackgroundCheckpoint(t *testing.T) {
	const limit = 400
	f := newCluster(t, 1, func(o *Options) { o.CheckpointFrames = limit })
	s := f.leader()
	mustExec(t, s, "CREATE TABLE big(id INTEGER PRIMARY KEY, b BLOB)")
	// 64 KiB rows: ~20 frames per commit (17 pages of the row, the table's and the store's
	// own pages), so that no commit alone crosses the limit; 10 of them stay well below it.
	for range limit / 40 {
		mustExec(t, s, "INSERT INTO big(b) VALUES(randomblob(64*1024))")
	}
	time.Sleep(50 * time.Millisecond)
	if got := s.Stats().Checkpoints; got != 0 {
		t.Fatalf("%d checkpoints below the limit of %d frames", got, limit)
	}
	for range limit / 10 {
		mustExec(t, s, "INSERT INTO big(b) VALUES(randomblob(64*1024))")
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Checkpoints == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no background checkpoint after %d frames", 3*limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := s.Stats(); st.CheckpointFrames < limit {
		t.Fatalf("checkpoint copied %d frames, want at least %d: %+v", st.CheckpointFrames, limit, st)
	}
}

// TestInlineCheckpoint: a commit that grows the WAL by inlineCheckpointFactor times
// CheckpointFrames checkpoints on the committing connection before the write is answered.
func TestInlineCheckpoint(t *testing.T) {
	const limit = 100
	f := newCluster(t, 1, func(o *Options) { o.CheckpointFrames = limit })
	s := f.leader()
	mustExec(t, s, "CREATE TABLE big(id INTEGER PRIMARY KEY, b BLOB)")
	before := s.Stats().Checkpoints
	// 4 MiB: ~1,000 frames, more than inlineCheckpointFactor*limit.
	mustExec(t, s, "INSERT INTO big(b) VALUES(randomblob(4*1024*1024))")
	if st := s.Stats(); st.Checkpoints == before || st.CheckpointFrames < inlineCheckpointFactor*limit {
		t.Fatalf("no checkpoint of the large commit when it was answered: %+v", st)
	}
}

// TestWriterStatementCache: requests reuse prepared statements by their text; a schema change
// in between makes SQLite prepare them again, and a statement that failed is reusable.
func TestWriterStatementCache(t *testing.T) {
	f := newCluster(t, 3, nil)
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
	const sel = "SELECT * FROM t ORDER BY id"
	const ins = "INSERT INTO t(id, v) VALUES(?, ?)"
	mustExec(t, s, ins, int64(1), "a")
	if res := mustExec(t, s, sel); len(res.Columns) != 2 || len(res.Rows) != 1 {
		t.Fatalf("before ALTER: %+v", res)
	}
	// A failing run of the cached INSERT gives its own error and leaves the statement usable.
	res, err := s.Exec(context.Background(), testDB, Request{SQL: ins, Args: []sqlite.Value{int64(1), "dup"}})
	if err != nil || res.Err == nil || !strings.Contains(res.Err.Error(), "UNIQUE") {
		t.Fatalf("duplicate id: res %+v err %v", res, err)
	}
	res, err = s.Exec(context.Background(), testDB, Request{SQL: ins, Args: []sqlite.Value{int64(2), nil}})
	if err != nil || res.Err == nil || !strings.Contains(res.Err.Error(), "NOT NULL") {
		t.Fatalf("NULL v (bindings must not leak from the previous run): res %+v err %v", res, err)
	}
	mustExec(t, s, ins, int64(2), "b")
	mustExec(t, s, "ALTER TABLE t ADD COLUMN w INTEGER DEFAULT 7")
	res = mustExec(t, s, sel)
	if len(res.Columns) != 3 || res.Columns[2] != "w" || len(res.Rows) != 2 || res.Rows[1][2] != int64(7) {
		t.Fatalf("after ALTER the cached SELECT still sees the old table: %+v", res)
	}
	mustExec(t, s, ins, int64(3), "c")
	f.sync()
	f.requireSameContent(testDB)
	if n := queryInt(t, f.stores[2], "SELECT count(*) FROM t WHERE w = 7"); n != 3 {
		t.Fatalf("follower: %d rows with w = 7, want 3", n)
	}
}

// TestReadStatementCache: reads reuse prepared statements per read connection; after a
// schema change the same text returns the new columns, and a failed bind leaves no trace.
func TestReadStatementCache(t *testing.T) {
	f := newCluster(t, 1, nil)
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	mustExec(t, s, "INSERT INTO t(v) VALUES('a'), ('b')")
	const sel = "SELECT * FROM t WHERE id >= ? ORDER BY id"
	for range 3 { // the same text, prepared once
		if got := queryRows(t, s, sel, int64(1)); len(got) != 2 || len(got[0]) != 2 {
			t.Fatalf("rows %v", got)
		}
	}
	if _, err := s.Query(context.Background(), testDB, sel, []sqlite.Value{int64(1), int64(2)}); err == nil {
		t.Fatal("two arguments for one parameter were accepted")
	}
	mustExec(t, s, "ALTER TABLE t ADD COLUMN w INTEGER DEFAULT 5")
	rows, err := s.Query(context.Background(), testDB, sel, []sqlite.Value{int64(2)})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows.Columns) != 3 || rows.Columns[2] != "w" {
		t.Fatalf("columns after ADD COLUMN: %v", rows.Columns)
	}
	dst := make([]sqlite.Value, 3)
	ok, err := rows.Next(dst)
	if err != nil || !ok || dst[1] != "b" || dst[2] != int64(5) {
		t.Fatalf("row %v %v %v", dst, ok, err)
	}
	if ok, err := rows.Next(dst); ok || err != nil {
		t.Fatalf("a second row: %v %v", ok, err)
	}
	rows.Close()
	// An empty result still reports its columns.
	rows, err = s.Query(context.Background(), testDB, sel, []sqlite.Value{int64(99)})
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	if len(rows.Columns) != 3 {
		t.Fatalf("columns of an empty result: %v", rows.Columns)
	}
	if ok, err := rows.Next(dst); ok || err != nil {
		t.Fatalf("empty result gave a row: %v %v", ok, err)
	}
}

// The writer's connection serves every client: a request that inserts nothing reports no
// insert id, not the one of an earlier request (another client's, or from another batch);
// inside an interactive transaction the id carries over between statements, as on a
// connection of its own.
func TestLastInsertIDIsTheRequestsOwn(t *testing.T) {
	f := newCluster(t, 1, nil)
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
	if res := mustExec(t, s, "INSERT INTO t(v) VALUES('a')"); res.LastInsertID != 1 {
		t.Fatalf("insert: last insert id %d, want 1", res.LastInsertID)
	}
	for _, q := range []string{"UPDATE t SET v = 'b' WHERE id = 99", "DELETE FROM t WHERE id = 99", "CREATE TABLE IF NOT EXISTS t(x)", "UPDATE t SET v = 'c'"} {
		if res := mustExec(t, s, q); res.LastInsertID != 0 {
			t.Errorf("%s: last insert id %d, want 0 (nothing inserted)", q, res.LastInsertID)
		}
	}
	ctx := context.Background()
	tx, err := s.Begin(ctx, testDB, 1)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := tx.Exec(ctx, "UPDATE t SET v = 'd'", nil); err != nil || res.LastInsertID != 0 {
		t.Fatalf("first statement of a transaction: %v, last insert id %d, want 0", err, res.LastInsertID)
	}
	if res, err := tx.Exec(ctx, "INSERT INTO t(v) VALUES('e')", nil); err != nil || res.LastInsertID != 2 {
		t.Fatalf("insert in a transaction: %v, last insert id %d, want 2", err, res.LastInsertID)
	}
	if res, err := tx.Exec(ctx, "UPDATE t SET v = 'f' WHERE id = 1", nil); err != nil || res.LastInsertID != 2 {
		t.Fatalf("after an insert in the same transaction: %v, last insert id %d, want 2", err, res.LastInsertID)
	}
	if _, err := tx.Commit(ctx, 1); err != nil {
		t.Fatal(err)
	}
}

// A write that would make a value or row too large to read back through the protocol fails
// with SQLite's own error, and the writer carries on.
func TestValueSizeLimit(t *testing.T) {
	f := newCluster(t, 1, nil)
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
	res, err := s.Exec(context.Background(), testDB, Request{SQL: fmt.Sprintf("INSERT INTO t(v) VALUES(zeroblob(%d))", MaxValueBytes+1)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Err == nil || !errors.Is(res.Err, sqlite.ErrTooBig) {
		t.Fatalf("value of MaxValueBytes+1: %+v, want SQLITE_TOOBIG", res.Err)
	}
	mustExec(t, s, fmt.Sprintf("INSERT INTO t(v) VALUES(zeroblob(%d))", 1<<20))
	if n := queryInt(t, s, "SELECT count(*) FROM t"); n != 1 {
		t.Fatalf("%d rows, want the 1 within the limit", n)
	}
}

// TestIdleDatabaseWALTruncated: a database that stops being written to is checkpointed and
// its WAL file emptied (SQLite would leave it at its largest size), unless a reader holds it.
func TestIdleDatabaseWALTruncated(t *testing.T) {
	f := newCluster(t, 1, func(o *Options) { o.CheckpointIdle = 50 * time.Millisecond })
	s := f.leader()
	mustExec(t, s, "CREATE TABLE big(id INTEGER PRIMARY KEY, b BLOB)")
	for range 8 {
		mustExec(t, s, "INSERT INTO big(b) VALUES(randomblob(256*1024))")
	}
	wal := filepath.Join(s.dbDir, testDB+".sqlite-wal")
	walSize := func() int64 {
		st, err := os.Stat(wal)
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	if n := walSize(); n < 2<<20 {
		t.Fatalf("WAL of %d bytes after 2 MiB of rows", n)
	}
	// A read-only transaction keeps it: truncating would need it to end.
	rt, err := s.BeginRead(context.Background(), testDB)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if n := walSize(); n == 0 {
		t.Fatal("WAL truncated under an open read transaction")
	}
	rt.End()
	deadline := time.Now().Add(5 * time.Second)
	for walSize() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("WAL still %d bytes after the database stayed idle", walSize())
		}
		time.Sleep(20 * time.Millisecond)
	}
	mustExec(t, s, "INSERT INTO big(b) VALUES(x'01')") // and it is written to again
	if got := queryInt(t, s, "SELECT count(*) FROM big"); got != 9 {
		t.Fatalf("%d rows after the truncation, want 9", got)
	}
}

// TestReservedNames: a token naming a _tandem_ table or sqlite_dbpage (identifier, quoted
// identifier, or a string literal, which SQLite takes for a name where one is expected) is
// refused in writes and reads; values and names that only contain the prefix are not.
func TestReservedNames(t *testing.T) {
	for _, tc := range []struct {
		sql      string
		reserved bool
	}{
		{"SELECT * FROM _tandem_requests", true},
		{"select * from _TANDEM_applied", true},
		{`SELECT * FROM "_tandem_requests"`, true},
		{"SELECT * FROM [_tandem_requests]", true},
		{"SELECT * FROM `_tandem_requests`", true},
		{"SELECT * FROM '_tandem_requests'", true},
		{"CREATE TABLE _tandem_x(a)", true},
		{"INSERT INTO t VALUES('a_tandem_b')", false},
		{"INSERT INTO my_tandem_t VALUES(1)", false},
		{"SELECT 'it''s _tandem_' FROM t", false},
		{"SELECT 1 -- _tandem_requests\n", false},
		{"SELECT /* _tandem_requests */ 1", false},
		{`SELECT "a""_tandem_" FROM t`, false},
		{"SELECT data FROM sqlite_dbpage WHERE pgno = 2", true},
		{"UPDATE SQLITE_DBPAGE SET data = x'00'", true},
		{"SELECT * FROM dbstat", false},
	} {
		if got := reservedName(tc.sql) != ""; got != tc.reserved {
			t.Errorf("reservedName(%q) = %q, want reserved %v", tc.sql, reservedName(tc.sql), tc.reserved)
		}
	}
	f := newCluster(t, 1, nil)
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(v TEXT)")
	mustExec(t, s, "INSERT INTO t VALUES('a_tandem_b')") // refused before: the text held the prefix
	if got := queryRows(t, s, "SELECT v FROM t WHERE v LIKE '%_tandem_%'"); len(got) != 1 {
		t.Fatalf("rows: %v", got)
	}
	for _, q := range []string{"SELECT * FROM _tandem_requests", "SELECT * FROM '_tandem_applied'",
		"SELECT data FROM sqlite_dbpage WHERE pgno = 1", "UPDATE sqlite_dbpage SET data = data WHERE pgno = 2"} {
		if _, err := s.Query(context.Background(), testDB, q, nil); err == nil || !strings.Contains(err.Error(), "not allowed") && !strings.Contains(err.Error(), "reserved") {
			t.Errorf("%s: %v, want it refused", q, err)
		}
		res, err := s.Exec(context.Background(), testDB, Request{SQL: q})
		if err == nil && (res.Err == nil || !strings.Contains(res.Err.Error(), "not allowed") && !strings.Contains(res.Err.Error(), "reserved")) {
			t.Errorf("%s through Exec: %+v, want it refused", q, res)
		}
	}
}

// TestQueryRefusesTransactionControl: BEGIN or SAVEPOINT sent as a query (SQLite counts them
// as read-only) would leave its pooled read connection inside a transaction, so every later
// read there saw the snapshot of that moment, linearizable ones included.
func TestQueryRefusesTransactionControl(t *testing.T) {
	f := newCluster(t, 1, func(o *Options) { o.ReadPoolSize = 1 })
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(x)")
	for _, q := range []string{"BEGIN", "begin deferred", "SAVEPOINT a"} {
		if r, err := s.Query(context.Background(), testDB, q, nil); err == nil {
			r.Close()
			t.Errorf("%s as a query: accepted", q)
		}
	}
	if n := queryInt(t, s, "SELECT count(*) FROM t"); n != 0 {
		t.Fatalf("%d rows", n)
	}
	mustExec(t, s, "INSERT INTO t VALUES(1)")
	if n := queryInt(t, s, "SELECT count(*) FROM t"); n != 1 {
		t.Fatalf("a read after a write sees %d rows, want 1", n)
	}
}
