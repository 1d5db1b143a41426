package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"math"
	"slices"
	"strings"

	"github.com/tandemdb/tandem/internal/sqlite"
)

// ContentHash returns a hash of the logical content of a database: the schema (sqlite_schema
// type, name, table and SQL, without the store's _tandem_ objects and planner statistics),
// every row of every table in primary key order (rowid order, with the rowid, for tables
// without a declared primary key; with the rowid too where a rowid table's key is not its
// rowid: replication preserves both), and sqlite_sequence.
// Two nodes that applied the same entries have the same hash.
func (s *Store) ContentHash(ctx context.Context, dbName string) (string, error) {
	db, err := s.existing(dbName)
	if err != nil {
		return "", err
	}
	c, err := db.acquireRead(ctx)
	if err != nil {
		return "", err
	}
	defer db.releaseRead(c)
	stop := c.InterruptOn(ctx)
	defer stop()
	if err := c.Exec("BEGIN"); err != nil {
		return "", err
	}
	defer c.Exec("ROLLBACK")
	return hashConn(c.Conn)
}

// hashConn hashes the database as c sees it (inside c's transaction, if any).
func hashConn(c *sqlite.Conn) (string, error) {
	h := sha256.New()
	schema, err := queryAll(c, `SELECT type, name, tbl_name, sql FROM sqlite_schema
		WHERE substr(name, 1, 8) <> '_tandem_' AND substr(tbl_name, 1, 8) <> '_tandem_'
		AND name NOT LIKE 'sqlite_stat%' ORDER BY type, name`)
	if err != nil {
		return "", err
	}
	hashRows(h, "schema", schema)
	for _, o := range schema {
		typ, _ := o[0].(string)
		name, _ := o[1].(string)
		sql, _ := o[3].(string)
		if typ != "table" || strings.HasPrefix(name, "sqlite_") || strings.HasPrefix(strings.ToUpper(sql), "CREATE VIRTUAL") {
			continue
		}
		q, err := orderedSelect(c, name)
		if err != nil {
			return "", err
		}
		rows, err := queryAll(c, q)
		if err != nil {
			return "", fmt.Errorf("store: hash %s: %w", name, err)
		}
		hashRows(h, "table "+name, rows)
	}
	uv, err := queryAll(c, `PRAGMA main.user_version`)
	if err != nil {
		return "", err
	}
	hashRows(h, "user_version", uv)
	seq, err := queryAll(c, `SELECT name, seq FROM sqlite_sequence ORDER BY name, seq`)
	if err == nil {
		hashRows(h, "sqlite_sequence", seq)
	} else if !strings.Contains(err.Error(), "no such table") {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// orderedSelect builds a SELECT of every row of table in a node-independent order.
func orderedSelect(c *sqlite.Conn, table string) (string, error) {
	pk, err := queryAll(c, `SELECT name FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk`, table)
	if err != nil {
		return "", err
	}
	if len(pk) == 0 {
		return `SELECT rowid, * FROM ` + quoteIdent(table) + ` ORDER BY rowid`, nil
	}
	cols := make([]string, len(pk))
	for i, r := range pk {
		name, _ := r[0].(string)
		cols[i] = quoteIdent(name)
	}
	// A rowid table whose key is not its rowid (its key has an index of its own) replicates
	// its rowids beside the changeset: they count too, under a name no column takes.
	keyed, err := queryAll(c, `SELECT
		coalesce((SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?1), 1) = 0
		AND EXISTS(SELECT 1 FROM pragma_index_list(?1, 'main') WHERE origin = 'pk'),
		(SELECT group_concat(lower(name), ' ') FROM pragma_table_xinfo(?1, 'main'))`, table)
	if err != nil {
		return "", err
	}
	rowid := ""
	if k, _ := keyed[0][0].(int64); k != 0 {
		names, _ := keyed[0][1].(string)
		for _, n := range []string{"rowid", "_rowid_", "oid"} {
			if !slices.Contains(strings.Fields(names), n) {
				rowid = n + ", "
				break
			}
		}
	}
	return `SELECT ` + rowid + `* FROM ` + quoteIdent(table) + ` ORDER BY ` + strings.Join(cols, ", "), nil
}

func hashRows(h hash.Hash, label string, rows [][]sqlite.Value) {
	var buf []byte
	buf = appendString(buf, label)
	buf = binary.AppendUvarint(buf, uint64(len(rows)))
	h.Write(buf)
	for _, row := range rows {
		buf = buf[:0]
		buf = binary.AppendUvarint(buf, uint64(len(row)))
		for _, v := range row {
			if f, ok := v.(float64); ok && math.IsNaN(f) {
				v = nil // SQLite stores NaN as NULL anyway
			}
			buf = appendValue(buf, v)
		}
		h.Write(buf)
	}
}
