package tandem_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tandemdb/tandem"
	_ "github.com/tandemdb/tandem/driver"
)

// threeRows starts 3 embedded nodes and writes the rows 1, 2, 3 into table t of database app.
func threeRows(t *testing.T) ([]*tandem.Node, *sql.DB, context.Context) {
	t.Helper()
	return threeRowsOn(t, startEmbedded(t, 3))
}

// threeRowsOn is threeRows on nodes started by the caller.
func threeRowsOn(t *testing.T, nodes []*tandem.Node) ([]*tandem.Node, *sql.DB, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	db, err := nodes[0].Open(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.ExecContext(ctx, `CREATE TABLE t(x INTEGER)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO t VALUES (1), (2), (3)`); err != nil {
		t.Fatal(err)
	}
	return nodes, db, ctx
}

// Read-only transactions (sql.TxOptions{ReadOnly: true}) read the snapshot of their start in
// every query, hold no writer (a read-write transaction and autocommit writes go on
// meanwhile), refuse writes, and with consistency=stale run on a follower.
func TestReadOnlyTransactions(t *testing.T) {
	nodes, db, ctx := threeRows(t)
	count := func(q interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}) int {
		t.Helper()
		var n int
		if err := q.QueryRowContext(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	ro, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if n := count(ro); n != 3 {
		t.Fatalf("read-only transaction sees %d rows, want 3", n)
	}
	// A read-write transaction starts while the read-only one is open: it holds no writer.
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	rw, err := db.BeginTx(wctx, nil) // database/sql rolls it back when wctx ends
	if err != nil {
		t.Fatalf("read-write transaction beside a read-only one: %v", err)
	}
	if _, err := rw.ExecContext(ctx, `INSERT INTO t VALUES (4)`); err != nil {
		t.Fatal(err)
	}
	if err := rw.Commit(); err != nil {
		t.Fatal(err)
	}
	if n := count(ro); n != 3 {
		t.Fatalf("read-only transaction sees %d rows after a commit, want the 3 of its start", n)
	}
	if _, err := ro.ExecContext(ctx, `INSERT INTO t VALUES (5)`); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("write in a read-only transaction: %v, want a read-only error", err)
	}
	if _, err := ro.QueryContext(ctx, `DELETE FROM t RETURNING x`); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("writing query in a read-only transaction: %v, want a read-only error", err)
	}
	if err := ro.Commit(); err != nil {
		t.Fatalf("commit of a read-only transaction: %v", err)
	}
	if n := count(db); n != 4 {
		t.Fatalf("%d rows after, want 4 (nothing of the refused writes)", n)
	}

	// consistency=stale: the transaction runs on the node listed (a follower).
	_, leaderAddr, err := nodes[0].Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	follower := nodes[0].Addr()
	for _, n := range nodes {
		if n.Addr() != leaderAddr {
			follower = n.Addr()
		}
	}
	fdb, err := sql.Open("tandem", "tandem://"+follower+"/app?consistency=stale")
	if err != nil {
		t.Fatal(err)
	}
	defer fdb.Close()
	// Stale reads on the follower: wait until it has applied the four rows (before, the
	// database may not exist there yet).
	for {
		var n int
		if err := fdb.QueryRowContext(ctx, `SELECT count(*) FROM t`).Scan(&n); err == nil && n == 4 {
			break
		} else if ctx.Err() != nil {
			t.Fatalf("follower never had the 4 rows: %d, %v", n, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	fro, err := fdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only transaction on a follower: %v", err)
	}
	defer fro.Rollback()
	if _, err := db.ExecContext(ctx, `INSERT INTO t VALUES (6)`); err != nil {
		t.Fatal(err)
	}
	for count(fdb) != 5 {
		time.Sleep(10 * time.Millisecond)
	}
	if n := count(fro); n != 4 {
		t.Fatalf("follower's read-only transaction sees %d rows, want the 4 of its start", n)
	}
	if err := fro.Rollback(); err != nil {
		t.Fatal(err)
	}

	// Rows stream in pages from the snapshot (here 2 rows a page), across a delete of them all.
	pdb, err := sql.Open("tandem", "tandem://"+leaderAddr+"/app?page_size=2")
	if err != nil {
		t.Fatal(err)
	}
	defer pdb.Close()
	pro, err := pdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pro.Rollback()
	rows, err := pro.QueryContext(ctx, `SELECT x FROM t ORDER BY x`)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for rows.Next() {
		var x int
		if err := rows.Scan(&x); err != nil {
			t.Fatal(err)
		}
		got = append(got, x)
		if len(got) == 1 {
			if _, err := db.ExecContext(ctx, `DELETE FROM t`); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[1 2 3 4 6]" {
		t.Fatalf("rows of the snapshot, in pages: %v, want [1 2 3 4 6]", got)
	}
}

// A read-only transaction with consistency=stale serves a follower's snapshot when no leader
// can be reached, prepared statements included.
func TestReadOnlyTransactionWithoutLeader(t *testing.T) {
	nodes, _, ctx := threeRows(t)
	_, leaderAddr, err := nodes[0].Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var stay *tandem.Node
	for _, n := range nodes {
		if n.Addr() != leaderAddr && stay == nil {
			stay = n
		}
	}
	fdb, err := sql.Open("tandem", "tandem://"+stay.Addr()+"/app?consistency=stale")
	if err != nil {
		t.Fatal(err)
	}
	defer fdb.Close()
	for {
		var n int
		if err := fdb.QueryRowContext(ctx, `SELECT count(*) FROM t`).Scan(&n); err == nil && n == 3 {
			break
		} else if ctx.Err() != nil {
			t.Fatalf("follower never had the rows: %d, %v", n, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, n := range nodes {
		if n != stay {
			n.Close()
		}
	}
	start := time.Now()
	ro, err := fdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only transaction on the follower left alone: %v", err)
	}
	defer ro.Rollback()
	st, err := ro.PrepareContext(ctx, `SELECT count(*) FROM t WHERE x > ?`)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := st.QueryRowContext(ctx, 1).Scan(&n); err != nil || n != 2 {
		t.Fatalf("prepared query in the transaction: %d, %v; want 2", n, err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("begin, prepare and query took %v without a leader", d)
	}
}

// WithTxIdleTimeout: transactions, read-only or not, end after that long without a statement.
func TestTxIdleTimeoutOption(t *testing.T) {
	nodes := startEmbedded(t, 1, tandem.WithTxIdleTimeout(200*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := nodes[0].Open(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `CREATE TABLE t(x INTEGER)`); err != nil {
		t.Fatal(err)
	}
	for _, ro := range []bool{true, false} {
		tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: ro})
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		time.Sleep(600 * time.Millisecond)
		err = tx.QueryRowContext(ctx, `SELECT count(*) FROM t`).Scan(&n)
		if err == nil || !strings.Contains(err.Error(), "timed out") {
			t.Fatalf("read-only %v: query after 600 ms idle: %v, want a transaction timeout", ro, err)
		}
		tx.Rollback()
	}
}
