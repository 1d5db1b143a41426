package driver

import (
	"context"
	"database/sql"
	sqldriver "database/sql/driver"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/tandemdb/tandem/client"
	"github.com/tandemdb/tandem/wire"
)

// conn is one database/sql connection: a session over the connector's shared client. Only
// an open transaction is per-connection state.
type conn struct {
	connector     *Connector
	cl            *client.Client
	cfg           *Config
	tx            *client.Tx
	closed        bool
	ownsConnector bool
}

var (
	_ sqldriver.Conn               = (*conn)(nil)
	_ sqldriver.ConnBeginTx        = (*conn)(nil)
	_ sqldriver.ConnPrepareContext = (*conn)(nil)
	_ sqldriver.ExecerContext      = (*conn)(nil)
	_ sqldriver.QueryerContext     = (*conn)(nil)
	_ sqldriver.NamedValueChecker  = (*conn)(nil)
	_ sqldriver.Pinger             = (*conn)(nil)
	_ sqldriver.SessionResetter    = (*conn)(nil)
	_ sqldriver.Validator          = (*conn)(nil)
	_ sqldriver.StmtExecContext    = (*stmt)(nil)
	_ sqldriver.StmtQueryContext   = (*stmt)(nil)
	_ sqldriver.NamedValueChecker  = (*stmt)(nil)

	_ sqldriver.RowsColumnTypeDatabaseTypeName = (*rows)(nil)
)

func (c *conn) Prepare(query string) (sqldriver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

// PrepareContext prepares on the leader, so syntax errors show at once. When the leader
// cannot be reached the statement is kept as text. Inside a transaction the statement runs
// as text in the transaction, but is compiled on the leader too, for its parameter count
// (NumInput); an SQLite error there is not final (the statement may name a table the
// transaction created), so the statement is then kept as text with NumInput -1.
func (c *conn) PrepareContext(ctx context.Context, query string) (sqldriver.Stmt, error) {
	if c.closed {
		return nil, sqldriver.ErrBadConn
	}
	s := &stmt{c: c, sql: query}
	if c.tx != nil && c.tx.ReadOnly() {
		// Compiling it on the leader only counts its parameters, and a read-only transaction
		// may run on a follower because the leader is out of reach: the text is sent with
		// each query, and SQLite's error for a bad statement comes with the first.
		return s, nil
	}
	if c.tx != nil {
		cs, err := c.cl.Prepare(ctx, c.cfg.DB, query)
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			return s, nil
		}
		s.numInput = cs.NumParams()
		cs.Close()
		s.hasNumInput = true
		return s, nil
	}
	cs, err := c.cl.Prepare(ctx, c.cfg.DB, query)
	if err != nil {
		var we *wire.Error
		if errors.As(err, &we) && !errors.Is(err, wire.CodeUnavailable) && !errors.Is(err, wire.CodeNotLeader) {
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, err
		}
		return s, nil // not reachable now: the SQL travels with each execution
	}
	s.cs = cs
	return s, nil
}

func (c *conn) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	if c.tx != nil {
		c.tx.Rollback(context.Background())
		c.tx = nil
	}
	if c.ownsConnector {
		return c.connector.Close()
	}
	return nil
}

func (c *conn) Begin() (sqldriver.Tx, error) {
	return c.BeginTx(context.Background(), sqldriver.TxOptions{})
}

// BeginTx starts an interactive transaction on the leader. SQLite transactions are
// serializable; other isolation levels are refused. A ReadOnly transaction holds no writer:
// it reads one snapshot, at the consistency queries would use (the DSN's, or the context's
// from WithConsistency and WithMinIndex), on the node they would read from.
func (c *conn) BeginTx(ctx context.Context, opts sqldriver.TxOptions) (sqldriver.Tx, error) {
	if c.closed {
		return nil, sqldriver.ErrBadConn
	}
	if c.tx != nil {
		return nil, errors.New("tandem: a transaction is already open on this connection")
	}
	switch sql.IsolationLevel(opts.Isolation) {
	case sql.LevelDefault, sql.LevelSerializable:
	default:
		return nil, fmt.Errorf("tandem: isolation level %s not supported (transactions are serializable)", sql.IsolationLevel(opts.Isolation))
	}
	var t *client.Tx
	var err error
	if opts.ReadOnly {
		t, err = c.cl.BeginRead(ctx, c.cfg.DB, c.queryOptions(ctx))
	} else {
		t, err = c.cl.Begin(ctx, c.cfg.DB)
	}
	if err != nil {
		return nil, err
	}
	c.tx = t
	return &tx{c: c, t: t}, nil
}

func (c *conn) ExecContext(ctx context.Context, query string, args []sqldriver.NamedValue) (sqldriver.Result, error) {
	return c.exec(ctx, query, nil, args)
}

