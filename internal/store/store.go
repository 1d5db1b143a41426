package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a Store.
type Options struct {
	Dir      string // databases live in Dir/db/<name>.sqlite
	NodeID   uint64
	Logger   *slog.Logger
	Proposer Proposer // the consensus node; nil on a store that only applies
	// QueueSize bounds each database's writer queue (default 1024).
	QueueSize int
	// TxIdleTimeout rolls back an interactive transaction idle that long (default 30s).
	TxIdleTimeout time.Duration
	// ReadPoolSize is the number of read-only connections per database (default 4).
	ReadPoolSize int
	// MaxOpenResults bounds the query results a node keeps open across requests (cursors
	// read page by page), each on a SQLite connection of its own outside the read pool
	// (default 256; see Rows.Keep).
	MaxOpenResults int
	// ProposalTimeout bounds how long a writer waits for its proposal to be applied before it
	// gives the batch up as "outcome unknown" (default 1m). Giving up is safe: a command
	// applies only on the database state it was executed on (see doc.go).
	ProposalTimeout time.Duration
	// MaxEntryBytes bounds the log entry of one batch or transaction (default 16 MiB):
	// every node writes and syncs an entry in one step of its Raft loop, which sends no
	// heartbeat meanwhile (on the development VM a 64 MiB entry cost the leadership, and
	// under load 30 MiB ones did too). A write or transaction over it fails with
	// SQLITE_TOOBIG; requests batched with a large one are run again on their own. A row
	// changed in place carries its old and new values: 31 MiB leaves room for one of
	// MaxValueBytes.
	MaxEntryBytes int
	// CheckpointFrames: a commit that leaves this many frames in a database's WAL starts a
	// background checkpoint (default 16384, 64 MiB of 4 KiB pages; see checkpoint.go).
	CheckpointFrames int
	// CheckpointIdle: a database that received no commit for about this long is checkpointed
	// and its WAL file emptied (default 2s).
	CheckpointIdle time.Duration
	// MaxReadTxs bounds the read-only transactions open at once (default 256): each holds a
	// SQLite connection and keeps its database's WAL from starting again at frame 1.
	MaxReadTxs int
}

// Proposer is the part of the consensus node the writer needs.
type Proposer interface {
	Propose(ctx context.Context, data []byte) error
	// LeaderReady blocks until this node leads and has applied the first entry of its term.
	LeaderReady(ctx context.Context) (term uint64, err error)
}

// MaxValueBytes bounds the strings, blobs and rows that writes make (SQLITE_LIMIT_LENGTH on
// the writer's connection; SQLite's own default is 1e9): a row must fit in one frame of the
// client protocol (16 MiB) to be read back, and one entry of the log carries it to every
// node. Larger ones fail with SQLite's "string or blob too big". Only the writer has the
// limit: followers apply whatever the log holds.
const MaxValueBytes = 15 << 20

// DefaultMaxEntryBytes is Options.MaxEntryBytes when unset.
const DefaultMaxEntryBytes = 16 << 20

// maxBatch caps the number of requests executed in one entry.
const maxBatch = 256

// Store is the replicated state machine holding every database of a node, and the leader's
// write path for them.
type Store struct {
	opts   Options
	log    *slog.Logger
	dbDir  string
	start  time.Time
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	applyMu sync.Mutex // serializes Apply, SaveSnapshot, RestoreSnapshot, Close

	mu        sync.Mutex
	dbs       map[string]*database
	closed    bool
	restoring bool // RestoreSnapshot is replacing the databases
	diverged  error
	applied   uint64
	appliedC  chan struct{} // closed and replaced when applied grows or the store diverges
	leader    leaderState
	waiters   map[proposalKey]waiter

	propSeq atomic.Uint64
	// Entries proposed by this node and the requests they carried: their ratio is the
	// average group-commit batch size.
	statEntries, statRequests atomic.Uint64
	statCheckpoints           atomic.Uint64 // background checkpoints that copied frames
	statCheckpointFrames      atomic.Uint64 // WAL frames those copied
	statHeldCommits           atomic.Uint64 // own entries applied by committing the writer's transaction
	readTxs                   atomic.Int64  // open read-only transactions (Options.MaxReadTxs)
	openResults               atomic.Int64  // results kept open across requests (Options.MaxOpenResults)

	// verifyExec (tests): the writer compares the content it executed with the content
	// applied for its entry and records mismatches in verifyErrs.
	verifyExec bool
	verifyMu   sync.Mutex
	verifyErrs []string
}

