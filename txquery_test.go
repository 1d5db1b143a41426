package tandem_test

import (
	"bytes"
	"testing"
)

// A query inside a read-write transaction streams its rows in pages, as any query does: a
// result larger than one frame of the protocol (16 MiB) used to fail, and its rows include
// the transaction's own uncommitted writes. Another statement of the transaction may run
// while its rows are being read.
func TestReadWriteTransactionStreamsLargeResults(t *testing.T) {
	_, db, ctx := threeRows(t)
	if _, err := db.ExecContext(ctx, `CREATE TABLE blobs(id INTEGER PRIMARY KEY, b BLOB)`); err != nil {
		t.Fatal(err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	// 8 small rows written in the transaction, read 6 times over with 512 KiB made up for
	// each: 24 MiB of rows from a small entry (a test of the rows, not of a large entry,
	// which the race detector's slowness can make cost the leadership under the tests' tick).
	const rowsWritten, copies, size = 8, 6, 512 << 10
	for i := range rowsWritten {
		if _, err := tx.ExecContext(ctx, `INSERT INTO blobs VALUES(?, ?)`, i, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := tx.QueryContext(ctx, `SELECT c.k, blobs.id, blobs.b, zeroblob(?) FROM blobs,
		(WITH RECURSIVE k(k) AS (SELECT 0 UNION ALL SELECT k+1 FROM k WHERE k < ?) SELECT k FROM k) AS c
		ORDER BY c.k, blobs.id`, size, copies-1)
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	zero := make([]byte, size)
	for rows.Next() {
		var k, id int
		var b, pad []byte
		if err := rows.Scan(&k, &id, &b, &pad); err != nil {
			t.Fatal(err)
		}
		if k*rowsWritten+id != got || !bytes.Equal(b, []byte{byte(id)}) || !bytes.Equal(pad, zero) {
			t.Fatalf("row %d: copy %d of id %d, %d+%d bytes", got, k, id, len(b), len(pad))
		}
		got++
		if got == copies*rowsWritten/2 {
			// The transaction goes on while the cursor is open.
			if _, err := tx.ExecContext(ctx, `UPDATE t SET x = x * 10`); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("after %d rows: %v", got, err)
	}
	if got != copies*rowsWritten {
		t.Fatalf("%d rows, want %d", got, copies*rowsWritten)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	var sum, count int
	if err := db.QueryRowContext(ctx, `SELECT (SELECT sum(x) FROM t), (SELECT count(*) FROM blobs)`).Scan(&sum, &count); err != nil {
		t.Fatal(err)
	}
	if sum != 60 || count != rowsWritten {
		t.Fatalf("after commit: sum %d, %d blobs; want 60, %d", sum, count, rowsWritten)
	}
}
