package store

import (
	"bytes"
	"fmt"
	"strings"
)

// The session extension records sqlite_sequence like any table without a primary key (by
// rowid), but its rows are maintained by SQLite itself on every node (the apply connection's
// inserts into AUTOINCREMENT tables move them too), so replaying them conflicts. The store
// replicates sqlite_sequence explicitly (command.SeqChanges) and removes it from changesets.
// This is a minimal reader of the documented changeset format
// (https://www.sqlite.org/sessionintro.html, "changeset format").

const (
	csTable  = 'T'
	csInsert = 18 // SQLITE_INSERT
	csUpdate = 23 // SQLITE_UPDATE
	csDelete = 9  // SQLITE_DELETE
)

// dropTables returns cs without the changes of the tables for which drop is true. It never
// panics on malformed input (it returns an error).
func dropTables(cs []byte, drop func(table string) bool) ([]byte, error) {
	var out []byte
	p := 0
	for p < len(cs) {
		start := p
		if cs[p] != csTable {
			return nil, fmt.Errorf("store: changeset: table header expected at %d", p)
		}
		p++
		nCol, n := sqliteVarint(cs[p:])
		if n == 0 || nCol == 0 || nCol > 32767 {
			return nil, fmt.Errorf("store: changeset: bad column count at %d", p)
		}
		p += n
		if uint64(len(cs)-p) < nCol {
			return nil, fmt.Errorf("store: changeset: truncated header")
		}
		p += int(nCol)
		end := bytes.IndexByte(cs[p:], 0)
		if end < 0 {
			return nil, fmt.Errorf("store: changeset: unterminated table name")
		}
		name := string(cs[p : p+end])
		p += end + 1
		for p < len(cs) && cs[p] != csTable {
			op := cs[p]
			p += 2 // op, indirect flag
			if p > len(cs) {
				return nil, fmt.Errorf("store: changeset: truncated change")
			}
			records := 1
			switch op {
			case csInsert, csDelete:
			case csUpdate:
				records = 2
			default:
				return nil, fmt.Errorf("store: changeset: unknown operation %d", op)
			}
			for range records {
				var err error
				if p, err = skipRecord(cs, p, int(nCol)); err != nil {
					return nil, err
				}
			}
		}
		if !drop(name) {
			out = append(out, cs[start:p]...)
		}
	}
	return out, nil
}

// skipRecord returns the offset after a record of nCol values starting at p.
func skipRecord(cs []byte, p, nCol int) (int, error) {
	for range nCol {
		if p >= len(cs) {
			return 0, fmt.Errorf("store: changeset: truncated record")
		}
		t := cs[p]
		p++
		switch t {
		case 0, 5: // undefined, NULL
		case 1, 2: // integer, real
			p += 8
		case 3, 4: // text, blob
			n, k := sqliteVarint(cs[p:])
			if k == 0 || n > uint64(len(cs)) {
				return 0, fmt.Errorf("store: changeset: bad value length")
			}
			p += k + int(n)
		default:
			return 0, fmt.Errorf("store: changeset: bad value type %d", t)
		}
		if p > len(cs) {
			return 0, fmt.Errorf("store: changeset: truncated value")
		}
	}
	return p, nil
}

// sqliteVarint decodes SQLite's big-endian varint (1-9 bytes); n is 0 on truncated input.
func sqliteVarint(b []byte) (v uint64, n int) {
	for i := 0; i < 9; i++ {
		if i >= len(b) {
			return 0, 0
		}
		if i == 8 {
			return v<<8 | uint64(b[i]), 9
		}
		v = v<<7 | uint64(b[i]&0x7f)
		if b[i]&0x80 == 0 {
			return v, i + 1
		}
	}
	return 0, 0
}

func isSequenceTable(name string) bool { return name == "sqlite_sequence" }

// isStatTable reports whether name is one of the tables ANALYZE fills (sqlite_stat1 to
// sqlite_stat4): planner statistics, which every node computes itself (it runs the entry's
// ANALYZE). A node may not even have the table, so a change of one in an entry made every
// node that applied it diverge (found by a QA pass on 2026-12-03).
func isStatTable(name string) bool { return strings.HasPrefix(name, "sqlite_stat") }

// withoutStatTables drops statistics changes from a changeset about to be applied: entries
// written before sessions left those tables out must not stop a node (and did, on every
// restart).
func withoutStatTables(cs []byte) ([]byte, error) {
	if !bytes.Contains(cs, []byte("sqlite_stat")) {
		return cs, nil // the common case, without a copy
	}
	return dropTables(cs, isStatTable)
}