type leaderState struct {
	term     uint64
	isLeader bool
	changed  chan struct{} // closed and replaced on every LeaderChanged
}

type proposalKey struct{ term, seq uint64 }

// applyOutcome tells a writer what became of its proposal.
type applyOutcome struct {
	index   uint64
	err     error    // nil: applied at index (or, with handoff, committed once the writer commits)
	handoff *handoff // the writer holds its executed transaction: commit it as the apply
}

// waiter is a writer waiting for the outcome of its proposal. A held waiter kept the
// transaction it executed open (it holds the database's write lock) instead of rolling it
// back: when the entry commits, Apply hands it the entry's index and the writer commits that
// transaction as this node's apply of the entry, instead of Apply replaying the changeset.
type waiter struct {
	ch   chan applyOutcome // buffered: every send happens under Store.mu, at most once
	held bool
}

// handoff is Apply's request to a held writer: record the entry at index and commit.
// The writer answers on done; an error means it rolled back and Apply applies the entry
// itself.
type handoff struct {
	index uint64
	cmd   *command
	done  chan error
}

// Open opens (or creates) the store in opts.Dir and reopens every database found there.
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("store: Options.Dir is empty")
	}
	if opts.MaxReadTxs <= 0 {
		opts.MaxReadTxs = 256
	}
	if opts.CheckpointIdle <= 0 {
		opts.CheckpointIdle = defaultCheckpointIdle
	}
	if opts.CheckpointFrames <= 0 {
		opts.CheckpointFrames = defaultCheckpointFrames
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 1024
	}
	if opts.MaxEntryBytes <= 0 {
		opts.MaxEntryBytes = DefaultMaxEntryBytes
	}
	if opts.TxIdleTimeout <= 0 {
		opts.TxIdleTimeout = 30 * time.Second
	}
	if opts.ReadPoolSize <= 0 {
		opts.ReadPoolSize = 4
	}
	if opts.MaxOpenResults <= 0 {
		opts.MaxOpenResults = 256
	}
	if opts.ProposalTimeout <= 0 {
		opts.ProposalTimeout = time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		opts:     opts,
		log:      opts.Logger,
		dbDir:    filepath.Join(opts.Dir, "db"),
		start:    time.Now(),
		dbs:      map[string]*database{},
		appliedC: make(chan struct{}),
		waiters:  map[proposalKey]waiter{},
	}
	s.leader.changed = make(chan struct{})
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := os.MkdirAll(s.dbDir, 0o755); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := s.openAll(); err != nil {
		s.closeDatabases(ErrClosed)
		s.cancel()
		return nil, err
	}
	return s, nil
}

// openAll opens every database file in dbDir and derives the applied index.
func (s *Store) openAll() error {
	names, err := s.listFiles(s.dbDir)
	if err != nil {
		return err
	}
	var newest uint64
	for _, name := range names {
		db, err := openDatabase(s, name)
		if err != nil {
			return err
		}
		s.dbs[name] = db
		newest = max(newest, db.applied.Load())
	}
	floor, err := s.readFloor()
	if err != nil {
		return err
	}
	s.applied = max(newest, floor)
	if _, err := os.Stat(filepath.Join(s.opts.Dir, restoringFile)); err == nil {
		// A snapshot restore was interrupted: claim nothing, so that the node restores again.
		s.log.Warn("store: an interrupted snapshot restore was found; reporting applied index 0")
		s.applied = 0
	}
	return nil
}

