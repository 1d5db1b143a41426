package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestLeaderChangeFailsWaiters(t *testing.T) {
	f := newCluster(t, 1, nil)
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(v)")
	f.setDropping(true)
	errc := execWaiting(t, s, Request{SQL: "INSERT INTO t VALUES(1)"})
	s.LeaderChanged(2, false)
	if err := <-errc; !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("want ErrOutcomeUnknown, got %v", err)
	}
	// The writer moved on: with the proposer back, writes work again.
	f.setDropping(false)
	mustExec(t, s, "INSERT INTO t VALUES(2)")
}

func TestCallerContextAfterStart(t *testing.T) {
	f := newCluster(t, 1, func(o *Options) { o.ProposalTimeout = 200 * time.Millisecond })
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(v)")
	f.setDropping(true)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := s.Exec(ctx, testDB, Request{SQL: "INSERT INTO t VALUES(1)"})
	if !errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want ErrOutcomeUnknown wrapping the deadline, got %v", err)
	}
	// After ProposalTimeout the writer gives the lost proposal up and serves the next batch.
	time.Sleep(250 * time.Millisecond)
	f.setDropping(false)
	mustExec(t, s, "INSERT INTO t VALUES(2)")
	if n := queryInt(t, s, "SELECT count(*) FROM t"); n != 1 {
		t.Fatalf("%d rows", n)
	}
}

func TestApplyPreemptsOpenTransaction(t *testing.T) {
	// A deposed leader still holds an interactive transaction when the new leader's entry
	// for the same database arrives: apply takes the write lock, the transaction aborts.
	f := newCluster(t, 1, nil)
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(v)")
	tx, err := s.Begin(context.Background(), testDB, 1)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := tx.Exec(context.Background(), "INSERT INTO t VALUES(1)", nil); err != nil || res.Err != nil {
		t.Fatal(err, res.Err)
	}
	applyNewLeadersEntry(t, f, s)
	if _, err := tx.Exec(context.Background(), "SELECT 1", nil); !errors.Is(err, ErrTxAborted) {
		t.Fatalf("want ErrTxAborted, got %v", err)
	}
	if n := queryInt(t, s, "SELECT count(*) FROM t"); n != 0 {
		t.Fatal("aborted transaction left rows")
	}
}

// applyNewLeadersEntry appends an entry of another leader (term 2) that creates table z in
// the test database, waits until store 0 has applied it and checks that it has: this
// node's own writer, whatever it holds, must not stand in the way.
func applyNewLeadersEntry(t *testing.T, f *fakeCluster, s *Store) {
	t.Helper()
	db, _ := s.database(testDB, false)
	cmd := &command{DB: testDB, Node: 99, ExecTerm: 2, Seq: 1, BaseIndex: db.applied.Load(), DDL: []string{"CREATE TABLE z(a)"}}
	f.appendEntry(2, encodeCommand(nil, cmd))
	f.sync()
	if err := f.err(0); err != nil {
		t.Fatalf("apply: %v", err)
	}
	if n := queryInt(t, s, "SELECT count(*) FROM sqlite_schema WHERE name = 'z'"); n != 1 {
		t.Fatal("new leader's entry not applied")
	}
}

