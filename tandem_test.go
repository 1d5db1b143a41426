package tandem_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/tandemdb/tandem"
	"github.com/tandemdb/tandem/internal/tlsconfig"
)

// startEmbedded starts n embedded nodes: the first bootstraps, the others join it.
func startEmbedded(t *testing.T, n int, extra ...tandem.Option) []*tandem.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := t.TempDir()
	var nodes []*tandem.Node
	for i := range n {
		opts := append([]tandem.Option{tandem.WithID(uint64(i + 1)), tandem.WithAddress("127.0.0.1:0"), tandem.WithTickInterval(20 * time.Millisecond)}, extra...)
		if i > 0 {
			opts = append(opts, tandem.WithCluster(nodes[0].Addr()))
		}
		node, err := tandem.New(filepath.Join(base, "n"+string(rune('1'+i))), opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { node.Close() })
		if err := node.Ready(ctx); err != nil {
			t.Fatalf("node %d not ready: %v", i+1, err)
		}
		nodes = append(nodes, node)
	}
	// Wait until all are voters.
	for {
		ms, err := nodes[0].Cluster(ctx)
		if err != nil {
			t.Fatal(err)
		}
		voters := 0
		for _, m := range ms {
			if m.Role == "voter" {
				voters++
			}
		}
		if voters == n {
			return nodes
		}
		select {
		case <-ctx.Done():
			t.Fatalf("only %d of %d voters: %+v", voters, n, ms)
		case <-time.After(20 * time.Millisecond):
		}
	}
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
