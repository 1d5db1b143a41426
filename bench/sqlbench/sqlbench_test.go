package sqlbench

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "modernc.org/sqlite" // a local SQLite stands in for the cluster behind database/sql

	"github.com/tandemdb/tandem/bench/stats"
	"github.com/tandemdb/tandem/client"
)

// stubFactory makes workers whose operations sleep and fail on a schedule.
type stubFactory struct {
	opTime  time.Duration
	failN   int64 // every failN-th op fails with not-leader (0: never)
	hang    bool  // operations block until their context ends
	newErr  error
	ops     atomic.Int64
	open    atomic.Int64
	closed  atomic.Int64
	mu      sync.Mutex
	running map[int]bool // worker id → inside Op (detects concurrent use of one worker)
}

type stubWorker struct {
	f  *stubFactory
	id int
}

func (f *stubFactory) NewWorker(ctx context.Context, id int) (Worker, error) {
	if f.newErr != nil && id == 2 {
		return nil, f.newErr
	}
	f.open.Add(1)
	return &stubWorker{f: f, id: id}, nil
}

func (w *stubWorker) Op(ctx context.Context) error {
	w.f.mu.Lock()
	if w.f.running[w.id] {
		w.f.mu.Unlock()
		panic("concurrent Op on one worker")
	}
	w.f.running[w.id] = true
	w.f.mu.Unlock()
	defer func() { w.f.mu.Lock(); w.f.running[w.id] = false; w.f.mu.Unlock() }()
	n := w.f.ops.Add(1)
	if w.f.hang {
		<-ctx.Done()
		return ctx.Err()
	}
	time.Sleep(w.f.opTime)
	if w.f.failN > 0 && n%w.f.failN == 0 {
		return client.ErrNotLeader
	}
	return nil
}

func (w *stubWorker) Close() error { w.f.closed.Add(1); return nil }

func newStub() *stubFactory { return &stubFactory{running: map[int]bool{}} }

