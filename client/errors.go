package client

import (
	"context"
	"errors"
	"fmt"

	"github.com/tandemdb/tandem/wire"
)

// Error codes usable with errors.Is on any error this package returns. Use errors.As with
// *wire.Error for the details (SQLite codes, message).
const (
	ErrSQLite         = wire.CodeSQLite
	ErrNotLeader      = wire.CodeNotLeader
	ErrOutcomeUnknown = wire.CodeOutcomeUnknown
	ErrDeadline       = wire.CodeDeadline
	ErrTryAgain       = wire.CodeTryAgain
	ErrTxTimeout      = wire.CodeTxTimeout
	ErrNoSuchTx       = wire.CodeNoSuchTx
	ErrNoSuchCursor   = wire.CodeNoSuchCursor
	ErrNoSuchStmt     = wire.CodeNoSuchStmt
	ErrBadRequest     = wire.CodeBadRequest
	ErrUnsupported    = wire.CodeUnsupportedVersion
	ErrDiverged       = wire.CodeDiverged
	ErrUnavailable    = wire.CodeUnavailable
	ErrInternal       = wire.CodeInternal
	// ErrNotCommitted: a Commit whose connection broke, or whose answer was "outcome
	// unknown", was not committed; the leader said so after checking (see Tx.Commit).
	ErrNotCommitted = wire.CodeNotCommitted
	// ErrTxAborted: the server rolled the transaction back (its node lost leadership, or
	// another leader's entry for the database came first: run the transaction again; or a
	// statement of it rolled it back: ON CONFLICT ROLLBACK, RAISE(ROLLBACK), a write
	// cancelled mid-way).
	ErrTxAborted = wire.CodeTxAborted
)

// errClosed is returned by every call after Close.
var errClosed = &wire.Error{Code: wire.CodeUnavailable, Message: "client closed"}

// connError reports a broken connection; requests pending on it fail with it.
type connError struct {
	addr string
	err  error
}

func (e *connError) Error() string { return fmt.Sprintf("tandem: connection to %s: %v", e.addr, e.err) }
func (e *connError) Unwrap() error { return e.err }

func isConnError(err error) bool {
	var ce *connError
	return errors.As(err, &ce)
}

// unavailable wraps the last failure of a request that reached no node.
func unavailable(last error) error {
	if last == nil {
		return &wire.Error{Code: wire.CodeUnavailable, Message: "no node reachable"}
	}
	return fmt.Errorf("%w: %w", &wire.Error{Code: wire.CodeUnavailable, Message: "no node reachable"}, last)
}

// outcomeUnknown wraps the failure of a write that may have been applied.
func outcomeUnknown(cause error) error {
	return fmt.Errorf("%w: %w", &wire.Error{Code: wire.CodeOutcomeUnknown, Message: "the request may or may not have been applied"}, cause)
}

// ctxError wraps a context's error, noting when a write may have been applied.
func ctxError(ctx context.Context, sentWrite bool) error {
	err := context.Cause(ctx)
	if sentWrite {
		return outcomeUnknown(err)
	}
	return err
}
