package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/tandemdb/tandem/wire"
	"github.com/tandemdb/tandem/wire/wiretest"
)

func TestExecGoesToLeaderFromWelcome(t *testing.T) {
	fc := newFakeCluster(t, 3, nil)
	fc.setLeader(2)
	c := fc.client(t, nil)
	if id, addr := c.KnownLeader(); id != 2 || addr != fc.nodes[1].Addr() {
		t.Fatalf("leader %d %s", id, addr)
	}
	if c.ClientID() == 0 {
		t.Fatal("no client id")
	}
	r, err := c.Exec(context.Background(), "app", "INSERT 1")
	if err != nil {
		t.Fatal(err)
	}
	if r.RowsAffected != 1 || r.Index == 0 {
		t.Fatalf("result %+v", r)
	}
	if fc.nodes[0].count(wire.TypeExec) != 0 || fc.nodes[1].count(wire.TypeExec) != 1 {
		t.Fatal("exec not sent straight to the leader")
	}
}

func TestRedirect(t *testing.T) {
	fc := newFakeCluster(t, 3, nil)
	c := fc.client(t, nil) // leader 1
	fc.setLeader(3)        // node 1 now redirects to node 3
	if _, err := c.Exec(context.Background(), "app", "INSERT 1"); err != nil {
		t.Fatal(err)
	}
	if id, _ := c.KnownLeader(); id != 3 {
		t.Fatalf("leader %d", id)
	}
	if fc.nodes[0].count(wire.TypeExec) != 1 || fc.nodes[2].count(wire.TypeExec) != 1 {
		t.Fatal("redirect not followed once")
	}
	// Next write goes straight to node 3.
	if _, err := c.Exec(context.Background(), "app", "INSERT 2"); err != nil {
		t.Fatal(err)
	}
	if fc.nodes[0].count(wire.TypeExec) != 1 || fc.nodes[2].count(wire.TypeExec) != 2 {
		t.Fatal("leader not remembered")
	}
}

func TestNoLeaderThenLeader(t *testing.T) {
	fc := newFakeCluster(t, 3, nil)
	c := fc.client(t, nil)
	fc.setLeader(0)
	go func() {
		time.Sleep(100 * time.Millisecond)
		fc.setLeader(2)
	}()
	if _, err := c.Exec(context.Background(), "app", "INSERT 1"); err != nil {
		t.Fatal(err)
	}
	if id, _ := c.KnownLeader(); id != 2 {
		t.Fatalf("leader %d", id)
	}
	// Bounded: with no leader at all, the call fails by its deadline.
	fc.setLeader(0)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Exec(ctx, "app", "INSERT 2")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
}

func TestRetryAfterDropSameRequestID(t *testing.T) {
	fc := newFakeCluster(t, 3, nil)
	c := fc.client(t, nil)
	var mu sync.Mutex
	var seen []uint64
	drop := true
	fc.nodes[0].setHook(func(conn *wiretest.Conn, id uint64, m wire.Message) bool {
		e, ok := m.(*wire.Exec)
		if !ok {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, e.RequestID)
		if drop {
			drop = false
			fc.apply(conn.ClientID, e) // applied, but the answer is lost
			conn.Close()
			return true
		}
		return false
	})
	r, err := c.Exec(context.Background(), "app", "INSERT 1")
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0] != seen[1] || seen[0] == 0 {
		t.Fatalf("request ids %v", seen)
	}
	if fc.appliedCount() != 1 || r.Index != 1 {
		t.Fatalf("applied %d times, result %+v", fc.appliedCount(), r)
	}
	if fc.nodes[0].Accepts() != 2 {
		t.Fatalf("accepts %d", fc.nodes[0].Accepts())
	}
}

func TestOutcomeUnknownRetry(t *testing.T) {
	fc := newFakeCluster(t, 3, nil)
	c := fc.client(t, nil)
	var mu sync.Mutex
	var seen []uint64
	fc.nodes[0].setHook(func(conn *wiretest.Conn, id uint64, m wire.Message) bool {
		e, ok := m.(*wire.Exec)
		if !ok {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, e.RequestID)
		if len(seen) == 1 {
			fc.apply(conn.ClientID, e)
			conn.Reply(id, &wire.Error{Code: wire.CodeOutcomeUnknown})
			return true
		}
		return false
	})
	if _, err := c.Exec(context.Background(), "app", "INSERT 1"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0] != seen[1] || fc.appliedCount() != 1 {
		t.Fatalf("request ids %v applied %d", seen, fc.appliedCount())
	}
}