// listFiles returns the names of the databases stored as dir/<name>.sqlite.
func (s *Store) listFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	var names []string
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".sqlite")
		if !ok || e.IsDir() {
			continue
		}
		if validName(name) {
			names = append(names, name)
		} else {
			s.log.Warn("store: ignoring database file with an invalid name", "file", e.Name())
		}
	}
	return names, nil
}

// floorFile records an index up to which all state is durable (written by SaveSnapshot and
// RestoreSnapshot): the applied index after a restart is the larger of it and the newest
// database's own index (see doc.go).
const floorFile = "durable-index"

// restoringFile exists while RestoreSnapshot moves files into place.
const restoringFile = "restoring"

func (s *Store) readFloor() (uint64, error) {
	b, err := os.ReadFile(filepath.Join(s.opts.Dir, floorFile))
	if os.IsNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("store: %w", err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("store: %s: %w", floorFile, err)
	}
	return v, nil
}

func (s *Store) writeFloor(index uint64) error {
	return writeFileAtomic(filepath.Join(s.opts.Dir, floorFile), []byte(strconv.FormatUint(index, 10)+"\n"))
}

// Close stops every writer and closes every connection. Requests still queued fail with
// ErrClosed; proposals in flight with ErrOutcomeUnknown.
func (s *Store) Close() error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.failWaitersLocked(func(proposalKey) bool { return true }, fmt.Errorf("%w: %w", ErrOutcomeUnknown, ErrClosed))
	close(s.appliedC)
	s.appliedC = make(chan struct{})
	s.mu.Unlock()
	s.cancel()
	return s.closeDatabases(ErrClosed)
}

