package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/tandemdb/tandem/client"
	"github.com/tandemdb/tandem/internal/store"
	"github.com/tandemdb/tandem/wire"
)

// resultSet is what one statement printed.
type resultSet struct {
	Columns      []string `json:"columns,omitempty"`
	Rows         [][]any  `json:"rows,omitempty"`
	RowsAffected int64    `json:"rows_affected"`
	LastInsertID int64    `json:"last_insert_id"`
	isQuery      bool
}

func runSQL(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("sql", "[--cluster HOST:PORT,...] [--db NAME] [SQL ...]",
		"Runs SQL against the cluster: the arguments joined, or standard input when there are none.\n"+
			"Statements run one after another and stop at the first error (its SQLite message is printed and\n"+
			"the exit status is 1). BEGIN ... COMMIT/ROLLBACK in the input runs as an interactive transaction.\n"+
			"Reads (SELECT, VALUES, WITH ... SELECT, EXPLAIN, PRAGMA without =) are served at --consistency;\n"+
			"with stale they are served by the first node of --cluster that answers. Everything else goes to the\n"+
			"leader.", stderr)
	cf := addClientFlags(fs)
	db := fs.String("db", "main", "database name ([A-Za-z0-9_-], 1 to 64 characters, created by its first write)")
	consistency := fs.String("consistency", "linearizable", "reads: linearizable, leader or stale")
	format := fs.String("format", "table", "output: table, csv or json (one JSON object per statement and line;\n"+
		"a row is an object keyed by column name, a repeated name gets a suffix (a, a:2), a blob is {\"blob\": \"<hex>\"},\n"+
		"an infinite or NaN real {\"real\": \"+Inf\"}; in csv NULL is an empty field and '' a quoted empty one)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var cons client.Consistency
	switch *consistency {
	case "linearizable":
		cons = client.Linearizable
	case "leader":
		cons = client.LeaderLocal
	case "stale":
		cons = client.Stale
	default:
		return usageError{"--consistency must be linearizable, leader or stale"}
	}
	if *format != "table" && *format != "csv" && *format != "json" {
		return usageError{"--format must be table, csv or json"}
	}
	if err := store.CheckName(*db); err != nil {
		return usageError{fmt.Sprintf("--db: %v", err)}
	}
	script := strings.Join(fs.Args(), " ")
	if fs.NArg() == 0 {
		b, err := io.ReadAll(stdin)
		if err != nil {
			return fmt.Errorf("read standard input: %w", err)
		}
		script = string(b)
	}
	stmts := splitStatements(script)
	if len(stmts) == 0 {
		if strings.TrimSpace(script) != "" {
			return nil // only comments and semicolons: nothing to run (a migration file may be)
		}
		return usageError{"no SQL given (arguments or standard input)"}
	}
	ctx, cancel := context.WithTimeout(ctx, *cf.timeout)
	defer cancel()
	c, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	sh := &shell{c: c, db: *db, opts: client.QueryOptions{Consistency: cons}, format: *format, out: stdout}
	for _, s := range stmts {
		if err := sh.run(ctx, s); err != nil {
			return describeError(err, *cf.timeout)
		}
	}
	if sh.tx != nil {
		_ = sh.tx.Rollback(ctx)
		return errors.New("the input ended inside a transaction: it was rolled back (add COMMIT)")
	}
	return nil
}

// describeError words a statement's failure for the shell's user: SQLite's message as
// SQLite's shell prints it, and what a timeout likely means.
func describeError(err error, timeout time.Duration) error {
	var we *wire.Error
	if errors.As(err, &we) && we.Code == wire.CodeSQLite {
		return fmt.Errorf("%s (SQLite error %d)", we.Message, we.SQLiteExtended)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, wire.CodeDeadline) {
		return fmt.Errorf("no answer within --timeout %v: is a majority of the cluster's nodes up? (tandem cluster list shows them): %w", timeout, err)
	}
	return err
}

// shell runs statements and prints their results.
type shell struct {
	c      *client.Client
	db     string
	opts   client.QueryOptions
	format string
	out    io.Writer
	tx     *client.Tx
}

func (sh *shell) run(ctx context.Context, stmt string) error {
	w := firstWords(stmt, 2)
	switch {
	case len(w) > 0 && w[0] == "BEGIN":
		if sh.tx != nil {
			return errors.New("cannot start a transaction within a transaction")
		}
		tx, err := sh.c.Begin(ctx, sh.db)
		if err != nil {
			return err
		}
		sh.tx = tx
		return nil
	case len(w) > 0 && (w[0] == "COMMIT" || w[0] == "END"):
		if sh.tx == nil {
			return errors.New("cannot commit: no transaction is active")
		}
		tx := sh.tx
		sh.tx = nil
		_, err := tx.Commit(ctx)
		return err
	case len(w) > 0 && w[0] == "ROLLBACK" && (len(w) == 1 || w[1] != "TO"):
		if sh.tx == nil {
			return errors.New("cannot roll back: no transaction is active")
		}
		tx := sh.tx
		sh.tx = nil
		return tx.Rollback(ctx)
	}
	var rs resultSet
	var err error
	switch {
	case sh.tx != nil && isRead(stmt):
		rs, err = collectRows(ctx, func() (*client.Rows, error) { return sh.tx.Query(ctx, stmt) })
	case sh.tx != nil:
		var res client.Result
		res, err = sh.tx.Exec(ctx, stmt)
		rs = fromResult(res)
	case isRead(stmt):
		rs, err = collectRows(ctx, func() (*client.Rows, error) { return sh.c.Query(ctx, sh.db, stmt, sh.opts) })
	default:
		var res client.Result
		res, err = sh.c.Exec(ctx, sh.db, stmt)
		rs = fromResult(res)
	}
	if err != nil {
		if sh.tx != nil {
			_ = sh.tx.Rollback(ctx)
			sh.tx = nil
		}
		return err
	}
	return sh.print(rs)
}

func fromResult(r client.Result) resultSet {
	rs := resultSet{Columns: r.Columns, RowsAffected: r.RowsAffected, LastInsertID: r.LastInsertID, isQuery: len(r.Columns) > 0}
	rs.Rows = append(rs.Rows, r.Rows...)
	return rs
}

func collectRows(ctx context.Context, open func() (*client.Rows, error)) (resultSet, error) {
	rows, err := open()
	if err != nil {
		return resultSet{}, err
	}
	defer rows.Close()
	rs := resultSet{Columns: rows.Columns(), isQuery: true}
	for {
		row, err := rows.Next(ctx)
		if errors.Is(err, io.EOF) {
			return rs, nil
		}
		if err != nil {
			return resultSet{}, err
		}
		rs.Rows = append(rs.Rows, row)
	}
}

func (sh *shell) print(rs resultSet) error {
	switch sh.format {
	case "json":
		obj := map[string]any{}
		if rs.isQuery {
			keys := uniqueNames(rs.Columns)
			rows := make([]map[string]any, 0, len(rs.Rows))
			for _, r := range rs.Rows {
				m := map[string]any{}
				for i, k := range keys {
					m[k] = jsonValue(r[i])
				}
				rows = append(rows, m)
			}
			obj["columns"], obj["rows"] = keys, rows
		} else {
			obj["rows_affected"], obj["last_insert_id"] = rs.RowsAffected, rs.LastInsertID
		}
		return json.NewEncoder(sh.out).Encode(obj)
	case "csv":
		if !rs.isQuery {
			return nil
		}
		w := bufio.NewWriter(sh.out)
		names := make([]string, len(rs.Columns))
		for i, c := range rs.Columns {
			names[i] = csvField(c, false)
		}
		w.WriteString(strings.Join(names, ",") + "\n")
		for _, r := range rs.Rows {
			rec := make([]string, len(r))
			for i, v := range r {
				rec[i] = csvField(textValue(v, ""), v == nil)
			}
			w.WriteString(strings.Join(rec, ",") + "\n")
		}
		return w.Flush()
	default:
		if !rs.isQuery {
			return nil
		}
		tw := tabwriter.NewWriter(sh.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(rs.Columns, "\t"))
		for _, r := range rs.Rows {
			cells := make([]string, len(r))
			for i, v := range r {
				cells[i] = textValue(v, "NULL")
			}
			fmt.Fprintln(tw, strings.Join(cells, "\t"))
		}
		return tw.Flush()
	}
}

// textValue renders a value for table and CSV output; blobs that are not UTF-8 text show as
// X'hex' literals and REALs always show a decimal point or an exponent.
// csvField quotes a CSV field as RFC 4180 does when it must (a comma, a quote, a line break,
// white space at either end), and also when it is the empty text, so that NULL (an empty,
// unquoted field, as PostgreSQL's CSV writes it) and ” (a quoted empty field) differ: they
// printed alike (found by a QA pass).
func csvField(s string, null bool) string {
	if null {
		return ""
	}
	if s != "" && !strings.ContainsAny(s, ",\"\r\n") && strings.TrimSpace(s) == s {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

func textValue(v any, null string) string {
	switch x := v.(type) {
	case nil:
		return null
	case []byte:
		if utf8.Valid(x) {
			return string(x)
		}
		return "X'" + strings.ToUpper(hex.EncodeToString(x)) + "'"
	case float64:
		// A REAL keeps a decimal point, as in SQLite's shell, so 2.0 does not read as the
		// INTEGER 2.
		s := strconv.FormatFloat(x, 'g', -1, 64)
		if !strings.ContainsAny(s, ".eIN") {
			s += ".0"
		}
		return s
	default:
		return fmt.Sprint(x)
	}
}

// jsonValue keeps numbers and text as they are; a blob becomes {"blob": "<hex>"}, so that
// it does not read as text, and a REAL that JSON has no number for (SQLite's 1e999 is
// +Inf) becomes {"real": "+Inf"}, "-Inf" or "NaN" (encoding/json refuses them: the output
// stopped there, the script's later statements unrun; found by a QA pass).
func jsonValue(v any) any {
	switch x := v.(type) {
	case []byte:
		return map[string]string{"blob": hex.EncodeToString(x)}
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return map[string]string{"real": strconv.FormatFloat(x, 'g', -1, 64)}
		}
	}
	return v
}

// uniqueNames returns the column names with a suffix on repeats ("a", "a:2", ...), so that
// every column has a key of its own in a JSON row (SELECT 1 AS a, 2 AS a).
func uniqueNames(cols []string) []string {
	seen := make(map[string]bool, len(cols))
	out := make([]string, len(cols))
	for i, c := range cols {
		name := c
		for n := 2; seen[name]; n++ {
			name = fmt.Sprintf("%s:%d", c, n)
		}
		seen[name] = true
		out[i] = name
	}
	return out
}
