package consensus

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Entry is one committed Raft log entry as the state machine sees it. Data is nil for the
// empty entry a new leader appends and for configuration-change entries.
type Entry struct {
	Index, Term uint64
	Data        []byte
}

// StateMachine is implemented by internal/store. Apply is called from one goroutine, in log
// order, with every committed entry (so the state machine's applied index follows Raft's),
// many entries per call. Apply must be idempotent for entries at or below what the state
// machine has already made durable (it is re-fed the log after the last snapshot on restart).
// An error from Apply means divergence: the node stops applying and reports unhealthy.
//
// When SaveSnapshot returns, the state machine's own state must be durable at least up to the
// index the snapshot was taken at: the Raft log before that index is discarded afterwards.
type StateMachine interface {
	Apply(ents []Entry) error
	// SaveSnapshot writes a consistent copy of all state to the empty directory dir (flat
	// files only, e.g. VACUUM INTO per database). Called from the apply goroutine, between
	// Apply calls.
	SaveSnapshot(dir string) error
	// RestoreSnapshot replaces all state with the copy in dir (made by SaveSnapshot on some
	// node, streamed here); the files in dir may be moved (renamed) into place. When it
	// returns, the restored state must be durable.
	RestoreSnapshot(dir string, index uint64) error
}

// AppliedIndexer is optionally implemented by a StateMachine (the store does). On restart
// the node compares it with the index of the newest Raft snapshot: when the state machine
// is behind (a crash between taking a snapshot and making the state durable), the node
// restores the local snapshot copy before re-feeding the log. A state machine without it is
// assumed to be durable at or beyond the newest snapshot.
type AppliedIndexer interface {
	AppliedIndex() uint64
}

// Config configures a Node. Zero values take the documented defaults.
type Config struct {
	ID           uint64
	Addr         string // this node's advertised address (clients and peers share it)
	Dir          string // WAL in Dir/wal, snapshots in Dir/snap
	Bootstrap    bool   // true only for the first node of a new cluster (empty Dir)
	StateMachine StateMachine
	Transport    Transport // TCPTransport or (tests) an in-memory network

	TickInterval   time.Duration // default 100ms
	ElectionTicks  int           // default 6: a follower calls an election 0.6-1.2 s after it last heard a leader
	HeartbeatTicks int           // default 2: three heartbeats per shortest election timeout
	SnapshotEvery  uint64        // entries applied between snapshots, default 10000
	// SnapshotBytes also starts a snapshot once the entries applied since the last one hold
	// this many bytes (default 64 MiB): the log since the last snapshot stays in memory, and
	// 10000 entries of 16 KiB (group commit of 1 KiB rows) would be 160 MiB.
	SnapshotBytes uint64
	CatchUpMargin uint64 // learner promoted when Match >= commit-margin, default 100
	// CompactKeep is how many entries before a snapshot stay in the in-memory log for slow
	// followers (addition). Default min(SnapshotEvery/2, 5000).
	CompactKeep uint64
	// CompactKeepBytes bounds those entries by size too (default SnapshotBytes/4).
	CompactKeepBytes uint64
	// PreallocateWAL leaves etcd's WAL segments preallocated with fallocate, as etcd makes
	// them, instead of zero-filling them (walzero.go). Zero-filling writes each segment's
	// size once more, in the background, and makes every fdatasync of the log cheaper.
	PreallocateWAL bool
	// segmentCheck is how often the node looks for the next WAL segment to zero-fill
	// (default 1 s; tests shorten it).
	segmentCheck time.Duration
	Logger       *slog.Logger // should carry the node's identity (e.g. With("node", id)); nil discards
}

func (c *Config) setDefaults() error {
	if c.ID == 0 {
		return errors.New("consensus: Config.ID must not be 0")
	}
	if c.Dir == "" {
		return errors.New("consensus: Config.Dir is required")
	}
	if c.StateMachine == nil {
		return errors.New("consensus: Config.StateMachine is required")
	}
	if c.Transport == nil {
		return errors.New("consensus: Config.Transport is required")
	}
	if c.segmentCheck <= 0 {
		c.segmentCheck = time.Second
	}
	if c.TickInterval <= 0 {
		c.TickInterval = 100 * time.Millisecond
	}
	if c.ElectionTicks <= 0 {
		c.ElectionTicks = 6
	}
	if c.HeartbeatTicks <= 0 {
		c.HeartbeatTicks = 2
	}
	if c.SnapshotEvery == 0 {
		c.SnapshotEvery = 10000
	}
	if c.CatchUpMargin == 0 {
		c.CatchUpMargin = 100
	}
	if c.CompactKeep == 0 {
		c.CompactKeep = min(c.SnapshotEvery/2, 5000)
	}
	if c.SnapshotBytes == 0 {
		c.SnapshotBytes = 64 << 20
	}
	if c.CompactKeepBytes == 0 {
		c.CompactKeepBytes = max(c.SnapshotBytes/4, 1)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Role is a member's role in the Raft configuration.
type Role string

// Roles.
const (
	RoleVoter   Role = "voter"
	RoleLearner Role = "learner"
)

// Member is one member of the cluster configuration.
type Member struct {
	ID   uint64 `json:"id"`
	Addr string `json:"addr"`
	Role Role   `json:"role"`
}

// Status is a point-in-time view of the node.
type Status struct {
	ID, Leader, Term, Commit, Applied uint64
	LeaderAddr                        string
	Members                           []Member // sorted by ID
	Healthy                           bool
	Problem                           string // reason after a divergence or a removal
	// RemovedAt is the index of the configuration change that removed this node (0: not
	// removed).
	RemovedAt uint64
}

// LeaderInfo is delivered to subscribers when the leader or the term changes.
type LeaderInfo struct {
	ID, Term uint64
	Addr     string
}

// Errors.
var (
	ErrNotLeader = errors.New("consensus: not the leader")
	ErrStopped   = errors.New("consensus: node stopped")
	ErrDiverged  = errors.New("consensus: state machine diverged; node is unhealthy")
	// ErrRemoved: this node applied a configuration that no longer holds it. It takes no
	// further part in the cluster; its owner should stop it (see Node.Removed).
	ErrRemoved = errors.New("consensus: node removed from the cluster")
	// ErrMembership is wrapped by the errors of membership changes that cannot succeed as
	// asked (an ID or address taken by another member, an ID that was removed, a node that
	// is not a member): asking again does not help.
	ErrMembership = errors.New("consensus: membership change refused")
)

// NotLeaderError says which node leads, when known (0/"" otherwise).
// errors.Is(err, ErrNotLeader) holds.
type NotLeaderError struct {
	LeaderID   uint64
	LeaderAddr string
}

func (e *NotLeaderError) Error() string {
	if e.LeaderID == 0 {
		return "consensus: not the leader (leader unknown)"
	}
	return fmt.Sprintf("consensus: not the leader (leader is %d at %s)", e.LeaderID, e.LeaderAddr)
}

// Is makes errors.Is(err, ErrNotLeader) true.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }
