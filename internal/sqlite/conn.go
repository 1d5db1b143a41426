package sqlite

import (
	"context"
	"strings"
	"sync"
	"time"

	"modernc.org/libc"
	lib "modernc.org/sqlite/lib"
)

// Value is a value crossing the binding: nil, int64, float64, string or
// []byte. Bind also accepts int, bool and Named.
type Value = any

// OpenOptions configures Open.
type OpenOptions struct {
	ReadOnly        bool          // SQLITE_OPEN_READONLY (read pool)
	DisableTriggers bool          // sqlite3_db_config(SQLITE_DBCONFIG_ENABLE_TRIGGER, 0): apply connections
	ForeignKeys     bool          // PRAGMA foreign_keys=ON
	BusyTimeout     time.Duration // sqlite3_busy_timeout; 0 = none
	// MaxLength, if positive, is SQLITE_LIMIT_LENGTH: the longest string, blob or row the
	// connection makes or reads (longer ones fail with SQLITE_TOOBIG).
	MaxLength int
}

// Conn is one SQLite connection. It must be used by one goroutine at a time;
// only Interrupt may be called concurrently.
type Conn struct {
	tls      *libc.TLS
	db       uintptr
	stmts    map[*Stmt]struct{}
	sessions map[*Session]struct{}
	// ApplyChangeset's schema check: cached statements and table shapes,
	// the latter valid for schema version shapesVersion.
	xinfo         *Stmt
	schemaVer     *Stmt
	shapes        map[string]*tableShape
	shapesVersion int64
	// keyedTables: whether any table has a rowid that is not its key (rowid.go), as of
	// schema version keyedVersion (-1: not known).
	keyedTables  bool
	keyedVersion int64
	// applyDirect's savepoint statements (SAVEPOINT, RELEASE, ROLLBACK TO).
	applySP [3]*Stmt
	// applyRetries counts the changes applyDirect had to retry after a constraint failure
	// (for tests).
	applyRetries int
	// foreignKeys: opened with ForeignKeys; ApplyChangeset then needs FKNOACTION.
	foreignKeys bool
	// walFrames is C memory (an int32) where walHook stores the WAL's frame count after
	// each commit; 0 until TrackWALFrames.
	walFrames uintptr
	// rolledBack is C memory (an int32) that rollbackHook sets when a transaction of this
	// connection rolls back: a rollback gives its schema_version back, so caches keyed by
	// schema_version (table shapes, keyedTables) that were filled inside it are dropped
	// (schemaCachesCheck). Created with the connection.
	rolledBack uintptr

	imu sync.Mutex // guards idb, itls and cancelFlag against Close
	// cancelFlag is C memory (an int32) that CancelOn's progress handler reads; 0 until the
	// first CancelOn.
	cancelFlag uintptr
	idb        uintptr   // db while open, 0 after Close
	itls       *libc.TLS // TLS for Interrupt, which runs on other goroutines
}

