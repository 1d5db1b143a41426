// Package tandem embeds a node of a Tandem cluster in a Go program: a Raft-replicated SQLite
// database with a standard *sql.DB front.
//
//	node, err := tandem.New("./data", tandem.WithAddress("127.0.0.1:9001"))
//	...
//	defer node.Close()
//	if err := node.Ready(ctx); err != nil { ... }
//	db, err := node.Open(ctx, "app") // *sql.DB; writes go to the leader, wherever it is
//
// Further nodes join with WithCluster("127.0.0.1:9001"). The node serves Tandem's client
// protocol and its Raft peers on the same address, so programs and the `tandem` tools can
// talk to an embedded node exactly as to the daemon.
package tandem

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tandemdb/tandem/client"
	"github.com/tandemdb/tandem/driver"
	"github.com/tandemdb/tandem/internal/consensus"
	"github.com/tandemdb/tandem/internal/store"
	"github.com/tandemdb/tandem/internal/tlsconfig"
	"github.com/tandemdb/tandem/server"
	"github.com/tandemdb/tandem/wire"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"
)

// Member is one node of the cluster as the local node knows it.
type Member struct {
	ID      uint64 `json:"id"`
	Addr    string `json:"address"`
	Role    string `json:"role"` // "voter" or "learner"
	Leader  bool   `json:"leader"`
	Applied uint64 `json:"applied_index,omitempty"` // only for the local node in Cluster
}

// Errors of a Node that stopped.
var (
	// ErrClosed is returned by the methods of a closed Node.
	ErrClosed = errors.New("tandem: node closed")
	// ErrJoinRefused: the cluster refused to add this node (its ID or address is another
	// member's, or its ID was removed); the node closed itself. Asking again does not help.
	ErrJoinRefused = errors.New("tandem: the cluster refused to add this node")
	// ErrDataDirInUse: another process (or Node) holds the data directory.
	ErrDataDirInUse = errors.New("tandem: data directory in use")
	// ErrRemoved is returned by the methods of a Node that was removed from its cluster
	// (`tandem cluster remove`): it closes itself once it learns of the removal, as a
	// removed member takes no further part in the cluster and must not serve stale data.
	// Its data directory is left as it was; a restart from it finds the removal again. To
	// add the machine back, start it with an empty directory and WithCluster.
	ErrRemoved = errors.New("tandem: node removed from the cluster")
)

// Node is a running cluster member. Its methods are safe for concurrent use.
type Node struct {
	cfg   config
	id    uint64
	addr  string // advertised
	log   *slog.Logger
	ln    net.Listener
	st    *store.Store
	raft  *consensus.Node
	srv   *server.Server
	ctx   context.Context // cancelled by Close
	stop  context.CancelFunc
	wg    sync.WaitGroup
	close sync.Once
	done  chan struct{} // closed when Close has finished

	lock *fileutil.LockedFile // the data directory's LOCK file, held until Close

	mu      sync.Mutex
	removed bool          // the node closed itself because it was removed
	joined  chan struct{} // closed once the node is a member (at once unless joining)
	joinEr  error         // the last failed join attempt
	refused error         // the node closed itself because the cluster refused it (ErrJoinRefused)
	// connectors of the *sql.DB handles Open returned: Close closes them, so that their
	// calls fail at once instead of retrying a node that is gone.
	connectors []*driver.Connector
}

// joiningMarker names the file that exists in a data directory from the start of a join
// until the cluster has added the node: a node restarted before that joins again instead of
// waiting, with an empty log, for a leader that does not know it.
const joiningMarker = "joining"

