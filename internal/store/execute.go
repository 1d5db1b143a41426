package store

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tandemdb/tandem/internal/sqlite"
)

// wconn is the writer connection of a database with what the writer caches about it. It is
// used only by the writer goroutine.
type wconn struct {
	conn  *sqlite.Conn
	stmts stmtCache

	// Columns that may hold a NULL primary key (rowid tables whose declared primary key is
	// not the rowid and not NOT NULL), valid for schema version riskyVer.
	risky    []riskyCol
	riskyVer int64

	// user caches the prepared statements of requests that are one DML or SELECT statement,
	// by their text: parsing is the largest CPU cost of a small write. A statement in use is
	// taken out of the map and put back by keep, so error paths simply close it. SQLite
	// prepares a statement again by itself when the schema changed.
	user map[string]*sqlite.Stmt
}

// userStmtCacheSize bounds wconn.user; when full it is emptied (clients that send many
// distinct texts gain nothing from it anyway).
const userStmtCacheSize = 256

// prepare returns the next statement of rest and its tail. whole is true when rest is the
// request's entire text; a statement served from or fit for the cache comes back with
// reusable set, to be handed to keep after a successful run.
func (w *wconn) prepare(rest string, whole bool) (st *sqlite.Stmt, tail string, reusable bool, err error) {
	if whole {
		if st := w.user[rest]; st != nil {
			delete(w.user, rest)
			if err := st.ClearBindings(); err != nil {
				st.Close()
				return nil, "", false, err
			}
			return st, "", true, nil
		}
	}
	st, tail, err = w.conn.Prepare(rest)
	if err != nil || st == nil {
		return st, tail, false, err
	}
	switch firstKeyword(st.SQL()) {
	case "INSERT", "REPLACE", "UPDATE", "DELETE", "SELECT", "WITH", "VALUES":
		reusable = whole && isBlank(tail)
	}
	return st, tail, reusable, nil
}

// keep resets st and puts it in the cache under text.
func (w *wconn) keep(text string, st *sqlite.Stmt) {
	if err := st.Reset(); err != nil {
		st.Close()
		return
	}
	if len(w.user) >= userStmtCacheSize {
		w.closeUser()
	}
	if w.user == nil {
		w.user = make(map[string]*sqlite.Stmt)
	}
	w.user[text] = st
}

// closeUser closes the cached statements.
func (w *wconn) closeUser() {
	for _, st := range w.user {
		st.Close()
	}
	clear(w.user)
}

type riskyCol struct{ table, col string }

// runOutcome is what executing one request (or one Tx.Exec) produced.
type runOutcome struct {
	res           Result // res.Err: the request's own error
	ddl           []string
	schemaChanged bool
	// again: the request changed the schema but is not the first of its batch; it was not
	// finished and must run again first in the next batch.
	again bool
}

// asSQLiteError turns err into the *sqlite.Error reported as a request's own error.
func asSQLiteError(err error) *sqlite.Error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se
	}
	return requestError(codeError, err.Error())
}