// TestNoRetryAfterMaxRetryAge: a write is retried with its request id only for MaxRetryAge
// after its first attempt; then the call ends with "outcome unknown".
func TestNoRetryAfterMaxRetryAge(t *testing.T) {
	fc := newFakeCluster(t, 1, nil)
	c := fc.client(t, func(cfg *Config) { cfg.MaxRetryAge = 300 * time.Millisecond })
	var mu sync.Mutex
	var seen []uint64
	fc.nodes[0].setHook(func(conn *wiretest.Conn, id uint64, m wire.Message) bool {
		e, ok := m.(*wire.Exec)
		if !ok {
			return false
		}
		mu.Lock()
		seen = append(seen, e.RequestID)
		mu.Unlock()
		conn.Reply(id, &wire.Error{Code: wire.CodeOutcomeUnknown})
		return true
	})
	start := time.Now()
	_, err := c.Exec(context.Background(), "app", "INSERT 1")
	var we *wire.Error
	if !errors.As(err, &we) || we.Code != wire.CodeOutcomeUnknown {
		t.Fatalf("got %v, want outcome unknown", err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("gave up after %v, not about MaxRetryAge", d)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) < 2 {
		t.Fatalf("%d attempts: not retried", len(seen))
	}
	for _, id := range seen {
		if id != seen[0] {
			t.Fatalf("request ids %v: a retry changed the id", seen)
		}
	}
}

func TestSQLiteErrorNotRetried(t *testing.T) {
	fc := newFakeCluster(t, 1, nil)
	c := fc.client(t, nil)
	fc.nodes[0].setHook(func(conn *wiretest.Conn, id uint64, m wire.Message) bool {
		if _, ok := m.(*wire.Exec); ok {
			conn.Reply(id, &wire.Error{Code: wire.CodeSQLite, SQLiteCode: 19, SQLiteExtended: 2067, Message: "UNIQUE constraint failed"})
			return true
		}
		return false
	})
	_, err := c.Exec(context.Background(), "app", "INSERT 1")
	var we *wire.Error
	if !errors.As(err, &we) || we.SQLiteExtended != 2067 || !errors.Is(err, ErrSQLite) || errors.Is(err, ErrNotLeader) {
		t.Fatalf("got %v", err)
	}
	if fc.nodes[0].count(wire.TypeExec) != 1 {
		t.Fatal("retried")
	}
}

func TestTryAgainRetried(t *testing.T) {
	fc := newFakeCluster(t, 1, nil)
	c := fc.client(t, nil)
	n := 0
	fc.nodes[0].setHook(func(conn *wiretest.Conn, id uint64, m wire.Message) bool {
		if _, ok := m.(*wire.Exec); ok && n < 2 {
			n++
			conn.Reply(id, &wire.Error{Code: wire.CodeTryAgain})
			return true
		}
		return false
	})
	if _, err := c.Exec(context.Background(), "app", "INSERT 1"); err != nil {
		t.Fatal(err)
	}
	if fc.nodes[0].count(wire.TypeExec) != 3 {
		t.Fatal("not retried")
	}
}

func TestLeaderLookupOpensNoConnection(t *testing.T) {
	fc := newFakeCluster(t, 3, nil)
	c := fc.client(t, nil)
	if d := fc.dials.Load(); d != 1 {
		t.Fatalf("dials after New: %d", d)
	}
	for i := 0; i < 20; i++ {
		li, err := c.Leader(context.Background())
		if err != nil || li.ID != 1 {
			t.Fatal(li, err)
		}
	}
	if d, a := fc.dials.Load(), fc.accepts(); d != 1 || a != 1 {
		t.Fatalf("dials %d accepts %d", d, a)
	}
	if fc.nodes[0].count(wire.TypeLeaderReq) != 20 {
		t.Fatal("lookups not sent")
	}

	// First listed node is a follower: lookups still use the one connection.
	fc2 := newFakeCluster(t, 3, nil)
	fc2.setLeader(3)
	c2 := fc2.client(t, nil)
	for i := 0; i < 5; i++ {
		if li, err := c2.Leader(context.Background()); err != nil || li.ID != 3 {
			t.Fatal(li, err)
		}
	}
	if d := fc2.dials.Load(); d != 1 {
		t.Fatalf("dials %d", d)
	}
	c2.Exec(context.Background(), "app", "x") // dials the leader once
	for i := 0; i < 5; i++ {
		c2.Leader(context.Background())
		c2.Exec(context.Background(), "app", "x")
	}
	if d := fc2.dials.Load(); d != 2 {
		t.Fatalf("dials %d", d)
	}
}

func TestQueryPages(t *testing.T) {
	fc := newFakeCluster(t, 2, nil)
	c := fc.client(t, nil)
	rows, err := c.Query(context.Background(), "app", "count 5", QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := rows.Columns(); len(got) != 2 || rows.DeclTypes()[0] != "INTEGER" {
		t.Fatalf("columns %v", got)
	}
	var n int64
	for {
		row, err := rows.Next(context.Background())
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if row[0].(int64) != n {
			t.Fatalf("row %v", row)
		}
		n++
	}
	if n != 5 || fc.nodes[0].count(wire.TypeNext) != 2 {
		t.Fatalf("rows %d nexts %d", n, fc.nodes[0].count(wire.TypeNext))
	}
	rows.Close()

	// Early close releases the cursor.
	rows, err = c.Query(context.Background(), "app", "count 5", QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rows.Next(context.Background())
	rows.Close()
	waitFor(t, func() bool { return fc.nodes[0].count(wire.TypeCloseCursor) == 1 })
}

func TestStaleReadFirstNode(t *testing.T) {
	fc := newFakeCluster(t, 3, nil)
	fc.setLeader(3)
	c := fc.client(t, nil)
	rows, err := c.Query(context.Background(), "app", "count 1", QueryOptions{Consistency: Stale})
	if err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if fc.nodes[0].count(wire.TypeQuery) != 1 || fc.nodes[2].count(wire.TypeQuery) != 0 {
		t.Fatal("stale read not served by the first node")
	}
	rows, err = c.Query(context.Background(), "app", "count 1", QueryOptions{Consistency: Stale, Node: fc.nodes[1].Addr()})
	if err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if fc.nodes[1].count(wire.TypeQuery) != 1 {
		t.Fatal("stale read not served by the chosen node")
	}
	// Linearizable read goes to the leader.
	rows, err = c.Query(context.Background(), "app", "count 1", QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if fc.nodes[2].count(wire.TypeQuery) != 1 {
		t.Fatal("linearizable read not on the leader")
	}
}

func TestTx(t *testing.T) {
	fc := newFakeCluster(t, 2, nil)
	fc.setLeader(2)
	c := fc.client(t, nil)
	tx, err := c.Begin(context.Background(), "app")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(context.Background(), "INSERT 1", int64(1)); err != nil {
		t.Fatal(err)
	}
	rows, err := tx.Query(context.Background(), "count 1")
	if err != nil {
		t.Fatal(err)
	}
	rows.Close()
	r, err := tx.Commit(context.Background())
	if err != nil || r.Index != 5 {
		t.Fatal(r, err)
	}
	if _, err := tx.Commit(context.Background()); !errors.Is(err, ErrNoSuchTx) {
		t.Fatalf("second commit: %v", err)
	}
	if fc.nodes[1].count(wire.TypeCommit) != 1 || fc.nodes[0].count(wire.TypeBegin) != 0 {
		t.Fatal("tx not on the leader")
	}

	// A connection lost during Commit: the Commit is never sent again; the client asks
	// the leader what became of it. Here the commit did not take effect.
	tx, err = c.Begin(context.Background(), "app")
	if err != nil {
		t.Fatal(err)
	}
	onCommit(fc.nodes[1], func(conn *wiretest.Conn, id uint64, cm *wire.Commit) { conn.Close() })
	_, err = tx.Commit(context.Background())
	if !errors.Is(err, ErrNotCommitted) || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("got %v", err)
	}
	commits := requestsOf[*wire.Commit](fc.nodes[1])
	if len(commits) != 2 {
		t.Fatal("commit retried")
	}
	outcomes := outcomeRequests(fc)
	if len(outcomes) != 1 || outcomes[0].RequestID != commits[1].RequestID || outcomes[0].DB != "app" {
		var asked []wire.Outcome
		for _, o := range outcomes {
			asked = append(asked, *o)
		}
		t.Fatalf("outcome requests %+v, commit request id %v", asked, commits[1].RequestID)
	}

	// The same, but the commit took effect before the connection broke: its result.
	tx, err = c.Begin(context.Background(), "app")
	if err != nil {
		t.Fatal(err)
	}
	onCommit(fc.nodes[1], func(conn *wiretest.Conn, id uint64, cm *wire.Commit) {
		fc.record(conn.ClientID, cm.RequestID, wire.Result{RowsAffected: 2, Index: 42})
		conn.Close()
	})
	r, err = tx.Commit(context.Background())
	if err != nil || r.Index != 42 || r.RowsAffected != 2 {
		t.Fatalf("commit: %+v %v", r, err)
	}

	// "Outcome unknown" from the server (leadership changed during the commit): asked too.
	tx, err = c.Begin(context.Background(), "app")
	if err != nil {
		t.Fatal(err)
	}
	onCommit(fc.nodes[1], func(conn *wiretest.Conn, id uint64, cm *wire.Commit) {
		fc.record(conn.ClientID, cm.RequestID, wire.Result{Index: 43})
		conn.Reply(id, &wire.Error{Code: wire.CodeOutcomeUnknown})
	})
	if r, err = tx.Commit(context.Background()); err != nil || r.Index != 43 {
		t.Fatalf("commit: %+v %v", r, err)
	}

	// The context ends before anyone can tell: outcome unknown.
	tx, err = c.Begin(context.Background(), "app")
	if err != nil {
		t.Fatal(err)
	}
	onCommit(fc.nodes[1], func(*wiretest.Conn, uint64, *wire.Commit) {}) // never answered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err = tx.Commit(ctx)
	cancel()
	if !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("got %v", err)
	}
	// Rollback after the connection died is a no-op.
	fc.nodes[1].setHook(nil)
	tx, _ = c.Begin(context.Background(), "app")
	fc.nodes[1].DropAll()
	waitFor(t, func() bool { return !tx.cn.alive() })
	if err := tx.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(context.Background(), "x"); err == nil {
		t.Fatal("exec after rollback")
	}
}

func outcomeRequests(fc *fakeCluster) []*wire.Outcome {
	var out []*wire.Outcome
	for _, n := range fc.nodes {
		out = append(out, requestsOf[*wire.Outcome](n)...)
	}
	return out
}

// requestsOf is what n received of one message type, in order.
func requestsOf[M wire.Message](n *fakeNode) []M {
	var out []M
	for _, m := range n.requests() {
		if o, ok := m.(M); ok {
			out = append(out, o)
		}
	}
	return out
}

// onCommit makes n hand every Commit it receives to f instead of answering it.
func onCommit(n *fakeNode, f func(conn *wiretest.Conn, id uint64, m *wire.Commit)) {
	n.setHook(func(conn *wiretest.Conn, id uint64, m wire.Message) bool {
		cm, ok := m.(*wire.Commit)
		if ok {
			f(conn, id, cm)
		}
		return ok
	})
}

func TestPreparedStatement(t *testing.T) {
	fc := newFakeCluster(t, 1, nil)
	c := fc.client(t, nil)
	st, err := c.Prepare(context.Background(), "app", "INSERT ?")
	if err != nil {
		t.Fatal(err)
	}
	if st.NumParams() != 1 {
		t.Fatal(st.NumParams())
	}
	if _, err := st.Exec(context.Background(), int64(1)); err != nil {
		t.Fatal(err)
	}
	fc.nodes[0].DropAll()
	waitFor(t, func() bool { return !st.cn.alive() })
	if _, err := st.Exec(context.Background(), int64(2)); err != nil {
		t.Fatal(err)
	}
	var ex []*wire.Exec
	for _, m := range fc.nodes[0].requests() {
		if e, ok := m.(*wire.Exec); ok {
			ex = append(ex, e)
		}
	}
	if len(ex) != 2 || ex[0].StmtID != 9 || ex[0].SQL != "" || ex[1].StmtID != 0 || ex[1].SQL != "INSERT ?" {
		t.Fatalf("execs %+v %+v", ex[0], ex[1])
	}
	st.Close()
}

func TestClusterStatusMembership(t *testing.T) {
	fc := newFakeCluster(t, 3, nil)
	c := fc.client(t, nil)
	ci, err := c.Cluster(context.Background())
	if err != nil || len(ci.Members) != 3 || ci.LeaderID != 1 {
		t.Fatal(ci, err)
	}
	st, err := c.Status(context.Background(), fc.nodes[2].Addr())
	if err != nil || st.ID != 3 || !st.Healthy {
		t.Fatal(st, err)
	}
	if err := c.Join(context.Background(), 4, "x:1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(context.Background(), 4); err != nil {
		t.Fatal(err)
	}
	li, err := c.Transfer(context.Background(), 2)
	if err != nil || li.ID != 2 {
		t.Fatal(li, err)
	}
	if id, _ := c.KnownLeader(); id != 2 {
		t.Fatal("transfer not learned")
	}
	if _, err := c.Status(context.Background(), "127.0.0.1:1"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("status of dead node: %v", err)
	}
}

func TestConcurrentOutOfOrder(t *testing.T) {
	fc := newFakeCluster(t, 1, nil)
	c := fc.client(t, nil)
	fc.nodes[0].setHook(func(conn *wiretest.Conn, id uint64, m wire.Message) bool {
		e, ok := m.(*wire.Exec)
		if !ok {
			return false
		}
		go func() {
			time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
			conn.Reply(id, &wire.Result{LastInsertID: e.Args[0].(int64)})
		}()
		return true
	})
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func(i int64) {
			defer wg.Done()
			r, err := c.Exec(context.Background(), "app", "x", i)
			if err == nil && r.LastInsertID != i {
				err = errors.New("mismatched response")
			}
			if err != nil {
				errs <- err
			}
		}(int64(i))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if fc.accepts() != 1 {
		t.Fatal("more than one connection")
	}
}

func TestContextCancelWhileWaiting(t *testing.T) {
	fc := newFakeCluster(t, 1, nil)
	c := fc.client(t, nil)
	fc.nodes[0].setHook(func(conn *wiretest.Conn, id uint64, m wire.Message) bool {
		_, ok := m.(*wire.Exec)
		return ok // never answered
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.Exec(ctx, "app", "x")
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("got %v", err)
	}
	// The connection is still usable.
	fc.nodes[0].setHook(nil)
	if _, err := c.Exec(context.Background(), "app", "x"); err != nil {
		t.Fatal(err)
	}
}

func TestBadArgument(t *testing.T) {
	fc := newFakeCluster(t, 1, nil)
	c := fc.client(t, nil)
	if _, err := c.Exec(context.Background(), "app", "x", struct{}{}); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("got %v", err)
	}
}

func TestNewFailsWithoutNodes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := New(ctx, Config{Addrs: []string{"127.0.0.1:1"}})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v", err)
	}
	if _, err := New(ctx, Config{}); err == nil {
		t.Fatal("no addresses accepted")
	}
}

