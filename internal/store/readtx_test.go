package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/sqlite"
)

// readAll reads every row of r and closes it.
func readAll(t *testing.T, r *Rows) [][]sqlite.Value {
	t.Helper()
	defer r.Close()
	var out [][]sqlite.Value
	for {
		dst := make([]sqlite.Value, len(r.Columns))
		ok, err := r.Next(dst)
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if !ok {
			return out
		}
		out = append(out, dst)
	}
}

func readCount(t *testing.T, rt *ReadTx) int64 {
	t.Helper()
	r, err := rt.Query(context.Background(), "SELECT count(*) FROM t", nil)
	if err != nil {
		t.Fatalf("count in the read transaction: %v", err)
	}
	v, _ := readAll(t, r)[0][0].(int64)
	return v
}

// TestReadTxSnapshot: a read-only transaction sees the state of its start in every query,
// while writes go on (on the leader and, applied, on a follower), and new reads outside it see
// them; it ends on End.
func TestReadTxSnapshot(t *testing.T) {
	f := newCluster(t, 3, nil)
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	mustExec(t, s, "INSERT INTO t(v) VALUES('a'), ('b')")
	ctx := context.Background()
	for _, node := range []*Store{s, f.stores[1]} {
		res := mustExec(t, s, "INSERT INTO t(v) VALUES('c')")
		if err := node.WaitApplied(ctx, res.Index); err != nil {
			t.Fatal(err)
		}
		before := queryInt(t, node, "SELECT count(*) FROM t")
		rt, err := node.BeginRead(ctx, testDB)
		if err != nil {
			t.Fatal(err)
		}
		if rt.Index() < res.Index {
			t.Fatalf("snapshot at index %d, before the write at %d it follows", rt.Index(), res.Index)
		}
		res = mustExec(t, s, "INSERT INTO t(v) VALUES('d')") // not blocked by the transaction
		if err := node.WaitApplied(ctx, res.Index); err != nil {
			t.Fatal(err)
		}
		if got := readCount(t, rt); got != before {
			t.Fatalf("read transaction sees %d rows after a write, want %d (its start)", got, before)
		}
		if got := queryInt(t, node, "SELECT count(*) FROM t"); got != before+1 {
			t.Fatalf("a read outside sees %d rows, want %d", got, before+1)
		}
		rt.End()
		if _, err := rt.Query(ctx, "SELECT 1", nil); !errors.Is(err, ErrTxDone) {
			t.Fatalf("query after End: %v, want ErrTxDone", err)
		}
		rt.End() // a no-op
	}
}

// TestReadTxRefusesWrites: statements that write or that would end the SQLite transaction are
// refused; a failing statement leaves the transaction usable; parameters bind.
func TestReadTxRefusesWrites(t *testing.T) {
	f := newCluster(t, 1, nil)
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	mustExec(t, s, "INSERT INTO t(v) VALUES('a')")
	ctx := context.Background()
	rt, err := s.BeginRead(ctx, testDB)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.End()
	for _, q := range []string{"INSERT INTO t(v) VALUES('x')", "DELETE FROM t", "COMMIT", "BEGIN", "ROLLBACK", "SAVEPOINT a"} {
		if _, err := rt.Query(ctx, q, nil); !errors.Is(err, ErrReadOnlyTx) {
			t.Errorf("%s: %v, want ErrReadOnlyTx", q, err)
		}
	}
	// SQLite counts these as read-only; ATTACH would open any file the node can read.
	for _, q := range []string{"ATTACH DATABASE ':memory:' AS m", "/* x */ attach 'x.db' AS m", "DETACH m"} {
		if _, err := rt.Query(ctx, q, nil); err == nil || !strings.Contains(err.Error(), "is not allowed") {
			t.Errorf("%s in a read-only transaction: %v, want it refused", q, err)
		}
		if _, err := s.Query(ctx, testDB, q, nil); err == nil || !strings.Contains(err.Error(), "is not allowed") {
			t.Errorf("%s as a query: %v, want it refused", q, err)
		}
	}
	var se *sqlite.Error
	if _, err := rt.Query(ctx, "SELECT nope FROM t", nil); !errors.As(err, &se) {
		t.Fatalf("bad column: %v, want SQLite's error", err)
	}
	r, err := rt.Query(ctx, "SELECT v FROM t WHERE id = ?", []sqlite.Value{int64(1)})
	if err != nil {
		t.Fatalf("query after the failures: %v", err)
	}
	if rows := readAll(t, r); len(rows) != 1 || rows[0][0] != "a" || r.Columns[0] != "v" {
		t.Fatalf("query after the failures: %v, columns %v", rows, r.Columns)
	}
	if got := queryInt(t, s, "SELECT count(*) FROM t"); got != 1 {
		t.Fatalf("%d rows, want 1: a refused write ran", got)
	}
}

