// Package sqlite is Tandem's thin binding over SQLite, as compiled to pure Go
// by modernc.org/sqlite/lib (ccgo). It exposes exactly what the storage layer
// needs: connections, prepared statements, the session extension (changesets)
// and sqlite3changeset_apply_v2, with typed errors.
//
// # Why not database/sql here
//
// database/sql hides the things replication depends on: it pools connections
// behind our back (a session is attached to one specific connection, and a
// changeset must be taken on the connection that made the changes), it gives
// no access to the session extension, to sqlite3changeset_apply_v2 and its
// conflict handler, to sqlite3_interrupt, sqlite3_get_autocommit or
// sqlite3_db_config, and it converts values through driver.Value with extra
// allocations. The store owns exactly one writer connection per database and a
// small read pool, so a pool manager is not wanted either. database/sql is
// still what Tandem offers to its users (package driver); this package sits
// below it.
//
// # Model
//
// Each Conn owns its own *libc.TLS (the C "thread" state that ccgo-generated
// code needs) and a SQLite handle opened with SQLITE_OPEN_NOMUTEX: a Conn and
// its statements and sessions must be used by one goroutine at a time. The only
// method that may be called concurrently is Conn.Interrupt, which uses a second
// TLS and a mutex that protects it against a concurrent Close.
//
// Values crossing the binding are nil, int64, float64, string and []byte.
// Bind also accepts int and bool (stored as int64) and Named. A NaN float64 is
// stored by SQLite as NULL. A []byte, even a nil one, binds as a BLOB (a
// zero-length one when empty); only an untyped nil binds NULL. Column returns
// Go-owned copies; a BLOB column is always a non-nil []byte.
//
// # Memory
//
// Every C allocation is made with sqlite3_malloc and either handed to SQLite
// together with sqlite3_free as destructor (bound text and blobs: one copy,
// SQLite frees it) or freed before the call returns. Conn.Close finalizes
// every statement and deletes every session still open on the connection, so
// it never fails with SQLITE_BUSY; Stmt and Session values left behind
// become inert.
//
// # Changesets
//
// Conn.CreateSession attaches a session to every table of "main" with
// SQLITE_SESSION_OBJCONFIG_ROWID, so tables without a PRIMARY KEY are
// captured too (their changes carry the rowid as an extra first column).
// Conn.ApplyChangeset applies with SQLITE_CHANGESETAPPLY_FKNOACTION and turns
// every conflict into a *ConflictError. SQLite silently skips the changes of a
// table that is missing or whose shape differs; ApplyChangeset checks every
// table of the changeset against the target schema first (the same way the
// session extension computes shapes, but requiring exact equality) and
// reports a mismatch before anything is applied.
package sqlite
