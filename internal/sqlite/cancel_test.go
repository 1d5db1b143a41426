package sqlite

import (
	"context"
	"errors"
	"testing"
	"time"
)

// CancelOn fails only the statement being stepped when its context ends: a statement left
// open mid-result (a cursor) reads on, and the next statement runs. With sqlite3_interrupt
// (InterruptOn) both fail, because its flag stays set while the cursor is active.
func TestCancelOnLeavesOtherStatementsAlone(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cancel func(*Conn, context.Context) func()
		clean  bool // other statements unaffected
	}{
		{"CancelOn", (*Conn).CancelOn, true},
		{"InterruptOn", (*Conn).InterruptOn, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := openT(t, "c.db", OpenOptions{})
			if err := c.Exec("CREATE TABLE t(x); INSERT INTO t VALUES(1), (2), (3)"); err != nil {
				t.Fatal(err)
			}
			cursor, _, err := c.Prepare("SELECT x FROM t ORDER BY x")
			if err != nil {
				t.Fatal(err)
			}
			defer cursor.Close()
			if ok, err := cursor.Step(); !ok || err != nil {
				t.Fatal(ok, err)
			}
			slow, _, err := c.Prepare("WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM r) SELECT count(*) FROM r")
			if err != nil {
				t.Fatal(err)
			}
			defer slow.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			stop := tc.cancel(c, ctx)
			_, err = slow.Step()
			stop()
			stop() // a second stop is a no-op
			if !errors.Is(err, ErrInterrupt) {
				t.Fatalf("the cancelled statement: %v, want ErrInterrupt", err)
			}
			slow.Reset()
			next := c.Exec("INSERT INTO t VALUES(4)")
			_, cursorErr := cursor.Step()
			if tc.clean {
				if next != nil || cursorErr != nil {
					t.Fatalf("after a cancel: next statement %v, open cursor %v; want both unaffected", next, cursorErr)
				}
			} else if next == nil && cursorErr == nil {
				t.Fatal("InterruptOn left other statements alone: this test no longer shows the difference")
			}
		})
	}
}

// A CancelOn whose context ends after the statement finished affects nothing later, and one
// whose context ended before the connection closed does not touch freed memory.
func TestCancelOnAfterTheFact(t *testing.T) {
	c := openT(t, "c.db", OpenOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	stop := c.CancelOn(ctx)
	if err := c.Exec("SELECT 1"); err != nil {
		t.Fatal(err)
	}
	cancel()
	stop()
	if err := c.Exec("SELECT 2"); err != nil {
		t.Fatalf("a statement after a stopped cancel: %v", err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	stop2 := c.CancelOn(ctx2)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	cancel2() // the flag is gone with the connection
	stop2()
}
