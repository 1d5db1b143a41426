package store

import (
	"errors"
	"fmt"

	"github.com/tandemdb/tandem/internal/sqlite"
)

// Errors returned by the store. Callers test them with errors.Is.
var (
	// ErrOutcomeUnknown: the request may or may not have been applied (leadership changed, the
	// caller's context ended after execution started, the proposal failed). Retrying with the
	// same (ClientID, RequestID) is safe: the state machine applies it at most once.
	ErrOutcomeUnknown = errors.New("store: outcome unknown")
	// ErrDeadline: the request's deadline passed before the writer started it; it did not run.
	ErrDeadline = errors.New("store: deadline passed before the request started")
	// ErrQueueFull: the database's writer queue is full; try again later.
	ErrQueueFull = errors.New("store: writer queue full")
	// ErrTxTimeout: the interactive transaction stayed idle longer than TxIdleTimeout and was
	// rolled back.
	ErrTxTimeout = errors.New("store: transaction idle timeout, rolled back")
	// ErrNoSuchDatabase: the database has never been written.
	ErrNoSuchDatabase = errors.New("store: no such database")
	// ErrDiverged: applying a committed entry failed; this node's state can no longer be trusted
	// and it applies nothing more.
	ErrDiverged = errors.New("store: state machine diverged")

	// ErrBadName: a database name outside [A-Za-z0-9_-]{1,64}.
	ErrBadName = errors.New("store: invalid database name (want [A-Za-z0-9_-]{1,64})")
	// ErrClosed: the store is closed (or the database was replaced by a snapshot) before the
	// request started.
	ErrClosed = errors.New("store: closed")
	// ErrRestoring: a snapshot is being installed; try again shortly.
	ErrRestoring = errors.New("store: restoring a snapshot")
	// ErrTxDone: the transaction was already committed or rolled back.
	ErrTxDone = errors.New("store: transaction already finished")
	// ErrTxAborted: the transaction was rolled back because this node lost leadership (or an
	// entry from another leader had to be applied; errLeadershipAbort), or because one of
	// its statements rolled it back (ON CONFLICT ROLLBACK, RAISE(ROLLBACK), a write
	// cancelled mid-way); nothing of it was committed.
	ErrTxAborted          = errors.New("store: transaction aborted")
	errLeadershipAbort    = fmt.Errorf("%w by a leadership change", ErrTxAborted)
	errRolledBackBySQLite = fmt.Errorf("%w: SQLite rolled it back after an error (I/O, out of memory or a full disk)", ErrTxAborted)
	// ErrNotCommitted: Outcome found no record of the request on the leader, after every
	// entry of earlier leaders was applied and with no transaction of this database open or
	// committing: it was not committed and never will be.
	ErrNotCommitted = errors.New("store: the leader has no record of the request after applying every earlier entry: it was not committed and will not be")
	// ErrNotReadOnly: Query was given a statement that writes; send it through Exec.
	ErrNotReadOnly = errors.New("store: a query must be read-only; send writes through Exec")
	// ErrNotOneStatement: Query was given no statement, or several.
	ErrNotOneStatement = errors.New("store: a query must be exactly one statement")
	// ErrReadOnlyTx: a read-only transaction was given a statement that writes, or one that
	// would end or nest the transaction.
	ErrReadOnlyTx = errors.New("store: read-only transaction")
	// ErrTooManyReadTxs: the node has as many read-only transactions open as it allows; end
	// one, or try again later.
	ErrTooManyReadTxs = errors.New("store: too many read-only transactions")
	// ErrTooManyResults: the node keeps as many query results open across requests as it
	// allows (Options.MaxOpenResults); read or close the open ones.
	ErrTooManyResults = errors.New("store: too many open query results (cursors)")
)

// errReplaced ends the read-only transactions of a node that installs a snapshot.
var errReplaced = fmt.Errorf("%w: this node had fallen behind and replaced its databases with a snapshot from the leader; begin the transaction again", ErrClosed)

// SQLite result codes used for errors the store reports as a request's own error.
const (
	codeError          = 1
	codeTooBig         = 18        // SQLITE_TOOBIG
	codeConstraintNull = 19 | 5<<8 // SQLITE_CONSTRAINT_NOTNULL
)

// entryTooLarge is the error of a write or transaction whose entry would pass the limit.
func entryTooLarge(size, limit int) *sqlite.Error {
	return requestError(codeTooBig, fmt.Sprintf("tandem: the changes of this write or transaction "+
		"(with the rows of RETURNING clauses, kept for retries) take %.1f MiB, over the %.1f MiB one "+
		"log entry may carry (the node's --max-entry-mib): split it into smaller writes or transactions",
		float64(size)/(1<<20), float64(limit)/(1<<20)))
}

// requestError makes an *sqlite.Error for a failure the store detects in a request.
func requestError(code int, msg string) *sqlite.Error {
	ext := code
	return &sqlite.Error{Code: code & 0xff, ExtendedCode: ext, Msg: msg}
}
