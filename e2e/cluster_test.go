package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var equivalenceSchema = []string{
	`CREATE TABLE parent(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, created TEXT DEFAULT (datetime('now')), r INTEGER)`,
	`CREATE TABLE child(id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id) ON DELETE CASCADE, b BLOB)`,
	`CREATE TABLE nopk(a, b)`,
	`CREATE TABLE wr(k TEXT PRIMARY KEY, v INTEGER) WITHOUT ROWID`,
	`CREATE TABLE audit(id INTEGER PRIMARY KEY AUTOINCREMENT, what TEXT, at TEXT)`,
	`CREATE TABLE named(k TEXT PRIMARY KEY, v INTEGER)`, // its rowid is not its key
	`CREATE TRIGGER parent_ins AFTER INSERT ON parent BEGIN INSERT INTO audit(what, at) VALUES ('parent ' || NEW.id, datetime('now')); END`,
}

// randomStatement picks one statement of the randomized workload; ok=false marks the ones
// that must fail.
func randomStatement(r *rand.Rand, phase int) (q string, args []any, mustFail bool) {
	switch n := r.IntN(14); n {
	case 0, 1:
		return `INSERT INTO parent(name, r) VALUES (?, random())`, []any{fmt.Sprintf("p%d", r.IntN(1000))}, false
	case 2, 3:
		return `INSERT INTO child(parent_id, b) SELECT id, randomblob(16) FROM parent ORDER BY random() LIMIT 1`, nil, false
	case 4:
		return `DELETE FROM parent WHERE id = (SELECT id FROM parent ORDER BY random() LIMIT 1)`, nil, false
	case 5:
		return `INSERT INTO nopk VALUES (random(), hex(randomblob(4)))`, nil, false
	case 6:
		return `UPDATE nopk SET b = datetime('now') || ':' || random() WHERE rowid % 3 = abs(random()) % 3`, nil, false
	case 7:
		return `INSERT OR REPLACE INTO wr(k, v) VALUES (?, random())`, []any{fmt.Sprintf("k%02d", r.IntN(20))}, false
	case 8:
		return `DELETE FROM wr WHERE k = ?`, []any{fmt.Sprintf("k%02d", r.IntN(20))}, false
	case 9:
		if phase > 0 {
			return `UPDATE wr SET extra = hex(randomblob(2)) WHERE k = ?`, []any{fmt.Sprintf("k%02d", r.IntN(20))}, false
		}
		return `INSERT INTO no_such_table VALUES (1)`, nil, true
	case 10:
		return `INSERT INTO wr(k, v) VALUES (NULL, 1)`, nil, true // NOT NULL primary key of a WITHOUT ROWID table
	case 11:
		return `SELEKT 1`, nil, true
	case 12: // concurrent requests batch up: several rows get their rowids in one entry
		return `INSERT OR REPLACE INTO named(k, v) VALUES (?, random())`, []any{fmt.Sprintf("n%02d", r.IntN(40))}, false
	default:
		return `UPDATE parent SET r = r + 1, name = name || '+' WHERE id % 5 = ?`, []any{r.IntN(5)}, false
	}
}