// Open opens (creating it unless ReadOnly) the database file at path, in WAL
// mode with synchronous=NORMAL. A ReadOnly connection cannot switch the
// journal mode; it expects a database that a writer already put in WAL mode.
func Open(path string, opts OpenOptions) (*Conn, error) {
	tls := libc.NewTLS()
	c := &Conn{
		tls:          tls,
		stmts:        make(map[*Stmt]struct{}),
		sessions:     make(map[*Session]struct{}),
		keyedVersion: -1,
	}
	flags := int32(lib.SQLITE_OPEN_NOMUTEX | lib.SQLITE_OPEN_EXRESCODE)
	if opts.ReadOnly {
		flags |= lib.SQLITE_OPEN_READONLY
	} else {
		flags |= lib.SQLITE_OPEN_READWRITE | lib.SQLITE_OPEN_CREATE
	}
	zPath := cString(tls, path)
	pp := tls.Alloc(8)
	writePtr(pp, 0)
	rc := lib.Xsqlite3_open_v2(tls, zPath, pp, flags, 0)
	db := readPtr(pp)
	tls.Free(8)
	lib.Xsqlite3_free(tls, zPath)
	if zPath == 0 {
		rc = lib.SQLITE_NOMEM
	}
	if rc != lib.SQLITE_OK {
		err := errorFor(tls, db, rc)
		if db != 0 {
			lib.Xsqlite3_close_v2(tls, db)
		}
		tls.Close()
		return nil, err
	}
	c.db = db
	c.idb = db
	c.itls = libc.NewTLS()
	if err := c.setup(path, opts); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Conn) setup(path string, opts OpenOptions) error {
	lib.Xsqlite3_extended_result_codes(c.tls, c.db, 1)
	if c.rolledBack = cMalloc(c.tls, 4); c.rolledBack == 0 {
		return &Error{Code: lib.SQLITE_NOMEM, Msg: "out of memory"}
	}
	writeInt32(c.rolledBack, 0)
	lib.Xsqlite3_rollback_hook(c.tls, c.db, rollbackHookPtr, c.rolledBack)
	if opts.BusyTimeout > 0 {
		ms := opts.BusyTimeout.Milliseconds()
		if ms > 1<<31-1 {
			ms = 1<<31 - 1
		}
		if ms < 1 {
			ms = 1
		}
		if rc := lib.Xsqlite3_busy_timeout(c.tls, c.db, int32(ms)); rc != lib.SQLITE_OK {
			return errorFor(c.tls, c.db, rc)
		}
	}
	if opts.MaxLength > 0 {
		lib.Xsqlite3_limit(c.tls, c.db, lib.SQLITE_LIMIT_LENGTH, int32(opts.MaxLength))
	}
	if opts.DisableTriggers {
		if err := c.dbConfigBool(lib.SQLITE_DBCONFIG_ENABLE_TRIGGER, false); err != nil {
			return err
		}
	}
	if !opts.ReadOnly {
		mode, err := c.queryString("PRAGMA journal_mode=WAL")
		if err != nil {
			return err
		}
		if !strings.EqualFold(mode, "wal") && !isMemory(path) {
			return misuse("cannot switch %q to WAL mode (journal_mode=%s)", path, mode)
		}
	}
	fk := "PRAGMA foreign_keys=OFF"
	if opts.ForeignKeys {
		fk = "PRAGMA foreign_keys=ON"
	}
	c.foreignKeys = opts.ForeignKeys
	return c.Exec("PRAGMA synchronous=NORMAL; " + fk)
}

func isMemory(path string) bool {
	return path == "" || path == ":memory:" || strings.HasPrefix(path, "file::memory:")
}

// dbConfigBool calls sqlite3_db_config(db, op, int onoff, int *pRes=NULL).
func (c *Conn) dbConfigBool(op int32, on bool) error {
	var v int32
	if on {
		v = 1
	}
	va := c.tls.Alloc(16) // two 8-byte vararg slots
	defer c.tls.Free(16)
	if rc := lib.Xsqlite3_db_config(c.tls, c.db, op, libc.VaList(va, v, uintptr(0))); rc != lib.SQLITE_OK {
		return errorFor(c.tls, c.db, rc)
	}
	return nil
}

// queryString runs a one-row, one-column query.
func (c *Conn) queryString(sql string) (string, error) {
	st, _, err := c.Prepare(sql)
	if err != nil {
		return "", err
	}
	if st == nil {
		return "", misuse("empty query")
	}
	defer st.Close()
	row, err := st.Step()
	if err != nil || !row {
		return "", err
	}
	s, _ := st.Column(0).(string)
	return s, nil
}

// Close finalizes every statement and deletes every session still open on
// the connection, then closes it. Calling Close again is a no-op.
func (c *Conn) Close() error {
	if c.db == 0 {
		return nil
	}
	c.imu.Lock()
	c.idb = 0
	itls := c.itls
	c.itls = nil
	cancelFlag := c.cancelFlag
	c.cancelFlag = 0
	c.imu.Unlock()

	for s := range c.sessions {
		s.close()
	}
	for st := range c.stmts {
		st.finalize()
	}
	c.xinfo, c.schemaVer, c.shapes, c.applySP = nil, nil, nil, [3]*Stmt{}
	// Statements prepared outside this package's tracking cannot exist, but
	// make sure nothing keeps the handle alive as a zombie.
	for p := lib.Xsqlite3_next_stmt(c.tls, c.db, 0); p != 0; p = lib.Xsqlite3_next_stmt(c.tls, c.db, 0) {
		lib.Xsqlite3_finalize(c.tls, p)
	}
	rc := lib.Xsqlite3_close_v2(c.tls, c.db)
	var err error
	if rc != lib.SQLITE_OK {
		err = errorFor(c.tls, 0, rc)
	}
	c.db = 0
	if c.walFrames != 0 {
		lib.Xsqlite3_free(c.tls, c.walFrames)
		c.walFrames = 0
	}
	if c.rolledBack != 0 {
		lib.Xsqlite3_free(c.tls, c.rolledBack)
		c.rolledBack = 0
	}
	if cancelFlag != 0 {
		lib.Xsqlite3_free(c.tls, cancelFlag)
	}
	c.tls.Close()
	if itls != nil {
		itls.Close()
	}
	return err
}

