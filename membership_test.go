package tandem_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandemdb/tandem"
	"github.com/tandemdb/tandem/client"
	"github.com/tandemdb/tandem/wire"
)

// joinNode starts a node with id (0: a new one) in dir that joins via the given addresses.
func joinNode(t *testing.T, dir string, id uint64, via []string, extra ...tandem.Option) *tandem.Node {
	t.Helper()
	opts := append([]tandem.Option{tandem.WithID(id), tandem.WithAddress("127.0.0.1:0"),
		tandem.WithTickInterval(20 * time.Millisecond)}, extra...)
	if len(via) > 0 {
		opts = append(opts, tandem.WithCluster(via...))
	}
	n, err := tandem.New(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// requireRefused waits until n closes itself and checks that it says why: the cluster
// refused it, with a message containing want.
func requireRefused(t *testing.T, n *tandem.Node, want string) {
	t.Helper()
	select {
	case <-n.Done():
	case <-time.After(20 * time.Second):
		t.Fatalf("a node the cluster must refuse (%s) did not stop", want)
	}
	err := n.Err()
	if !errors.Is(err, tandem.ErrJoinRefused) || !strings.Contains(err.Error(), want) {
		t.Fatalf("Err = %v, want ErrJoinRefused saying %q", err, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := n.Ready(ctx); !errors.Is(err, tandem.ErrJoinRefused) {
		t.Fatalf("Ready = %v, want ErrJoinRefused", err)
	}
}

func requireMembers(t *testing.T, n *tandem.Node, want int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ms, err := n.Cluster(ctx)
	if err != nil || len(ms) != want {
		t.Fatalf("members: %+v, %v; want %d", ms, err, want)
	}
}

// oneNodeDB starts a one-node cluster and opens database "app" on it with schema applied;
// the context ends with the test (or after a minute).
func oneNodeDB(t *testing.T, schema string) (*tandem.Node, *sql.DB, context.Context) {
	t.Helper()
	nodes := startEmbedded(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	db, err := nodes[0].Open(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.ExecContext(ctx, schema); err != nil {
		t.Fatal(err)
	}
	return nodes[0], db, ctx
}

// The cluster refuses, and the joining node stops with the reason, when the ID or the
// address is another member's or the ID was removed (a node with a removed ID would replay
// its predecessor's removal while catching up and stop, leaving a voter that never answers).
func TestJoinRefusals(t *testing.T) {
	nodes := startEmbedded(t, 3)
	via := []string{nodes[0].Addr()}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	fourth := joinNode(t, filepath.Join(t.TempDir(), "n4"), 4, via)
	if err := fourth.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(ctx, client.Config{Addrs: via})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Remove(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(ctx, 4); err != nil {
		t.Fatalf("removing a removed node again (a retry): %v", err)
	}
	if err := c.Remove(ctx, 99); !errors.Is(err, wire.CodeBadRequest) || !strings.Contains(err.Error(), "not a member") {
		t.Fatalf("removing a node that never was a member: %v, want a bad request saying so", err)
	}

	requireRefused(t, joinNode(t, filepath.Join(t.TempDir(), "n4-again"), 4, via), "was removed")
	requireRefused(t, joinNode(t, filepath.Join(t.TempDir(), "dup-id"), nodes[1].ID(), via), "already a member")
	requireRefused(t, joinNode(t, filepath.Join(t.TempDir(), "dup-addr"), 0, via, tandem.WithAdvertise(nodes[2].Addr())),
		"is already node")
	requireMembers(t, nodes[0], 3)

	// A new ID joins as before.
	fifth := joinNode(t, filepath.Join(t.TempDir(), "n5"), 5, via)
	if err := fifth.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	requireMembers(t, nodes[0], 4)
}

// A node stopped before its join completed asks to join again when restarted, instead of
// waiting for a leader that does not know it; without the cluster to join it refuses to start.
func TestRestartAfterUnfinishedJoin(t *testing.T) {
	nodes := startEmbedded(t, 3)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nowhere := ln.Addr().String()
	ln.Close() // nothing listens there any more: the join cannot complete

	dir := filepath.Join(t.TempDir(), "n6")
	first := joinNode(t, dir, 6, []string{nowhere})
	time.Sleep(300 * time.Millisecond)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	if _, err := tandem.New(dir, tandem.WithID(6), tandem.WithAddress("127.0.0.1:0")); err == nil ||
		!strings.Contains(err.Error(), "join never completed") {
		t.Fatalf("restart without the cluster to join: %v, want an error saying the join never completed", err)
	}

	again := joinNode(t, dir, 6, []string{nodes[0].Addr()})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := again.Ready(ctx); err != nil {
		t.Fatalf("restarted node did not join: %v", err)
	}
	requireMembers(t, nodes[0], 4)
	addr := again.Addr()
	if err := again.Close(); err != nil {
		t.Fatal(err)
	}
	// Joined: a restart without the cluster is an ordinary restart (at the same address).
	restarted := joinNode(t, dir, 6, nil, tandem.WithAddress(addr))
	if err := restarted.Ready(ctx); err != nil {
		t.Fatalf("ordinary restart after the join: %v", err)
	}
}

// A data directory serves one node at a time; after Close it can be opened again.
func TestDataDirectoryInUse(t *testing.T) {
	dir := t.TempDir()
	first, err := tandem.New(dir, tandem.WithAddress("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tandem.New(dir, tandem.WithAddress("127.0.0.1:0")); !errors.Is(err, tandem.ErrDataDirInUse) {
		first.Close()
		t.Fatalf("second node on the same directory: %v, want ErrDataDirInUse", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := tandem.New(dir, tandem.WithAddress("127.0.0.1:0"))
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	again.Close()
}

// A cluster address without a port is refused at New, not retried for ever.
func TestNewRefusesABadClusterAddress(t *testing.T) {
	_, err := tandem.New(t.TempDir(), tandem.WithAddress("127.0.0.1:0"), tandem.WithCluster("10.0.0.1"))
	if err == nil || !strings.Contains(err.Error(), "is not HOST:PORT") {
		t.Fatalf("New with cluster address without a port: %v", err)
	}
}

// A join that fails before the node has a log leaves nothing behind: the directory can then
// bootstrap a cluster of its own, and that node restarts as usual.
func TestFailedStartLeavesNoJoinMarker(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	if _, err := tandem.New(dir, tandem.WithAddress(busy.Addr().String()), tandem.WithCluster("127.0.0.1:1")); err == nil {
		t.Fatal("New on a busy address succeeded")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	first, err := tandem.New(dir, tandem.WithAddress("127.0.0.1:0")) // bootstraps
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	addr := first.Addr()
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := tandem.New(dir, tandem.WithAddress(addr))
	if err != nil {
		t.Fatalf("restart of the bootstrapped node: %v", err)
	}
	defer again.Close()
	if err := again.Ready(ctx); err != nil {
		t.Fatal(err)
	}
}

// After Close every method says so; a done context is reported even on a ready node.
func TestMethodsAfterClose(t *testing.T) {
	nodes := startEmbedded(t, 1)
	n := nodes[0]
	done, cancel := context.WithCancel(context.Background())
	cancel()
	for range 50 {
		if err := n.Ready(done); !errors.Is(err, context.Canceled) {
			t.Fatalf("Ready with a cancelled context on a ready node: %v", err)
		}
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 50 {
		if err := n.Ready(ctx); !errors.Is(err, tandem.ErrClosed) {
			t.Fatalf("Ready after Close: %v", err)
		}
	}
	if _, _, err := n.Leader(ctx); !errors.Is(err, tandem.ErrClosed) {
		t.Fatalf("Leader after Close: %v", err)
	}
	if _, err := n.Cluster(ctx); !errors.Is(err, tandem.ErrClosed) {
		t.Fatalf("Cluster after Close: %v", err)
	}
	if _, err := n.Open(ctx, "app"); !errors.Is(err, tandem.ErrClosed) {
		t.Fatalf("Open after Close: %v", err)
	}
}

// A *sql.DB from Open fails at once after its node closed, instead of retrying its address
// until the caller's deadline.
func TestOpenedDBFailsFastAfterClose(t *testing.T) {
	node, db, ctx := oneNodeDB(t, `CREATE TABLE t(x)`)
	if err := node.Close(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := db.ExecContext(ctx, `INSERT INTO t VALUES(1)`); err == nil {
		t.Fatal("a write through a closed node's *sql.DB succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the write took %v to fail", d)
	}
}

// Times are stored so that SQL compares and sorts them as times; a nil []byte is NULL.
func TestTimeOrderAndNilBlob(t *testing.T) {
	_, db, ctx := oneNodeDB(t, `CREATE TABLE ev(id INTEGER PRIMARY KEY, ts DATETIME, b BLOB)`)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i, ts := range []time.Time{t0, t0.Add(500 * time.Millisecond), t0.Add(-time.Nanosecond)} {
		if _, err := db.ExecContext(ctx, `INSERT INTO ev VALUES(?, ?, ?)`, i+1, ts, []byte(nil)); err != nil {
			t.Fatal(err)
		}
	}
	var later int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM ev WHERE ts > ?`, t0).Scan(&later); err != nil || later != 1 {
		t.Fatalf("rows later than t0: %d, %v; want 1", later, err)
	}
	rows, err := db.QueryContext(ctx, `SELECT id FROM ev ORDER BY ts`)
	if err != nil {
		t.Fatal(err)
	}
	var order []int
	for rows.Next() {
		var id int
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		order = append(order, id)
	}
	if rows.Close(); fmt.Sprint(order) != "[3 1 2]" {
		t.Fatalf("ORDER BY ts: %v, want [3 1 2]", order)
	}
	var kind string
	if err := db.QueryRowContext(ctx, `SELECT typeof(b) FROM ev WHERE id = 1`).Scan(&kind); err != nil || kind != "null" {
		t.Fatalf("nil []byte stored as %q, %v; want null", kind, err)
	}
	var back time.Time
	if err := db.QueryRowContext(ctx, `SELECT ts FROM ev WHERE id = 2`).Scan(&back); err != nil || !back.Equal(t0.Add(500*time.Millisecond)) {
		t.Fatalf("time read back: %v, %v", back, err)
	}
}

// slowSQL runs for tens of seconds on the development VM (a count over a 100M-row
// recursive CTE) unless interrupted.
const slowSQL = `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 100000000) SELECT count(*) FROM c`

// within runs f, which must succeed within d: longer means that a cancelled statement
// went on (holding the writer, a read connection or a transaction's lock).
func within(t *testing.T, what string, d time.Duration, f func() error) {
	t.Helper()
	start := time.Now()
	if err := f(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if el := time.Since(start); el > d {
		t.Fatalf("%s took %v: a cancelled statement went on", what, el)
	}
}

// A statement whose caller gave up is stopped on the server (the client sends Cancel): it
// does not go on holding the database's writer.
func TestCancelledStatementStopsOnTheServer(t *testing.T) {
	_, db, ctx := oneNodeDB(t, `CREATE TABLE t(x)`)

	// An autocommit write cancelled without a deadline (the request carries none).
	wctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(200*time.Millisecond, cancel)
	if _, err := db.ExecContext(wctx, `INSERT INTO t `+slowSQL); err == nil {
		t.Fatal("the slow write finished")
	}
	within(t, "the next write", 5*time.Second, func() error {
		_, err := db.ExecContext(ctx, `INSERT INTO t VALUES(1)`)
		return err
	})

	// A statement of a transaction, past its deadline.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	qctx, cancel2 := context.WithTimeout(ctx, 200*time.Millisecond)
	var n int64
	err = tx.QueryRowContext(qctx, slowSQL).Scan(&n)
	cancel2()
	if err == nil {
		t.Fatal("the slow query finished")
	}
	within(t, "rolling back", 5*time.Second, tx.Rollback)
	within(t, "a write after the transaction", 5*time.Second, func() error {
		_, err := db.ExecContext(ctx, `INSERT INTO t VALUES(2)`)
		return err
	})
}

// A read whose caller gave up is stopped on the node too: an autocommit query (it held one of
// the database's pooled read connections until it finished) and a query of a read-only
// transaction (whose next statement, Commit and Rollback waited for it). Before, both ran on
// under the connection's context (found by a QA pass on 2026-12-03).
func TestCancelledReadStopsOnTheServer(t *testing.T) {
	_, db, ctx := oneNodeDB(t, `CREATE TABLE t(x)`)
	// More cancelled reads than the pool has connections (4 by default).
	for range 6 {
		qctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		var n int64
		err := db.QueryRowContext(qctx, slowSQL).Scan(&n)
		cancel()
		if err == nil {
			t.Fatal("the slow query finished")
		}
	}
	within(t, "a read after them", 5*time.Second, func() error {
		var n int64
		return db.QueryRowContext(ctx, `SELECT count(*) FROM t`).Scan(&n)
	})

	ro, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	qctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	var n int64
	err = ro.QueryRowContext(qctx, slowSQL).Scan(&n)
	cancel()
	if err == nil {
		t.Fatal("the slow query finished")
	}
	within(t, "the read-only transaction's next query", 5*time.Second, func() error {
		return ro.QueryRowContext(ctx, `SELECT count(*) FROM t`).Scan(&n)
	})
	within(t, "its rollback", 5*time.Second, ro.Rollback)
}
