package store

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/tandemdb/tandem/internal/sqlite"
)

// Rows of a table whose rowid is not its key get the leader's rowids on every node, also
// when an entry upserts two existing keys (each moves past the largest rowid on the leader;
// the followers update in place and must move the rows there).
func TestRowIDsOfUpserts(t *testing.T) {
	f := newCluster(t, 3, nil)
	s := f.leader()
	mustExec(t, s, "CREATE TABLE tpk(k TEXT PRIMARY KEY, v)")
	for i := 1; i <= 10; i++ {
		mustExec(t, s, fmt.Sprintf("INSERT INTO tpk VALUES('p%d', 0)", i))
	}
	for _, p := range [][2]string{{"p4", "p3"}, {"p7", "p1"}, {"p9", "p2"}} {
		mustExec(t, s, fmt.Sprintf("INSERT OR REPLACE INTO tpk VALUES('%s', 1); INSERT OR REPLACE INTO tpk VALUES('%s', 2)", p[0], p[1]))
	}
	f.requireHealthy()
	f.requireSameContent(testDB)
}

// An entry over the size limit is rolled back after the writer read its rowids, schema
// change and all; the next schema change reuses its schema_version. What the writer cached
// for the rolled-back schema must not be used for the new one: a table that needs rowids
// got none (the rowids then differed), and a table of the same name whose rowid is its key
// got some (the followers stopped).
func TestRowIDsAfterARolledBackSchemaChange(t *testing.T) {
	for _, tc := range []struct{ rolledBack, then, insert string }{
		{"CREATE TABLE x(a); INSERT INTO x SELECT randomblob(600000) FROM (SELECT 1 UNION ALL SELECT 2)",
			"CREATE TABLE y(k TEXT PRIMARY KEY, v)", "INSERT INTO y VALUES ('b%d', 1), ('a%[1]d', 2), ('c%[1]d', 3), ('e%[1]d', 4), ('d%[1]d', 5)"},
		{"CREATE TABLE y(k TEXT PRIMARY KEY, v); INSERT INTO y VALUES ('a', randomblob(600000)), ('b', randomblob(600000))",
			"CREATE TABLE y(k INTEGER PRIMARY KEY, v)", "INSERT INTO y VALUES (%d, 1), (100 + %[1]d, 2)"},
	} {
		f := newCluster(t, 3, func(o *Options) { o.MaxEntryBytes = 1 << 20 })
		s := f.leader()
		mustExec(t, s, "CREATE TABLE nopk(a)")
		res, err := s.Exec(context.Background(), testDB, Request{SQL: tc.rolledBack})
		var se *sqlite.Error
		if err != nil || !errors.As(res.Err, &se) || se.Code != codeTooBig {
			t.Fatalf("the entry over the limit: %v %v", res.Err, err)
		}
		mustExec(t, s, tc.then)
		for i := range 5 {
			mustExec(t, s, fmt.Sprintf(tc.insert, i, i))
		}
		f.requireHealthy()
		f.requireSameContent(testDB)
	}
}