// run executes every statement of text in the current transaction. The caller wraps it in a
// savepoint and rolls that back when out.res.Err or out.again is set. sessionEmpty reports
// whether the session has recorded no row change yet (in this batch or transaction). With
// first false, a schema change stops the request with out.again set.
func (w *wconn) run(text string, args []sqlite.Value, sessionEmpty func() bool, first bool) (out runOutcome) {
	c := w.conn
	fail := func(err error) runOutcome {
		out.res = Result{Err: asSQLiteError(err)}
		out.ddl = nil
		return out
	}
	rest := text
	firstStmt := true
	tcStart := c.TotalChanges()
	svStart, err := c.SchemaVersion()
	if err != nil {
		return fail(err)
	}
	for {
		if firstKeyword(rest) == "PRAGMA" {
			if err := checkPragma(rest); err != nil {
				return fail(err)
			}
		}
		st, tail, reusable, err := w.prepare(rest, firstStmt)
		if err != nil {
			return fail(err)
		}
		if st == nil {
			break
		}
		rest = tail
		if firstStmt && len(args) > 0 && !isBlank(tail) {
			st.Close()
			return fail(requestError(codeError, "tandem: arguments are allowed only with a single statement"))
		}
		sqlText := st.SQL()
		if err := checkStatement(sqlText); err != nil {
			st.Close()
			return fail(err)
		}
		// The statement's own first word: EXPLAIN ANALYZE or EXPLAIN DROP change nothing.
		kw := leadingWord(sqlText)
		ddlKw := kw == "CREATE" || kw == "DROP" || kw == "ALTER" || kw == "ANALYZE" || kw == "REINDEX"
		var (
			sv0    int64
			before map[string]schemaObj
		)
		if kw == "ANALYZE" && !sessionEmpty() {
			// The other nodes run it before the entry's row changes: after some, their
			// statistics would not be the leader's.
			st.Close()
			return fail(requestError(codeError, "tandem: ANALYZE must come before any row change of its request or "+
				"transaction (the other nodes run it ahead of those changes): send it on its own"))
		}
		if ddlKw {
			if sv0, err = c.SchemaVersion(); err == nil {
				before, err = readSchema(c)
			}
			if err == nil {
				err = c.Exec("SAVEPOINT tandem_ddl")
			}
			if err != nil {
				st.Close()
				return fail(err)
			}
		}
		// Every parameter needs an argument; statements after the first get none (above).
		bindArgs := args
		if !firstStmt {
			bindArgs = nil
		}
		if err := st.BindAll(bindArgs); err != nil {
			st.Close()
			return fail(err)
		}
		firstStmt = false
		tc0 := c.TotalChanges()
		var rows [][]sqlite.Value
		n := 0
		for {
			ok, err := st.Step()
			if err != nil {
				st.Close()
				return fail(err)
			}
			// Read after Step: a cached statement that SQLite prepared again because the
			// schema changed may have other columns now (SELECT * after ADD COLUMN).
			n = st.ColumnCount()
			if !ok {
				break
			}
			row := make([]sqlite.Value, n)
			for i := range row {
				row[i] = st.Column(i)
			}
			rows = append(rows, row)
		}
		if n > 0 {
			out.res.Columns = make([]string, n)
			out.res.DeclTypes = make([]string, n)
			for i := range out.res.Columns {
				out.res.Columns[i] = st.ColumnName(i)
				out.res.DeclTypes[i] = st.ColumnDeclType(i)
			}
			out.res.Rows = rows
		}
		if reusable {
			w.keep(text, st)
		} else {
			st.Close()
		}
		if c.TotalChanges() != tc0 {
			out.res.RowsAffected += c.Changes()
		}
		if !ddlKw {
			continue
		}
		if kw == "ANALYZE" {
			// Statistics do not travel as rows (isStatTable): every node runs the statement
			// itself, as the entry's first schema change, on the same content. It goes first
			// in its entry like any schema change.
			if !first {
				out.again = true
				return out
			}
			if err := c.Exec("RELEASE tandem_ddl"); err != nil {
				return fail(err)
			}
			out.schemaChanged = true
			out.ddl = append(out.ddl, sqlText)
			continue
		}
		sv1, err := c.SchemaVersion()
		if err != nil {
			return fail(err)
		}
		if sv1 == sv0 {
			if err := c.Exec("RELEASE tandem_ddl"); err != nil {
				return fail(err)
			}
			continue
		}
		if !first {
			out.again = true
			return out
		}
		after, err := readSchema(c)
		if err != nil {
			return fail(err)
		}
		if err := checkReplicable(c); err != nil {
			return fail(err)
		}
		ddl, additive := schemaDiff(before, after, sqlText)
		if additive {
			if err := w.rematerialize(before, after); err != nil {
				return fail(err)
			}
		}
		if err := c.Exec("RELEASE tandem_ddl"); err != nil {
			return fail(err)
		}
		if !additive && !sessionEmpty() {
			return fail(requestError(codeError, "tandem: a statement that drops or alters schema objects "+
				"cannot follow (or cause) row changes in the same request or transaction; send it on its own"))
		}
		out.schemaChanged = true
		out.ddl = append(out.ddl, ddl...)
	}
	if !out.schemaChanged {
		// Safety net: only the statements classified above may change the schema.
		sv, err := c.SchemaVersion()
		if err != nil {
			return fail(err)
		}
		if sv != svStart {
			return fail(requestError(codeError, "tandem: unexpected schema change"))
		}
	}
	if c.TotalChanges() != tcStart {
		col, err := w.nullPrimaryKey()
		if err != nil {
			return fail(err)
		}
		if col != nil {
			return fail(requestError(codeConstraintNull, fmt.Sprintf(
				"tandem: NULL in PRIMARY KEY column %s.%s: rows with a NULL primary key cannot be replicated",
				col.table, col.col)))
		}
	}
	out.res.LastInsertID = c.LastInsertRowID()
	return out
}

