package store

import (
	"bytes"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/tandemdb/tandem/internal/sqlite"
)

func sampleCommand() *command {
	return &command{
		DB: "app", Node: 3, ExecTerm: 7, Seq: 99, BaseIndex: 1234, LeaderTime: -5,
		DDL:        []string{"CREATE TABLE t(a)", ""},
		SeqChanges: []seqChange{{Table: "t", Value: 42}, {Table: "u", Delete: true}},
		Changeset:  []byte{1, 2, 3},
		Requests: []requestRecord{
			{ClientID: 1, RequestID: math.MaxUint64, Result: encodeResult(nil, &Result{
				Columns: []string{"a", "b"},
				Rows: [][]sqlite.Value{{nil, int64(-1), 1.5, "x", []byte{}, []byte{0}},
					{math.Inf(1), int64(math.MinInt64), ""}},
				LastInsertID: 9, RowsAffected: 2,
				Err: &sqlite.Error{Code: 19, ExtendedCode: 2067, Msg: "UNIQUE constraint failed: t.a"},
			})},
		},
	}
}

func TestCommandRoundTrip(t *testing.T) {
	c := sampleCommand()
	b := encodeCommand(nil, c)
	got, err := decodeCommand(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Fatalf("round trip:\n%+v\n%+v", got, c)
	}
	res, err := decodeResult(got.Requests[0].Result)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows[0][4] == nil || len(res.Rows[0][4].([]byte)) != 0 {
		t.Fatalf("empty blob must stay an empty blob, not NULL: %#v", res.Rows[0][4])
	}
	if res.Err.ExtendedCode != 2067 || res.Rows[1][1] != int64(math.MinInt64) || res.LastInsertID != 9 {
		t.Fatalf("result: %+v", res)
	}
	// Every truncation and trailing garbage is rejected.
	for i := range b {
		if _, err := decodeCommand(b[:i]); err == nil {
			t.Fatalf("truncated at %d accepted", i)
		}
	}
	if _, err := decodeCommand(append(b, 0)); err == nil {
		t.Fatal("trailing byte accepted")
	}
	empty, err := decodeCommand(encodeCommand(nil, &command{}))
	if err != nil || !reflect.DeepEqual(empty, &command{}) {
		t.Fatalf("empty command: %+v %v", empty, err)
	}

	// user_version travels in version 3 entries only: the others stay readable by nodes
	// that know version 2 alone.
	if b[1] != 2 {
		t.Fatalf("an entry without user_version has version %d", b[1])
	}
	c.UserVersion, c.HasUserVersion = -5, true
	b = encodeCommand(nil, c)
	if b[1] != 3 {
		t.Fatalf("an entry with user_version has version %d", b[1])
	}
	if got, err := decodeCommand(b); err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("round trip with user_version: %+v %v", got, err)
	}
	for i := range b {
		if _, err := decodeCommand(b[:i]); err == nil {
			t.Fatalf("version 3 truncated at %d accepted", i)
		}
	}

	// Rowids travel in version 4 entries only, with a flags byte.
	for _, uv := range []bool{true, false} {
		c.UserVersion, c.HasUserVersion = 0, uv
		if uv {
			c.UserVersion = -5
		}
		c.RowIDs = []sqlite.TableRowIDs{{Table: "t", RowIDs: []int64{1, -7, math.MaxInt64}}, {Table: "u"}}
		b = encodeCommand(nil, c)
		if b[1] != 4 {
			t.Fatalf("an entry with rowids has version %d", b[1])
		}
		got, err := decodeCommand(b)
		got.RowIDs[1].RowIDs = nil // decoded as nil; encoded from nil too
		if err != nil || !reflect.DeepEqual(got, c) {
			t.Fatalf("round trip with rowids (user_version %v): %+v %v", uv, got, err)
		}
		for i := range b {
			if _, err := decodeCommand(b[:i]); err == nil {
				t.Fatalf("version 4 truncated at %d accepted", i)
			}
		}
	}
	b[1] = 5
	if _, err := decodeCommand(b); err == nil {
		t.Fatal("version 5 accepted")
	}
}

