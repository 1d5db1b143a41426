package e2e

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"strings"
)

// contentHash hashes the logical content of a database as one node serves it: the schema
// (less Tandem's own _tandem_ tables), sqlite_sequence, and every row of every table in a
// deterministic order (rowid order for rowid tables, all columns for WITHOUT ROWID ones).
func contentHash(ctx context.Context, db *sql.DB) (string, error) {
	h := sha256.New()
	rows, err := db.QueryContext(ctx, `SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_schema
		WHERE name NOT LIKE '\_tandem\_%' ESCAPE '\' AND name NOT LIKE 'sqlite\_%' ESCAPE '\' ORDER BY type, name`)
	if err != nil {
		return "", fmt.Errorf("schema: %w", err)
	}
	type table struct{ name, sql string }
	var tables []table
	for rows.Next() {
		var typ, name, tbl, text string
		if err := rows.Scan(&typ, &name, &tbl, &text); err != nil {
			rows.Close()
			return "", err
		}
		fmt.Fprintf(h, "schema|%s|%s|%s|%s\n", typ, name, tbl, text)
		if typ == "table" {
			tables = append(tables, table{name, text})
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return "", err
	}
	var hasSeq int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE name='sqlite_sequence'`).Scan(&hasSeq); err != nil {
		return "", err
	}
	if hasSeq > 0 {
		if err := hashRows(ctx, h, db, "sqlite_sequence", `SELECT name, seq FROM sqlite_sequence ORDER BY name`); err != nil {
			return "", err
		}
	}
	for _, t := range tables {
		q := fmt.Sprintf(`SELECT rowid, * FROM %q ORDER BY rowid`, t.name)
		if strings.Contains(strings.ToUpper(t.sql), "WITHOUT ROWID") {
			q = fmt.Sprintf(`SELECT * FROM %q ORDER BY %s`, t.name, allColumns(ctx, db, t.name))
		}
		if err := hashRows(ctx, h, db, t.name, q); err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func allColumns(ctx context.Context, db *sql.DB, table string) string {
	rows, err := db.QueryContext(ctx, fmt.Sprintf(`SELECT * FROM %q LIMIT 0`, table))
	if err != nil {
		return "1"
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var idx []string
	for i := range cols {
		idx = append(idx, fmt.Sprint(i+1))
	}
	if len(idx) == 0 {
		return "1"
	}
	return strings.Join(idx, ",")
}

func hashRows(ctx context.Context, h interface{ Write([]byte) (int, error) }, db *sql.DB, name, q string) error {
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		fmt.Fprintf(h, "row|%s", name)
		for _, v := range vals {
			fmt.Fprintf(h, "|%T:%v", v, v)
		}
		fmt.Fprintln(h)
	}
	return rows.Err()
}