// Exec runs every statement in sql, discarding rows. Named args are bound in
// every statement that has a parameter of that name; positional args fill the
// remaining parameter slots in order, each statement taking as many as it
// has. Too few arguments for a statement is an error before it runs; so is
// an argument left unused after the last statement (detected before that
// statement runs when nothing but blanks follows it).
func (c *Conn) Exec(sql string, args ...Value) error {
	if c.db == 0 {
		return errClosed()
	}
	var pos []Value
	var named []Named
	for _, a := range args {
		switch v := a.(type) {
		case Named:
			named = append(named, v)
		case *Named:
			named = append(named, *v)
		default:
			pos = append(pos, a)
		}
	}
	usedNamed := make([]bool, len(named))
	for {
		st, tail, err := c.Prepare(sql)
		if err != nil {
			return err
		}
		if st == nil {
			break
		}
		n := st.BindCount()
		k := 0
		for i := 1; i <= n; i++ {
			if name := st.paramName(i); name != "" && name[0] != '?' {
				if j := matchNamed(named, name); j >= 0 {
					usedNamed[j] = true
					if err := st.bindValue(i, named[j].Value); err != nil {
						st.Close()
						return err
					}
					continue
				}
			}
			if k >= len(pos) {
				st.Close()
				return &Error{Code: lib.SQLITE_RANGE, ExtendedCode: lib.SQLITE_RANGE,
					Msg: "sqlite: not enough arguments for statement: " + st.SQL()}
			}
			if err := st.bindValue(i, pos[k]); err != nil {
				st.Close()
				return err
			}
			k++
		}
		pos = pos[k:]
		if strings.TrimSpace(tail) == "" { // last statement: check before it runs
			if len(pos) > 0 {
				st.Close()
				return errTooManyArgs()
			}
			for j, used := range usedNamed {
				if !used {
					st.Close()
					return errNoParam(named[j].Name)
				}
			}
		}
		for {
			row, err := st.Step()
			if err != nil {
				st.Close()
				return err
			}
			if !row {
				break
			}
		}
		if err := st.Close(); err != nil {
			return err
		}
		sql = tail
	}
	if len(pos) > 0 {
		return errTooManyArgs()
	}
	for j, used := range usedNamed {
		if !used {
			return errNoParam(named[j].Name)
		}
	}
	return nil
}

// matchNamed finds the Named arg for parameter name (":x", "@x", "$x"); a
// Named may be given with or without the prefix.
func matchNamed(named []Named, name string) int {
	for j, nv := range named {
		if nv.Name == name || (len(name) > 1 && nv.Name == name[1:]) {
			return j
		}
	}
	return -1
}

// Prepare compiles the first statement of sql and returns the rest of sql in
// tail. st is nil (and err nil) when sql holds only whitespace, comments and
// empty statements.
func (c *Conn) Prepare(sql string) (st *Stmt, tail string, err error) {
	if c.db == 0 {
		return nil, "", errClosed()
	}
	if strings.IndexByte(sql, 0) >= 0 {
		return nil, "", misuse("SQL text contains a NUL byte")
	}
	for {
		if sql == "" {
			return nil, "", nil
		}
		zSQL := cString(c.tls, sql)
		if zSQL == 0 {
			return nil, "", errorFor(c.tls, 0, lib.SQLITE_NOMEM)
		}
		out := c.tls.Alloc(16) // sqlite3_stmt **ppStmt; const char **pzTail
		writePtr(out, 0)
		writePtr(out+8, 0)
		rc := lib.Xsqlite3_prepare_v2(c.tls, c.db, zSQL, int32(len(sql)+1), out, out+8)
		p := readPtr(out)
		zTail := readPtr(out + 8)
		c.tls.Free(16)
		lib.Xsqlite3_free(c.tls, zSQL)
		if rc != lib.SQLITE_OK {
			if p != 0 {
				lib.Xsqlite3_finalize(c.tls, p)
			}
			return nil, "", errorFor(c.tls, c.db, rc)
		}
		rest := ""
		if zTail != 0 {
			if off := int(zTail - zSQL); off >= 0 && off < len(sql) {
				rest = sql[off:]
			}
		}
		if p != 0 {
			st = &Stmt{c: c, p: p}
			c.stmts[st] = struct{}{}
			return st, rest, nil
		}
		if len(rest) >= len(sql) { // no progress: nothing left to compile
			return nil, "", nil
		}
		sql = rest
	}
}