// TestEquivalence runs a randomized concurrent workload through the cluster and checks that
// every node ends with the same logical content (schema, sqlite_sequence, every row).
func TestEquivalence(t *testing.T) {
	c := startCluster(t, 3)
	ctx := ctxT(t, 3*time.Minute)
	db := c.db("eq", "")
	for _, q := range equivalenceSchema {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}

	var failedAsExpected, unexpected atomic.Int64
	run := func(phase, perWorker int) {
		var wg sync.WaitGroup
		for w := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(phase), uint64(w)))
				for range perWorker {
					q, args, mustFail := randomStatement(r, phase)
					_, err := db.ExecContext(ctx, q, args...)
					switch {
					case mustFail && err != nil:
						failedAsExpected.Add(1)
					case mustFail:
						unexpected.Add(1)
						t.Errorf("%s succeeded; it must fail", q)
					case err != nil:
						unexpected.Add(1)
						t.Errorf("%s: %v", q, err)
					}
				}
			}()
		}
		wg.Wait()
	}
	run(0, 60)

	// Schema changes in the middle of the workload: CREATE TABLE AS SELECT and ADD COLUMN.
	for _, q := range []string{
		`CREATE TABLE snap AS SELECT id, name, r FROM parent`,
		`ALTER TABLE wr ADD COLUMN extra TEXT DEFAULT 'd'`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	run(1, 60)

	// Interactive transactions: one commits, one rolls back.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var before int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM parent`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO parent(name, r) VALUES ('tx', random())`); err != nil {
		t.Fatal(err)
	}
	var inside int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM parent`).Scan(&inside); err != nil {
		t.Fatal(err)
	}
	if inside != before+1 {
		t.Fatalf("transaction does not see its own insert: %d then %d", before, inside)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	tx, err = db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM parent`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	var after int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM parent`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != before+1 {
		t.Fatalf("after commit and rollback: %d rows, want %d", after, before+1)
	}
	if failedAsExpected.Load() == 0 {
		t.Fatal("the workload had no failing statements; the test lost its point")
	}

	c.waitConverged(30 * time.Second)
	var hashes []string
	for _, p := range c.nodes {
		h, err := contentHash(ctx, c.nodeDB(p, "eq"))
		if err != nil {
			t.Fatalf("node %d: %v", p.id, err)
		}
		hashes = append(hashes, h)
	}
	for i, h := range hashes {
		if h != hashes[0] {
			t.Fatalf("node %d content %s differs from node 1's %s", i+1, h, hashes[0])
		}
	}
	// The content is not trivially equal: every table has rows.
	for _, tbl := range []string{"parent", "child", "nopk", "wr", "audit", "snap", "sqlite_sequence"} {
		var n int
		if err := c.nodeDB(c.nodes[2], "eq").QueryRowContext(ctx, fmt.Sprintf(`SELECT count(*) FROM %s`, tbl)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Errorf("table %s is empty on node 3", tbl)
		}
	}
	t.Logf("content hash %s on all nodes; %d statements failed as they should", hashes[0][:16], failedAsExpected.Load())
}

// TestLeaderKill kills the leader with SIGKILL during concurrent writes: writes resume on a
// new leader, and once the old leader is back every acknowledged row is on every node once.
func TestLeaderKill(t *testing.T) {
	c := startCluster(t, 3)
	ctx := ctxT(t, 3*time.Minute)
	db := c.db("kill", "")
	if _, err := db.ExecContext(ctx, `CREATE TABLE t(id TEXT, w INTEGER) -- no unique key, so a write applied twice would show as a duplicate`); err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		acked = map[string]bool{}
		stop  atomic.Bool
		wg    sync.WaitGroup
		errs  atomic.Int64
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := db.ExecContext(wctx, `INSERT INTO t(id, w) VALUES (?, ?)`, id, w)
				cancel()
				if err != nil {
					errs.Add(1)
					continue
				}
				mu.Lock()
				acked[id] = true
				mu.Unlock()
			}
		}()
	}
	time.Sleep(time.Second)
	old := c.leader(10 * time.Second)
	mu.Lock()
	before := len(acked)
	mu.Unlock()
	killed := time.Now()
	c.kill(old)
	// Writes resume: the number of acknowledged rows grows again.
	var resumed time.Duration
	for time.Since(killed) < 20*time.Second {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n > before+10 {
			resumed = time.Since(killed)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if resumed == 0 {
		t.Fatal("writes did not resume within 20s of the leader kill")
	}
	time.Sleep(time.Second)
	c.start(old)
	time.Sleep(time.Second)
	stop.Store(true)
	wg.Wait()
	c.waitConverged(30 * time.Second)
	mu.Lock()
	defer mu.Unlock()
	for _, p := range c.nodes {
		rows, err := c.nodeDB(p, "kill").QueryContext(ctx, `SELECT id, count(*) FROM t GROUP BY id`)
		if err != nil {
			t.Fatal(err)
		}
		present := map[string]bool{}
		for rows.Next() {
			var id string
			var n int
			if err := rows.Scan(&id, &n); err != nil {
				t.Fatal(err)
			}
			if n != 1 {
				t.Errorf("node %d: row %s present %d times", p.id, id, n)
			}
			present[id] = true
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("node %d: %v", p.id, err)
		}
		rows.Close()
		lost := 0
		for id := range acked {
			if !present[id] {
				lost++
			}
		}
		if lost > 0 {
			t.Errorf("node %d lost %d of %d acknowledged rows", p.id, lost, len(acked))
		}
	}
	t.Logf("%d rows acknowledged, writes resumed %v after the kill, %d failed attempts (retried as new rows)", len(acked), resumed.Round(time.Millisecond), errs.Load())
}

// TestSixteenWriters checks that concurrent writers never see "database is locked" or any
// busy error, and that each gets its own result.
func TestSixteenWriters(t *testing.T) {
	c := startCluster(t, 3)
	ctx := ctxT(t, 2*time.Minute)
	db := c.db("busy", "")
	db.SetMaxOpenConns(16)
	if _, err := db.ExecContext(ctx, `CREATE TABLE kv(k TEXT PRIMARY KEY, v BLOB)`); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var bad atomic.Int64
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				res, err := db.ExecContext(ctx, `INSERT OR REPLACE INTO kv(k, v) VALUES (?, randomblob(1024))`, fmt.Sprintf("%02d-%03d", w, i))
				if err != nil {
					bad.Add(1)
					t.Errorf("writer %d: %v", w, err)
					return
				}
				if n, _ := res.RowsAffected(); n != 1 {
					t.Errorf("writer %d: %d rows affected", w, n)
				}
			}
			// Each writer also gets its own error, not a neighbour's.
			_, err := db.ExecContext(ctx, `INSERT INTO kv(k, v) VALUES (NULL, 1)`)
			if err == nil || !strings.Contains(err.Error(), "sqlite error 19") {
				t.Errorf("writer %d: want a constraint error, got %v", w, err)
			}
		}()
	}
	wg.Wait()
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM kv`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1600 {
		t.Fatalf("%d rows, want 1600", n)
	}
}

// TestMalformedSQL: SQLite's message reaches the caller and the cluster keeps serving.
func TestMalformedSQL(t *testing.T) {
	c := startCluster(t, 3)
	ctx := ctxT(t, time.Minute)
	db := c.db("bad", "")
	_, err := db.ExecContext(ctx, `CREATE TABLE x(a,,b)`)
	if err == nil || !strings.Contains(err.Error(), "syntax error") {
		t.Fatalf("want SQLite's syntax error, got %v", err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE x(a)`); err != nil {
		t.Fatal(err)
	}
	_, err = db.QueryContext(ctx, `SELECT nope FROM x`)
	if err == nil || !strings.Contains(err.Error(), "no such column") {
		t.Fatalf("want no such column, got %v", err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO x VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM x`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("count %d, %v", n, err)
	}
}