func TestWaitAppliedAndQueryStreaming(t *testing.T) {
	f := newCluster(t, 2, func(o *Options) { o.ReadPoolSize = 2 })
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(v)")
	res := mustExec(t, s, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) INSERT INTO t SELECT i FROM n")
	if res.RowsAffected != 1000 {
		t.Fatalf("rows affected %d", res.RowsAffected)
	}
	follower := f.stores[1]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := follower.WaitApplied(ctx, res.Index); err != nil {
		t.Fatal(err)
	}
	short, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if err := follower.WaitApplied(short, res.Index+100); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitApplied beyond the log: %v", err)
	}
	// Many concurrent streaming readers share a pool of two connections.
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rows, err := follower.Query(ctx, testDB, "SELECT v FROM t ORDER BY v", nil)
			if err != nil {
				t.Error(err)
				return
			}
			defer rows.Close()
			dst := make([]any, 1)
			n := int64(0)
			for {
				ok, err := rows.Next(dst)
				if err != nil {
					t.Error(err)
					return
				}
				if !ok {
					break
				}
				n++
				if dst[0] != n {
					t.Errorf("row %d = %v", n, dst[0])
					return
				}
			}
			if n != 1000 {
				t.Errorf("%d rows", n)
			}
		}()
	}
	wg.Wait()
	if _, err := follower.Query(ctx, testDB, "DELETE FROM t", nil); err == nil {
		t.Fatal("a write through Query")
	}
	if _, err := follower.Query(ctx, testDB, "SELECT 1; SELECT 2", nil); err == nil {
		t.Fatal("two statements through Query")
	}
}

func TestFailoverKeepsRequestOutcomes(t *testing.T) {
	f := newCluster(t, 3, nil)
	old := f.leader()
	mustExec(t, old, "CREATE TABLE t(id INTEGER PRIMARY KEY AUTOINCREMENT, v)")
	req := Request{ClientID: 3, RequestID: 10, SQL: "INSERT INTO t(v) VALUES(random()) RETURNING id, v"}
	first, err := old.Exec(context.Background(), testDB, req)
	if err != nil || first.Err != nil {
		t.Fatal(err, first.Err)
	}
	f.elect(1)
	// The old leader refuses writes; the client retries on the new leader and gets the
	// first outcome, without a second insert.
	if _, err := old.Exec(context.Background(), testDB, req); !errors.Is(err, errFakeNotLeader) {
		t.Fatalf("old leader: %v", err)
	}
	nl := f.leader()
	again, err := nl.Exec(context.Background(), testDB, req)
	if err != nil || fmt.Sprint(again) != fmt.Sprint(first) {
		t.Fatalf("retry on the new leader: %v\n%+v\n%+v", err, again, first)
	}
	res := mustExec(t, nl, "INSERT INTO t(v) VALUES('new leader')")
	if res.LastInsertID != 2 {
		t.Fatalf("AUTOINCREMENT on the new leader: %d", res.LastInsertID)
	}
	f.elect(2)
	mustExec(t, f.leader(), "DELETE FROM t WHERE id = 1")
	f.requireSameContent(testDB)
	if n := queryInt(t, f.stores[0], "SELECT count(*) FROM t"); n != 1 {
		t.Fatalf("%d rows", n)
	}
}

func TestFollowerCreatesNoDatabaseForAWrite(t *testing.T) {
	f := newCluster(t, 2, nil)
	follower := f.stores[1]
	ctx := context.Background()
	if _, err := follower.Exec(ctx, "fresh", Request{SQL: "CREATE TABLE t(x)"}); !errors.Is(err, errFakeNotLeader) {
		t.Fatalf("Exec on a follower: %v, want the proposer's not-leader error", err)
	}
	if _, err := follower.Begin(ctx, "fresh", 1); !errors.Is(err, errFakeNotLeader) {
		t.Fatalf("Begin on a follower: %v, want the proposer's not-leader error", err)
	}
	if dbs := follower.Databases(); len(dbs) != 0 {
		t.Fatalf("the follower opened %v", dbs)
	}
	if _, err := os.Stat(filepath.Join(f.dirs[1], "db", "fresh.sqlite")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("database file on the follower: %v", err)
	}
	// The leader creates it, and the follower gets it by applying the entry.
	mustExec(t, f.leader(), "CREATE TABLE IF NOT EXISTS t(x)") // testDB
	if _, err := f.leader().Exec(ctx, "fresh", Request{SQL: "CREATE TABLE t(x)"}); err != nil {
		t.Fatal(err)
	}
	f.sync()
	if dbs := follower.Databases(); len(dbs) != 2 {
		t.Fatalf("follower databases after apply: %v", dbs)
	}
}
