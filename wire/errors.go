package wire

import (
	"fmt"
)

// ErrCode classifies an Error. An ErrCode is itself an error, so that
// errors.Is(err, wire.CodeNotLeader) works on any error wrapping an *Error.
type ErrCode uint8

// Error codes. Unknown codes (from a newer server) decode fine and print as numbers.
const (
	CodeSQLite             ErrCode = 1  // SQLite refused the statement: SQLiteCode, SQLiteExtended, Message from SQLite. Never retried.
	CodeNotLeader          ErrCode = 2  // this node does not lead and knows no leader (else it sends Redirect)
	CodeOutcomeUnknown     ErrCode = 3  // a write may or may not have been applied: retry with the same RequestID
	CodeDeadline           ErrCode = 4  // the request's deadline passed before it started
	CodeTryAgain           ErrCode = 5  // a queue was full: back off and retry
	CodeTxTimeout          ErrCode = 6  // the interactive transaction was rolled back after being idle too long
	CodeNoSuchTx           ErrCode = 7  // unknown TxID on this connection
	CodeNoSuchCursor       ErrCode = 8  // unknown Cursor on this connection
	CodeNoSuchStmt         ErrCode = 9  // unknown StmtID on this connection
	CodeBadRequest         ErrCode = 10 // the request is well-formed but invalid (e.g. empty SQL, unknown consistency)
	CodeUnsupportedVersion ErrCode = 11 // Hello's version is not spoken here
	CodeDiverged           ErrCode = 12 // this node's state diverged; it serves nothing
	CodeUnavailable        ErrCode = 13 // no quorum, shutting down, or no node reachable (client side)
	CodeInternal           ErrCode = 14 // a bug
	CodeNotCommitted       ErrCode = 15 // Outcome: the write was not committed and never will be
	CodeTxAborted          ErrCode = 16 // the server rolled the transaction back (leadership changed): run it again
)

var codeNames = [...]string{
	CodeSQLite: "sqlite", CodeNotLeader: "not leader", CodeOutcomeUnknown: "outcome unknown",
	CodeDeadline: "deadline exceeded", CodeTryAgain: "try again", CodeTxTimeout: "transaction timed out",
	CodeNoSuchTx: "no such transaction", CodeNoSuchCursor: "no such cursor", CodeNoSuchStmt: "no such statement",
	CodeBadRequest: "bad request", CodeUnsupportedVersion: "unsupported version", CodeDiverged: "diverged",
	CodeUnavailable: "unavailable", CodeInternal: "internal error", CodeNotCommitted: "not committed",
	CodeTxAborted: "transaction aborted",
}

func (c ErrCode) String() string {
	if int(c) < len(codeNames) && codeNames[c] != "" {
		return codeNames[c]
	}
	return fmt.Sprintf("error code %d", uint8(c))
}

// Error makes an ErrCode usable as an errors.Is target.
func (c ErrCode) Error() string { return "tandem: " + c.String() }

// Error is the error response. It is also the Go error the client returns.
type Error struct {
	Code           ErrCode
	SQLiteCode     int32 // primary result code (CodeSQLite only)
	SQLiteExtended int32 // extended result code (CodeSQLite only)
	Message        string
}

func (e *Error) Error() string {
	switch {
	case e.Code == CodeSQLite:
		return fmt.Sprintf("tandem: sqlite error %d (extended %d): %s", e.SQLiteCode, e.SQLiteExtended, e.Message)
	case e.Message != "":
		return "tandem: " + e.Code.String() + ": " + e.Message
	default:
		return "tandem: " + e.Code.String()
	}
}

// Is reports whether target is e's ErrCode, or an *Error with the same Code (and, if the
// target sets them, the same SQLite codes).
func (e *Error) Is(target error) bool {
	switch t := target.(type) {
	case ErrCode:
		return e.Code == t
	case *Error:
		return t != nil && e.Code == t.Code &&
			(t.SQLiteCode == 0 || t.SQLiteCode == e.SQLiteCode) &&
			(t.SQLiteExtended == 0 || t.SQLiteExtended == e.SQLiteExtended)
	}
	return false
}

func (*Error) Type() MsgType { return TypeError }
func (e *Error) MarshalAppend(b []byte) []byte {
	b = appendU8(b, uint8(e.Code))
	b = appendI32(b, e.SQLiteCode)
	b = appendI32(b, e.SQLiteExtended)
	return appendString(b, e.Message)
}
func (e *Error) Unmarshal(p []byte) error {
	d := decoder{p: p}
	*e = Error{Code: ErrCode(d.u8("code")), SQLiteCode: d.i32("sqlite code"),
		SQLiteExtended: d.i32("sqlite extended code"), Message: d.str("message")}
	return d.done(TypeError)
}
