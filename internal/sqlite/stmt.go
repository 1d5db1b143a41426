package sqlite

import (
	"strconv"

	lib "modernc.org/sqlite/lib"
)

// Named is an argument for a named parameter (:name, @name or $name). Name
// may be given with or without its prefix character.
type Named struct {
	Name  string
	Value Value
}

// Stmt is a prepared statement. It belongs to its Conn and follows the same
// one-goroutine-at-a-time rule.
type Stmt struct {
	c *Conn
	p uintptr
}

// Bind binds args: values other than Named take the parameter slots 1, 2, ...
// in order (?, ?NNN and named parameters alike, as in sqlite3_bind_*), Named
// values bind by name. Parameters not given keep their previous binding
// (NULL initially; see ClearBindings). Call Reset before binding a statement
// that has been stepped.
func (s *Stmt) Bind(args []Value) error {
	return s.bind(args, nil)
}

// BindAll is Bind for a statement run on a client's behalf: every parameter must get a
// value from args. SQLite leaves a parameter without an argument NULL, which would store
// NULLs nobody asked for (and an argument forgotten by the caller would go unnoticed).
func (s *Stmt) BindAll(args []Value) error {
	if s.p == 0 {
		return errStmtClosed()
	}
	n := s.BindCount()
	if n == 0 && len(args) == 0 {
		return nil
	}
	var small [64]bool
	seen := small[:]
	if n+1 > len(small) {
		seen = make([]bool, n+1)
	}
	if err := s.bind(args, seen); err != nil {
		return err
	}
	for i := 1; i <= n; i++ {
		if !seen[i] {
			param := "?" + itoa(i)
			if name := s.paramName(i); name != "" {
				param = name
			}
			return &Error{Code: lib.SQLITE_RANGE, ExtendedCode: lib.SQLITE_RANGE,
				Msg: "sqlite: no argument for parameter " + param + ": the statement has " + itoa(n) +
					" parameters and got " + itoa(len(args)) + " arguments"}
		}
	}
	return nil
}

// bind binds args and, when seen is not nil, marks the parameter indexes it bound.
func (s *Stmt) bind(args []Value, seen []bool) error {
	if s.p == 0 {
		return errStmtClosed()
	}
	n := s.BindCount()
	k := 0
	for _, a := range args {
		var nv Named
		switch v := a.(type) {
		case Named:
			nv = v
		case *Named:
			nv = *v
		default:
			k++
			if k > n {
				return &Error{Code: lib.SQLITE_RANGE, ExtendedCode: lib.SQLITE_RANGE,
					Msg: "sqlite: too many arguments: statement has " + itoa(n) + " parameters"}
			}
			if err := s.bindValue(k, a); err != nil {
				return err
			}
			if seen != nil {
				seen[k] = true
			}
			continue
		}
		i := s.paramIndex(nv.Name)
		if i == 0 {
			return errNoParam(nv.Name)
		}
		if err := s.bindValue(i, nv.Value); err != nil {
			return err
		}
		if seen != nil {
			seen[i] = true
		}
	}
	return nil
}

// paramIndex resolves a parameter name, trying the prefixes : @ $ when name
// has none. 0 when not found.
func (s *Stmt) paramIndex(name string) int {
	if name == "" {
		return 0
	}
	switch name[0] {
	case ':', '@', '$', '?':
		return s.lookupParam(name)
	}
	for _, pre := range [...]string{":", "@", "$"} {
		if i := s.lookupParam(pre + name); i != 0 {
			return i
		}
	}
	return 0
}

func (s *Stmt) lookupParam(name string) int {
	tls := s.c.tls
	z := cString(tls, name)
	if z == 0 {
		return 0
	}
	i := lib.Xsqlite3_bind_parameter_index(tls, s.p, z)
	lib.Xsqlite3_free(tls, z)
	return int(i)
}

// paramName is sqlite3_bind_parameter_name ("" for a nameless ?).
func (s *Stmt) paramName(i int) string {
	return goString(lib.Xsqlite3_bind_parameter_name(s.c.tls, s.p, int32(i)))
}

// bindValue binds v to parameter i (1-based).
func (s *Stmt) bindValue(i int, v Value) error {
	tls := s.c.tls
	var rc int32
	switch x := v.(type) {
	case nil:
		rc = lib.Xsqlite3_bind_null(tls, s.p, int32(i))
	case int64:
		rc = lib.Xsqlite3_bind_int64(tls, s.p, int32(i), x)
	case int:
		rc = lib.Xsqlite3_bind_int64(tls, s.p, int32(i), int64(x))
	case bool:
		var b int64
		if x {
			b = 1
		}
		rc = lib.Xsqlite3_bind_int64(tls, s.p, int32(i), b)
	case float64:
		rc = lib.Xsqlite3_bind_double(tls, s.p, int32(i), x)
	case string:
		// SQLite takes ownership of the copy and frees it with sqlite3_free
		// (also when the bind fails).
		p := cCopyString(tls, x)
		if p == 0 {
			return errorFor(tls, 0, lib.SQLITE_NOMEM)
		}
		rc = lib.Xsqlite3_bind_text64(tls, s.p, int32(i), p, uint64(len(x)), sqliteFree, lib.SQLITE_UTF8)
	case []byte:
		// A zero-length copy is still a non-NULL pointer, so an empty
		// slice binds an empty BLOB, not NULL.
		p := cCopy(tls, x)
		if p == 0 {
			return errorFor(tls, 0, lib.SQLITE_NOMEM)
		}
		rc = lib.Xsqlite3_bind_blob64(tls, s.p, int32(i), p, uint64(len(x)), sqliteFree)
	default:
		return &Error{Code: lib.SQLITE_MISMATCH, ExtendedCode: lib.SQLITE_MISMATCH,
			Msg: "sqlite: unsupported argument type " + typeName(v) + " for parameter " + itoa(i)}
	}
	if rc != lib.SQLITE_OK {
		return errorFor(tls, s.c.db, rc)
	}
	return nil
}

