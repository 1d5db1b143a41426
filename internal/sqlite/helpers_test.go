package sqlite

import (
	"path/filepath"
	"reflect"
	"testing"
)

func openT(t testing.TB, name string, opts OpenOptions) *Conn {
	t.Helper()
	c, err := Open(filepath.Join(t.TempDir(), name), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

func mustExec(t testing.TB, c *Conn, sql string, args ...Value) {
	t.Helper()
	if err := c.Exec(sql, args...); err != nil {
		t.Fatalf("Exec(%q): %v", sql, err)
	}
}

// query returns all rows of sql.
func query(t testing.TB, c *Conn, sql string, args ...Value) [][]Value {
	t.Helper()
	st, _, err := c.Prepare(sql)
	if err != nil {
		t.Fatalf("Prepare(%q): %v", sql, err)
	}
	defer st.Close()
	if err := st.Bind(args); err != nil {
		t.Fatalf("Bind: %v", err)
	}
	var rows [][]Value
	for {
		ok, err := st.Step()
		if err != nil {
			t.Fatalf("Step(%q): %v", sql, err)
		}
		if !ok {
			return rows
		}
		row := make([]Value, st.ColumnCount())
		for i := range row {
			row[i] = st.Column(i)
		}
		rows = append(rows, row)
	}
}

// dump returns the content of every user table, ordered, for comparisons.
func dump(t testing.TB, c *Conn) map[string][][]Value {
	t.Helper()
	out := map[string][][]Value{}
	for _, r := range query(t, c, "SELECT name, wr FROM pragma_table_list WHERE schema = 'main' AND type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name") {
		name := r[0].(string)
		if r[1] == int64(1) { // WITHOUT ROWID
			out[name] = query(t, c, `SELECT * FROM "`+name+`" ORDER BY 1, 2`)
			continue
		}
		out[name] = query(t, c, `SELECT rowid, * FROM "`+name+`" ORDER BY 1, 2`)
	}
	return out
}

func dumpNoRowid(t testing.TB, c *Conn, table string) [][]Value {
	t.Helper()
	return query(t, c, `SELECT * FROM "`+table+`" ORDER BY 1, 2`)
}

func equalDump(t testing.TB, a, b any) {
	t.Helper()
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("content differs:\n a=%v\n b=%v", a, b)
	}
}
