// Package store is Tandem's replicated state machine for SQL databases and the leader's
// write path in front of it.
//
// # Layout
//
// Each named database ([A-Za-z0-9_-]{1,64}) is one SQLite file, Dir/db/<name>.sqlite, with
//
//   - one writer connection, owned by the database's writer goroutine (leader only);
//   - one apply connection (triggers disabled, foreign keys on), used only by Apply,
//     SaveSnapshot and RestoreSnapshot, which the consensus layer calls from one goroutine;
//   - a pool of read-only connections for Query and ContentHash (WAL snapshots).
//
// Two internal tables live in every file and are written only when an entry is applied (by
// the apply connection, or on the leader by the writer's commit of its own entry), in the
// same transaction as the changes they describe (so they never appear in changesets):
// _tandem_applied(idx), the database's own applied index, and _tandem_requests, the outcome
// of the requests that carried a request id, kept RequestRetention (2 minutes). Names with
// the prefix _tandem_ are reserved: a statement whose text contains it is refused.
//
// # Write path (leader)
//
// Exec queues a Request for the database's writer (bounded: ErrQueueFull; a request whose
// Deadline passed before it started gets ErrDeadline and never runs). The writer takes
// everything queued (at most 256 requests), calls Proposer.LeaderReady to learn its term,
// and runs the batch in BEGIN IMMEDIATE with a session attached, each request in its own
// SAVEPOINT: a failing request rolls back alone and gets its own *sqlite.Error. It takes one
// changeset, proposes one entry and replies once the entry is applied locally, with the
// entry's index. Nothing else writes the database between execution and apply: the writer
// runs batch k+1 only after batch k is applied, failed or given up.
//
// The writer keeps the executed transaction open while the entry is replicated (it already
// holds the write lock). When Apply reaches the entry on this node it hands it to the waiting
// writer, which writes the request records and the applied index and commits: the leader's
// apply of its own entry is that commit, not a replay of its changeset (which cost ~0.1-0.2 ms
// per write). The followers apply the changeset; that it reproduces the executed content is
// what the randomized equivalence test checks (per entry in its verify mode, where the leader
// rolls back and replays as the followers do). If the writer stops waiting first (leadership
// change, ProposalTimeout, or Apply needing the write lock for another entry of the database,
// which preempts it), it rolls back and Apply later applies or skips the entry like any
// other; if the commit fails, Apply applies the changeset itself.
//
// A request may hold several statements; Args are allowed only with a single statement.
// Refused statements: transaction control (BEGIN, COMMIT, SAVEPOINT, ...), ATTACH, DETACH,
// VACUUM and PRAGMAs that change state (they would escape replication). Rows with a NULL
// in a primary key column (rowid tables allow it, the session extension silently skips
// them) fail the request with a constraint error.
//
// An entry (command.go, versioned binary codec; first byte CommandKind) carries the
// database name, the proposer's node id, term and proposal sequence, the database's own
// applied index the batch executed on (BaseIndex), the leader's monotonic time, the schema
// changes, the sqlite_sequence changes, the changeset, and the request records.
//
// # Schema changes
//
// The session extension does not capture DDL. For every statement that changes
// schema_version the writer diffs sqlite_schema before and after it: a change that only
// adds objects replicates their canonical CREATE text (CREATE TABLE ... AS SELECT becomes a
// plain CREATE TABLE; its rows, which the session does not see either, are re-inserted so
// that they travel in the changeset); anything else (DROP, ALTER, RENAME) replicates the
// statement text. Apply runs the DDL first, then the changeset. To keep that order correct:
//
//   - a request that changes the schema is always the first of its entry (if it is not, it
//     is rolled back and runs again first in the next batch), and its entry ends after it;
//   - a statement that drops or alters objects must not follow row changes in the same
//     request or transaction, nor cause any (DROP TABLE cascading through foreign keys):
//     such a statement fails with a clear error and should be sent on its own.
//
// sqlite_sequence is not replicated by the changeset (SQLite maintains it on every node,
// and user writes to it are removed from changesets): the writer compares it before and
// after the batch and the entry carries the changed rows, applied after the changeset.
//
// # Apply
//
// Apply groups the entries of one call per database into one SQLite transaction each,
// skips entries at or below the database's own applied index (replay after a restart is
// idempotent), and skips — the same way on every node — a command whose ExecTerm differs
// from the entry's term or whose BaseIndex differs from the database's applied index (it
// was executed under another leadership or on a state that has moved since; its waiters
// get ErrOutcomeUnknown). The base check makes a lost or late proposal harmless, so a
// writer may give up waiting (LeaderChanged, ProposalTimeout) and go on.
//
// Any failure while applying (a changeset conflict or table mismatch, a DDL error, a
// corrupt entry) is a divergence: the transaction rolls back, the error is logged at Error
// level with database, index and table, every later Apply, WaitApplied and Query returns
// it (errors.Is(err, ErrDiverged)), and nothing is ever skipped silently.
//
// After a restart AppliedIndex is the larger of the newest database's own index and the
// index recorded by the last SaveSnapshot or RestoreSnapshot (durable-index file); an
// interrupted RestoreSnapshot makes it 0 so that the node restores again.
//
// # Interactive transactions
//
// Begin queues a transaction job; when the writer reaches it, it runs BEGIN IMMEDIATE
// with a session and serves only that Tx (each Tx.Exec in a savepoint) until Commit,
// Rollback, TxIdleTimeout since the last statement (ErrTxTimeout), a leadership change or
// an entry of another leader for the same database (ErrTxAborted). Commit builds one entry
// like a batch, with one request record; a transaction without changes proposes nothing.
// One owner per write connection makes deadlocks impossible.
//
// # Snapshots
//
// SaveSnapshot writes VACUUM INTO dir/<name>.sqlite for each database plus MANIFEST.json
// and checkpoints the live files (so that state is durable up to the snapshot).
// RestoreSnapshot stops every writer, moves the files into place with rename, removes
// databases absent from the snapshot and reopens them. Each file carries its own applied
// index, so entries after the snapshot replay idempotently.
//
// # Known limits
//
//   - The rowid of a rowid table with a non-INTEGER primary key is not replicated (the
//     changeset identifies rows by primary key); do not rely on it. Tables without a
//     declared primary key are replicated by rowid.
//   - Statement text containing "_tandem_" is refused, even inside a string literal.
//   - ANALYZE statistics and PRAGMA user_version are node-local.
//   - Virtual tables are replicated by statement text and have not been tested.
//   - The NULL-primary-key check scans tables whose non-leading primary key columns are
//     nullable (the leading column uses the primary key index).
//   - Request records keep the full result (rows included) of each request, for
//     RequestRetention (2 minutes of the leaders' wall-clock time): a busy database holds
//     every request of the last 2 minutes in _tandem_requests.
package store