func TestCloseFailsCalls(t *testing.T) {
	fc := newFakeCluster(t, 1, nil)
	c := fc.client(t, nil)
	c.Close()
	if _, err := c.Exec(context.Background(), "app", "x"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v", err)
	}
}

func TestTLSResumption(t *testing.T) {
	srvTLS, cliTLS := testCerts(t)
	fc := newFakeCluster(t, 1, srvTLS)
	c := fc.client(t, func(cfg *Config) { cfg.TLS = cliTLS })
	if _, err := c.Exec(context.Background(), "app", "x"); err != nil {
		t.Fatal(err)
	}
	fc.nodes[0].DropAll()
	waitFor(t, func() bool { return c.existingConn() == nil })
	if _, err := c.Exec(context.Background(), "app", "y"); err != nil {
		t.Fatal(err)
	}
	n := fc.nodes[0]
	n.mu.Lock()
	resumed := append([]bool(nil), n.resumed...)
	n.mu.Unlock()
	if len(resumed) != 2 || resumed[0] || !resumed[1] {
		t.Fatalf("resumed %v", resumed)
	}
	cn := c.existingConn()
	if cn == nil || !cn.nc.(interface {
		ConnectionState() tlsConnState
	}).ConnectionState().DidResume {
		t.Fatal("client side did not resume")
	}
	if fc.accepts() != 2 {
		t.Fatalf("accepts %d", fc.accepts())
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRequestTooLarge(t *testing.T) {
	fc := newFakeCluster(t, 1, nil)
	c := fc.client(t, nil)
	big := make([]byte, wire.DefaultMaxFrameSize)
	start := time.Now()
	if _, err := c.Exec(context.Background(), "app", "x", big); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("got %v", err)
	}
	if time.Since(start) > time.Second {
		t.Fatal("retried")
	}
}

func TestFailoverWhenLeaderDies(t *testing.T) {
	fc := newFakeCluster(t, 3, nil)
	c := fc.client(t, nil)
	if _, err := c.Exec(context.Background(), "app", "x"); err != nil {
		t.Fatal(err)
	}
	fc.nodes[0].Close()
	fc.setLeader(3)
	if _, err := c.Exec(context.Background(), "app", "y"); err != nil {
		t.Fatal(err)
	}
	if id, _ := c.KnownLeader(); id != 3 {
		t.Fatalf("leader %d", id)
	}
	li, err := c.Leader(context.Background())
	if err != nil || li.ID != 3 {
		t.Fatal(li, err)
	}
}

// A Begin whose caller gave up may still start on the leader, where the transaction would
// hold its database's writer until the idle timeout: its late answer is met with a Rollback.
func TestAbandonedBeginIsRolledBack(t *testing.T) {
	fc := newFakeCluster(t, 1, nil)
	c := fc.client(t, nil)
	n := fc.nodes[0]
	n.setHook(func(conn *wiretest.Conn, id uint64, m wire.Message) bool {
		if _, ok := m.(*wire.Begin); !ok {
			return false
		}
		go func() {
			time.Sleep(200 * time.Millisecond)
			conn.Reply(id, &wire.TxBegun{TxID: 78})
		}()
		return true
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := c.Begin(ctx, "app")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Begin: %v, want the deadline", err)
	}
	waitFor(t, func() bool {
		for _, rb := range requestsOf[*wire.Rollback](n) {
			if rb.TxID == 78 {
				return true
			}
		}
		return false
	})
}

// BeginRead: the transaction's queries ask for the page size BeginRead was given, and a node
// at its limit of read-only transactions (TryAgain) is answered at once, not retried until
// the deadline.
func TestBeginReadOptions(t *testing.T) {
	fc := newFakeCluster(t, 1, nil)
	c := fc.client(t, func(cfg *Config) { cfg.PageSize = 100 })
	var mu sync.Mutex
	var pageSizes []uint32
	full := false
	fc.nodes[0].setHook(func(conn *wiretest.Conn, id uint64, m wire.Message) bool {
		mu.Lock()
		defer mu.Unlock()
		switch m := m.(type) {
		case *wire.BeginRead:
			if full {
				conn.Reply(id, &wire.Error{Code: wire.CodeTryAgain, Message: "too many read-only transactions"})
			} else {
				conn.Reply(id, &wire.TxBegun{TxID: 7})
			}
			return true
		case *wire.Query:
			pageSizes = append(pageSizes, m.PageSize)
			conn.Reply(id, &wire.RowsPage{Columns: []string{"x"}, Done: true})
			return true
		}
		return false
	})
	ctx := context.Background()
	for _, want := range []uint32{2, 0} {
		tx, err := c.BeginRead(ctx, "app", QueryOptions{Consistency: Stale, PageSize: want})
		if err != nil {
			t.Fatal(err)
		}
		rows, err := tx.Query(ctx, "SELECT 1")
		if err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
	mu.Lock()
	if fmt.Sprint(pageSizes) != "[2 100]" {
		t.Errorf("page sizes asked: %v, want [2 100] (the option, then Config.PageSize)", pageSizes)
	}
	full = true
	mu.Unlock()
	start := time.Now()
	if _, err := c.BeginRead(ctx, "app", QueryOptions{}); !errors.Is(err, ErrTryAgain) {
		t.Fatalf("BeginRead at the limit: %v, want ErrTryAgain", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("BeginRead at the limit took %v: retried", d)
	}
}