// BindCount is sqlite3_bind_parameter_count (the largest parameter index).
func (s *Stmt) BindCount() int {
	if s.p == 0 {
		return 0
	}
	return int(lib.Xsqlite3_bind_parameter_count(s.c.tls, s.p))
}

// Step is sqlite3_step: row is true when a row is available.
func (s *Stmt) Step() (row bool, err error) {
	if s.p == 0 {
		return false, errStmtClosed()
	}
	switch rc := lib.Xsqlite3_step(s.c.tls, s.p); rc {
	case lib.SQLITE_ROW:
		return true, nil
	case lib.SQLITE_DONE:
		return false, nil
	default:
		return false, errorFor(s.c.tls, s.c.db, rc)
	}
}

// ColumnCount is sqlite3_column_count.
func (s *Stmt) ColumnCount() int {
	if s.p == 0 {
		return 0
	}
	return int(lib.Xsqlite3_column_count(s.c.tls, s.p))
}

// ColumnName is sqlite3_column_name.
func (s *Stmt) ColumnName(i int) string {
	if s.p == 0 {
		return ""
	}
	return goString(lib.Xsqlite3_column_name(s.c.tls, s.p, int32(i)))
}

// ColumnDeclType is sqlite3_column_decltype ("" for expressions).
func (s *Stmt) ColumnDeclType(i int) string {
	if s.p == 0 {
		return ""
	}
	return goString(lib.Xsqlite3_column_decltype(s.c.tls, s.p, int32(i)))
}

// Column returns column i of the current row as nil, int64, float64, string
// or []byte (never nil for a BLOB). Text and blobs are copied.
func (s *Stmt) Column(i int) Value {
	if s.p == 0 {
		return nil
	}
	tls, p, col := s.c.tls, s.p, int32(i)
	switch lib.Xsqlite3_column_type(tls, p, col) {
	case lib.SQLITE_INTEGER:
		return lib.Xsqlite3_column_int64(tls, p, col)
	case lib.SQLITE_FLOAT:
		return lib.Xsqlite3_column_double(tls, p, col)
	case lib.SQLITE_TEXT:
		z := lib.Xsqlite3_column_text(tls, p, col)
		n := lib.Xsqlite3_column_bytes(tls, p, col)
		return string(cview(z, int(n)))
	case lib.SQLITE_BLOB:
		z := lib.Xsqlite3_column_blob(tls, p, col)
		n := lib.Xsqlite3_column_bytes(tls, p, col)
		return goBytes(z, int(n))
	default:
		return nil
	}
}

// ReadOnly is sqlite3_stmt_readonly.
func (s *Stmt) ReadOnly() bool {
	if s.p == 0 {
		return false
	}
	return lib.Xsqlite3_stmt_readonly(s.c.tls, s.p) != 0
}

// SQL is sqlite3_sql: the text of this statement as prepared.
func (s *Stmt) SQL() string {
	if s.p == 0 {
		return ""
	}
	return goString(lib.Xsqlite3_sql(s.c.tls, s.p))
}

// Reset is sqlite3_reset. Bindings are kept.
func (s *Stmt) Reset() error {
	if s.p == 0 {
		return errStmtClosed()
	}
	if rc := lib.Xsqlite3_reset(s.c.tls, s.p); rc != lib.SQLITE_OK {
		return errorFor(s.c.tls, s.c.db, rc)
	}
	return nil
}

// ClearBindings is sqlite3_clear_bindings: every parameter becomes NULL.
func (s *Stmt) ClearBindings() error {
	if s.p == 0 {
		return errStmtClosed()
	}
	if rc := lib.Xsqlite3_clear_bindings(s.c.tls, s.p); rc != lib.SQLITE_OK {
		return errorFor(s.c.tls, s.c.db, rc)
	}
	return nil
}

// Close finalizes the statement. It returns nil (sqlite3_finalize repeats
// the error of the last Step, which the caller has already seen). Closing
// twice, or after the Conn was closed, is a no-op.
func (s *Stmt) Close() error {
	s.finalize()
	return nil
}

func (s *Stmt) finalize() {
	if s.p == 0 {
		return
	}
	lib.Xsqlite3_finalize(s.c.tls, s.p)
	s.p = 0
	delete(s.c.stmts, s)
}

func errStmtClosed() *Error { return misuse("statement is closed") }

func itoa(i int) string { return strconv.Itoa(i) }