func TestLoopStopsByItself(t *testing.T) {
	f := newStub()
	f.opTime = 2 * time.Millisecond
	f.failN = 10
	var progress []Progress
	var mu sync.Mutex
	started := atomic.Bool{}
	t0 := time.Now()
	sum, err := Loop(context.Background(), f, LoopConfig{
		Name: "stub", Workers: 4, Duration: 1200 * time.Millisecond, Warmup: 250 * time.Millisecond,
		ErrorPause: -1, ProgressEvery: 100 * time.Millisecond,
		Progress: func(p Progress) { mu.Lock(); progress = append(progress, p); mu.Unlock() },
		AtStart:  func() { started.Store(true) },
	})
	took := time.Since(t0)
	if err != nil {
		t.Fatal(err)
	}
	if took < 1450*time.Millisecond || took > 3*time.Second {
		t.Fatalf("took %v", took)
	}
	if f.open.Load() != 4 || f.closed.Load() != 4 {
		t.Fatalf("opened %d closed %d", f.open.Load(), f.closed.Load())
	}
	if !started.Load() {
		t.Fatal("AtStart not called")
	}
	// 4 workers × ~2 ms ops for 1.2 s: a few hundred to ~2400 ops; 1 in 10 fails.
	total := sum.Ops + sum.Errors
	if sum.Ops < 200 || sum.Errors == 0 || sum.ByKind[stats.KindNotLeader] != sum.Errors || total > f.ops.Load() {
		t.Fatalf("ops %d errors %d (%v), %d ops ran", sum.Ops, sum.Errors, sum.ByKind, f.ops.Load())
	}
	if sum.Duration < 1200*time.Millisecond || sum.Duration > 2*time.Second {
		t.Fatalf("duration %v", sum.Duration)
	}
	if sum.P50Ms < 2 || sum.P50Ms > 50 {
		t.Fatalf("p50 %v", sum.P50Ms)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(progress) < 4 {
		t.Fatalf("progress %d times", len(progress))
	}
	if !progress[0].Warmup || progress[0].Ops != 0 {
		t.Fatalf("first progress %+v", progress[0])
	}
	last := progress[len(progress)-1]
	if last.Warmup || last.Ops == 0 || last.Name != "stub" || last.Workers != 4 {
		t.Fatalf("last progress %+v", last)
	}
}

func TestLoopCancel(t *testing.T) {
	f := newStub()
	f.hang = true
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	sum, err := Loop(ctx, f, LoopConfig{Workers: 3, Duration: time.Hour, AtStart: func() {}})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(t0) > 2*time.Second {
		t.Fatalf("err %v after %v", err, time.Since(t0))
	}
	if sum.Errors != 0 || sum.Ops != 0 {
		t.Fatalf("interrupted ops were counted: %+v", sum)
	}
	if f.closed.Load() != 3 {
		t.Fatalf("closed %d", f.closed.Load())
	}
}

func TestLoopOpTimeout(t *testing.T) {
	f := newStub()
	f.hang = true
	t0 := time.Now()
	sum, err := Loop(context.Background(), f, LoopConfig{Workers: 2, Duration: 250 * time.Millisecond, OpTimeout: 100 * time.Millisecond})
	if err != nil || time.Since(t0) > 2*time.Second {
		t.Fatalf("err %v after %v", err, time.Since(t0))
	}
	if sum.ByKind[stats.KindDeadline] < 2 || sum.Ops != 0 {
		t.Fatalf("%+v", sum)
	}
}

func TestLoopBadConfig(t *testing.T) {
	f := newStub()
	if _, err := Loop(context.Background(), f, LoopConfig{Workers: 0, Duration: time.Second}); err == nil {
		t.Fatal("0 workers accepted")
	}
	if _, err := Loop(context.Background(), f, LoopConfig{Workers: 1}); err == nil {
		t.Fatal("0 duration accepted")
	}
	f.newErr = errors.New("no conn")
	if _, err := Loop(context.Background(), f, LoopConfig{Workers: 4, Duration: time.Second}); err == nil || !strings.Contains(err.Error(), "no conn") {
		t.Fatalf("err %v", err)
	}
	if f.open.Load() != f.closed.Load() {
		t.Fatalf("opened %d closed %d", f.open.Load(), f.closed.Load())
	}
}

func TestParse(t *testing.T) {
	if w, err := ParseWorkloads("kvwrite, kvread,kvwrite"); err != nil || len(w) != 2 || w[1] != KVRead {
		t.Fatalf("%v %v", w, err)
	}
	if w, err := ParseWorkloads("all"); err != nil || len(w) != 4 {
		t.Fatalf("%v %v", w, err)
	}
	for _, bad := range []string{"", "kvwrite,nope", ","} {
		if _, err := ParseWorkloads(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if c, err := ParseCounts("1,2,4,8,9,16"); err != nil || len(c) != 6 || c[5] != 16 {
		t.Fatalf("%v %v", c, err)
	}
	for _, bad := range []string{"", "0", "1,x", "-2"} {
		if _, err := ParseCounts(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if k := Key(42, 32); len(k) != 32 || !strings.HasSuffix(k, "00042") || k[0] != 'k' {
		t.Fatalf("key %q", k)
	}
	if Key(1, 32) >= Key(2, 32) || Key(9, 32) >= Key(10, 32) {
		t.Fatal("keys do not sort by index")
	}
	c := Config{KeySize: 3, Keys: 10000}
	if err := c.Validate(); err == nil {
		t.Fatal("3-byte keys for 10000 keys accepted")
	}
}

func TestDelta(t *testing.T) {
	before := map[string]Counters{"a": {10, 20}, "b": {0, 0}}
	after := map[string]Counters{"a": {15, 40}, "b": {5, 5}}
	if d, err := delta(before, after); err != nil || d != (Counters{10, 25}) {
		t.Fatalf("%v %v", d, err)
	}
	after["b"] = Counters{}
	before["b"] = Counters{7, 7}
	if d, err := delta(before, after); err == nil || d != (Counters{5, 20}) {
		t.Fatalf("reset not reported: %v %v", d, err)
	}
}

// TestSQLWorkloads runs every workload through database/sql against a local SQLite file (the
// real cluster is exercised by the e2e and by `tandem bench sql`).
func TestSQLWorkloads(t *testing.T) {
	dsn := "file:" + filepath.Join(t.TempDir(), "b.db") + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(wal)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var calls atomic.Uint64
	status := func(ctx context.Context) (map[string]Counters, error) {
		n := calls.Add(1)
		return map[string]Counters{"n1": {Entries: 100 * n, Requests: 300 * n}}, nil
	}
	for _, noPrep := range []bool{false, true} {
		var progressed atomic.Int64
		cfg := Config{
			DB: db, Workers: 2, Duration: 300 * time.Millisecond, KeySize: 16, ValueSize: 100, Keys: 500,
			NoPrepare: noPrep, Status: status, ProgressEvery: 100 * time.Millisecond, Progress: func(Progress) { progressed.Add(1) },
		}
		res, err := Sweep(context.Background(), cfg, Workloads, []int{1, 2}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != 8 {
			t.Fatalf("%d results", len(res))
		}
		for _, r := range res {
			if r.Stats.Ops == 0 || r.Stats.Errors != 0 {
				t.Errorf("prepare=%v %s/%d: ops %d errors %v %v", !noPrep, r.Workload, r.Workers, r.Stats.Ops, r.Stats.ByKind, r.Stats.First)
			}
			run := r.Report()
			if r.StatusErr != nil || run.RaftEntries != 100 || run.RequestsPerEntry != 3 || run.EntriesPerSec <= 0 {
				t.Errorf("group commit %+v (%v)", run, r.StatusErr)
			}
		}
		if progressed.Load() == 0 {
			t.Error("no progress reported")
		}
	}
	var n int
	var size int
	if err := db.QueryRow(`SELECT count(*), max(length(value)) FROM model`).Scan(&n, &size); err != nil || n != 500 || size != 100 {
		t.Fatalf("table holds %d rows of up to %d bytes (%v)", n, size, err)
	}
	// A run without setup on an empty key space reports missing keys as errors.
	if _, err := db.Exec(`DELETE FROM model`); err != nil {
		t.Fatal(err)
	}
	r, err := Run(context.Background(), Config{DB: db, Workload: KVRead, Duration: 100 * time.Millisecond, KeySize: 16, Keys: 10, SkipSetup: true})
	if err != nil || r.Stats.Ops != 0 || r.Stats.ByKind[stats.KindOther] == 0 || !strings.Contains(r.Stats.First[stats.KindOther], "key not found") {
		t.Fatalf("%+v %v", r.Stats, err)
	}
	if _, err := Run(context.Background(), Config{Workload: KVRead}); err == nil {
		t.Fatal("no DB accepted")
	}
	if _, err := Run(context.Background(), Config{DB: db, Workload: "x"}); err == nil {
		t.Fatal("bad workload accepted")
	}
}
