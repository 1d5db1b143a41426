package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/tandemdb/tandem/internal/consensus"
	"github.com/tandemdb/tandem/internal/sqlite"
	"github.com/tandemdb/tandem/internal/store"
	"github.com/tandemdb/tandem/wire"
)

// errorMsg turns an error from the layers below into the protocol's answer. A follower that
// knows the leader answers with a Redirect.
func errorMsg(err error) wire.Message {
	var we *wire.Error
	if errors.As(err, &we) {
		return we // already a protocol error (e.g. no such transaction)
	}
	var nl *consensus.NotLeaderError
	if errors.As(err, &nl) {
		if nl.LeaderAddr != "" {
			return &wire.Redirect{LeaderID: nl.LeaderID, LeaderAddr: nl.LeaderAddr}
		}
		return &wire.Error{Code: wire.CodeNotLeader, Message: "no leader is known yet: retry shortly"}
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		return &wire.Error{Code: wire.CodeSQLite, SQLiteCode: int32(se.Code), SQLiteExtended: int32(se.ExtendedCode), Message: se.Msg}
	}
	code := wire.CodeInternal
	switch {
	case errors.Is(err, consensus.ErrNotLeader):
		code = wire.CodeNotLeader
	case errors.Is(err, store.ErrOutcomeUnknown):
		code = wire.CodeOutcomeUnknown
	case errors.Is(err, store.ErrNotCommitted):
		code = wire.CodeNotCommitted
	case errors.Is(err, store.ErrDeadline), errors.Is(err, context.DeadlineExceeded):
		code = wire.CodeDeadline
	case errors.Is(err, store.ErrQueueFull):
		code = wire.CodeTryAgain
	case errors.Is(err, store.ErrTxTimeout):
		code = wire.CodeTxTimeout
	case errors.Is(err, store.ErrTxAborted):
		code = wire.CodeTxAborted
	case errors.Is(err, store.ErrTxDone):
		code = wire.CodeNoSuchTx
	case errors.Is(err, store.ErrDiverged), errors.Is(err, consensus.ErrDiverged):
		code = wire.CodeDiverged
	case errors.Is(err, store.ErrNoSuchDatabase), errors.Is(err, store.ErrBadName), errors.Is(err, errBadArg),
		errors.Is(err, store.ErrNotOneStatement), errors.Is(err, store.ErrReadOnlyTx),
		errors.Is(err, consensus.ErrMembership):
		code = wire.CodeBadRequest
	case errors.Is(err, store.ErrTooManyReadTxs), errors.Is(err, store.ErrTooManyResults):
		code = wire.CodeTryAgain
	case errors.Is(err, consensus.ErrStopped), errors.Is(err, consensus.ErrRemoved),
		errors.Is(err, context.Canceled), errors.Is(err, store.ErrClosed):
		code = wire.CodeUnavailable
	}
	return &wire.Error{Code: code, Message: err.Error()}
}

// resultMsg answers an Exec or Commit: the statement's own SQLite error, if any, wins.
func resultMsg(res store.Result, err error) wire.Message {
	if err != nil {
		return errorMsg(err)
	}
	if res.Err != nil {
		return errorMsg(res.Err)
	}
	return &wire.Result{Columns: res.Columns, DeclTypes: res.DeclTypes, Rows: toWireRows(res.Rows),
		LastInsertID: res.LastInsertID, RowsAffected: res.RowsAffected, Index: res.Index}
}

var errBadArg = errors.New("bad argument")

// toArgs converts decoded protocol values into binding values.
func toArgs(in []wire.Value) ([]sqlite.Value, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := make([]sqlite.Value, len(in))
	for i, v := range in {
		switch x := v.(type) {
		case nil, int64, float64, string, []byte:
			out[i] = x
		case wire.Named:
			out[i] = sqlite.Named{Name: x.Name, Value: x.Value}
		default:
			return nil, fmt.Errorf("%w %d: unsupported type %T", errBadArg, i+1, v)
		}
	}
	return out, nil
}
