package tandem_test

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandemdb/tandem"
	"github.com/tandemdb/tandem/client"
	"github.com/tandemdb/tandem/internal/testcluster"
	"github.com/tandemdb/tandem/internal/tlsconfig"
)

// startEmbedded starts n embedded nodes: the first bootstraps, the others join it.
func startEmbedded(t *testing.T, n int, extra ...tandem.Option) []*tandem.Node {
	return testcluster.Start(t, n, append([]tandem.Option{tandem.WithTickInterval(20 * time.Millisecond)}, extra...)...)
}

func TestEmbeddedCluster(t *testing.T) {
	nodes := startEmbedded(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Write through the last node: the driver follows the leader.
	db, err := nodes[2].Open(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `CREATE TABLE t(id INTEGER PRIMARY KEY, at TEXT, r INTEGER)`); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if _, err := db.ExecContext(ctx, `INSERT INTO t(at, r) VALUES (datetime('now'), random())`); err != nil {
			t.Fatal(err)
		}
	}
	leaderID, leaderAddr, err := nodes[0].Leader(ctx)
	if err != nil || leaderID == 0 || leaderAddr == "" {
		t.Fatalf("leader %d %q %v", leaderID, leaderAddr, err)
	}
	// Every node's local copy has the same rows (random() travelled as a value).
	var want string
	for i, n := range nodes {
		sdb, err := sql.Open("tandem", "tandem://"+n.Addr()+"/app?consistency=stale")
		if err != nil {
			t.Fatal(err)
		}
		var got string
		deadline := time.Now().Add(10 * time.Second)
		for {
			err = sdb.QueryRowContext(ctx, `SELECT count(*) || ':' || total(r) FROM t`).Scan(&got)
			if err == nil && got[:2] == "20" || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		sdb.Close()
		if err != nil {
			t.Fatalf("node %d: %v", i+1, err)
		}
		if want == "" {
			want = got
		}
		if got != want {
			t.Fatalf("node %d has %s, node 1 has %s", i+1, got, want)
		}
	}

	// Hand leadership over and keep writing.
	for _, n := range nodes {
		if n.ID() == leaderID {
			if err := n.Handover(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO t(at, r) VALUES ('after handover', 0)`); err != nil {
		t.Fatal(err)
	}
	newLeader, _, _ := nodes[0].Leader(ctx)
	if newLeader == leaderID {
		t.Fatalf("leadership stayed on node %d after Handover", leaderID)
	}
}

// tlsIdentity makes a CA and a certificate for 127.0.0.1 in a temporary directory and returns
// the server and client configurations of that identity.
func tlsIdentity(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	dir := t.TempDir()
	if _, err := tlsconfig.WriteFiles(dir, []string{"n"}, []string{"127.0.0.1"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	srv, cli, err := tandem.LoadTLS(filepath.Join(dir, "n.pem"), filepath.Join(dir, "n-key.pem"), filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return srv, cli
}

func TestEmbeddedMutualTLS(t *testing.T) {
	srv, cli := tlsIdentity(t)
	nodes := startEmbedded(t, 3, tandem.WithTLS(srv, cli))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := nodes[1].Open(ctx, "secure")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `CREATE TABLE s(a)`); err != nil {
		t.Fatal(err)
	}
	// A plaintext client is refused.
	plain, err := sql.Open("tandem", "tandem://"+nodes[0].Addr()+"/secure?timeout=2s")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := plain.PingContext(ctx); err == nil {
		t.Fatal("a plaintext client was served by a TLS node")
	}
}

func TestOpenRejectsBadName(t *testing.T) {
	nodes := startEmbedded(t, 1)
	if _, err := nodes[0].Open(context.Background(), "bad name!"); err == nil {
		t.Fatal("Open accepted an invalid database name")
	}
}

// A node removed from the cluster closes itself and says why; a restart from its data
// directory finds the removal again; the rest of the cluster keeps serving.
func TestEmbeddedRemovedNodeStops(t *testing.T) {
	nodes := startEmbedded(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "n4")
	opts := []tandem.Option{tandem.WithID(4), tandem.WithAddress("127.0.0.1:0"), tandem.WithTickInterval(20 * time.Millisecond)}
	fourth, err := tandem.New(dir, append(opts, tandem.WithCluster(nodes[0].Addr()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer fourth.Close()
	if err := fourth.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	if err := fourth.Err(); err != nil {
		t.Fatalf("Err of a running node: %v", err)
	}

	c, err := client.New(ctx, client.Config{Addrs: []string{nodes[0].Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Remove(ctx, 4); err != nil {
		t.Fatal(err)
	}
	select {
	case <-fourth.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("the removed node did not stop")
	}
	if err := fourth.Err(); !errors.Is(err, tandem.ErrRemoved) {
		t.Fatalf("Err = %v, want ErrRemoved", err)
	}
	if err := fourth.Ready(ctx); !errors.Is(err, tandem.ErrRemoved) {
		t.Fatalf("Ready = %v, want ErrRemoved", err)
	}
	if _, err := fourth.Open(ctx, "app"); !errors.Is(err, tandem.ErrRemoved) {
		t.Fatalf("Open = %v, want ErrRemoved", err)
	}

	// The others carry on without it.
	db, err := nodes[1].Open(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `CREATE TABLE t(x)`); err != nil {
		t.Fatal(err)
	}
	ms, err := nodes[0].Cluster(ctx)
	if err != nil || len(ms) != 3 {
		t.Fatalf("members after the removal: %+v, %v", ms, err)
	}

	again, err := tandem.New(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	select {
	case <-again.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("a restart of the removed node did not stop")
	}
	if err := again.Err(); !errors.Is(err, tandem.ErrRemoved) {
		t.Fatalf("restarted removed node: Err = %v, want ErrRemoved", err)
	}
}

// A prepared statement is compiled on the leader: SQLite's error comes at Prepare, and
// database/sql checks the number of arguments against the parameters the server counted.
func TestEmbeddedPreparedStatements(t *testing.T) {
	nodes := startEmbedded(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := nodes[1].Open(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// The database does not exist yet: the statement cannot be described, only run.
	create, err := db.PrepareContext(ctx, `CREATE TABLE t(a, b)`)
	if err != nil {
		t.Fatalf("prepare before the database exists: %v", err)
	}
	if _, err := create.ExecContext(ctx); err != nil {
		t.Fatal(err)
	}
	create.Close()
	if _, err := db.PrepareContext(ctx, `INSERT INTO nosuch VALUES(?)`); err == nil || !strings.Contains(err.Error(), "no such table") {
		t.Fatalf("prepare of a statement on a missing table: %v", err)
	}
	ins, err := db.PrepareContext(ctx, `INSERT INTO t VALUES(?, ?)`)
	if err != nil {
		t.Fatal(err)
	}
	defer ins.Close()
	if _, err := ins.ExecContext(ctx, 1); err == nil || !strings.Contains(err.Error(), "expected 2 arguments, got 1") {
		t.Fatalf("one argument for two parameters: %v", err)
	}
	if _, err := ins.ExecContext(ctx, 1, 2); err != nil {
		t.Fatal(err)
	}
	same, err := db.PrepareContext(ctx, `SELECT count(*) FROM t WHERE a = ?1 OR b = ?1`)
	if err != nil {
		t.Fatal(err)
	}
	defer same.Close()
	var n int
	if err := same.QueryRowContext(ctx, 2).Scan(&n); err != nil || n != 1 {
		t.Fatalf("a parameter used twice: %d, %v", n, err)
	}
	// Without a prepared statement the server still refuses a missing argument.
	if _, err := db.ExecContext(ctx, `INSERT INTO t VALUES(?, ?)`, 3); err == nil || !strings.Contains(err.Error(), "no argument for parameter") {
		t.Fatalf("Exec with a missing argument: %v", err)
	}

	// Inside a transaction: the argument count is checked too, and a statement on a table
	// the transaction created (which the leader cannot compile outside it) still works.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	txIns, err := tx.PrepareContext(ctx, `INSERT INTO t VALUES(?, ?)`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := txIns.ExecContext(ctx, 4); err == nil || !strings.Contains(err.Error(), "expected 2 arguments, got 1") {
		t.Fatalf("Exec in a transaction with a missing argument: %v", err)
	}
	if _, err := txIns.ExecContext(ctx, 4, 5); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE u(x)`); err != nil {
		t.Fatal(err)
	}
	txNew, err := tx.PrepareContext(ctx, `INSERT INTO u VALUES(?)`)
	if err != nil {
		t.Fatalf("prepare on a table created in the transaction: %v", err)
	}
	if _, err := txNew.ExecContext(ctx, 6); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM t) + (SELECT x FROM u)`).Scan(&n); err != nil || n != 2+6 {
		t.Fatalf("after the transaction: %d %v", n, err)
	}
}

// A plaintext client of a TLS node is told that the node requires TLS, at once, instead of
// retrying a closed connection until its deadline.
func TestPlaintextClientOfATLSNodeIsTold(t *testing.T) {
	srv, cli := tlsIdentity(t)
	nodes := startEmbedded(t, 1, tandem.WithTLS(srv, cli))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err := client.New(ctx, client.Config{Addrs: []string{nodes[0].Addr()}})
	if err == nil || !strings.Contains(err.Error(), "requires TLS") {
		t.Fatalf("plaintext client: %v, want an error saying the node requires TLS", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the refusal took %v", d)
	}
}

// A client whose certificate the node refuses (another CA) fails at once with the reason,
// instead of retrying until its deadline.
func TestForeignCertificateFailsFast(t *testing.T) {
	srv, cli := tlsIdentity(t)
	nodes := startEmbedded(t, 1, tandem.WithTLS(srv, cli))
	_, stranger := tlsIdentity(t) // another CA
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err := client.New(ctx, client.Config{Addrs: []string{nodes[0].Addr()}, TLS: stranger})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("client of another CA: %v, want a certificate error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the refusal took %v", d)
	}
}