// TestReadTxLimits: idle transactions end after TxIdleTimeout, at most MaxReadTxs are open,
// and closing the store ends the open ones.
func TestReadTxLimits(t *testing.T) {
	f := newCluster(t, 1, func(o *Options) { o.TxIdleTimeout = 200 * time.Millisecond; o.MaxReadTxs = 2 })
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(id INTEGER PRIMARY KEY)")
	ctx := context.Background()
	a, err := s.BeginRead(ctx, testDB)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.BeginRead(ctx, testDB)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.BeginRead(ctx, testDB); !errors.Is(err, ErrTooManyReadTxs) {
		t.Fatalf("third read transaction: %v, want ErrTooManyReadTxs", err)
	}
	b.End()
	c, err := s.BeginRead(ctx, testDB)
	if err != nil {
		t.Fatalf("after one ended: %v", err)
	}
	// Keep c busy past the idle timeout; a stays idle.
	for range 6 {
		time.Sleep(60 * time.Millisecond)
		r, err := c.Query(ctx, "SELECT count(*) FROM t", nil)
		if err != nil {
			t.Fatalf("busy transaction: %v", err)
		}
		readAll(t, r)
	}
	if _, err := a.Query(ctx, "SELECT 1", nil); !errors.Is(err, ErrTxTimeout) {
		t.Fatalf("idle transaction: %v, want ErrTxTimeout", err)
	}
	if _, err := s.BeginRead(ctx, "nope"); !errors.Is(err, ErrNoSuchDatabase) {
		t.Fatalf("read transaction on a database never written: %v", err)
	}
	f.close()
	if _, err := c.Query(ctx, "SELECT 1", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("after the store closed: %v, want ErrClosed", err)
	}
}

// TestReadTxCursors: the rows of a read-only transaction stream from its snapshot, several
// cursors at once, while writes go on; a cursor left open when the transaction ends fails
// with the reason, and closing it then is safe.
func TestReadTxCursors(t *testing.T) {
	f := newCluster(t, 1, nil)
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	mustExec(t, s, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 1000) INSERT INTO t(v) SELECT 'r' || x FROM c")
	ctx := context.Background()
	rt, err := s.BeginRead(ctx, testDB)
	if err != nil {
		t.Fatal(err)
	}
	a, err := rt.Query(ctx, "SELECT id FROM t ORDER BY id", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := rt.Query(ctx, "SELECT id FROM t ORDER BY id DESC", nil)
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, s, "DELETE FROM t WHERE id > 10") // after both began
	dst := make([]sqlite.Value, 1)
	for i := int64(1); i <= 1000; i++ {
		for _, c := range []struct {
			r    *Rows
			want int64
		}{{a, i}, {b, 1001 - i}} {
			ok, err := c.r.Next(dst)
			if err != nil || !ok || dst[0] != c.want {
				t.Fatalf("row %d: %v %v %v, want %d", i, dst[0], ok, err, c.want)
			}
		}
	}
	if ok, err := a.Next(dst); ok || err != nil {
		t.Fatalf("after the last row: %v %v", ok, err)
	}
	a.Close()
	b.Close()
	open, err := rt.Query(ctx, "SELECT id FROM t", nil)
	if err != nil {
		t.Fatal(err)
	}
	rt.End()
	if ok, err := open.Next(dst); ok || !errors.Is(err, ErrTxDone) {
		t.Fatalf("cursor after End: %v %v, want ErrTxDone", ok, err)
	}
	if err := open.Close(); err != nil {
		t.Fatal(err)
	}
	if got := queryInt(t, s, "SELECT count(*) FROM t"); got != 10 {
		t.Fatalf("%d rows outside the transaction, want 10", got)
	}
}

// countTo counts to n in SQL: a query that runs ~0.25 s per million on the development VM.
func countTo(n int) string {
	return fmt.Sprintf("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT %d) SELECT count(*) FROM c", n)
}

