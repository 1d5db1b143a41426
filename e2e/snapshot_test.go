package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestSnapshotCatchUp stops a follower, writes far past what it holds so that the others
// compact their logs, restarts it, and checks that it catches up by installing a snapshot
// (not by replaying the log) and ends with exactly the content of the others.
func TestSnapshotCatchUp(t *testing.T) {
	c := startCluster(t, 3, "--snapshot-every", "50")
	ctx := ctxT(t, 2*time.Minute)
	db := c.db("snap", "")
	for _, q := range []string{
		`CREATE TABLE item(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, n INTEGER, f REAL, b BLOB)`,
		`CREATE TABLE tag(name TEXT PRIMARY KEY, hits INTEGER) WITHOUT ROWID`,
		`INSERT INTO item(name, n, f, b) VALUES ('before', 0, 0.5, randomblob(8))`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	c.waitConverged(20 * time.Second)

	n3 := c.nodes[2]
	ms, err := c.members()
	if err != nil {
		t.Fatal(err)
	}
	m3, ok := memberByID(ms, n3.id)
	if !ok || m3.Applied == 0 {
		t.Fatalf("node 3 not listed with an applied index: %+v", ms)
	}
	stoppedAt := m3.Applied
	c.stop(n3)

	// One Raft entry per statement (they run one at a time): about 560 entries, more than
	// ten times --snapshot-every, so the others' logs no longer reach back to stoppedAt.
	for i := range 500 {
		if _, err := db.ExecContext(ctx, `INSERT INTO item(name, n, f, b) VALUES (?, ?, ?, randomblob(32))`,
			fmt.Sprintf("row %d", i), i, float64(i)/3); err != nil {
			t.Fatalf("insert %d: %v", i, err)
		}
		if i%10 == 9 {
			if _, err := db.ExecContext(ctx, `INSERT INTO tag(name, hits) VALUES (?, 1) ON CONFLICT(name) DO UPDATE SET hits = hits + 1`,
				fmt.Sprintf("t%d", i%7)); err != nil {
				t.Fatalf("upsert %d: %v", i, err)
			}
		}
		if i%25 == 24 {
			if _, err := db.ExecContext(ctx, `DELETE FROM item WHERE id = (SELECT min(id) FROM item WHERE n % 2 = 1)`); err != nil {
				t.Fatalf("delete %d: %v", i, err)
			}
		}
	}

	// The running nodes took snapshots well past what node 3 holds.
	var newest uint64
	for _, p := range c.nodes[:2] {
		for _, l := range logLines(p.logText(), "snapshot taken") {
			newest = max(newest, logIndex(l))
		}
	}
	if newest <= stoppedAt+50 {
		t.Fatalf("no snapshot taken past node 3's applied index %d (newest %d): the test cannot force a snapshot transfer", stoppedAt, newest)
	}

	off := n3.logLen()
	c.start(n3)
	c.waitConverged(60 * time.Second)

	installed := logLines(n3.logSince(off), "snapshot installed")
	if len(installed) == 0 {
		t.Fatalf("node 3 caught up without installing a snapshot (applied %d when stopped, others snapshotted at %d)", stoppedAt, newest)
	}
	if idx := logIndex(installed[0]); idx <= stoppedAt {
		t.Fatalf("node 3 installed snapshot %d, not past its applied index %d: %s", idx, stoppedAt, installed[0])
	}
	sent := false
	for _, p := range c.nodes[:2] {
		for _, l := range logLines(p.logSince(0), "snapshot sent") {
			sent = sent || strings.Contains(l, "peer=3")
		}
	}
	if !sent {
		t.Errorf("no node logged sending a snapshot to node 3")
	}

	var hashes []string
	for _, p := range c.nodes {
		h, err := contentHash(ctx, c.nodeDB(p, "snap"))
		if err != nil {
			t.Fatalf("node %d: %v", p.id, err)
		}
		hashes = append(hashes, h)
	}
	for i, h := range hashes {
		if h != hashes[0] {
			t.Errorf("node %d content %s differs from node 1's %s", i+1, h, hashes[0])
		}
	}
	var items, tags int
	if err := c.nodeDB(n3, "snap").QueryRowContext(ctx, `SELECT (SELECT count(*) FROM item), (SELECT count(*) FROM tag)`).Scan(&items, &tags); err != nil {
		t.Fatal(err)
	}
	if items != 501-20 || tags != 7 {
		t.Errorf("node 3 holds %d items and %d tags, want 481 and 7", items, tags)
	}

	// Node 3 keeps applying normally after the snapshot.
	if _, err := db.ExecContext(ctx, `INSERT INTO item(name) VALUES ('after')`); err != nil {
		t.Fatal(err)
	}
	c.waitConverged(20 * time.Second)
	var after int
	if err := c.nodeDB(n3, "snap").QueryRowContext(ctx, `SELECT count(*) FROM item WHERE name = 'after'`).Scan(&after); err != nil || after != 1 {
		t.Fatalf("node 3 after the snapshot: %d rows named 'after', %v", after, err)
	}
	t.Logf("node 3 stopped at %d, installed %s; content %s on all nodes", stoppedAt, strings.TrimSpace(installed[0][strings.Index(installed[0], "msg="):]), hashes[0][:16])
}
