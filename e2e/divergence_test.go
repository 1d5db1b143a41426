package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/sqlite"
)

// TestDivergenceDetected changes a row in a stopped follower's SQLite file behind Tandem's back,
// restarts it and updates that row through the cluster: the follower must stop applying and
// say so (unhealthy in `tandem cluster list`, an ERROR log line, stale reads refused) while
// the other two nodes stay healthy and keep serving writes.
func TestDivergenceDetected(t *testing.T) {
	c := startCluster(t, 3)
	ctx := ctxT(t, 2*time.Minute)
	db := c.db("div", "")
	for _, q := range []string{
		`CREATE TABLE account(id INTEGER PRIMARY KEY, owner TEXT, balance INTEGER)`,
		`INSERT INTO account VALUES (1, 'ann', 100), (2, 'bob', 50)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	c.waitConverged(20 * time.Second)

	lead := c.leader(10 * time.Second)
	var f *proc
	for _, p := range c.nodes {
		if p != lead {
			f = p
			break
		}
	}
	c.stop(f)

	path := filepath.Join(f.data, "data", "db", "div.sqlite")
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the follower's database file: %v", err)
	}
	conn, err := sqlite.Open(path, sqlite.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Exec(`UPDATE account SET balance = 999 WHERE id = 1`); err != nil {
		conn.Close()
		t.Fatal(err)
	}
	if n := conn.Changes(); n != 1 {
		conn.Close()
		t.Fatalf("the tampering UPDATE changed %d rows", n)
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}

	off := f.logLen()
	c.start(f)
	// The follower comes back healthy: nothing has touched the tampered row yet.
	if ok, last := waitFor(30*time.Second, func() (bool, string) {
		ms, err := c.members()
		if err != nil {
			return false, err.Error()
		}
		m, _ := memberByID(ms, f.id)
		return m.Healthy, fmt.Sprintf("%+v", ms)
	}); !ok {
		t.Fatalf("node %d did not come back healthy: %s", f.id, last)
	}

	if _, err := db.ExecContext(ctx, `UPDATE account SET balance = balance - 30 WHERE id = 1`); err != nil {
		t.Fatal(err)
	}

	ok, last := waitFor(20*time.Second, func() (bool, string) {
		ms, err := c.members()
		if err != nil {
			return false, err.Error()
		}
		m, _ := memberByID(ms, f.id)
		return !m.Healthy && m.Problem != "", fmt.Sprintf("%+v", ms)
	})
	if !ok {
		t.Fatalf("node %d was not reported unhealthy: %s", f.id, last)
	}
	ms, err := c.members()
	if err != nil {
		t.Fatal(err)
	}
	m, _ := memberByID(ms, f.id)
	if !strings.Contains(m.Problem, "account") {
		t.Errorf("node %d's problem does not name the table: %q", f.id, m.Problem)
	}
	for _, o := range ms {
		if o.ID != uint64(f.id) && (!o.Healthy || o.Problem != "") {
			t.Errorf("node %d is not healthy: %+v", o.ID, o)
		}
	}

	// `tandem cluster health`, a supervisor's check: 1 for the diverged node, 0 for the others.
	var others []string
	for _, p := range c.nodes {
		if p != f {
			others = append(others, p.addr)
		}
	}
	out, errOut, err := c.tandem("", "cluster", "health", "--cluster", strings.Join(others, ","), "--timeout", "5s")
	if err != nil {
		t.Errorf("cluster health of the two healthy nodes: %v\n%s%s", err, out, errOut)
	}
	out, errOut, err = c.tandem("", "cluster", "health", "--cluster", f.addr, "--timeout", "5s", "--format", "json")
	if exitCode(err) != 1 || !strings.Contains(out, `"healthy": false`) || !strings.Contains(out, "account") ||
		!strings.Contains(errOut, "not every node is healthy") {
		t.Errorf("cluster health of the diverged node: exit %d\n%s%s", exitCode(err), out, errOut)
	}

	var errLine string
	for _, l := range strings.Split(f.logSince(off), "\n") {
		if strings.Contains(l, "level=ERROR") {
			errLine = l
			break
		}
	}
	if errLine == "" {
		t.Errorf("node %d logged no ERROR line", f.id)
	} else if !strings.Contains(strings.ToLower(errLine), "diverge") {
		t.Errorf("node %d's ERROR line does not speak of divergence: %s", f.id, errLine)
	}

	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	var bal int
	err = c.nodeDB(f, "div").QueryRowContext(qctx, `SELECT balance FROM account WHERE id = 1`).Scan(&bal)
	cancel()
	if err == nil {
		t.Errorf("a stale read on the diverged node %d was served (balance %d)", f.id, bal)
	} else if !strings.Contains(strings.ToLower(err.Error()), "diverge") {
		t.Errorf("the stale read on node %d failed, but not for divergence: %v", f.id, err)
	}

	// The other two keep serving writes and agree.
	for i := range 20 {
		if _, err := db.ExecContext(ctx, `INSERT INTO account(owner, balance) VALUES (?, ?)`, fmt.Sprintf("new%d", i), i); err != nil {
			t.Fatalf("write %d after the divergence: %v", i, err)
		}
	}
	var healthy []*proc
	for _, p := range c.nodes {
		if p != f {
			healthy = append(healthy, p)
		}
	}
	if ok, last := waitFor(20*time.Second, func() (bool, string) {
		var got []string
		ok := true
		for _, p := range healthy {
			var n, b int
			if err := c.nodeDB(p, "div").QueryRowContext(ctx, `SELECT count(*), (SELECT balance FROM account WHERE id = 1) FROM account`).Scan(&n, &b); err != nil {
				return false, err.Error()
			}
			ok = ok && n == 22 && b == 70
			got = append(got, fmt.Sprintf("node %d: %d rows, balance %d", p.id, n, b))
		}
		return ok, strings.Join(got, "; ")
	}); !ok {
		t.Fatalf("the healthy nodes do not hold the writes: %s", last)
	}
	ms, err = c.members()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range ms {
		if o.ID == uint64(f.id) {
			if o.Healthy {
				t.Errorf("node %d reports healthy again after more writes: %+v", o.ID, o)
			}
		} else if !o.Healthy {
			t.Errorf("node %d is not healthy after the writes: %+v", o.ID, o)
		}
	}
	t.Logf("node %d: %s", f.id, m.Problem)
}
