package sqlite

import (
	"crypto/rand"
	"fmt"
	"testing"
)

// BenchmarkInsertOrReplace measures prepare+bind+step+finalize of an
// INSERT OR REPLACE with a 32-byte key and a 1 KiB value, inside write
// transactions of 1000 statements (as the leader's group commit does), with
// and without a session attached (taken and deleted once per transaction).
// Keys cycle over 4096 values so the table stays small and rows get replaced.
func BenchmarkInsertOrReplace(b *testing.B) {
	for _, withSession := range []bool{false, true} {
		for _, reuse := range []bool{false, true} {
			name := fmt.Sprintf("session=%v/reusestmt=%v", withSession, reuse)
			b.Run(name, func(b *testing.B) { benchInsert(b, withSession, reuse) })
		}
	}
}

func benchInsert(b *testing.B, withSession, reuse bool) {
	c := openT(b, "bench.db", OpenOptions{})
	mustExec(b, c, "CREATE TABLE kv(k BLOB PRIMARY KEY, v BLOB)")
	keys := make([][]byte, 4096)
	for i := range keys {
		keys[i] = make([]byte, 32)
		rand.Read(keys[i])
	}
	val := make([]byte, 1024)
	rand.Read(val)
	const batch = 1000
	const sql = "INSERT OR REPLACE INTO kv(k, v) VALUES (?, ?)"
	var (
		sess    *Session
		st      *Stmt
		csBytes int
	)
	begin := func() {
		mustExec(b, c, "BEGIN IMMEDIATE")
		if withSession {
			var err error
			if sess, err = c.CreateSession(); err != nil {
				b.Fatal(err)
			}
		}
	}
	end := func() {
		if sess != nil {
			cs, err := sess.Changeset()
			if err != nil {
				b.Fatal(err)
			}
			csBytes += len(cs)
			sess.Close()
			sess = nil
		}
		mustExec(b, c, "COMMIT")
	}
	args := make([]Value, 2)
	b.SetBytes(32 + 1024)
	b.ReportAllocs()
	b.ResetTimer()
	begin()
	for i := 0; i < b.N; i++ {
		if i > 0 && i%batch == 0 {
			end()
			begin()
		}
		if !reuse || st == nil {
			var err error
			if st, _, err = c.Prepare(sql); err != nil {
				b.Fatal(err)
			}
		}
		val[i%len(val)]++ // every write changes the row
		args[0], args[1] = keys[i%len(keys)], val
		if err := st.Bind(args); err != nil {
			b.Fatal(err)
		}
		if _, err := st.Step(); err != nil {
			b.Fatal(err)
		}
		if reuse {
			st.Reset()
		} else {
			st.Close()
		}
	}
	end()
	b.StopTimer()
	if st != nil {
		st.Close()
	}
	if withSession && b.N >= batch {
		b.ReportMetric(float64(csBytes)/float64(b.N), "cs-B/op")
	}
}

// BenchmarkApplyChangeset measures ApplyChangeset (schema check included) of
// a changeset of 100 INSERTs (32-byte key, 1 KiB value) into an empty table,
// rolled back after each apply.
func BenchmarkApplyChangeset(b *testing.B) {
	src := openT(b, "src.db", OpenOptions{})
	dst := openT(b, "dst.db", OpenOptions{DisableTriggers: true})
	const ddl = "CREATE TABLE kv(k BLOB PRIMARY KEY, v BLOB)"
	mustExec(b, src, ddl)
	mustExec(b, dst, ddl)
	s, err := src.CreateSession()
	if err != nil {
		b.Fatal(err)
	}
	val := make([]byte, 1024)
	for i := 0; i < 100; i++ {
		k := make([]byte, 32)
		rand.Read(k)
		mustExec(b, src, "INSERT INTO kv VALUES (?, ?)", k, val)
	}
	cs, err := s.Changeset()
	if err != nil {
		b.Fatal(err)
	}
	s.Close()
	b.SetBytes(int64(len(cs)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		mustExec(b, dst, "BEGIN")
		if err := dst.ApplyChangeset(cs); err != nil {
			b.Fatal(err)
		}
		mustExec(b, dst, "ROLLBACK")
	}
}