// rematerialize makes the rows of tables created with rows (CREATE TABLE ... AS SELECT)
// visible to the session, which does not see them: it reads the rows, rolls the statement back
// (to the savepoint tandem_ddl), runs the canonical CREATE TABLE and inserts the rows again
// in the same order (so they get the same rowids).
func (w *wconn) rematerialize(before, after map[string]schemaObj) error {
	c := w.conn
	type filled struct {
		obj  schemaObj
		rows [][]sqlite.Value
	}
	var tables []filled
	for name, o := range after {
		if _, ok := before[name]; ok || o.typ != "table" || !o.hasSQL || strings.HasPrefix(name, "sqlite_") {
			continue
		}
		rows, err := queryAll(c, `SELECT * FROM `+quoteIdent(name)+` ORDER BY rowid`)
		if err != nil {
			if strings.Contains(err.Error(), "no such column: rowid") {
				continue // WITHOUT ROWID: cannot be made by CREATE TABLE AS
			}
			return err
		}
		if len(rows) > 0 {
			tables = append(tables, filled{o, rows})
		}
	}
	if len(tables) == 0 {
		return nil
	}
	// Undo the statement, keep everything before it.
	if err := c.Exec("ROLLBACK TO tandem_ddl"); err != nil {
		return err
	}
	slices.SortFunc(tables, func(a, b filled) int { return int(a.obj.rowid - b.obj.rowid) })
	for _, o := range sortedAdded(before, after) {
		if err := c.Exec(o.sql); err != nil {
			return err
		}
	}
	for _, t := range tables {
		n := len(t.rows[0])
		marks := strings.TrimSuffix(strings.Repeat("?,", n), ",")
		st, _, err := c.Prepare(`INSERT INTO ` + quoteIdent(t.obj.name) + ` VALUES(` + marks + `)`)
		if err != nil {
			return err
		}
		for _, row := range t.rows {
			err = st.Bind(row)
			if err == nil {
				_, err = st.Step()
			}
			if err == nil {
				err = st.Reset()
			}
			if err != nil {
				st.Close()
				return err
			}
		}
		st.Close()
	}
	return nil
}

// sortedAdded lists the objects of after missing from before, in creation order.
func sortedAdded(before, after map[string]schemaObj) []schemaObj {
	var added []schemaObj
	for name, o := range after {
		if _, ok := before[name]; !ok && o.hasSQL && !strings.HasPrefix(name, "sqlite_") {
			added = append(added, o)
		}
	}
	slices.SortFunc(added, func(a, b schemaObj) int { return int(a.rowid - b.rowid) })
	return added
}

// checkStatement rejects statements the replicated write path cannot allow.
func checkStatement(text string) error {
	switch kw := firstKeyword(text); kw {
	case "BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE":
		return requestError(codeError, "tandem: "+kw+" is not allowed in a statement: transactions are Tandem's "+
			"(an interactive transaction: Begin/Commit in the client, BEGIN ... COMMIT in tandem sql); savepoints are not supported")
	case "ATTACH", "DETACH", "VACUUM":
		return requestError(codeError, "tandem: "+kw+" is not allowed")
	}
	return checkNames(text)
}

// checkNames refuses a statement that names one of Tandem's own tables, or sqlite_dbpage
// (SQLite's view of the file's raw pages: reading it shows the internal tables' contents,
// writing it changes the leader's file around replication).
func checkNames(text string) error {
	switch name := reservedName(text); {
	case name == "":
		return nil
	case strings.EqualFold(name, "sqlite_dbpage"):
		return requestError(codeError, "tandem: sqlite_dbpage is not allowed (it reads and writes the database file's pages around replication)")
	default:
		return requestError(codeError, "tandem: names starting with _tandem_ are reserved (Tandem's own tables)")
	}
}

// reservedPrefix starts the names of the store's own tables (applied index, request records).
const reservedPrefix = "_tandem_"

