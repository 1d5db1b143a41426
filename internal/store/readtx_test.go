package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/sqlite"
)

func readCount(t *testing.T, rt *ReadTx) int64 {
	t.Helper()
	res, err := rt.Query(context.Background(), "SELECT count(*) FROM t", nil)
	if err != nil {
		t.Fatalf("count in the read transaction: %v", err)
	}
	v, _ := res.Rows[0][0].(int64)
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
	var se *sqlite.Error
	if _, err := rt.Query(ctx, "SELECT nope FROM t", nil); !errors.As(err, &se) {
		t.Fatalf("bad column: %v, want SQLite's error", err)
	}
	res, err := rt.Query(ctx, "SELECT v FROM t WHERE id = ?", []sqlite.Value{int64(1)})
	if err != nil || len(res.Rows) != 1 || res.Rows[0][0] != "a" || res.Columns[0] != "v" {
		t.Fatalf("query after the failures: %+v, %v", res, err)
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
		if _, err := c.Query(ctx, "SELECT count(*) FROM t", nil); err != nil {
			t.Fatalf("busy transaction: %v", err)
		}
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