// New starts a node whose state lives in dir. With an empty dir and no WithCluster it
// bootstraps a new cluster; with WithCluster it joins the named cluster; with state in dir it
// restarts from it.
func New(dir string, opts ...Option) (*Node, error) {
	cfg := config{addr: "127.0.0.1:9001"}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	for _, a := range cfg.cluster {
		if err := client.CheckAddr(a); err != nil {
			return nil, fmt.Errorf("tandem: cluster %w", err)
		}
	}
	if (cfg.tlsServer == nil) != (cfg.tlsClient == nil) {
		return nil, errors.New("tandem: WithTLS needs both a server and a client configuration")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("tandem: create data directory: %w", err)
	}
	// One process per data directory: a second one would open the same SQLite files and
	// zero-fill WAL segments beside the first before etcd's own lock on the log stops it.
	lock, err := fileutil.TryLockFile(filepath.Join(dir, "LOCK"), os.O_WRONLY|os.O_CREATE, 0o640)
	if errors.Is(err, fileutil.ErrLocked) {
		return nil, fmt.Errorf("%w: %s (is another node running on it?)", ErrDataDirInUse, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("tandem: lock data directory: %w", err)
	}
	started := false
	defer func() {
		if !started {
			lock.Close()
		}
	}()
	id, err := nodeID(dir, cfg.id)
	if err != nil {
		return nil, err
	}
	raftDir := filepath.Join(dir, "raft")
	fresh := !exists(filepath.Join(raftDir, "wal"))
	marker := filepath.Join(dir, joiningMarker)
	rejoin := !fresh && exists(marker)
	if rejoin && len(cfg.cluster) == 0 {
		return nil, fmt.Errorf("tandem: %s holds a node whose join never completed: start it again with the cluster to join (--join, WithCluster), or with an empty directory", dir)
	}
	joining := (fresh || rejoin) && len(cfg.cluster) > 0
	switch {
	case fresh && joining:
		if err := os.WriteFile(marker, nil, 0o640); err != nil {
			return nil, fmt.Errorf("tandem: %w", err)
		}
		// Without a log the marker means nothing yet: if New fails before the log exists,
		// a later bootstrap in this directory must not find it.
		defer func() {
			if !started && !exists(filepath.Join(raftDir, "wal")) {
				os.Remove(marker)
			}
		}()
	case fresh:
		// Left by a join that failed before its log existed: this start bootstraps.
		if err := os.Remove(marker); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("tandem: %w", err)
		}
	}

	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return nil, fmt.Errorf("tandem: listen on %s: %w", cfg.addr, err)
	}
	addr := cfg.advertise
	if addr == "" {
		addr = ln.Addr().String()
	}
	n := &Node{cfg: cfg, id: id, addr: addr, ln: ln, lock: lock, log: cfg.logger.With("node", id), joined: make(chan struct{}), done: make(chan struct{})}
	n.ctx, n.stop = context.WithCancel(context.Background())

	prop := &lazyProposer{}
	n.st, err = store.Open(store.Options{Dir: filepath.Join(dir, "data"), NodeID: id, Logger: n.log, Proposer: prop,
		TxIdleTimeout: cfg.txIdle, MaxEntryBytes: cfg.maxEntryMiB << 20})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("tandem: open store: %w", err)
	}
	transport := consensus.NewTCPTransport(consensus.TCPConfig{Addr: addr, Logger: n.log, Dialer: n.dialer()})
	n.raft, err = consensus.Start(consensus.Config{
		ID: id, Addr: addr, Dir: raftDir, Bootstrap: fresh && len(cfg.cluster) == 0,
		StateMachine: n.st, Transport: transport,
		TickInterval: cfg.tick, SnapshotEvery: cfg.snapshotEvery, Logger: n.log,
	})
	if err != nil {
		n.st.Close()
		ln.Close()
		return nil, fmt.Errorf("tandem: start consensus: %w", err)
	}
	prop.set(n.raft)

	leaders, unsubscribe := n.raft.Subscribe()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer unsubscribe()
		for {
			select {
			case li, ok := <-leaders:
				if !ok {
					return
				}
				n.st.LeaderChanged(li.Term, li.ID == id)
			case <-n.ctx.Done():
				return
			}
		}
	}()

	n.srv = server.New(server.Config{Consensus: n.raft, Store: n.st, TLS: cfg.tlsServer, PeerConn: transport.ServeConn, Logger: n.log})
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.srv.Serve(ln); err != nil {
			n.log.Error("server stopped", "err", err)
		}
	}()

	// Not in n.wg: on removal this goroutine calls Close, which waits for n.wg. It ends when
	// the node is closed, by its owner or by itself.
	go n.closeOnRemoval()

	if joining {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.join(cfg.cluster, marker)
		}()
	} else {
		close(n.joined)
	}
	n.log.Info("node started", "id", id, "addr", addr, "bootstrap", fresh && len(cfg.cluster) == 0, "joining", joining)
	started = true
	return n, nil
}

// closeOnRemoval closes the node once consensus reports that it was removed.
func (n *Node) closeOnRemoval() {
	select {
	case <-n.raft.Removed():
	case <-n.ctx.Done():
		return
	}
	n.mu.Lock()
	n.removed = true
	n.mu.Unlock()
	n.log.Warn("this node was removed from the cluster; closing it (its data directory stays as it is)",
		"problem", n.raft.Status().Problem)
	if err := n.Close(); err != nil {
		n.log.Error("closing the removed node", "err", err)
	}
}

// Done is closed once the node has stopped: after Close returned, or after the node closed
// itself because it was removed from the cluster (then Err returns ErrRemoved).
func (n *Node) Done() <-chan struct{} { return n.done }

