package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/sqlite"
)

func mustTxExec(t *testing.T, tx *Tx, sql string, args ...sqlite.Value) Result {
	t.Helper()
	res, err := tx.Exec(context.Background(), sql, args)
	if err != nil || res.Err != nil {
		t.Fatalf("Tx.Exec(%q): %v %v", sql, err, res.Err)
	}
	return res
}

// mustTxCommit runs sql in an interactive transaction of client 1 and commits it with
// requestID: its entry is applied by the apply connection, on the leader too.
func mustTxCommit(t *testing.T, s *Store, requestID uint64, sql string) {
	t.Helper()
	tx, err := s.Begin(context.Background(), testDB, 1)
	if err != nil {
		t.Fatal(err)
	}
	mustTxExec(t, tx, sql)
	if _, err := tx.Commit(context.Background(), requestID); err != nil {
		t.Fatalf("commit of %q: %v", sql, err)
	}
}

func TestTxCommitRollback(t *testing.T) {
	f := newCluster(t, 3, nil)
	s := f.leader()
	ctx := context.Background()
	mustExec(t, s, "CREATE TABLE acct(id INTEGER PRIMARY KEY, bal INTEGER)")
	mustExec(t, s, "INSERT INTO acct VALUES(1, 100), (2, 0)")

	tx, err := s.Begin(ctx, testDB, 5)
	if err != nil {
		t.Fatal(err)
	}
	res := mustTxExec(t, tx, "SELECT bal FROM acct WHERE id = 1")
	if res.Rows[0][0] != int64(100) {
		t.Fatalf("read in tx: %v", res.Rows)
	}
	mustTxExec(t, tx, "UPDATE acct SET bal = bal - 30 WHERE id = 1")
	// A failing statement rolls back alone.
	if res, err := tx.Exec(ctx, "INSERT INTO acct VALUES(1, 5)", nil); err != nil || res.Err == nil {
		t.Fatalf("want constraint error: %v %+v", err, res)
	}
	mustTxExec(t, tx, "UPDATE acct SET bal = bal + 30 WHERE id = 2")
	mustTxExec(t, tx, "CREATE TABLE log(msg)")
	mustTxExec(t, tx, "INSERT INTO log VALUES('moved 30')")
	// Other writers wait for the transaction (it owns the writer).
	done := make(chan Result, 1)
	go func() { done <- mustExec(t, s, "UPDATE acct SET bal = bal * 2 WHERE id = 1") }()
	select {
	case <-done:
		t.Fatal("a write ran inside another transaction")
	case <-time.After(50 * time.Millisecond):
	}
	// Uncommitted changes are not visible to readers.
	if n := queryInt(t, s, "SELECT bal FROM acct WHERE id = 1"); n != 100 {
		t.Fatalf("uncommitted write visible: %d", n)
	}
	cres, err := tx.Commit(ctx, 77)
	if err != nil || cres.Index == 0 {
		t.Fatalf("commit: %v %+v", err, cres)
	}
	<-done
	f.sync()
	for i, st := range f.stores {
		if n := queryInt(t, st, "SELECT bal FROM acct WHERE id = 1"); n != 140 {
			t.Fatalf("store %d: bal %d", i, n)
		}
		if n := queryInt(t, st, "SELECT count(*) FROM log"); n != 1 {
			t.Fatalf("store %d: log %d", i, n)
		}
	}
	if _, err := tx.Exec(ctx, "SELECT 1", nil); !errors.Is(err, ErrTxDone) {
		t.Fatalf("use after commit: %v", err)
	}

	// Rollback: nothing is replicated.
	n := len(f.entries())
	tx, err = s.Begin(ctx, testDB, 5)
	if err != nil {
		t.Fatal(err)
	}
	mustTxExec(t, tx, "DELETE FROM acct")
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if len(f.entries()) != n {
		t.Fatal("rollback proposed an entry")
	}
	if c := queryInt(t, s, "SELECT count(*) FROM acct"); c != 2 {
		t.Fatalf("rolled back delete applied: %d rows", c)
	}
	// Read-only transaction: commit proposes nothing.
	tx, err = s.Begin(ctx, testDB, 5)
	if err != nil {
		t.Fatal(err)
	}
	mustTxExec(t, tx, "SELECT * FROM acct")
	if _, err := tx.Commit(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if len(f.entries()) != n {
		t.Fatal("read-only commit proposed an entry")
	}
	// A retried commit returns the first outcome without applying again.
	tx, err = s.Begin(ctx, testDB, 5)
	if err != nil {
		t.Fatal(err)
	}
	mustTxExec(t, tx, "UPDATE acct SET bal = bal + 1")
	again, err := tx.Commit(ctx, 77)
	if err != nil || again.Index != cres.Index {
		t.Fatalf("retried commit: %v %+v, first %+v", err, again, cres)
	}
	if n := queryInt(t, s, "SELECT sum(bal) FROM acct"); n != 170 {
		t.Fatalf("retried commit applied again: %d", n)
	}
	f.requireSameContent(testDB)
}

func TestTxIdleTimeout(t *testing.T) {
	f := newCluster(t, 1, func(o *Options) { o.TxIdleTimeout = 100 * time.Millisecond })
	s := f.leader()
	ctx := context.Background()
	mustExec(t, s, "CREATE TABLE t(v)")
	tx, err := s.Begin(ctx, testDB, 1)
	if err != nil {
		t.Fatal(err)
	}
	mustTxExec(t, tx, "INSERT INTO t VALUES(1)")
	time.Sleep(300 * time.Millisecond)
	if _, err := tx.Exec(ctx, "INSERT INTO t VALUES(2)", nil); !errors.Is(err, ErrTxTimeout) {
		t.Fatalf("want ErrTxTimeout, got %v", err)
	}
	if _, err := tx.Commit(ctx, 0); !errors.Is(err, ErrTxTimeout) {
		t.Fatalf("commit: want ErrTxTimeout, got %v", err)
	}
	// The writer is free again and the transaction left nothing behind.
	mustExec(t, s, "INSERT INTO t VALUES(3)")
	if n := queryInt(t, s, "SELECT count(*) FROM t"); n != 1 {
		t.Fatalf("%d rows", n)
	}
}

func TestTxAbortedByLeaderChange(t *testing.T) {
	f := newCluster(t, 1, nil)
	s := f.leader()
	ctx := context.Background()
	mustExec(t, s, "CREATE TABLE t(v)")
	tx, err := s.Begin(ctx, testDB, 1)
	if err != nil {
		t.Fatal(err)
	}
	mustTxExec(t, tx, "INSERT INTO t VALUES(1)")
	s.LeaderChanged(2, false)
	deadline := time.Now().Add(2 * time.Second)
	for {
		_, err := tx.Exec(ctx, "SELECT 1", nil)
		if errors.Is(err, ErrTxAborted) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tx not aborted: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTxRejectsStatements(t *testing.T) {
	f := newCluster(t, 1, nil)
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(v)")
	tx, err := s.Begin(context.Background(), testDB, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for _, q := range []string{"COMMIT", "ROLLBACK", "SAVEPOINT x", "  /* c */ begin", "ATTACH 'x' AS y", "SELECT * FROM _tandem_applied"} {
		res, err := tx.Exec(context.Background(), q, nil)
		if err != nil || res.Err == nil || !strings.Contains(res.Err.Msg, "tandem:") {
			t.Fatalf("%q: want a tandem error, got %v %+v", q, err, res.Err)
		}
	}
	mustTxExec(t, tx, "INSERT INTO t VALUES(1)")
}

func TestQueueFullAndDeadline(t *testing.T) {
	f := newCluster(t, 1, func(o *Options) { o.QueueSize = 2 })
	s := f.leader()
	ctx := context.Background()
	mustExec(t, s, "CREATE TABLE t(v)")

	if _, err := s.Exec(ctx, testDB, Request{SQL: "INSERT INTO t VALUES(0)", Deadline: time.Now().Add(-time.Second)}); !errors.Is(err, ErrDeadline) {
		t.Fatalf("past deadline: %v", err)
	}

	release := f.gate()
	defer release()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	results := make([]Result, 3)
	wg.Add(1)
	go func() {
		defer wg.Done()
		results[0], errs[0] = s.Exec(ctx, testDB, Request{SQL: "INSERT INTO t VALUES(1)"})
	}()
	f.waitBlocked(1)
	// The writer holds request 1; the queue takes two more.
	wg.Add(2)
	go func() {
		defer wg.Done()
		results[1], errs[1] = s.Exec(ctx, testDB, Request{SQL: "INSERT INTO t VALUES(2)", Deadline: time.Now().Add(30 * time.Millisecond)})
	}()
	go func() {
		defer wg.Done()
		results[2], errs[2] = s.Exec(ctx, testDB, Request{SQL: "INSERT INTO t VALUES(3)"})
	}()
	db, _ := s.database(testDB, false)
	for len(db.queue) < 2 {
		time.Sleep(time.Millisecond)
	}
	if _, err := s.Exec(ctx, testDB, Request{SQL: "INSERT INTO t VALUES(4)"}); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("want ErrQueueFull, got %v", err)
	}
	time.Sleep(60 * time.Millisecond) // request 2's deadline passes while it waits
	release()
	wg.Wait()
	if errs[0] != nil || errs[2] != nil {
		t.Fatal(errs)
	}
	if !errors.Is(errs[1], ErrDeadline) {
		t.Fatalf("queued past its deadline: %v", errs[1])
	}
	if got := queryRows(t, s, "SELECT v FROM t ORDER BY v"); len(got) != 2 || got[0][0] != int64(1) || got[1][0] != int64(3) {
		t.Fatalf("rows %v", got)
	}
}

func TestCancelledBeforeStart(t *testing.T) {
	f := newCluster(t, 1, nil)
	s := f.leader()
	mustExec(t, s, "CREATE TABLE t(v)")
	release := f.gate()
	go s.Exec(context.Background(), testDB, Request{SQL: "INSERT INTO t VALUES(1)"})
	f.waitBlocked(1)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := s.Exec(ctx, testDB, Request{SQL: "INSERT INTO t VALUES(2)"})
		errc <- err
	}()
	db, _ := s.database(testDB, false)
	for len(db.queue) < 1 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("cancelled before start: %v", err)
	}
	release()
	mustExec(t, s, "INSERT INTO t VALUES(3)")
	if got := queryRows(t, s, "SELECT v FROM t ORDER BY v"); len(got) != 2 {
		t.Fatalf("cancelled request ran: %v", got)
	}
}

func TestNotLeader(t *testing.T) {
	f := newCluster(t, 1, nil)
	s := f.leader()
	errNL := errors.New("not leader: leader is node 2")
	f.mu.Lock()
	f.notLead = errNL
	f.mu.Unlock()
	if _, err := s.Exec(context.Background(), testDB, Request{SQL: "CREATE TABLE t(v)"}); !errors.Is(err, errNL) {
		t.Fatalf("want the proposer's error, got %v", err)
	}
	if _, err := s.Begin(context.Background(), testDB, 1); !errors.Is(err, errNL) {
		t.Fatalf("Begin: want the proposer's error, got %v", err)
	}
	if _, err := s.Query(context.Background(), testDB, "SELECT 1", nil); !errors.Is(err, ErrNoSuchDatabase) {
		t.Fatalf("a database nobody wrote: %v", err)
	}
	if _, err := s.Exec(context.Background(), "bad/name", Request{SQL: "SELECT 1"}); !errors.Is(err, ErrBadName) {
		t.Fatalf("bad name: %v", err)
	}
}

// Outcome answers what became of a commit whose caller lost track of it: only once the
// transaction has ended, with the first outcome or ErrNotCommitted.
func TestOutcomeOfACommit(t *testing.T) {
	f := newCluster(t, 3, nil)
	s := f.leader()
	ctx := context.Background()
	if _, err := s.Outcome(ctx, "never_written", 5, 1); !errors.Is(err, ErrNotCommitted) {
		t.Fatalf("unknown database: %v", err)
	}
	mustExec(t, s, "CREATE TABLE t(v)")
	if _, err := s.Outcome(ctx, testDB, 5, 99); !errors.Is(err, ErrNotCommitted) {
		t.Fatalf("unknown request: %v", err)
	}
	if _, err := s.Outcome(ctx, testDB, 5, 0); err == nil || errors.Is(err, ErrNotCommitted) {
		t.Fatalf("request 0: %v", err)
	}

	type answer struct {
		res Result
		err error
	}
	ask := func(requestID uint64) <-chan answer {
		ch := make(chan answer, 1)
		go func() {
			res, err := s.Outcome(ctx, testDB, 5, requestID)
			ch <- answer{res, err}
		}()
		return ch
	}
	mustNotAnswer := func(ch <-chan answer, why string) {
		t.Helper()
		select {
		case a := <-ch:
			t.Fatalf("answered while %s: %+v", why, a)
		case <-time.After(50 * time.Millisecond):
		}
	}

	// Asked while the transaction is open: answered once it commits.
	tx, err := s.Begin(ctx, testDB, 5)
	if err != nil {
		t.Fatal(err)
	}
	mustTxExec(t, tx, "INSERT INTO t VALUES(1)")
	q := ask(99)
	mustNotAnswer(q, "the transaction is open")
	cres, err := tx.Commit(ctx, 99)
	if err != nil {
		t.Fatal(err)
	}
	if a := <-q; a.err != nil || a.res.Index != cres.Index || a.res.Index == 0 {
		t.Fatalf("outcome %+v, commit %+v", a, cres)
	}

	// The commit's caller gave up while the entry was not yet applied (its answer would
	// have been "outcome unknown"): the question waits for the entry.
	tx, err = s.Begin(ctx, testDB, 5)
	if err != nil {
		t.Fatal(err)
	}
	mustTxExec(t, tx, "INSERT INTO t VALUES(2)")
	f.setPaused(true)
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err = tx.Commit(cctx, 100)
	cancel()
	if !errors.Is(err, ErrOutcomeUnknown) {
		f.setPaused(false)
		t.Fatalf("commit with the applier paused: %v", err)
	}
	q = ask(100)
	mustNotAnswer(q, "the entry is not applied")
	f.setPaused(false)
	if a := <-q; a.err != nil || a.res.Index == 0 {
		t.Fatalf("outcome of the late commit: %+v", a)
	}

	// Rolled back: not committed, and said so only after the rollback.
	tx, err = s.Begin(ctx, testDB, 5)
	if err != nil {
		t.Fatal(err)
	}
	mustTxExec(t, tx, "INSERT INTO t VALUES(3)")
	q = ask(101)
	mustNotAnswer(q, "the transaction is open")
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if a := <-q; !errors.Is(a.err, ErrNotCommitted) {
		t.Fatalf("outcome of a rolled back transaction: %+v", a)
	}
	if n := queryInt(t, s, "SELECT count(*) FROM t"); n != 2 {
		t.Fatalf("%d rows, want 2", n)
	}
}

// The writer gave up waiting for a commit's entry (ProposalTimeout) while raft may still
// commit it in the same term: Outcome must not say "not committed" before that is settled.
func TestOutcomeAfterTheWriterGaveUp(t *testing.T) {
	for _, lost := range []bool{false, true} {
		name := map[bool]string{false: "entry late", true: "entry lost"}[lost]
		t.Run(name, func(t *testing.T) {
			f := newCluster(t, 1, func(o *Options) { o.ProposalTimeout = 150 * time.Millisecond })
			s := f.leader()
			ctx := context.Background()
			mustExec(t, s, "CREATE TABLE t(v)")
			tx, err := s.Begin(ctx, testDB, 5)
			if err != nil {
				t.Fatal(err)
			}
			mustTxExec(t, tx, "INSERT INTO t VALUES(1)")
			if lost {
				f.setDropping(true)
			} else {
				f.setPaused(true)
			}
			if _, err := tx.Commit(ctx, 9); !errors.Is(err, ErrOutcomeUnknown) {
				f.setPaused(false)
				t.Fatalf("commit whose entry is stuck: %v", err)
			}
			f.setDropping(false)
			got := make(chan error, 1)
			go func() {
				_, err := s.Outcome(ctx, testDB, 5, 9)
				got <- err
			}()
			if !lost {
				select {
				case err := <-got:
					t.Fatalf("answered while the entry was still unapplied: %v", err)
				case <-time.After(100 * time.Millisecond):
				}
				f.setPaused(false)
			}
			err = <-got
			rows := queryInt(t, s, "SELECT count(*) FROM t")
			switch {
			case lost && (!errors.Is(err, ErrNotCommitted) || rows != 0):
				t.Fatalf("lost entry: outcome %v, %d rows", err, rows)
			case !lost && (err != nil || rows != 1):
				t.Fatalf("late entry: outcome %v, %d rows", err, rows)
			}
		})
	}
}

// A statement that rolls back the whole transaction it runs in (ON CONFLICT ROLLBACK,
// RAISE(ROLLBACK), a write cancelled mid-way) fails alone with its own error: in a batch the
// requests before it run again, and an interactive transaction ends with a clear error.
// Before, the undo of its savepoint failed ("no such savepoint") and took the batch's other
// requests, or the rest of the transaction, with it (found by a QA pass on 2026-12-03).
func TestStatementThatRollsBackTheTransaction(t *testing.T) {
	f := newCluster(t, 3, nil)
	s := f.leader()
	ctx := context.Background()
	mustExec(t, s, "CREATE TABLE k(id INTEGER PRIMARY KEY, v TEXT)")
	mustExec(t, s, "CREATE TABLE guarded(x)")
	mustExec(t, s, "CREATE TRIGGER no_neg BEFORE INSERT ON guarded WHEN NEW.x < 0 BEGIN SELECT RAISE(ROLLBACK, 'bad value'); END")
	mustExec(t, s, "INSERT INTO k VALUES(1, 'one')")

	// One batch: writes around the two statements that roll back.
	hold, err := s.Begin(ctx, testDB, 9)
	if err != nil {
		t.Fatal(err)
	}
	sqls := []string{
		"INSERT INTO k VALUES(10, 'a')",
		"INSERT OR ROLLBACK INTO k VALUES(1, 'dup')",
		"INSERT INTO k VALUES(11, 'b')",
		"INSERT INTO guarded VALUES(-1)",
		"INSERT INTO k VALUES(12, 'c')",
	}
	db, _ := s.database(testDB, false)
	results := make([]Result, len(sqls))
	errs := make([]error, len(sqls))
	var wg sync.WaitGroup
	for i, q := range sqls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = s.Exec(ctx, testDB, Request{ClientID: 3, RequestID: uint64(50 + i), SQL: q})
		}()
		for len(db.queue) < i+1 { // keep the queue in the order of sqls
			time.Sleep(time.Millisecond)
		}
	}
	if err := hold.Rollback(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i := range sqls {
		if errs[i] != nil {
			t.Fatalf("%q: %v", sqls[i], errs[i])
		}
	}
	for _, i := range []int{0, 2, 4} {
		if results[i].Err != nil || results[i].Index == 0 {
			t.Fatalf("%q, batched with statements that roll back: %+v", sqls[i], results[i])
		}
	}
	if e := results[1].Err; e == nil || !strings.Contains(e.Msg, "UNIQUE") {
		t.Fatalf("INSERT OR ROLLBACK's own error: %v", e)
	}
	if e := results[3].Err; e == nil || !strings.Contains(e.Msg, "bad value") {
		t.Fatalf("RAISE(ROLLBACK)'s own error: %v", e)
	}

	// An interactive transaction.
	tx, err := s.Begin(ctx, testDB, 1)
	if err != nil {
		t.Fatal(err)
	}
	mustTxExec(t, tx, "INSERT INTO k VALUES(2, 'two')")
	res, err := tx.Exec(ctx, "INSERT OR ROLLBACK INTO k VALUES(1, 'dup')", nil)
	if err != nil || res.Err == nil || !strings.Contains(res.Err.Msg, "UNIQUE") || !strings.Contains(res.Err.Msg, "rolled back the whole transaction") {
		t.Fatalf("the rolling-back statement in a transaction: %v %v", err, res.Err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO k VALUES(3, 'three')", nil); !errors.Is(err, ErrTxAborted) {
		t.Fatalf("the next statement: %v, want ErrTxAborted", err)
	}
	if _, err := tx.Commit(ctx, 0); !errors.Is(err, ErrTxAborted) {
		t.Fatalf("commit: %v, want ErrTxAborted", err)
	}

	// A write cancelled mid-way, in a transaction.
	mustExec(t, s, "CREATE TABLE big(x)")
	tx, err = s.Begin(ctx, testDB, 1)
	if err != nil {
		t.Fatal(err)
	}
	mustTxExec(t, tx, "INSERT INTO k VALUES(4, 'four')")
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	res, err = tx.Exec(short, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n) INSERT INTO big SELECT i FROM n", nil)
	if err != nil || res.Err == nil {
		t.Fatalf("the cancelled write: %v %v", err, res.Err)
	}
	if _, err := tx.Commit(ctx, 0); !errors.Is(err, ErrTxAborted) {
		t.Fatalf("commit after a cancelled write rolled the transaction back: %v, want ErrTxAborted", err)
	}

	mustExec(t, s, "INSERT INTO k VALUES(20, 'after')")
	f.sync()
	f.requireHealthy()
	f.requireSameContent(testDB)
	got := fmt.Sprint(queryRows(t, s, "SELECT id FROM k ORDER BY id"))
	if got != "[[1] [10] [11] [12] [20]]" {
		t.Fatalf("rows %s", got)
	}
}

// A write that apply interrupts to take the write lock for another leader's entry is not
// the request's own failure: it answers "outcome unknown" (clients retry), in a batch and in
// a transaction (found by a review: it answered the statement's own 'interrupted').
func TestPreemptedWriteIsNotItsOwnError(t *testing.T) {
	f := newCluster(t, 1, nil)
	s := f.leader()
	ctx := context.Background()
	mustExec(t, s, "CREATE TABLE big(x)")
	db, _ := s.database(testDB, false)
	const endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n) INSERT INTO big SELECT i FROM n"

	done := make(chan struct{})
	var res Result
	var err error
	go func() {
		defer close(done)
		res, err = s.Exec(ctx, testDB, Request{ClientID: 5, RequestID: 1, SQL: endless})
	}()
	time.Sleep(200 * time.Millisecond)
	db.preempt()
	<-done
	if !errors.Is(err, ErrOutcomeUnknown) || res.Err != nil {
		t.Fatalf("a batched write preempted: %v, statement error %v; want ErrOutcomeUnknown", err, res.Err)
	}

	tx, err := s.Begin(ctx, testDB, 1)
	if err != nil {
		t.Fatal(err)
	}
	done = make(chan struct{})
	go func() {
		defer close(done)
		res, err = tx.Exec(ctx, endless, nil)
	}()
	time.Sleep(200 * time.Millisecond)
	db.preempt()
	<-done
	if !errors.Is(err, ErrTxAborted) || res.Err != nil {
		t.Fatalf("a transaction's write preempted: %v, statement error %v; want ErrTxAborted", err, res.Err)
	}
	mustExec(t, s, "INSERT INTO big VALUES(1)")
	if n := queryInt(t, s, "SELECT count(*) FROM big"); n != 1 {
		t.Fatalf("%d rows", n)
	}
}
