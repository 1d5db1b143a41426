package sqlite

import (
	"errors"
	"fmt"

	"modernc.org/libc"
	lib "modernc.org/sqlite/lib"
)

// Error is a failure reported by SQLite. Code is the primary result code
// (SQLITE_BUSY, SQLITE_CONSTRAINT, ...), ExtendedCode the extended one
// (SQLITE_CONSTRAINT_UNIQUE, ...; equal to Code when there is none) and Msg
// the text of sqlite3_errmsg (or sqlite3_errstr when SQLite set no message).
type Error struct {
	Code         int
	ExtendedCode int
	Msg          string
}

// Error returns SQLite's message.
func (e *Error) Error() string {
	if e.Msg != "" {
		return e.Msg
	}
	return fmt.Sprintf("sqlite error %d", e.ExtendedCode)
}

// Is reports whether target is an *Error with the same primary code (or, when
// target carries an extended code different from its primary code, the same
// extended code). errors.Is(err, ErrBusy) is the intended use.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	if t.ExtendedCode != 0 && t.ExtendedCode != t.Code {
		return e.ExtendedCode == t.ExtendedCode
	}
	return e.Code == t.Code
}

// Sentinels for errors.Is. The *Error sentinels match by primary code.
var (
	ErrBusy       error = &Error{Code: lib.SQLITE_BUSY, ExtendedCode: lib.SQLITE_BUSY, Msg: "database is locked"}
	ErrLocked     error = &Error{Code: lib.SQLITE_LOCKED, ExtendedCode: lib.SQLITE_LOCKED, Msg: "database table is locked"}
	ErrConstraint error = &Error{Code: lib.SQLITE_CONSTRAINT, ExtendedCode: lib.SQLITE_CONSTRAINT, Msg: "constraint failed"}
	ErrInterrupt  error = &Error{Code: lib.SQLITE_INTERRUPT, ExtendedCode: lib.SQLITE_INTERRUPT, Msg: "interrupted"}
	ErrTooBig     error = &Error{Code: lib.SQLITE_TOOBIG, ExtendedCode: lib.SQLITE_TOOBIG, Msg: "string or blob too big"}

	// ErrConflict matches every *ConflictError (a conflict or a schema
	// mismatch while applying a changeset).
	ErrConflict = errors.New("sqlite: changeset conflict")
	// ErrSchemaMismatch matches a *ConflictError of Kind "schema".
	ErrSchemaMismatch = errors.New("sqlite: changeset schema mismatch")
)

// Conflict kinds of ConflictError.
const (
	ConflictData       = "data"        // SQLITE_CHANGESET_DATA: row exists with other values
	ConflictNotFound   = "notfound"    // SQLITE_CHANGESET_NOTFOUND: row to update/delete is missing
	ConflictConflict   = "conflict"    // SQLITE_CHANGESET_CONFLICT: row to insert exists
	ConflictConstraint = "constraint"  // SQLITE_CHANGESET_CONSTRAINT: other constraint failed
	ConflictForeignKey = "foreign_key" // SQLITE_CHANGESET_FOREIGN_KEY: FK violations at the end
	ConflictSchema     = "schema"      // table missing or of another shape
)

// ConflictError reports why ApplyChangeset stopped. Nothing of the changeset
// stays applied when it is returned. Table and Op are empty for Kind
// "foreign_key" (SQLite reports only a count of violations then).
type ConflictError struct {
	Kind  string
	Table string
	Op    string /* INSERT UPDATE DELETE */
}

func (e *ConflictError) Error() string {
	if e.Kind == ConflictSchema {
		return fmt.Sprintf("sqlite: changeset schema mismatch: table %q is missing or has another shape (%s)", e.Table, e.Op)
	}
	if e.Kind == ConflictForeignKey {
		return "sqlite: changeset conflict: foreign key violations"
	}
	return fmt.Sprintf("sqlite: changeset %s conflict: %s on table %q", e.Kind, e.Op, e.Table)
}

// Is matches ErrConflict for every ConflictError and ErrSchemaMismatch for
// Kind "schema".
func (e *ConflictError) Is(target error) bool {
	switch target {
	case ErrConflict:
		return true
	case ErrSchemaMismatch:
		return e.Kind == ConflictSchema
	}
	return false
}

func errstr(tls *libc.TLS, rc int32) string {
	return goString(lib.Xsqlite3_errstr(tls, rc))
}

// errorFor builds the *Error for result code rc returned by an API call on db.
func errorFor(tls *libc.TLS, db uintptr, rc int32) *Error {
	ext := rc
	var msg string
	if db != 0 {
		if e := lib.Xsqlite3_extended_errcode(tls, db); e&0xff == rc&0xff {
			ext = e
			msg = goString(lib.Xsqlite3_errmsg(tls, db))
		}
	}
	if msg == "" {
		msg = errstr(tls, rc)
	}
	return &Error{Code: int(ext & 0xff), ExtendedCode: int(ext), Msg: msg}
}

// misuse is an error raised by the binding itself (closed handles, bad args).
func misuse(format string, args ...any) *Error {
	return &Error{Code: lib.SQLITE_MISUSE, ExtendedCode: lib.SQLITE_MISUSE, Msg: "sqlite: " + fmt.Sprintf(format, args...)}
}

func typeName(v any) string { return fmt.Sprintf("%T", v) }