// closeDatabases closes every database; why is what their open read-only transactions
// answer from then on.
func (s *Store) closeDatabases(why error) error {
	s.mu.Lock()
	dbs := s.dbs
	s.dbs = map[string]*database{}
	s.mu.Unlock()
	var firstErr error
	for _, db := range dbs {
		if err := db.close(why); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// Stats are counters of the leader's write path and of the checkpoints on this node.
type Stats struct {
	Entries          uint64 // entries this node proposed
	Requests         uint64 // requests those entries carried
	Checkpoints      uint64 // background WAL checkpoints that copied frames into a database
	CheckpointFrames uint64 // WAL frames those checkpoints copied
	HeldCommits      uint64 // own entries applied by committing the executed transaction (see waiter)
}

// Stats returns the write-path counters.
func (s *Store) Stats() Stats {
	return Stats{Entries: s.statEntries.Load(), Requests: s.statRequests.Load(),
		Checkpoints: s.statCheckpoints.Load(), CheckpointFrames: s.statCheckpointFrames.Load(),
		HeldCommits: s.statHeldCommits.Load()}
}

// CheckName returns an error wrapping ErrBadName unless name is a valid database name.
func CheckName(name string) error {
	if !validName(name) {
		return fmt.Errorf("%w: %q", ErrBadName, name)
	}
	return nil
}

// validName reports whether name matches [A-Za-z0-9_-]{1,64}.
func validName(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// database returns the named database, opening (creating) it when create is set.
func (s *Store) database(name string, create bool) (*database, error) {
	if !validName(name) {
		return nil, fmt.Errorf("%w: %q", ErrBadName, name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.unavailableLocked(); err != nil {
		return nil, err
	}
	if db := s.dbs[name]; db != nil {
		return db, nil
	}
	if !create {
		return nil, fmt.Errorf("%w: %q", ErrNoSuchDatabase, name)
	}
	db, err := openDatabase(s, name)
	if err != nil {
		return nil, err
	}
	s.dbs[name] = db
	return db, nil
}

// writable returns the named database for a write, creating it only on the leader: a
// follower answers a write to a database it has never seen with the proposer's error (a
// redirect) instead of leaving an empty file behind.
func (s *Store) writable(ctx context.Context, name string) (*database, error) {
	db, err := s.database(name, false)
	if !errors.Is(err, ErrNoSuchDatabase) {
		return db, err
	}
	if p := s.opts.Proposer; p != nil {
		if _, err := p.LeaderReady(ctx); err != nil {
			return nil, err
		}
	}
	return s.database(name, true)
}

func (s *Store) unavailableLocked() error {
	switch {
	case s.closed:
		return ErrClosed
	case s.restoring:
		return ErrRestoring
	case s.diverged != nil:
		return s.diverged
	}
	return nil
}

// existing returns a database that holds replicated state (own applied index > 0).
func (s *Store) existing(name string) (*database, error) {
	db, err := s.database(name, false)
	if err != nil {
		return nil, err
	}
	if db.applied.Load() == 0 {
		return nil, fmt.Errorf("%w: %q", ErrNoSuchDatabase, name)
	}
	return db, nil
}

// Databases lists the databases that hold replicated state, sorted.
func (s *Store) Databases() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for name, db := range s.dbs {
		if db.applied.Load() > 0 {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// AppliedIndex is the highest log index applied (including entries without data).
func (s *Store) AppliedIndex() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applied
}

// WaitApplied blocks until the applied index reaches index, the context ends, the store
// closes or diverges.
func (s *Store) WaitApplied(ctx context.Context, index uint64) error {
	for {
		s.mu.Lock()
		applied, ch, div, closed := s.applied, s.appliedC, s.diverged, s.closed
		s.mu.Unlock()
		if applied >= index {
			return nil
		}
		if div != nil {
			return div
		}
		if closed {
			return ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Diverged returns the divergence error, nil while the state machine is healthy.
func (s *Store) Diverged() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.diverged
}

// LeaderChanged tells the store that term has begun and whether this node leads it. Writers
// waiting for proposals of another term get ErrOutcomeUnknown, and open interactive
// transactions of another term are rolled back.
func (s *Store) LeaderChanged(term uint64, isLeader bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leader.term, s.leader.isLeader = term, isLeader
	close(s.leader.changed)
	s.leader.changed = make(chan struct{})
	s.failWaitersLocked(func(k proposalKey) bool { return !isLeader || k.term != term },
		fmt.Errorf("%w: leadership changed (term %d, leader %v)", ErrOutcomeUnknown, term, isLeader))
}

// leaderLost reports whether a LeaderChanged since the caller's term says that term is over.
func (s *Store) leaderLost(term uint64) (lost bool, changed <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.leader
	return (l.term != 0 && l.term != term) || (l.term == term && !l.isLeader), l.changed
}

func (s *Store) failWaitersLocked(match func(proposalKey) bool, err error) {
	for k, w := range s.waiters {
		if match(k) {
			w.ch <- applyOutcome{err: err}
			delete(s.waiters, k)
		}
	}
}

// register creates the waiter for a proposal of this node; held: see waiter.
func (s *Store) register(k proposalKey, held bool) (chan applyOutcome, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.diverged != nil {
		return nil, s.diverged
	}
	ch := make(chan applyOutcome, 1)
	s.waiters[k] = waiter{ch: ch, held: held}
	return ch, nil
}

// unregister removes the waiter of k. It reports false when an outcome was already sent
// (it is in the waiter's channel, and a handoff in it must be answered).
func (s *Store) unregister(k proposalKey) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.waiters[k]
	delete(s.waiters, k)
	return ok
}

// resolve delivers an outcome to the waiter of a proposal, if it is still waiting.
func (s *Store) resolveLocked(k proposalKey, o applyOutcome) {
	if w, ok := s.waiters[k]; ok {
		w.ch <- o
		delete(s.waiters, k)
	}
}

// takeHeld hands the entry at index to the held writer of k, if one is waiting, and
// returns the handoff to wait on (nil: no held writer; Apply applies the entry itself).
func (s *Store) takeHeld(k proposalKey, index uint64, cmd *command) *handoff {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.waiters[k]
	if !ok || !w.held {
		return nil
	}
	h := &handoff{index: index, cmd: cmd, done: make(chan error, 1)}
	w.ch <- applyOutcome{index: index, handoff: h}
	delete(s.waiters, k)
	return h
}

// leaderTime is the monotonic time since this store started, carried by entries.
func (s *Store) leaderTime() int64 { return int64(time.Since(s.start)) }

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
