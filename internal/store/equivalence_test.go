package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// equivalenceSchema is created first; the random workload then runs against it.
var equivalenceSchema = []string{
	`CREATE TABLE parent(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, r REAL, b BLOB,
		created TEXT DEFAULT (datetime('now')))`,
	`CREATE TABLE child(id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id) ON DELETE CASCADE, v INTEGER)`,
	`CREATE TABLE audit(id INTEGER PRIMARY KEY AUTOINCREMENT, what TEXT, at TEXT)`,
	`CREATE TRIGGER parent_ins AFTER INSERT ON parent BEGIN
		INSERT INTO audit(what, at) VALUES('ins ' || NEW.name, strftime('%Y-%m-%d %H:%M:%f', 'now')); END`,
	`CREATE TRIGGER child_upd AFTER UPDATE ON child BEGIN
		INSERT INTO audit(what) VALUES('upd ' || NEW.id || ' ' || random()); END`,
	`CREATE TABLE nopk(a, b)`,
	`CREATE TABLE kv(k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID`,
	`CREATE TABLE tpk(k TEXT PRIMARY KEY, v)`,
	`CREATE TABLE model(key TEXT, value TEXT, UNIQUE(key))`,
	`CREATE TABLE copy_target(a, b)`,
}

// randomStatement returns one request's SQL. Some fail on purpose.
func randomStatement(r *rand.Rand, step int) string {
	switch r.IntN(27) {
	case 0, 1:
		return "INSERT INTO parent(name, r, b) VALUES('p' || abs(random() % 40), random() / 1e10, randomblob(8))"
	case 2, 3:
		return "INSERT INTO child(parent_id, v) SELECT id, random() FROM parent ORDER BY random() LIMIT 1"
	case 4:
		return "DELETE FROM parent WHERE id IN (SELECT id FROM parent ORDER BY random() LIMIT 1)"
	case 5:
		return "UPDATE child SET v = v + 1 WHERE id % 3 = abs(random()) % 3"
	case 6, 7:
		return "INSERT INTO nopk(a, b) VALUES(random(), hex(randomblob(4)))"
	case 8:
		return "DELETE FROM nopk WHERE rowid IN (SELECT rowid FROM nopk ORDER BY random() LIMIT 2)"
	case 9, 10:
		return "INSERT OR REPLACE INTO kv VALUES('k' || abs(random() % 30), randomblob(16))"
	case 11:
		return "INSERT INTO tpk VALUES(NULL, 1)" // NULL primary key: rejected
	case 12:
		// tpk's rowid is not its key: rowids travel beside the changeset.
		switch r.IntN(4) {
		case 0:
			return "INSERT OR REPLACE INTO tpk VALUES('t' || abs(random() % 20), random())" // a new rowid
		case 1:
			return "INSERT INTO tpk(rowid, k, v) VALUES(1000 + abs(random() % 50), 'r' || abs(random() % 30), 1)" // may collide
		case 2:
			return "UPDATE tpk SET rowid = -abs(random() % 1000), v = random() WHERE k IN (SELECT k FROM tpk ORDER BY random() LIMIT 1)"
		}
		return "INSERT INTO tpk VALUES('t' || abs(random() % 20), random())" // may violate the PK
	case 13:
		return "SELECT * FROM no_such_table"
	case 14:
		return "INSERT INTO nopk(a, b) VALUES(1, 2); INSERT INTO no_such VALUES(1)" // fails as a whole
	case 15:
		return fmt.Sprintf("CREATE TABLE IF NOT EXISTS ctas_%d AS SELECT id, name, random() AS r FROM parent", step)
	case 16:
		return fmt.Sprintf("ALTER TABLE nopk ADD COLUMN c_%d TEXT DEFAULT 'x'", step)
	case 17:
		if r.IntN(2) == 0 {
			return "CREATE INDEX IF NOT EXISTS child_v ON child(v)"
		}
		return "DROP INDEX IF EXISTS child_v"
	case 18:
		return "UPDATE sqlite_sequence SET seq = seq + 10 WHERE name = 'audit'"
	case 19:
		return "DELETE FROM audit WHERE id % 5 = abs(random()) % 5"
	case 20, 21:
		return "INSERT OR REPLACE INTO model(key, value) VALUES('m' || abs(random() % 25), hex(randomblob(32)))"
	case 22:
		return "INSERT INTO copy_target SELECT a, b FROM nopk" // INSERT ... SELECT
	case 23:
		return "UPDATE parent SET r = random(), created = datetime('now', '+' || abs(random() % 100) || ' seconds') WHERE id IN (SELECT id FROM parent ORDER BY random() LIMIT 2)"
	case 24:
		return "INSERT INTO child(parent_id, v) VALUES(999999, 1)" // FK violation
	case 25:
		return fmt.Sprintf("PRAGMA user_version = %d", r.IntN(1000)) // replicated with the entry
	default:
		return "UPDATE kv SET v = randomblob(4) WHERE k IN (SELECT k FROM kv ORDER BY random() LIMIT 3) RETURNING k"
	}
}

