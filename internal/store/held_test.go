package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

// waitWaiters waits until s has n writers waiting for their proposals.
func waitWaiters(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		got := len(s.waiters)
		s.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d waiters, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// execWaiting runs req in the background and returns once the writer waits for its
// proposal; the channel gets Exec's error.
func execWaiting(t *testing.T, s *Store, req Request) <-chan error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		_, err := s.Exec(context.Background(), testDB, req)
		errc <- err
	}()
	waitWaiters(t, s, 1)
	return errc
}

func TestLeaderCommitsItsHeldTransaction(t *testing.T) {
	f := newCluster(t, 3, nil)
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(k INTEGER PRIMARY KEY, v)")
	before := s.Stats().HeldCommits
	res, err := s.Exec(context.Background(), testDB, Request{ClientID: 1, RequestID: 7, SQL: "INSERT INTO t(v) VALUES('a')"})
	if err != nil || res.Err != nil {
		t.Fatal(err, res.Err)
	}
	if got := s.Stats().HeldCommits - before; got != 1 {
		t.Fatalf("held commits: %d, want 1", got)
	}
	// The commit carried what Apply writes on the followers: the applied index and the
	// request record (a retry gets the first outcome back).
	db, _ := s.database(testDB, false)
	if got := db.applied.Load(); got != res.Index {
		t.Fatalf("database applied index %d, entry %d", got, res.Index)
	}
	again, err := s.Exec(context.Background(), testDB, Request{ClientID: 1, RequestID: 7, SQL: "INSERT INTO t(v) VALUES('a')"})
	if err != nil || again.Index != res.Index {
		t.Fatalf("retry: %+v, %v; first at %d", again, err, res.Index)
	}
	f.sync()
	f.requireSameContent(testDB)
	if n := queryInt(t, f.stores[1], "SELECT count(*) FROM t"); n != 1 {
		t.Fatalf("follower has %d rows", n)
	}
}

func TestHeldWriterYieldsToAnotherLeadersEntry(t *testing.T) {
	// The writer holds its executed transaction (and the write lock) while its proposal is
	// lost; an entry of a new leader for the same database must still be applied: Apply
	// preempts the writer, which rolls back and reports the outcome unknown.
	f := newCluster(t, 1, nil)
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(v)")
	f.setDropping(true)
	errc := execWaiting(t, s, Request{SQL: "INSERT INTO t VALUES(1)"})
	applyNewLeadersEntry(t, f, s)
	select {
	case err := <-errc:
		if !errors.Is(err, ErrOutcomeUnknown) {
			t.Fatalf("want ErrOutcomeUnknown, got %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the held writer was not preempted")
	}
	if n := queryInt(t, s, "SELECT count(*) FROM t"); n != 0 {
		t.Fatal("the rolled-back write left a row")
	}
}

func TestEntryAppliedAfterHeldWriterGaveUp(t *testing.T) {
	// The writer gives its proposal up (leadership changed) after the entry is in the log;
	// the entry still commits, and this node applies it from the changeset like a follower.
	f := newCluster(t, 3, nil)
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(v)")
	f.setPaused(true)
	errc := execWaiting(t, s, Request{ClientID: 3, RequestID: 1, SQL: "INSERT INTO t VALUES(1)"})
	before := s.Stats().HeldCommits
	s.LeaderChanged(1, false)
	if err := <-errc; !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("want ErrOutcomeUnknown, got %v", err)
	}
	f.setPaused(false)
	f.requireHealthy()
	if got := s.Stats().HeldCommits - before; got != 0 {
		t.Fatalf("held commits: %d, want 0", got)
	}
	if n := queryInt(t, s, "SELECT count(*) FROM t"); n != 1 {
		t.Fatalf("%d rows on the old leader, want the committed one", n)
	}
	f.requireSameContent(testDB)
}

// schemaCluster is a 3-store cluster whose leader has table t with index i.
func schemaCluster(t *testing.T) (*fakeCluster, *Store) {
	f := newCluster(t, 3, nil)
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(v)")
	mustExec(t, s, "CREATE INDEX i ON t(v)")
	return f, s
}

func TestApplyConnectionSeesTheWritersSchemaChanges(t *testing.T) {
	// The leader's writer commits schema changes itself (held); the apply connection, which
	// applies the leader's interactive transactions, must not act on the schema it cached
	// before (SQLite checks "already exists" against the cached schema without re-reading it).
	f, s := schemaCluster(t)
	mustTxCommit(t, s, 1, "INSERT INTO t VALUES(1)") // the apply connection caches the schema with i
	mustExec(t, s, "DROP INDEX i")                   // committed by the writer
	mustTxCommit(t, s, 2, "CREATE INDEX i ON t(v)")
	f.requireHealthy()
	f.requireSameContent(testDB)
}

func TestWriterSeesTheApplyConnectionsSchemaChanges(t *testing.T) {
	// The other direction: an interactive transaction's schema change is committed by the
	// apply connection; the writer's next batch must not see the schema it cached before.
	f, s := schemaCluster(t) // the writer caches the schema with i
	mustTxCommit(t, s, 1, "DROP INDEX i")
	res, err := s.Exec(context.Background(), testDB, Request{SQL: "CREATE INDEX i ON t(v)"})
	if err != nil || res.Err != nil {
		t.Fatalf("re-creating the index the transaction dropped: %v %v", err, res.Err)
	}
	f.requireHealthy()
	f.requireSameContent(testDB)
}