func (c *conn) exec(ctx context.Context, query string, cs *client.Stmt, args []sqldriver.NamedValue) (sqldriver.Result, error) {
	if c.closed {
		return nil, sqldriver.ErrBadConn
	}
	vals, err := toArgs(args)
	if err != nil {
		return nil, err
	}
	var r client.Result
	switch {
	case c.tx != nil:
		r, err = c.tx.Exec(ctx, query, vals...)
	case cs != nil:
		r, err = cs.Exec(ctx, vals...)
	default:
		r, err = c.cl.Exec(ctx, c.cfg.DB, query, vals...)
	}
	if err != nil {
		return nil, err
	}
	return result{r}, nil
}

func (c *conn) QueryContext(ctx context.Context, query string, args []sqldriver.NamedValue) (sqldriver.Rows, error) {
	return c.query(ctx, query, nil, args)
}

func (c *conn) query(ctx context.Context, query string, cs *client.Stmt, args []sqldriver.NamedValue) (sqldriver.Rows, error) {
	if c.closed {
		return nil, sqldriver.ErrBadConn
	}
	vals, err := toArgs(args)
	if err != nil {
		return nil, err
	}
	var r *client.Rows
	switch {
	case c.tx != nil:
		r, err = c.tx.Query(ctx, query, vals...)
	default:
		opts := c.queryOptions(ctx)
		if cs != nil {
			r, err = cs.Query(ctx, opts, vals...)
		} else {
			r, err = c.cl.Query(ctx, c.cfg.DB, query, opts, vals...)
		}
	}
	if err != nil {
		return nil, err
	}
	return &rows{r: r, decl: r.DeclTypes(), timeout: c.cfg.Client.RequestTimeout}, nil
}

// queryOptions are the DSN's query options with the context's overrides.
func (c *conn) queryOptions(ctx context.Context) client.QueryOptions {
	opts := client.QueryOptions{Consistency: c.cfg.Consistency, PageSize: c.cfg.PageSize, Node: c.cfg.Node}
	if v, ok := ctx.Value(keyConsistency).(client.Consistency); ok {
		opts.Consistency = v
	}
	if v, ok := ctx.Value(keyMinIndex).(uint64); ok {
		opts.MinIndex = v
	}
	return opts
}

// CheckNamedValue accepts nil, integers, floats, bool, string, []byte and time.Time,
// converting them to what travels; other types go through database/sql's default
// conversion (driver.Valuer and the like).
func (c *conn) CheckNamedValue(nv *sqldriver.NamedValue) error { return checkNamedValue(nv) }

func checkNamedValue(nv *sqldriver.NamedValue) error {
	switch v := nv.Value.(type) {
	case nil, int64, float64, string, []byte, bool, time.Time:
	case int:
		nv.Value = int64(v)
	case int8:
		nv.Value = int64(v)
	case int16:
		nv.Value = int64(v)
	case int32:
		nv.Value = int64(v)
	case uint8:
		nv.Value = int64(v)
	case uint16:
		nv.Value = int64(v)
	case uint32:
		nv.Value = int64(v)
	case uint:
		if uint64(v) > math.MaxInt64 {
			return fmt.Errorf("tandem: uint value %d overflows int64", v)
		}
		nv.Value = int64(v)
	case uint64:
		if v > math.MaxInt64 {
			return fmt.Errorf("tandem: uint64 value %d overflows int64", v)
		}
		nv.Value = int64(v)
	case float32:
		nv.Value = float64(v)
	default:
		return sqldriver.ErrSkip
	}
	return nil
}

// toArgs converts checked arguments to wire values: bool as 0/1, time as RFC 3339 text.
func toArgs(args []sqldriver.NamedValue) ([]any, error) {
	if len(args) == 0 {
		return nil, nil
	}
	out := make([]any, len(args))
	for i, a := range args {
		v := a.Value
		switch x := v.(type) {
		case bool:
			if x {
				v = int64(1)
			} else {
				v = int64(0)
			}
		case time.Time:
			v = x.UTC().Format(wire.TimeFormat)
		}
		if err := wire.CheckValue(v); err != nil {
			return nil, fmt.Errorf("tandem: argument %d: %w", a.Ordinal, err)
		}
		if a.Name != "" {
			v = wire.Named{Name: a.Name, Value: v}
		}
		out[i] = v
	}
	return out, nil
}

// Ping checks that the cluster answers: a leader lookup over an existing connection, or
// for stale-read configurations, the status of the stale-read node.
func (c *conn) Ping(ctx context.Context) error {
	if c.closed {
		return sqldriver.ErrBadConn
	}
	if c.cfg.Consistency == client.Stale {
		node := c.cfg.Node
		if node == "" {
			node = c.cfg.Client.Addrs[0]
		}
		_, err := c.cl.Status(ctx, node)
		return err
	}
	_, err := c.cl.Leader(ctx)
	return err
}

// ResetSession is called before a pooled connection is reused.
func (c *conn) ResetSession(ctx context.Context) error {
	if c.closed || c.connector.isClosed() {
		return sqldriver.ErrBadConn
	}
	if c.tx != nil { // database/sql always ends transactions; be safe anyway
		c.tx.Rollback(ctx)
		c.tx = nil
	}
	return nil
}