// reservedName returns the first token of text that names something reserved, or "": an
// identifier, a quoted identifier ("...", `...`, [...]) or a string literal whose content
// starts with _tandem_ or is sqlite_dbpage (in any case). String literals count because SQLite
// takes one for a name where a name is expected (SELECT * FROM '_tandem_requests'); a value
// that merely contains the prefix elsewhere ('a_tandem_b'), comments and the rest of the text
// do not.
func reservedName(text string) string {
	reserved := func(name string) bool {
		return len(name) >= len(reservedPrefix) && strings.EqualFold(name[:len(reservedPrefix)], reservedPrefix) ||
			strings.EqualFold(name, "sqlite_dbpage")
	}
	for i := 0; i < len(text); {
		switch c := text[i]; {
		case c == '-' && strings.HasPrefix(text[i:], "--"):
			j := strings.IndexByte(text[i:], '\n')
			if j < 0 {
				return ""
			}
			i += j + 1
		case c == '/' && strings.HasPrefix(text[i:], "/*"):
			j := strings.Index(text[i+2:], "*/")
			if j < 0 {
				return ""
			}
			i += j + 4
		case c == '\'' || c == '"' || c == '`' || c == '[':
			closing := c
			if c == '[' {
				closing = ']'
			}
			j := i + 1
			for j < len(text) {
				if text[j] == closing {
					if closing != ']' && j+1 < len(text) && text[j+1] == closing {
						j += 2 // a doubled quote inside
						continue
					}
					break
				}
				j++
			}
			if name := text[i+1 : min(j, len(text))]; reserved(name) {
				return name
			}
			i = j + 1
		case isNameByte(c):
			j := i
			for j < len(text) && isNameByte(text[j]) {
				j++
			}
			if name := text[i:j]; reserved(name) {
				return name
			}
			i = j
		default:
			i++
		}
	}
	return ""
}

func isNameByte(c byte) bool {
	return c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

// Pragmas a request may run. Introspection pragmas may take an argument (a table name);
// value pragmas may only be read, except defer_foreign_keys, which lasts one transaction.
var (
	introspectionPragmas = map[string]bool{"table_info": true, "table_xinfo": true, "table_list": true,
		"index_list": true, "index_info": true, "index_xinfo": true, "foreign_key_list": true,
		"foreign_key_check": true, "integrity_check": true, "quick_check": true, "collation_list": true,
		"function_list": true, "module_list": true, "pragma_list": true, "database_list": true,
		"compile_options": true}
	valuePragmas = map[string]bool{"foreign_keys": true, "user_version": true, "application_id": true,
		"schema_version": true, "page_count": true, "page_size": true, "freelist_count": true,
		"data_version": true, "encoding": true, "journal_mode": true, "defer_foreign_keys": true,
		"recursive_triggers": true, "max_page_count": true, "auto_vacuum": true}
)

// checkPragma refuses pragmas that would change the connection or the file outside
// replication. It must run before the statement is prepared: SQLite applies flag pragmas
// (query_only, recursive_triggers, ...) while preparing them. text starts with the PRAGMA
// statement (more statements may follow).
func checkPragma(text string) error {
	rest := skipExplain(skipSpaceAndComments(text))
	if i := strings.IndexByte(rest, ';'); i >= 0 {
		rest = rest[:i]
	}
	rest = strings.TrimSpace(rest[min(len(rest), len("PRAGMA")):])
	end := 0
	for end < len(rest) && (rest[end] == '_' || rest[end] == '.' || rest[end] >= 'a' && rest[end] <= 'z' ||
		rest[end] >= 'A' && rest[end] <= 'Z' || rest[end] >= '0' && rest[end] <= '9') {
		end++
	}
	name := strings.ToLower(rest[:end])
	schema := ""
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		schema, name = name[:i], name[i+1:]
	}
	args := strings.TrimSpace(rest[end:])
	switch {
	case introspectionPragmas[name]:
		return nil
	case valuePragmas[name] && args == "":
		return nil
	case name == "defer_foreign_keys":
		return nil
	case name == "user_version" && (schema == "" || schema == "main"):
		return nil // replicated with the entry (command.UserVersion)
	}
	return requestError(codeError, "tandem: PRAGMA "+name+" is not allowed here (only reading pragmas, defer_foreign_keys and user_version)")
}