// TestReadTxEndInterrupts: ending a read-only transaction (a snapshot install closing the
// database here) interrupts its running query instead of waiting for it.
func TestReadTxEndInterrupts(t *testing.T) {
	f := newCluster(t, 1, nil)
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(id INTEGER PRIMARY KEY)")
	rt, err := s.BeginRead(context.Background(), testDB)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := rt.Query(context.Background(), countTo(100_000_000), nil)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond) // let it start
	start := time.Now()
	if err := s.closeDatabases(errReplaced); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("closing the database waited %v for the read-only transaction's query", d)
	}
	if err := <-done; err == nil {
		t.Fatal("the query finished as if nothing happened")
	}
}

// TestReadTxLongQueryIsNotIdle: a query that runs longer than the idle timeout completes and
// the transaction stays usable; the timeout counts from the query's end.
func TestReadTxLongQueryIsNotIdle(t *testing.T) {
	f := newCluster(t, 1, func(o *Options) { o.TxIdleTimeout = 100 * time.Millisecond })
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(id INTEGER PRIMARY KEY)")
	ctx := context.Background()
	rt, err := s.BeginRead(ctx, testDB)
	if err != nil {
		t.Fatal(err)
	}
	n := 1_000_000 // ~0.25 s
	if raceEnabled {
		n = 100_000 // ~1.5 s with the race detector
	}
	start := time.Now()
	r, err := rt.Query(ctx, countTo(n), nil)
	if err != nil {
		t.Fatalf("query of %v: %v", time.Since(start), err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Logf("the query took only %v: it hardly outlasted the idle timeout", d)
	}
	// Before, the timeout that fell due during the query ended the transaction right after it.
	time.Sleep(10 * time.Millisecond)
	if rows := readAll(t, r); len(rows) != 1 || rows[0][0] != int64(n) {
		t.Fatalf("rows %v", rows)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := rt.Query(ctx, "SELECT 1", nil); !errors.Is(err, ErrTxTimeout) {
		t.Fatalf("after 300 ms idle: %v, want ErrTxTimeout", err)
	}
}

// slowCount is a query that runs for a while: ~100 ms on the development VM, ~0.5 s with
// the race detector, which slows SQLite's translated C down more than most code.
func slowCount() string {
	n := 400000
	if raceEnabled {
		n = 40000
	}
	return fmt.Sprintf("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < %d) SELECT count(*) FROM n", n)
}

// The connection of an ended read-only transaction serves the next one: with a snapshot of
// its own start, and out of reach of what was aimed at the one before (a second End, an
// open result's context ending), which would otherwise interrupt the next one's queries.
func TestReadTxConnectionReuse(t *testing.T) {
	f := newCluster(t, 1, nil)
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(id INTEGER PRIMARY KEY)")
	mustExec(t, s, "INSERT INTO t VALUES(1), (2), (3)")
	ctx := context.Background()

	a, err := s.BeginRead(ctx, testDB)
	if err != nil {
		t.Fatal(err)
	}
	aConn := a.conn
	// An open result whose context ends only after a has ended.
	rowsCtx, cancelRows := context.WithCancel(ctx)
	defer cancelRows()
	open, err := a.Query(rowsCtx, "SELECT id FROM t", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := readCount(t, a); got != 3 {
		t.Fatalf("a counts %d", got)
	}
	a.End()
	mustExec(t, s, "INSERT INTO t VALUES(4)")

	b, err := s.BeginRead(ctx, testDB)
	if err != nil {
		t.Fatal(err)
	}
	defer b.End()
	if b.conn != aConn {
		t.Fatal("b did not get a's connection: nothing here tests its reuse")
	}
	if got := readCount(t, b); got != 4 {
		t.Fatalf("b counts %d rows, want 4 (a snapshot of its own start)", got)
	}
	for name, aim := range map[string]func(){
		"a ended again":           func() { a.end(ErrClosed) },
		"a's result context ends": cancelRows,
	} {
		done := make(chan error, 1)
		go func() {
			r, err := b.Query(ctx, slowCount(), nil)
			if err == nil {
				dst := make([]sqlite.Value, 1)
				_, err = r.Next(dst)
				r.Close()
			}
			done <- err
		}()
		// Aim at a again and again while b's query runs.
		var err error
	aiming:
		for {
			select {
			case err = <-done:
				break aiming
			case <-time.After(time.Millisecond):
				aim()
			}
		}
		if err != nil {
			t.Fatalf("%s: b's query failed: %v", name, err)
		}
	}
	// The open result of a says a ended.
	dst := make([]sqlite.Value, 1)
	if ok, err := open.Next(dst); ok || !errors.Is(err, ErrTxDone) {
		t.Fatalf("a's result after a ended: %v %v", ok, err)
	}
	if err := open.Close(); err != nil {
		t.Fatal(err)
	}
}
