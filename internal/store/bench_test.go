package store

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tandemdb/tandem/internal/sqlite"
)

// BenchmarkExecKV: INSERT OR REPLACE of a 32-byte key and a 1 KiB value through the writer,
// the fake proposer and Apply (leader plus one follower), with 1 and 16 concurrent writers.
// req/entry shows group commit at work.
func BenchmarkExecKV(b *testing.B) {
	for _, writers := range []int{1, 16} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			f := newCluster(b, 2, nil)
			s := f.leader()
			mustExec(b, s, "CREATE TABLE model(key TEXT, value TEXT, UNIQUE(key))")
			value := strings.Repeat("v", 1024)
			start := len(f.entries())
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						key := fmt.Sprintf("%032d", i%100000)
						res, err := s.Exec(context.Background(), testDB, Request{
							SQL:  "INSERT OR REPLACE INTO model(key, value) VALUES(?, ?)",
							Args: []sqlite.Value{key, value}})
						if err != nil || res.Err != nil {
							b.Error(err, res.Err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			if n := len(f.entries()) - start; n > 0 {
				b.ReportMetric(float64(b.N)/float64(n), "req/entry")
			}
		})
	}
}

// BenchmarkReadTx: one point read in a read-only transaction (BeginRead, Query, End) against
// the same read alone (Query on the pool): what a transaction's own connection costs.
//
//	go test -run '^$' -bench ReadTx ./internal/store
func BenchmarkReadTx(b *testing.B) {
	f := newCluster(b, 1, nil)
	s := f.leader()
	mustExec(b, s, "CREATE TABLE model(key TEXT PRIMARY KEY, value TEXT)")
	mustExec(b, s, "INSERT INTO model VALUES('k', 'v')")
	ctx := context.Background()
	read := func(b *testing.B, r *Rows, err error) {
		if err != nil {
			b.Fatal(err)
		}
		dst := make([]sqlite.Value, 1)
		if ok, err := r.Next(dst); !ok || err != nil {
			b.Fatal(ok, err)
		}
		r.Close()
	}
	const q = "SELECT value FROM model WHERE key = ?"
	b.Run("query", func(b *testing.B) {
		for b.Loop() {
			r, err := s.Query(ctx, testDB, q, []sqlite.Value{"k"})
			read(b, r, err)
		}
	})
	b.Run("read-tx", func(b *testing.B) {
		for b.Loop() {
			rt, err := s.BeginRead(ctx, testDB)
			if err != nil {
				b.Fatal(err)
			}
			r, err := rt.Query(ctx, q, []sqlite.Value{"k"})
			read(b, r, err)
			rt.End()
		}
	})
}