// Changes is sqlite3_changes64.
func (c *Conn) Changes() int64 {
	if c.db == 0 {
		return 0
	}
	return lib.Xsqlite3_changes64(c.tls, c.db)
}

// LastInsertRowID is sqlite3_last_insert_rowid.
func (c *Conn) LastInsertRowID() int64 {
	if c.db == 0 {
		return 0
	}
	return lib.Xsqlite3_last_insert_rowid(c.tls, c.db)
}

// SetLastInsertRowID is sqlite3_set_last_insert_rowid: what LastInsertRowID returns until
// the next insert.
func (c *Conn) SetLastInsertRowID(id int64) {
	if c.db != 0 {
		lib.Xsqlite3_set_last_insert_rowid(c.tls, c.db, id)
	}
}

// TotalChanges is sqlite3_total_changes64.
func (c *Conn) TotalChanges() int64 {
	if c.db == 0 {
		return 0
	}
	return lib.Xsqlite3_total_changes64(c.tls, c.db)
}

// Autocommit is sqlite3_get_autocommit: true outside BEGIN ... COMMIT.
func (c *Conn) Autocommit() bool {
	if c.db == 0 {
		return true
	}
	return lib.Xsqlite3_get_autocommit(c.tls, c.db) != 0
}

// Interrupt is sqlite3_interrupt: the statements running on the connection
// (and any started before they all finish) fail with ErrInterrupt. Safe to
// call from any goroutine, also during or after Close. An interrupt that
// arrives while nothing runs is cleared by the next statement to start when
// no other statement is active; with a statement still open mid-result it
// would hit that next statement, so only interrupt work that is in flight.
func (c *Conn) Interrupt() {
	c.imu.Lock()
	defer c.imu.Unlock()
	if c.idb != 0 {
		lib.Xsqlite3_interrupt(c.itls, c.idb)
	}
}

// InterruptOn interrupts c when ctx ends, until the returned stop is called. Stop returns
// only once an interrupt that already started has landed, so that it cannot hit a statement
// run after stop (a plain context.AfterFunc may still be about to call Interrupt when its
// stop returns false). An interrupt that lands between statements is cleared by the next
// statement to start, provided every statement on c has been reset or closed by then.
// Stop may be called more than once.
func (c *Conn) InterruptOn(ctx context.Context) (stop func()) {
	return onDone(ctx, c.Interrupt)
}

// onDone calls f once ctx ends, until stop is called. Stop returns only once a call of f that
// already started has returned, and may be called more than once.
func onDone(ctx context.Context, f func()) (stop func()) {
	landed := make(chan struct{})
	stopAfter := context.AfterFunc(ctx, func() {
		f()
		close(landed)
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			if !stopAfter() {
				<-landed
			}
		})
	}
}

// SchemaVersion returns PRAGMA schema_version.
func (c *Conn) SchemaVersion() (int64, error) {
	// Cached: the writer reads it around every request, and preparing it cost more than
	// running it.
	if c.schemaVer == nil || c.schemaVer.p == 0 {
		st, _, err := c.Prepare("PRAGMA main.schema_version")
		if err != nil {
			return 0, err
		}
		c.schemaVer = st
	}
	st := c.schemaVer
	row, err := st.Step()
	if err == nil && !row {
		err = misuse("PRAGMA schema_version returned no row")
	}
	if err != nil {
		st.Reset()
		return 0, err
	}
	v, _ := st.Column(0).(int64)
	return v, st.Reset()
}

func errTooManyArgs() *Error {
	return &Error{Code: lib.SQLITE_RANGE, ExtendedCode: lib.SQLITE_RANGE, Msg: "sqlite: too many arguments"}
}

func errNoParam(name string) *Error {
	return &Error{Code: lib.SQLITE_RANGE, ExtendedCode: lib.SQLITE_RANGE, Msg: "sqlite: no parameter named " + name}
}

func errClosed() *Error { return misuse("connection is closed") }
