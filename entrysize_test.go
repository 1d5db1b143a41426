package tandem_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/tandemdb/tandem"
	"github.com/tandemdb/tandem/wire"
)

// WithMaxEntryMiB bounds what one write or transaction may change: over it the driver gets
// SQLite's SQLITE_TOOBIG with a message that names the limit, and nothing is written.
func TestMaxEntryOption(t *testing.T) {
	nodes := startEmbedded(t, 3, tandem.WithMaxEntryMiB(1))
	_, db, ctx := threeRowsOn(t, nodes)
	_, err := db.ExecContext(ctx, `CREATE TABLE big(b BLOB)`)
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.ExecContext(ctx, `INSERT INTO big VALUES(zeroblob(2000000))`)
	var we *wire.Error
	if !errors.As(err, &we) || we.Code != wire.CodeSQLite || we.SQLiteCode != 18 || !strings.Contains(we.Message, "1.0 MiB") {
		t.Fatalf("2 MB write with a 1 MiB limit: %v, want SQLITE_TOOBIG (18) naming the limit", err)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM big`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("rows after the refused write: %d %v", n, err)
	}
}
