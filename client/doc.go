// Package client is the Go client of Tandem's client protocol (package wire,
// docs/protocol.md).
//
// A Client keeps one long-lived, multiplexed connection per node, dialed lazily and reused
// (TLS sessions are resumed on reconnect). It remembers the leader, learning it from the
// handshake, from redirects and from leader lookups, so finding the leader costs nothing in
// the steady state. Writes and linearizable or leader reads go to the leader; stale reads go
// to the first listed node or a chosen one.
//
// Retries: a request that meets a redirect, a lost connection, a full queue, an unavailable
// cluster or an "outcome unknown" answer is sent again, with backoff, until its context's
// deadline (Config.RequestTimeout when the context has none). A write is resent with the
// same request id, which the cluster de-duplicates per client id, so it is applied at most
// once. SQLite errors are never retried. Operations of an interactive transaction, of an
// open cursor and of a prepared statement are bound to one connection and are not retried
// across connections. A transaction's Commit whose connection breaks (or that is answered
// "outcome unknown") is not resent either: the client asks the leader what became of it
// (Outcome), and returns the commit's result or an error matching ErrNotCommitted.
//
// Errors from the cluster are *wire.Error values; errors.Is(err, client.ErrNotLeader) (and
// the other Err constants, which are wire.ErrCode values) tests their code.
package client
