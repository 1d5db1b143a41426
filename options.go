package tandem

import (
	"crypto/tls"
	"log/slog"
	"time"
)

// Option configures a Node.
type Option func(*config)

type config struct {
	id            uint64
	addr          string
	advertise     string
	cluster       []string
	tlsServer     *tls.Config
	tlsClient     *tls.Config
	logger        *slog.Logger
	snapshotEvery uint64
	tick          time.Duration
	txIdle        time.Duration
	maxEntryMiB   int
}

// WithAddress sets the address the node listens on for clients and peers (default
// 127.0.0.1:9001). Port 0 picks a free port; Addr reports it.
func WithAddress(addr string) Option { return func(c *config) { c.addr = addr } }

// WithAdvertise sets the address other nodes and clients use to reach this node when it
// differs from the listen address (for example 0.0.0.0:9001 behind a host name).
func WithAdvertise(addr string) Option { return func(c *config) { c.advertise = addr } }

// WithID sets the node's Raft ID (non-zero, unique in the cluster). Without it a node uses the
// ID stored in its directory, or makes a random one on first start.
func WithID(id uint64) Option { return func(c *config) { c.id = id } }

// WithCluster names nodes of an existing cluster for a new node to join. Without it a node with
// an empty directory bootstraps a new single-node cluster that others can join. A node that
// already has state in its directory ignores it.
func WithCluster(addrs ...string) Option { return func(c *config) { c.cluster = addrs } }

// WithTLS makes the node require TLS on its port (server side, for clients and peers) and
// use client for dialing its peers. Build both with one identity, e.g. from `tandem cert`
// files through LoadTLS.
func WithTLS(server, client *tls.Config) Option {
	return func(c *config) { c.tlsServer, c.tlsClient = server, client }
}

// WithLogger sets the structured logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithSnapshotEvery sets how many applied entries pass between snapshots (default 10000).
func WithSnapshotEvery(n uint64) Option { return func(c *config) { c.snapshotEvery = n } }

// WithTxIdleTimeout sets how long a transaction may stay without a statement before the node
// ends it (default 30s): a read-write one holds its database's writer meanwhile, a read-only
// one its snapshot (which keeps the SQLite WAL from being started again).
func WithTxIdleTimeout(d time.Duration) Option { return func(c *config) { c.txIdle = d } }

// WithMaxEntryMiB sets the largest change one write or transaction may make, in MiB of its
// log entry (default 16). Every node writes and syncs an entry in one step of its Raft loop,
// which sends no heartbeats meanwhile: a much larger one can cost the leader its leadership.
// A write or transaction over it fails with SQLite's SQLITE_TOOBIG code and a message that
// says so. A row changed in place carries its old and new value: 31 leaves room for values
// up to the 15 MiB maximum.
func WithMaxEntryMiB(n int) Option { return func(c *config) { c.maxEntryMiB = n } }

// WithTickInterval sets the Raft tick (default 100ms; election after 10 ticks).
func WithTickInterval(d time.Duration) Option { return func(c *config) { c.tick = d } }
