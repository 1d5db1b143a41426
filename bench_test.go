package tandem_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemdb/tandem"
	"github.com/tandemdb/tandem/client"
	"github.com/tandemdb/tandem/internal/testcluster"
	_ "modernc.org/sqlite" // the plain-SQLite baseline
)

// The write benchmark of the replicated SQL issue: INSERT OR REPLACE of a 32-byte key and a
// 1 KiB value, with 1 and 16 concurrent writers, on a 3-node Tandem cluster over loopback and,
// as the baseline measured in the same run, on one plain SQLite file (WAL, synchronous=FULL,
// so that every acknowledged write is on disk as it is in Tandem's Raft log).
//
//	go test -run '^$' -bench InsertOrReplace -benchtime 5s .
//
// Reported per sub-benchmark: ns/op (per write, all writers together), p50-ms and p99-ms
// (latency of one write), writes/s and, for Tandem, requests/entry (the group commit's batch).

const benchSchema = `CREATE TABLE IF NOT EXISTS model(key TEXT, value TEXT, UNIQUE(key))`

func BenchmarkInsertOrReplace(b *testing.B) {
	for _, writers := range []int{1, 16} {
		b.Run(fmt.Sprintf("sqlite-file/writers=%d", writers), func(b *testing.B) {
			db, err := sql.Open("sqlite", "file:"+filepath.Join(b.TempDir(), "plain.db")+
				"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)")
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			runInsertBench(b, db, writers, nil)
		})
		b.Run(fmt.Sprintf("tandem-3-nodes/writers=%d", writers), func(b *testing.B) {
			nodes := benchCluster(b)
			ctx := context.Background()
			db, err := nodes[0].Open(ctx, "bench")
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			runInsertBench(b, db, writers, nodes)
		})
	}
}

// benchCluster starts 3 embedded nodes with the default (production) timings.
func benchCluster(b *testing.B) []*tandem.Node {
	return testcluster.Start(b, 3)
}

func runInsertBench(b *testing.B, db *sql.DB, writers int, nodes []*tandem.Node) {
	ctx := context.Background()
	db.SetMaxOpenConns(writers)
	db.SetMaxIdleConns(writers)
	if _, err := db.ExecContext(ctx, benchSchema); err != nil {
		b.Fatal(err)
	}
	value := make([]byte, 512)
	_, _ = rand.Read(value)
	val := fmt.Sprintf("%x", value) // 1 KiB of text
	entries0, requests0 := groupCommitCounters(b, nodes)

	all, elapsed := runWorkers(b, writers, func(i int64) error {
		_, err := db.ExecContext(ctx, `INSERT OR REPLACE INTO model(key, value) VALUES (?, ?)`, fmt.Sprintf("%032d", i%10000), val)
		return err
	})
	if len(all) == 0 {
		return
	}
	pct := func(p float64) float64 {
		return float64(all[min(len(all)-1, int(p*float64(len(all))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "writes/s")
	if nodes != nil {
		entries1, requests1 := groupCommitCounters(b, nodes)
		if e := entries1 - entries0; e > 0 {
			b.ReportMetric(float64(requests1-requests0)/float64(e), "requests/entry")
		}
	}
}

// groupCommitCounters sums the write-path counters of all nodes (only the leader proposes).
func groupCommitCounters(b *testing.B, nodes []*tandem.Node) (entries, requests uint64) {
	if len(nodes) == 0 {
		return 0, 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, n.Addr())
	}
	c, err := client.New(ctx, client.Config{Addrs: addrs})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for _, a := range addrs {
		st, err := c.Status(ctx, a)
		if err != nil {
			b.Fatal(err)
		}
		entries += st.Entries
		requests += st.Requests
	}
	return entries, requests
}

// BenchmarkPointRead: SELECT of one 1 KiB value by its 32-byte key with consistency=leader, 1
// and 8 concurrent readers, on a 3-node cluster against the same read on one plain SQLite file.
// It exists to profile the read path:
//
//	go test -run '^$' -bench PointRead -benchtime 3s -cpuprofile cpu.out .
func BenchmarkPointRead(b *testing.B) {
	const keys = 1000
	for _, readers := range []int{1, 8} {
		b.Run(fmt.Sprintf("sqlite-file/readers=%d", readers), func(b *testing.B) {
			db, err := sql.Open("sqlite", "file:"+filepath.Join(b.TempDir(), "plain.db")+"?_pragma=journal_mode(WAL)")
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			runReadBench(b, db, readers, keys)
		})
		b.Run(fmt.Sprintf("tandem-3-nodes/readers=%d", readers), func(b *testing.B) {
			nodes := benchCluster(b)
			db, err := sql.Open("tandem", "tandem://"+nodes[0].Addr()+","+nodes[1].Addr()+","+nodes[2].Addr()+"/bench?consistency=leader")
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			runReadBench(b, db, readers, keys)
		})
	}
}

func runReadBench(b *testing.B, db *sql.DB, readers, keys int) {
	ctx := context.Background()
	db.SetMaxOpenConns(readers + 1)
	db.SetMaxIdleConns(readers + 1)
	if _, err := db.ExecContext(ctx, benchSchema); err != nil {
		b.Fatal(err)
	}
	val := fmt.Sprintf("%01024d", 7)
	for i := range keys {
		if _, err := db.ExecContext(ctx, `INSERT OR REPLACE INTO model(key, value) VALUES (?, ?)`, fmt.Sprintf("%032d", i), val); err != nil {
			b.Fatal(err)
		}
	}
	all, elapsed := runWorkers(b, readers, func(i int64) error {
		var v string
		err := db.QueryRowContext(ctx, `SELECT value FROM model WHERE key = ?`, fmt.Sprintf("%032d", i%int64(keys))).Scan(&v)
		if err == nil && len(v) != 1024 {
			err = fmt.Errorf("value of %d bytes, want 1024", len(v))
		}
		return err
	})
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "reads/s")
}

// runWorkers runs op for i = 1..b.N on n goroutines, with the benchmark timer running, and
// returns the sorted latencies of the operations that succeeded and the time it all took. The
// first error of a worker fails the benchmark and stops that worker.
func runWorkers(b *testing.B, n int, op func(i int64) error) ([]time.Duration, time.Duration) {
	var next atomic.Int64
	lat := make([][]time.Duration, n)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				t0 := time.Now()
				if err := op(i); err != nil {
					b.Error(err)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	return all, elapsed
}