func FuzzDecodeCommand(f *testing.F) {
	f.Add(encodeCommand(nil, sampleCommand()))
	f.Add(encodeCommand(nil, &command{}))
	f.Add(encodeCommand(nil, &command{DB: "d", UserVersion: 3, HasUserVersion: true}))
	f.Add(encodeCommand(nil, &command{DB: "d", RowIDs: []sqlite.TableRowIDs{{Table: "t", RowIDs: []int64{5}}}}))
	f.Add([]byte{CommandKind, commandVersion, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeCommand(b)
		if err != nil {
			return
		}
		// What decodes re-encodes to an encoding of the same command.
		again, err := decodeCommand(encodeCommand(nil, c))
		if err != nil || !reflect.DeepEqual(again, c) {
			t.Fatalf("re-encoding differs: %v", err)
		}
		for _, r := range c.Requests {
			decodeResult(r.Result)
		}
	})
}

func FuzzDecodeResult(f *testing.F) {
	f.Add(sampleCommand().Requests[0].Result)
	f.Add(encodeResult(nil, &Result{}))
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeResult(b)
	})
}

func FuzzDropTables(f *testing.F) {
	f.Add(realChangeset(f))
	f.Add([]byte{'T', 0x81})
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := dropTables(b, isSequenceTable)
		if err == nil && len(out) > len(b) {
			t.Fatal("output longer than input")
		}
	})
}

// realChangeset makes a changeset touching an AUTOINCREMENT table (and so sqlite_sequence),
// a WITHOUT ROWID table and a table without primary key, with every value type.
func realChangeset(t testing.TB) []byte {
	c, err := sqlite.Open(filepath.Join(t.TempDir(), "cs.sqlite"), sqlite.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Exec(`CREATE TABLE a(id INTEGER PRIMARY KEY AUTOINCREMENT, v);
		CREATE TABLE w(k TEXT PRIMARY KEY, v) WITHOUT ROWID; CREATE TABLE n(x, y);
		INSERT INTO a(v) VALUES(1); INSERT INTO w VALUES('k', 1); INSERT INTO n VALUES(1, 2);`); err != nil {
		t.Fatal(err)
	}
	s, err := c.CreateSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := c.Exec(`INSERT INTO a(v) VALUES(2.5), (x'00ff'), (NULL), ('text');
		UPDATE w SET v = 'long ' || hex(zeroblob(200)); DELETE FROM n; INSERT INTO n VALUES(NULL, 3);
		UPDATE sqlite_sequence SET seq = 100`); err != nil {
		t.Fatal(err)
	}
	cs, err := s.Changeset()
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func TestDropTables(t *testing.T) {
	cs := realChangeset(t)
	out, err := dropTables(cs, isSequenceTable)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out, []byte("sqlite_sequence")) || !bytes.Contains(cs, []byte("sqlite_sequence")) {
		t.Fatal("sqlite_sequence not removed (or never there)")
	}
	all, err := dropTables(cs, func(string) bool { return false })
	if err != nil || !bytes.Equal(all, cs) {
		t.Fatalf("keeping every table changed the changeset: %v", err)
	}
	// The filtered changeset applies cleanly to a copy of the starting state.
	c, err := sqlite.Open(filepath.Join(t.TempDir(), "dst.sqlite"), sqlite.OpenOptions{DisableTriggers: true, ForeignKeys: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Exec(`CREATE TABLE a(id INTEGER PRIMARY KEY AUTOINCREMENT, v);
		CREATE TABLE w(k TEXT PRIMARY KEY, v) WITHOUT ROWID; CREATE TABLE n(x, y);
		INSERT INTO a(v) VALUES(1); INSERT INTO w VALUES('k', 1); INSERT INTO n VALUES(1, 2);`); err != nil {
		t.Fatal(err)
	}
	if err := c.ApplyChangeset(out); err != nil {
		t.Fatal(err)
	}
	rows, err := queryAll(c, "SELECT count(*) FROM a")
	if err != nil || fmt.Sprint(rows) != "[[5]]" {
		t.Fatalf("rows %v %v", rows, err)
	}
	rows, err = queryAll(c, "SELECT seq FROM sqlite_sequence")
	if err != nil || fmt.Sprint(rows) != "[[5]]" { // maintained by SQLite, not by the changeset
		t.Fatalf("rows %v %v", rows, err)
	}
}
