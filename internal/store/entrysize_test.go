package store

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/sqlite"
)

// A write or transaction whose entry would pass MaxEntryBytes fails with SQLITE_TOOBIG and
// changes nothing; requests batched with it run on their own and succeed.
func TestEntrySizeLimit(t *testing.T) {
	f := newCluster(t, 3, func(o *Options) { o.MaxEntryBytes = 1 << 20 })
	s := f.leader()
	ctx := context.Background()
	mustExec(t, s, "CREATE TABLE b(id INTEGER PRIMARY KEY, v BLOB)")
	tooBig := func(what string, err error) {
		t.Helper()
		var se *sqlite.Error
		if !errors.As(err, &se) || se.Code != codeTooBig || !strings.Contains(se.Msg, "over the 1.0 MiB") {
			t.Fatalf("%s: %v, want SQLITE_TOOBIG naming the limit", what, err)
		}
	}

	res, err := s.Exec(ctx, testDB, Request{SQL: "INSERT INTO b VALUES(1, zeroblob(2000000))"})
	if err != nil {
		t.Fatal(err)
	}
	tooBig("a 2 MB write alone", res.Err)

	// Nine requests queued behind a transaction that holds the writer reach it together:
	// eight of 300 kB (2.4 MB in all) and one of 2 MB.
	tx, err := s.Begin(ctx, testDB, 1)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	results := make([]Result, 9)
	errs := make([]error, 9)
	for i := range 9 {
		size := 300000
		if i == 4 {
			size = 2000000
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = s.Exec(ctx, testDB, Request{ClientID: 7, RequestID: uint64(100 + i),
				SQL: "INSERT INTO b VALUES(?, zeroblob(?))", Args: []sqlite.Value{int64(10 + i), int64(size)}})
		}()
	}
	db, _ := s.database(testDB, false)
	for len(db.queue) < 9 {
		time.Sleep(time.Millisecond)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i := range 9 {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		if i == 4 {
			tooBig("the 2 MB write of a batch", results[i].Err)
		} else if results[i].Err != nil || results[i].Index == 0 {
			t.Fatalf("request %d of 300 kB: %+v", i, results[i])
		}
	}

	// An interactive transaction over the limit fails at Commit; the writer goes on.
	tx, err = s.Begin(ctx, testDB, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		mustTxExec(t, tx, "INSERT INTO b VALUES(?, zeroblob(400000))", int64(100+i))
	}
	_, err = tx.Commit(ctx, 55)
	tooBig("a 1.2 MB transaction", err)
	mustExec(t, s, "INSERT INTO b VALUES(200, 'after')")

	f.sync()
	for i, st := range f.stores {
		if n := queryInt(t, st, "SELECT count(*) FROM b"); n != 9 {
			t.Fatalf("store %d: %d rows, want 9 (8 of 300 kB and 'after')", i, n)
		}
	}
}