// firstKeyword returns the first word of a statement in upper case, skipping white space and
// comments.
func firstKeyword(s string) string {
	return leadingWord(skipExplain(skipSpaceAndComments(s)))
}

// leadingWord is the first word of s in upper case (after white space and comments), EXPLAIN
// included.
func leadingWord(s string) string {
	s = skipSpaceAndComments(s)
	end := 0
	for end < len(s) && (s[end] >= 'a' && s[end] <= 'z' || s[end] >= 'A' && s[end] <= 'Z') {
		end++
	}
	return strings.ToUpper(s[:end])
}

// skipExplain drops a leading EXPLAIN or EXPLAIN QUERY PLAN (s starts with a word): the
// statement it explains is compiled, and a PRAGMA applies some of its settings while being
// compiled, so the checks look at that statement (EXPLAIN PRAGMA ignore_check_constraints=1
// turned CHECK constraints off on the writer; found by a review on 2026-12-03).
func skipExplain(s string) string {
	word := func(s, w string) (string, bool) {
		if len(s) > len(w) && strings.EqualFold(s[:len(w)], w) && !isWordByte(s[len(w)]) {
			return skipSpaceAndComments(s[len(w):]), true
		}
		return s, false
	}
	rest, ok := word(s, "EXPLAIN")
	if !ok {
		return s
	}
	if r, ok := word(rest, "QUERY"); ok {
		if r, ok := word(r, "PLAN"); ok {
			return r
		}
	}
	return rest
}

func isWordByte(b byte) bool {
	return b == '_' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
}

// skipSpaceAndComments drops leading white space, semicolons and comments.
func skipSpaceAndComments(s string) string {
	for {
		s = strings.TrimLeft(s, " \t\r\n\f\v;")
		switch {
		case strings.HasPrefix(s, "--"):
			i := strings.IndexByte(s, '\n')
			if i < 0 {
				return ""
			}
			s = s[i+1:]
		case strings.HasPrefix(s, "/*"):
			i := strings.Index(s[2:], "*/")
			if i < 0 {
				return ""
			}
			s = s[i+4:]
		default:
			return s
		}
	}
}

// isBlank reports whether s holds only white space, comments and semicolons.
func isBlank(s string) bool { return skipSpaceAndComments(s) == "" }

// schemaObj is one row of sqlite_schema.
type schemaObj struct {
	rowid     int64
	typ, name string
	sql       string
	hasSQL    bool
}

func readSchema(c *sqlite.Conn) (map[string]schemaObj, error) {
	rows, err := queryAll(c, `SELECT rowid, type, name, sql FROM sqlite_schema`)
	if err != nil {
		return nil, err
	}
	m := make(map[string]schemaObj, len(rows))
	for _, r := range rows {
		o := schemaObj{}
		o.rowid, _ = r[0].(int64)
		o.typ, _ = r[1].(string)
		o.name, _ = r[2].(string)
		o.sql, o.hasSQL = r[3].(string)
		m[o.name] = o
	}
	return m, nil
}

// schemaDiff returns the DDL that reproduces the change from before to after made by the
// statement text. A change that only adds objects replicates their canonical CREATE text
// (so CREATE TABLE ... AS SELECT becomes a plain CREATE TABLE, its rows travel in the
// changeset); anything else (DROP, ALTER, RENAME) replicates the statement itself.
func schemaDiff(before, after map[string]schemaObj, text string) (ddl []string, additive bool) {
	var added []schemaObj
	additive = true
	for name, a := range after {
		b, ok := before[name]
		switch {
		case !ok:
			if !strings.HasPrefix(name, "sqlite_") && a.hasSQL {
				added = append(added, a)
			}
		case b.typ != a.typ || b.sql != a.sql || b.hasSQL != a.hasSQL:
			additive = false
		}
	}
	for name := range before {
		if _, ok := after[name]; !ok {
			additive = false
		}
	}
	if !additive {
		return []string{text}, false
	}
	slices.SortFunc(added, func(a, b schemaObj) int { return int(a.rowid - b.rowid) })
	for _, o := range added {
		if strings.HasPrefix(strings.ToUpper(o.sql), "CREATE VIRTUAL") {
			// Virtual tables create their shadow tables themselves.
			return []string{text}, true
		}
		ddl = append(ddl, o.sql)
	}
	return ddl, true
}

