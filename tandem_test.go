package tandem_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/tandemdb/tandem"
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

func TestEmbeddedMutualTLS(t *testing.T) {
	dir := t.TempDir()
	if err := tlsconfig.WriteFiles(dir, []string{"n"}, []string{"127.0.0.1"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	srv, cli, err := tandem.LoadTLS(filepath.Join(dir, "n.pem"), filepath.Join(dir, "n-key.pem"), filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
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