func TestRandomizedEquivalence(t *testing.T) {
	seeds := 4
	if testing.Short() || raceEnabled {
		seeds = 1 // modernc's SQLite is slow under the race detector
	}
	if v, err := strconv.Atoi(os.Getenv("TANDEM_EQUIV_SEEDS")); err == nil {
		seeds = v
	}
	for seed := range seeds {
		// verify: the leader rolls back what it executed and applies its own changeset, and
		// every entry's applied content is compared with its executed content. held: the
		// leader commits what it executed (the production path); the followers' content,
		// applied from the changesets, is compared with it at the end.
		for _, verify := range []bool{true, false} {
			name := fmt.Sprintf("seed%d/held", seed)
			if verify {
				name = fmt.Sprintf("seed%d/verify", seed)
			}
			t.Run(name, func(t *testing.T) { runEquivalence(t, uint64(seed), verify) })
		}
	}
}

func runEquivalence(t *testing.T, seed uint64, verify bool) {
	f := newCluster(t, 3, nil)
	s := f.leader()
	s.verifyExec = verify
	ctx := context.Background()
	for _, q := range equivalenceSchema {
		mustExec(t, s, "PRAGMA foreign_keys") // a read-only pragma is fine
		mustExec(t, s, q)
	}
	const workers, perWorker = 6, 60
	var wg sync.WaitGroup
	var mu sync.Mutex
	stats := map[string]int{}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(w)))
			for i := 0; i < perWorker; i++ {
				step := w*1000 + i
				if r.IntN(10) == 0 {
					// An interactive transaction: a few statements, then commit or roll back.
					tx, err := s.Begin(ctx, testDB, uint64(w+1))
					if err != nil {
						t.Error(err)
						return
					}
					for k := r.IntN(4) + 1; k > 0; k-- {
						if _, err := tx.Exec(ctx, randomStatement(r, step*10+k), nil); err != nil {
							t.Error(err)
						}
					}
					if r.IntN(3) == 0 {
						tx.Rollback()
						continue
					}
					if _, err := tx.Commit(ctx, uint64(step+1)); err != nil {
						t.Error(err)
					}
					continue
				}
				q := randomStatement(r, step)
				res, err := s.Exec(ctx, testDB, Request{ClientID: uint64(w + 1), RequestID: uint64(step + 1), SQL: q})
				if err != nil {
					t.Errorf("%q: %v", q, err)
					return
				}
				mu.Lock()
				if res.Err != nil {
					stats["failed"]++
				} else {
					stats["ok"]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	f.requireHealthy()
	f.requireSameContent(testDB)
	// Every entry reproduced, on apply, exactly what its batch executed on the leader.
	s.verifyMu.Lock()
	if len(s.verifyErrs) > 0 {
		t.Errorf("%d entries applied differently than executed, first: %s", len(s.verifyErrs), s.verifyErrs[0])
	}
	s.verifyMu.Unlock()
	if st := s.Stats(); verify != (st.HeldCommits == 0) {
		t.Errorf("verify=%v but the leader committed %d of its %d entries as held transactions", verify, st.HeldCommits, st.Entries)
	}
	// The content is not trivially empty.
	for _, table := range []string{"parent", "child", "audit", "nopk", "kv", "model", "copy_target"} {
		n := queryInt(t, f.stores[2], "SELECT count(*) FROM "+table)
		stats[table] = int(n)
	}
	if stats["failed"] == 0 || stats["ok"] == 0 || stats["parent"] == 0 || stats["audit"] == 0 {
		t.Fatalf("workload too weak: %v", stats)
	}
	cols := queryRows(t, f.stores[1], "SELECT count(*) FROM pragma_table_info('nopk')")
	ctas := queryInt(t, f.stores[1], "SELECT count(*) FROM sqlite_schema WHERE name LIKE 'ctas_%'")
	t.Logf("seed %d: %v; nopk columns %v, ctas tables %d, %d entries", seed, stats, cols, ctas, len(f.entries()))

	// A follower that restarts and replays the whole log still agrees.
	old := f.stores[2]
	f.replace(2, nil)
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := f.open(2)
	if err := s2.Apply(f.entries()); err != nil && !errors.Is(err, ErrClosed) {
		t.Fatalf("replay: %v", err)
	}
	f.replace(2, s2)
	f.requireSameContent(testDB)
	if strings.Count(fmt.Sprint(f.hashes(testDB)), " ") != 2 {
		t.Fatal("expected three hashes")
	}
}