// Err is nil while the node runs; then ErrRemoved if the node closed itself because it was
// removed from the cluster, ErrJoinRefused if it closed itself because the cluster refused
// to add it, or ErrClosed.
func (n *Node) Err() error {
	if n.ctx.Err() == nil {
		return nil
	}
	return n.stoppedErr()
}

// callErr is what a method returns before doing anything: why the node stopped, or the
// caller's context error (checked first, so that a closed node or a done context never
// loses a race against a ready answer).
func (n *Node) callErr(ctx context.Context) error {
	if n.ctx.Err() != nil {
		return n.stoppedErr()
	}
	return ctx.Err()
}

// stoppedErr says why a node whose context ended stopped.
func (n *Node) stoppedErr() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.removed {
		return ErrRemoved
	}
	if n.refused != nil {
		return fmt.Errorf("%w: %w", ErrJoinRefused, n.refused)
	}
	return ErrClosed
}

// dialer returns how this node opens connections to its peers: TCP, then TLS if configured.
func (n *Node) dialer() func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil || n.cfg.tlsClient == nil {
			return c, err
		}
		tc := tls.Client(c, clientTLSFor(n.cfg.tlsClient, addr))
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, err
		}
		return tc, nil
	}
}

// clientTLSFor sets the server name to verify from the address dialled.
func clientTLSFor(cfg *tls.Config, addr string) *tls.Config {
	if cfg.ServerName != "" {
		return cfg
	}
	c := cfg.Clone() // shares the session cache, so resumption still works
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	c.ServerName = host
	return c
}

// join asks the cluster to add this node, retrying until it succeeds or the node closes.
// Once added, it removes the joining marker. A refusal (wire.CodeBadRequest: the ID or
// address is taken, or the ID was removed) closes the node: asking again would not help.
func (n *Node) join(addrs []string, marker string) {
	backoff := 100 * time.Millisecond
	for {
		err := n.tryJoin(addrs)
		if err == nil {
			if rerr := os.Remove(marker); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				n.log.Warn("could not remove the joining marker; a restart will ask to join again", "err", rerr)
			}
			close(n.joined)
			n.log.Info("joined the cluster", "via", strings.Join(addrs, ","))
			return
		}
		if errors.Is(err, wire.CodeBadRequest) {
			n.mu.Lock()
			n.refused = err
			n.mu.Unlock()
			n.log.Error("the cluster refused to add this node; closing it", "err", err)
			go n.Close() // not from here: Close waits for this goroutine
			return
		}
		n.mu.Lock()
		n.joinEr = err
		n.mu.Unlock()
		n.log.Warn("join failed; retrying", "err", err, "in", backoff)
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (n *Node) tryJoin(addrs []string) error {
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	c, err := client.New(ctx, client.Config{Addrs: addrs, TLS: n.cfg.tlsClient, Logger: n.log})
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Join(ctx, n.id, n.addr)
}

// ID is the node's Raft ID.
func (n *Node) ID() uint64 { return n.id }

// Addr is the address clients and peers reach the node at.
func (n *Node) Addr() string { return n.addr }

// Ready waits until the node is a member of a cluster with a known leader and has applied
// everything committed when it learned of that leader.
func (n *Node) Ready(ctx context.Context) error {
	if err := n.callErr(ctx); err != nil {
		return err
	}
	select {
	case <-n.joined:
	case <-ctx.Done():
		n.mu.Lock()
		err := n.joinEr
		n.mu.Unlock()
		if err != nil {
			return fmt.Errorf("tandem: not joined yet (last attempt: %v): %w", err, ctx.Err())
		}
		return ctx.Err()
	case <-n.ctx.Done():
		return n.stoppedErr()
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		st := n.raft.Status()
		if st.Leader != 0 && slices.ContainsFunc(st.Members, func(m consensus.Member) bool { return m.ID == n.id }) {
			return n.st.WaitApplied(ctx, st.Commit)
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		case <-n.ctx.Done():
			return n.stoppedErr()
		}
	}
}

// Open returns a *sql.DB for the named database of the cluster (created by its first write).
// It talks to this node over the client protocol and follows the leader wherever it is.
// Close closes it too: its calls then fail at once ("client closed") instead of retrying
// a node that is gone.
func (n *Node) Open(ctx context.Context, name string) (*sql.DB, error) {
	if err := store.CheckName(name); err != nil {
		return nil, err
	}
	if n.ctx.Err() != nil {
		return nil, n.stoppedErr()
	}
	conn, err := driver.NewConnector(driver.Config{Client: client.Config{Addrs: []string{n.addr}, TLS: n.cfg.tlsClient, Name: "embedded"}, DB: name})
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(conn)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, err
	}
	n.mu.Lock()
	if n.ctx.Err() != nil { // Close ran meanwhile and did not see this one
		n.mu.Unlock()
		db.Close()
		return nil, n.stoppedErr()
	}
	live := n.connectors[:0]
	for _, c := range n.connectors {
		if !c.Closed() {
			live = append(live, c)
		}
	}
	n.connectors = append(live, conn)
	n.mu.Unlock()
	return db, nil
}

