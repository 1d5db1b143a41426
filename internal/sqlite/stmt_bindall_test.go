package sqlite

import (
	"errors"
	"strings"
	"testing"
)

// BindAll refuses to leave a parameter without an argument, where Bind (as SQLite) would
// leave it NULL.
func TestBindAllNeedsEveryParameter(t *testing.T) {
	c := openT(t, "bind.db", OpenOptions{})
	for _, tc := range []struct {
		sql  string
		args []Value
		want string // "" for success, else a part of the error
	}{
		{`SELECT 1`, nil, ""},
		{`SELECT ?, ?`, []Value{int64(1), int64(2)}, ""},
		{`SELECT ?, ?`, []Value{int64(1)}, "no argument for parameter ?2"},
		{`SELECT ?`, nil, "no argument for parameter ?1"},
		{`SELECT ?1, ?1`, []Value{int64(1)}, ""},
		{`SELECT ?1, ?3`, []Value{int64(1), int64(2)}, "no argument for parameter ?3"},
		{`SELECT :a, :b`, []Value{Named{Name: "a", Value: int64(1)}, Named{Name: "b", Value: int64(2)}}, ""},
		{`SELECT :a, :b`, []Value{Named{Name: "b", Value: int64(2)}}, "no argument for parameter :a"},
		{`SELECT :a, :a`, []Value{Named{Name: "a", Value: int64(2)}}, ""},
		{`SELECT ?`, []Value{int64(1), int64(2)}, "too many arguments"},
	} {
		st, _, err := c.Prepare(tc.sql)
		if err != nil {
			t.Fatal(err)
		}
		err = st.BindAll(tc.args)
		st.Close()
		var se *Error
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s %v: %v", tc.sql, tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s %v: error %v, want %q", tc.sql, tc.args, err, tc.want)
		case tc.want != "" && (!errors.As(err, &se) || se.Code != 25): // SQLITE_RANGE
			t.Errorf("%s %v: error %#v is not SQLITE_RANGE", tc.sql, tc.args, err)
		}
	}
	// Many parameters (beyond the stack array).
	st, _, err := c.Prepare(`SELECT ` + strings.TrimSuffix(strings.Repeat("?,", 100), ","))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	args := make([]Value, 99)
	if err := st.BindAll(args); err == nil || !strings.Contains(err.Error(), "?100") {
		t.Fatalf("99 arguments for 100 parameters: %v", err)
	}
	if err := st.BindAll(append(args, nil)); err != nil {
		t.Fatalf("100 arguments: %v", err)
	}
}