// IsValid reports whether the connection may be reused (the client reconnects by itself).
func (c *conn) IsValid() bool { return !c.closed && !c.connector.isClosed() }

type tx struct {
	c *conn
	t *client.Tx
}

func (t *tx) Commit() error {
	if t.c.tx == t.t {
		t.c.tx = nil
	}
	_, err := t.t.Commit(context.Background())
	return err
}

func (t *tx) Rollback() error {
	if t.c.tx == t.t {
		t.c.tx = nil
	}
	return t.t.Rollback(context.Background())
}

type stmt struct {
	c   *conn
	sql string
	cs  *client.Stmt // nil: send the text
	// numInput, when hasNumInput, is the parameter count of a statement prepared inside a
	// transaction (sent as text, compiled on the leader only to count its parameters).
	numInput    int
	hasNumInput bool
}

func (s *stmt) Close() error {
	if s.cs != nil {
		return s.cs.Close()
	}
	return nil
}

// NumInput is the number of parameters the server found when it prepared the statement
// (sqlite3_bind_parameter_count, so that database/sql checks the count before sending), or
// -1 when it could not tell (the leader was not reachable, the server did not compile it,
// or, inside a transaction, could not); the server then checks the arguments when the
// statement runs.
func (s *stmt) NumInput() int {
	switch {
	case s.cs != nil:
		return s.cs.NumParams()
	case s.hasNumInput:
		return s.numInput
	}
	return -1
}

func (s *stmt) CheckNamedValue(nv *sqldriver.NamedValue) error { return checkNamedValue(nv) }

func (s *stmt) Exec(args []sqldriver.Value) (sqldriver.Result, error) {
	return s.ExecContext(context.Background(), named(args))
}

func (s *stmt) Query(args []sqldriver.Value) (sqldriver.Rows, error) {
	return s.QueryContext(context.Background(), named(args))
}

func (s *stmt) ExecContext(ctx context.Context, args []sqldriver.NamedValue) (sqldriver.Result, error) {
	return s.c.exec(ctx, s.sql, s.cs, args)
}

func (s *stmt) QueryContext(ctx context.Context, args []sqldriver.NamedValue) (sqldriver.Rows, error) {
	return s.c.query(ctx, s.sql, s.cs, args)
}

func named(args []sqldriver.Value) []sqldriver.NamedValue {
	nv := make([]sqldriver.NamedValue, len(args))
	for i, a := range args {
		nv[i] = sqldriver.NamedValue{Ordinal: i + 1, Value: a}
	}
	return nv
}

type result struct{ r client.Result }

func (r result) LastInsertId() (int64, error) { return r.r.LastInsertID, nil }
func (r result) RowsAffected() (int64, error) { return r.r.RowsAffected, nil }

type rows struct {
	r       *client.Rows
	decl    []string
	timeout time.Duration
}

func (r *rows) Columns() []string { return r.r.Columns() }
func (r *rows) Close() error      { return r.r.Close() }

func (r *rows) Next(dest []sqldriver.Value) error {
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	row, err := r.r.Next(ctx)
	if err != nil {
		return err // io.EOF at the end
	}
	for i := range dest {
		var v any
		if i < len(row) {
			v = row[i]
		}
		if i < len(r.decl) && isTimeType(r.decl[i]) {
			v = toTime(v)
		}
		dest[i] = v
	}
	return nil
}

// ColumnTypeDatabaseTypeName returns the column's declared type, upper case ("" for
// expressions).
func (r *rows) ColumnTypeDatabaseTypeName(i int) string {
	if i < len(r.decl) {
		return strings.ToUpper(r.decl[i])
	}
	return ""
}

func isTimeType(decl string) bool {
	d := strings.ToUpper(strings.TrimSpace(decl))
	return strings.HasPrefix(d, "DATETIME") || strings.HasPrefix(d, "TIMESTAMP") || d == "DATE" || strings.HasPrefix(d, "DATE(")
}

// timeLayouts are the text forms of times accepted in DATE/DATETIME/TIMESTAMP columns.
func timeLayouts() [7]string {
	return [...]string{
		time.RFC3339Nano,
		"2006-01-02 15:04:05.999999999Z07:00",
		"2006-01-02T15:04:05.999999999",
		"2006-01-02 15:04:05.999999999",
		"2006-01-02T15:04",
		"2006-01-02 15:04",
		"2006-01-02",
	}
}

// toTime converts text (or Unix seconds) to time.Time; anything else, or text in no known
// layout, is returned unchanged.
func toTime(v any) any {
	switch x := v.(type) {
	case string:
		s := strings.TrimSpace(x)
		for _, l := range timeLayouts() {
			if t, err := time.ParseInLocation(l, s, time.UTC); err == nil {
				return t
			}
		}
	case int64:
		return time.Unix(x, 0).UTC()
	}
	return v
}