// Leader returns the ID and address of the current leader, waiting until one is known.
func (n *Node) Leader(ctx context.Context) (uint64, string, error) {
	if err := n.callErr(ctx); err != nil {
		return 0, "", err
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if st := n.raft.Status(); st.Leader != 0 {
			return st.Leader, st.LeaderAddr, nil
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return 0, "", ctx.Err()
		case <-n.ctx.Done():
			return 0, "", n.stoppedErr()
		}
	}
}

// Cluster lists the members as this node knows them.
func (n *Node) Cluster(ctx context.Context) ([]Member, error) {
	if err := n.callErr(ctx); err != nil {
		return nil, err
	}
	st := n.raft.Status()
	out := make([]Member, 0, len(st.Members))
	for _, m := range st.Members {
		mm := Member{ID: m.ID, Addr: m.Addr, Role: string(m.Role), Leader: m.ID == st.Leader}
		if m.ID == n.id {
			mm.Applied = n.st.AppliedIndex()
		}
		out = append(out, mm)
	}
	return out, nil
}

// Handover moves leadership away from this node if it leads (before a planned shutdown).
func (n *Node) Handover(ctx context.Context) error {
	st := n.raft.Status()
	if st.Leader != n.id {
		return nil
	}
	voters := 0
	for _, m := range st.Members {
		if m.Role == consensus.RoleVoter {
			voters++
		}
	}
	if voters < 2 {
		return nil
	}
	return n.raft.TransferLeadership(ctx, 0)
}

// Close stops the node: client connections first, then Raft, then the databases.
func (n *Node) Close() error {
	var err error
	n.close.Do(func() {
		n.stop()
		n.mu.Lock()
		connectors := n.connectors
		n.connectors = nil
		n.mu.Unlock()
		for _, c := range connectors {
			c.Close()
		}
		n.srv.Close()
		err = errors.Join(n.raft.Stop())
		n.wg.Wait()
		err = errors.Join(err, n.st.Close())
		err = errors.Join(err, n.lock.Close())
		close(n.done)
	})
	return err
}

// LoadTLS builds the server and client TLS configurations from PEM files (see `tandem cert`).
func LoadTLS(certFile, keyFile, caFile string) (server, client *tls.Config, err error) {
	c, err := tlsconfig.Load(tlsconfig.Files{Cert: certFile, Key: keyFile, CA: caFile})
	if err != nil {
		return nil, nil, err
	}
	return c.Server, c.Client, nil
}

// lazyProposer lets the store be opened before the Raft node that proposes for it exists.
type lazyProposer struct {
	mu sync.Mutex
	n  *consensus.Node
}

func (p *lazyProposer) set(n *consensus.Node) { p.mu.Lock(); p.n = n; p.mu.Unlock() }
func (p *lazyProposer) get() (*consensus.Node, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n == nil {
		return nil, &consensus.NotLeaderError{}
	}
	return p.n, nil
}
func (p *lazyProposer) Propose(ctx context.Context, data []byte) error {
	n, err := p.get()
	if err != nil {
		return err
	}
	return n.Propose(ctx, data)
}
func (p *lazyProposer) LeaderReady(ctx context.Context) (uint64, error) {
	n, err := p.get()
	if err != nil {
		return 0, err
	}
	return n.LeaderReady(ctx)
}

// nodeID returns the configured ID, or the one stored in dir, or a new random one (stored).
func nodeID(dir string, want uint64) (uint64, error) {
	path := filepath.Join(dir, "node-id")
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		have, perr := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if perr != nil || have == 0 {
			return 0, fmt.Errorf("tandem: %s is damaged: %q", path, b)
		}
		if want != 0 && want != have {
			return 0, fmt.Errorf("tandem: %s belongs to node %d, not %d: use its own ID or an empty directory", dir, have, want)
		}
		return have, nil
	case !errors.Is(err, os.ErrNotExist):
		return 0, fmt.Errorf("tandem: read node id: %w", err)
	}
	id := want
	if id == 0 {
		var r [8]byte
		if _, err := rand.Read(r[:]); err != nil {
			return 0, err
		}
		id = binary.LittleEndian.Uint64(r[:])>>1 | 1
	}
	if err := os.WriteFile(path, []byte(strconv.FormatUint(id, 10)+"\n"), 0o640); err != nil {
		return 0, fmt.Errorf("tandem: write node id: %w", err)
	}
	return id, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