// checkReplicable rejects a schema whose changes the session extension would not capture: a
// table without PRIMARY KEY that has a column named _rowid_ (its rows are tracked by rowid,
// and that name then means the column; SQLite 3.54 records no change for such a table at
// all, which would leave the followers silently behind).
func checkReplicable(c *sqlite.Conn) error {
	rows, err := queryAll(c, `SELECT l.name FROM pragma_table_list AS l, pragma_table_info(l.name) AS c
		WHERE l.schema = 'main' AND l.type = 'table' AND l.wr = 0 AND c.name = '_rowid_' COLLATE NOCASE
		AND NOT EXISTS (SELECT 1 FROM pragma_table_info(l.name) AS k WHERE k.pk > 0)`)
	if err != nil {
		return err
	}
	if len(rows) > 0 {
		name, _ := rows[0][0].(string)
		return requestError(codeError, fmt.Sprintf("tandem: table %q has no PRIMARY KEY and a column named _rowid_: "+
			"its changes cannot be replicated; declare a PRIMARY KEY or rename the column", name))
	}
	return nil
}

// nullPrimaryKey finds a row with a NULL in a primary key column that the session extension
// would silently leave out of the changeset (DESIGN §3.6).
func (w *wconn) nullPrimaryKey() (*riskyCol, error) {
	sv, err := w.conn.SchemaVersion()
	if err != nil {
		return nil, err
	}
	if sv != w.riskyVer || w.riskyVer == 0 {
		rows, err := queryAll(w.conn, `SELECT l.name, c.name, c.type, c.pk,
			(SELECT count(*) FROM pragma_table_info(l.name) AS k WHERE k.pk > 0)
			FROM pragma_table_list AS l, pragma_table_info(l.name) AS c
			WHERE l.schema = 'main' AND l.type = 'table' AND l.wr = 0 AND c.pk > 0 AND c."notnull" = 0
			AND l.name NOT LIKE 'sqlite%' AND substr(l.name, 1, 8) <> '_tandem_'`)
		if err != nil {
			return nil, err
		}
		w.risky = w.risky[:0]
		for _, r := range rows {
			table, _ := r[0].(string)
			col, _ := r[1].(string)
			typ, _ := r[2].(string)
			npk, _ := r[4].(int64)
			if npk == 1 && strings.EqualFold(typ, "INTEGER") {
				continue // rowid alias: never NULL
			}
			w.risky = append(w.risky, riskyCol{table, col})
		}
		w.riskyVer = sv
	}
	for i := range w.risky {
		rc := &w.risky[i]
		rows, err := w.stmts.query(`SELECT 1 FROM ` + quoteIdent(rc.table) + ` WHERE ` + quoteIdent(rc.col) + ` IS NULL LIMIT 1`)
		if err != nil {
			return nil, err
		}
		if len(rows) > 0 {
			return rc, nil
		}
	}
	return nil, nil
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// readSeq reads sqlite_sequence (empty when the table does not exist).
func readSeq(c *stmtCache) (map[string]int64, error) {
	rows, err := c.query(`SELECT 1 FROM sqlite_schema WHERE name = 'sqlite_sequence'`)
	if err != nil || len(rows) == 0 {
		return nil, err
	}
	rows, err = queryAll(c.conn, `SELECT name, seq FROM sqlite_sequence`)
	if err != nil {
		return nil, err
	}
	m := make(map[string]int64, len(rows))
	for _, r := range rows {
		name, _ := r[0].(string)
		v, _ := r[1].(int64)
		m[name] = v
	}
	return m, nil
}

// seqDiff lists the sqlite_sequence rows that changed between before and after.
func seqDiff(before, after map[string]int64) []seqChange {
	var out []seqChange
	for name, v := range after {
		if b, ok := before[name]; !ok || b != v {
			out = append(out, seqChange{Table: name, Value: v})
		}
	}
	for name := range before {
		if _, ok := after[name]; !ok {
			out = append(out, seqChange{Table: name, Delete: true})
		}
	}
	slices.SortFunc(out, func(a, b seqChange) int { return strings.Compare(a.Table, b.Table) })
	return out
}
