package consensus

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/server/v3/etcdserver/api/snap"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.etcd.io/etcd/server/v3/storage/wal/walpb"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
)

// Node runs one Raft member: the raft loop, the apply goroutine and the membership manager.
type Node struct {
	cfg         Config
	log         *slog.Logger
	zl          *zap.Logger
	raft        raft.Node
	storage     *raft.MemoryStorage
	wal         *wal.WAL
	snapshotter *snap.Snapshotter
	snapDir     string

	applyc chan applyJob
	stopc  chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	readSeq  atomic.Uint64
	walBytes atomic.Uint64 // bytes of entries logged since Start (roughly), for prepareSegments
	// segmentsZeroed counts the WAL segments prepareSegments zero-filled (for tests).
	segmentsZeroed atomic.Uint64
	// readReqs queues ReadIndex callers for the read loop, which serves all callers that
	// are waiting when a round starts with one read-index round (readLoop).
	readReqs   chan chan readResult
	readRounds atomic.Uint64 // read-index rounds run (for tests and status)
	// formers holds the members this node saw removed (an immutable map, replaced on every
	// removal), so that deliver can tell one that missed its removal (see noticeFormer).
	formers atomic.Pointer[map[uint64]formerMember]
	// heard: Unix ns of the last message from each peer (*atomic.Int64 by ID), for the
	// removal's quorum check, which needs fresher news than raft's RecentActive.
	heard sync.Map

	// apply goroutine state (owned by it after Start).
	ap applier

	mu          sync.Mutex
	stopped     bool
	leader      uint64
	term        uint64
	raftState   raft.StateType
	commit      uint64
	applied     uint64
	appliedTerm uint64
	addrs       map[uint64]string // member address book
	conf        *raftpb.ConfState // roles, as last applied
	diverged    bool
	problem     string
	removedAt   uint64        // index of the conf change that removed this node
	removedc    chan struct{} // closed once removedAt is set
	changed     chan struct{} // closed and replaced on every change
	subs        map[int]chan LeaderInfo
	nextSub     int
	published   LeaderInfo
	reads       map[uint64]chan uint64
	pins        map[uint64]int // snapshot index -> streams in progress
}

// walMeta is stored at the head of every WAL file.
type walMeta struct {
	ID uint64 `json:"id"`
}

// memberContext is the Context of every conf change we propose (and of the bootstrap peer).
type memberContext struct {
	ID   uint64 `json:"id"`
	Addr string `json:"addr"`
}

// Start starts a node. It restarts from cfg.Dir when that holds a WAL; otherwise it
// bootstraps a one-node cluster (cfg.Bootstrap) or waits to be added by a leader.
func Start(cfg Config) (*Node, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	n := &Node{
		cfg:      cfg,
		log:      cfg.Logger,
		snapDir:  filepath.Join(cfg.Dir, "snap"),
		applyc:   make(chan applyJob, 64),
		stopc:    make(chan struct{}),
		addrs:    map[uint64]string{},
		conf:     &raftpb.ConfState{},
		changed:  make(chan struct{}),
		removedc: make(chan struct{}),
		subs:     map[int]chan LeaderInfo{},
		reads:    map[uint64]chan uint64{},
		readReqs: make(chan chan readResult, 4096),
		pins:     map[uint64]int{},
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.zl = newZapLogger(n.log.With("component", "etcd"))
	if err := os.MkdirAll(n.snapDir, 0o755); err != nil {
		return nil, err
	}
	n.snapshotter = snap.New(n.zl, n.snapDir)
	n.storage = raft.NewMemoryStorage()

	walDir := filepath.Join(cfg.Dir, "wal")
	restart := wal.Exist(walDir)
	segmentSize := wal.SegmentSizeBytes
	var snapshot *raftpb.Snapshot
	if restart {
		if !cfg.PreallocateWAL {
			// etcd's segment pipeline starts with "0.tmp" when it opens the WAL.
			if _, err := prepareNextSegment(walDir, segmentSize, true, 0, nil); err != nil {
				n.log.Warn("could not zero-fill the next WAL segment", "err", err)
			}
		}
		var err error
		if snapshot, err = n.replay(walDir); err != nil {
			return nil, err
		}
	} else {
		meta, _ := json.Marshal(walMeta{ID: cfg.ID})
		w, err := wal.Create(n.zl, walDir, meta)
		if err != nil {
			return nil, fmt.Errorf("consensus: create wal: %w", err)
		}
		n.wal = w
	}
	if !cfg.PreallocateWAL {
		// Before the Raft loop writes anything.
		if err := zeroWALTail(walDir); err != nil {
			n.log.Warn("could not zero-fill the WAL's last segment", "err", err)
		}
	}

	var snapIndex, snapTerm uint64
	if snapshot != nil {
		snapIndex, snapTerm = snapshot.Metadata.GetIndex(), snapshot.Metadata.GetTerm()
		desc, err := parseSnapshotDesc(snapshot.GetData())
		if err != nil {
			n.wal.Close()
			return nil, err
		}
		for _, m := range desc.Members {
			n.addrs[m.ID] = m.Addr
		}
		n.conf = cloneConfState(snapshot.Metadata.GetConfState())
		n.mergeFormers(desc.Formers, n.conf)
		if err := n.restoreOnRestart(snapIndex); err != nil {
			n.wal.Close()
			return nil, err
		}
	}
	n.addrs[cfg.ID] = cfg.Addr
	if !isMember(n.conf, cfg.ID) {
		// Only a snapshot this node took after applying its own removal can say so; a
		// snapshot from a leader always holds its receiver.
		n.markRemovedLocked(snapIndex)
	}
	if index, err := readRemovalNotice(cfg.Dir); err != nil {
		n.wal.Close()
		return nil, err
	} else if index != 0 {
		n.markRemovedLocked(index)
	}
	n.applied, n.appliedTerm = snapIndex, snapTerm
	n.ap = applier{lastSnap: snapIndex, conf: cloneConfState(n.conf)}

	rc := &raft.Config{
		ID:                        cfg.ID,
		ElectionTick:              cfg.ElectionTicks,
		HeartbeatTick:             cfg.HeartbeatTicks,
		Storage:                   n.storage,
		Applied:                   snapIndex,
		MaxSizePerMsg:             1 << 20,
		MaxInflightMsgs:           256,
		MaxUncommittedEntriesSize: 1 << 30,
		CheckQuorum:               true,
		PreVote:                   true,
		ReadOnlyOption:            raft.ReadOnlySafe,
		DisableProposalForwarding: true,
		StepDownOnRemoval:         true,
		Logger:                    raftLogger{n.log.With("component", "raft")},
	}
	if !restart && cfg.Bootstrap {
		ctx, _ := json.Marshal(memberContext{ID: cfg.ID, Addr: cfg.Addr})
		n.raft = raft.StartNode(rc, []raft.Peer{{ID: cfg.ID, Context: ctx}})
	} else {
		n.raft = raft.RestartNode(rc)
	}

	if err := cfg.Transport.Start(cfg.ID, n.deliver, nodeSnaps{n}); err != nil {
		n.raft.Stop()
		n.wal.Close()
		return nil, fmt.Errorf("consensus: start transport: %w", err)
	}
	for id, addr := range n.addrs {
		if id != cfg.ID {
			cfg.Transport.SetPeer(id, addr)
		}
	}
	n.wg.Add(4)
	go n.run()
	go n.applyLoop()
	go n.manageMembers()
	go n.readLoop()
	if !cfg.PreallocateWAL {
		n.wg.Add(1)
		go n.prepareSegments(walDir, segmentSize, cfg.segmentCheck)
	}
	n.log.Info("consensus node started", "restart", restart, "bootstrap", cfg.Bootstrap && !restart,
		"snapshot", snapIndex)
	return n, nil
}

// replay opens the WAL at the newest valid snapshot and loads both into MemoryStorage.
func (n *Node) replay(walDir string) (*raftpb.Snapshot, error) {
	walSnaps, err := wal.ValidSnapshotEntries(n.zl, walDir)
	if err != nil {
		return nil, fmt.Errorf("consensus: scan wal snapshots: %w", err)
	}
	snapshot, err := n.snapshotter.LoadNewestAvailable(walSnaps)
	if err != nil && !errors.Is(err, snap.ErrNoSnapshot) {
		return nil, fmt.Errorf("consensus: load snapshot: %w", err)
	}
	ws := &walpb.Snapshot{Index: new(uint64(0)), Term: new(uint64(0))}
	if snapshot != nil {
		md := snapshot.GetMetadata()
		ws = &walpb.Snapshot{Index: new(md.GetIndex()), Term: new(md.GetTerm()), ConfState: md.GetConfState()}
	}
	var (
		meta []byte
		hs   *raftpb.HardState
		ents []*raftpb.Entry
	)
	for attempt := 0; ; attempt++ {
		w, err := wal.Open(n.zl, walDir, ws)
		if err != nil {
			return nil, fmt.Errorf("consensus: open wal: %w", err)
		}
		meta, hs, ents, err = w.ReadAll()
		if err == nil {
			n.wal = w
			break
		}
		w.Close()
		// A torn last record after a crash: let etcd cut the log at the last good record.
		if attempt > 0 || !errors.Is(err, io.ErrUnexpectedEOF) || !wal.Repair(n.zl, walDir) {
			return nil, fmt.Errorf("consensus: read wal: %w", err)
		}
		n.log.Warn("repaired torn wal tail", "dir", walDir)
	}
	var m walMeta
	if err := json.Unmarshal(meta, &m); err != nil || m.ID != n.cfg.ID {
		n.wal.Close()
		return nil, fmt.Errorf("consensus: wal in %s belongs to node %d, not %d", walDir, m.ID, n.cfg.ID)
	}
	if snapshot != nil {
		if err := n.storage.ApplySnapshot(snapshot); err != nil {
			n.wal.Close()
			return nil, err
		}
	}
	if err := n.storage.SetHardState(hs); err != nil {
		n.wal.Close()
		return nil, err
	}
	if err := n.storage.Append(ents); err != nil {
		n.wal.Close()
		return nil, err
	}
	n.commit, n.term = hs.GetCommit(), hs.GetTerm()
	return snapshot, nil
}

// Stop stops every goroutine of the node and its transport, then closes the WAL.
func (n *Node) Stop() error {
	var err error
	n.once.Do(func() {
		close(n.stopc)
		n.cancel()
		n.cfg.Transport.Stop()
		n.wg.Wait()
		n.raft.Stop()
		err = n.wal.Close()
		n.mu.Lock()
		n.stopped = true
		for id, ch := range n.subs {
			close(ch)
			delete(n.subs, id)
		}
		for id, ch := range n.reads {
			close(ch)
			delete(n.reads, id)
		}
		n.notifyLocked()
		n.mu.Unlock()
		n.log.Info("consensus node stopped")
	})
	return err
}

func (n *Node) deliver(m *raftpb.Message) error {
	if raft.IsLocalMsg(m.GetType()) {
		return fmt.Errorf("consensus: local message %v from the network", m.GetType())
	}
	if m.GetTo() != n.cfg.ID {
		// raft does not check the addressee. A message for another ID comes from a peer
		// that knows this address under that ID: a removed member's former address, now
		// used by a new node, say.
		n.log.Debug("dropping a raft message for another member", "to", m.GetTo(), "from", m.GetFrom(),
			"type", m.GetType())
		return nil
	}
	n.noteHeard(m.GetFrom())
	if m.GetType() == raftpb.MsgHeartbeat && bytes.Equal(m.GetContext(), removalNoticeContext) {
		n.receiveRemovalNotice(m)
		return nil
	}
	if f := n.formers.Load(); f != nil {
		if fm, ok := (*f)[m.GetFrom()]; ok {
			// raft ignores messages from non-members; this one may show that its sender
			// never learned that it was removed.
			n.noticeFormer(m, fm)
			return nil
		}
	}
	if m.GetType() == raftpb.MsgHeartbeat && n.lostLog(m) {
		return nil
	}
	return n.raft.Step(n.ctx, m)
}

// receiveRemovalNotice acts on a leader's notice that this node was removed at index
// m.Index (sendRemovalNotice): it records the removal in its directory, so that a restart
// stops again, and stops taking part. The notice is ignored when this node follows another
// leader, has applied the removal's index (then it is a member again, added anew) or has
// no configuration yet (a new node, perhaps given a removed member's ID once the removal
// was compacted, that a late notice reaches).
func (n *Node) receiveRemovalNotice(m *raftpb.Message) {
	index := m.GetIndex()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.removedAt != 0 || n.stopped {
		return
	}
	fresh := len(n.conf.GetVoters())+len(n.conf.GetLearners()) == 0 // waiting to be added: a new member
	if (n.leader != 0 && n.leader != m.GetFrom()) || n.applied >= index || fresh {
		n.log.Warn("ignoring a removal notice", "from", m.GetFrom(), "index", index, "leader", n.leader,
			"applied", n.applied)
		return
	}
	n.log.Warn("the leader says this node was removed from the cluster; the entries it lacks up to its "+
		"removal are compacted, so it stops without them", "from", m.GetFrom(), "index", index, "applied", n.applied)
	if err := writeRemovalNotice(n.cfg.Dir, index); err != nil {
		n.log.Error("recording the removal notice", "err", err)
	}
	n.markRemovedLocked(index)
}

// removalNoticeFile, in the node's directory, records a removal notice (receiveRemovalNotice).
const removalNoticeFile = "removed"

func writeRemovalNotice(dir string, index uint64) error {
	p := filepath.Join(dir, removalNoticeFile)
	if err := os.WriteFile(p+".tmp", []byte(strconv.FormatUint(index, 10)+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		return err
	}
	return syncDir(dir)
}

// readRemovalNotice returns the index a recorded removal notice names, or 0 for none.
func readRemovalNotice(dir string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, removalNoticeFile))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	index, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("consensus: %s: %w", filepath.Join(dir, removalNoticeFile), err)
	}
	return index, nil
}

// noteHeard records that a message from peer id arrived now.
func (n *Node) noteHeard(id uint64) {
	v, ok := n.heard.Load(id)
	if !ok {
		v, _ = n.heard.LoadOrStore(id, new(atomic.Int64))
	}
	v.(*atomic.Int64).Store(time.Now().UnixNano())
}

// heardWithin reports whether a message from peer id arrived in the last d.
func (n *Node) heardWithin(id uint64, d time.Duration) bool {
	v, ok := n.heard.Load(id)
	return ok && time.Since(time.Unix(0, v.(*atomic.Int64).Load())) <= d
}

// lostLog reports (and the first time, records as this node's problem) a heartbeat whose
// commit index is beyond this node's log. A leader sends a follower at most what the
// follower acknowledged having: this node lost its data (a wiped or replaced directory,
// perhaps bootstrapped anew) while its ID stayed a member. Raft would panic on it ("tocommit
// out of range"); the node stops serving instead and says what to do.
func (n *Node) lostLog(m *raftpb.Message) bool {
	last, err := n.storage.LastIndex()
	if err != nil || m.GetCommit() <= last {
		return false
	}
	n.mu.Lock()
	already := n.diverged
	n.mu.Unlock()
	if !already {
		n.fail(fmt.Sprintf("node %d says this node (%d) holds the log up to index %d, but its log ends at %d: "+
			"its data was lost or replaced while its ID stayed a member of that cluster; stop it, remove it "+
			"(tandem cluster remove %d) and start it with a new ID and an empty data directory",
			m.GetFrom(), n.cfg.ID, m.GetCommit(), last, n.cfg.ID))
	}
	return true
}

// run is the raft loop: the only goroutine that reads Ready and writes the WAL's entries.
func (n *Node) run() {
	defer n.wg.Done()
	ticker := time.NewTicker(n.cfg.TickInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ticker.C:
			n.raft.Tick()
		case rd := <-n.raft.Ready():
			if err := n.handleReady(rd); err != nil {
				if errors.Is(err, ErrStopped) {
					return
				}
				n.fail("raft loop: " + err.Error())
				return
			}
		case <-n.stopc:
			return
		}
	}
}

func (n *Node) handleReady(rd raft.Ready) error {
	n.updateState(rd.SoftState, rd.HardState)
	n.mu.Lock()
	isLeader := n.raftState == raft.StateLeader
	n.mu.Unlock()

	// The leader may send before its own fsync (raft thesis 10.2.1): it counts itself
	// towards the commit quorum only after Advance. Everyone else persists first.
	if isLeader {
		n.cfg.Transport.Send(rd.Messages)
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		// Install the state first, then persist: the WAL never points at a snapshot the
		// state machine does not hold.
		done := make(chan error, 1)
		if err := n.enqueue(applyJob{snap: rd.Snapshot, done: done}); err != nil {
			return err
		}
		select {
		case <-done:
		case <-n.stopc:
			return ErrStopped
		}
		if err := n.saveSnapshot(rd.Snapshot); err != nil {
			return err
		}
	}
	if err := n.wal.Save(rd.HardState, rd.Entries); err != nil {
		return fmt.Errorf("wal save: %w", err)
	}
	var logged uint64
	for _, e := range rd.Entries {
		logged += uint64(len(e.GetData())) + 32 // the record's framing, roughly
	}
	n.walBytes.Add(logged)
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := n.storage.ApplySnapshot(rd.Snapshot); err != nil {
			return fmt.Errorf("storage apply snapshot: %w", err)
		}
	}
	if !raft.IsEmptyHardState(rd.HardState) {
		if err := n.storage.SetHardState(rd.HardState); err != nil {
			return err
		}
	}
	if err := n.storage.Append(rd.Entries); err != nil {
		return fmt.Errorf("storage append: %w", err)
	}
	if !isLeader {
		n.cfg.Transport.Send(rd.Messages)
	}
	if len(rd.ReadStates) > 0 {
		n.mu.Lock()
		for _, rs := range rd.ReadStates {
			if len(rs.RequestCtx) != 8 {
				continue
			}
			id := binary.BigEndian.Uint64(rs.RequestCtx)
			if ch, ok := n.reads[id]; ok {
				ch <- rs.Index
				delete(n.reads, id)
			}
		}
		n.mu.Unlock()
	}
	if len(rd.CommittedEntries) > 0 {
		if err := n.enqueue(applyJob{ents: rd.CommittedEntries}); err != nil {
			return err
		}
	}
	n.raft.Advance()
	return nil
}

func (n *Node) enqueue(j applyJob) error {
	select {
	case n.applyc <- j:
		return nil
	case <-n.stopc:
		return ErrStopped
	}
}

// saveSnapshot persists a snapshot's metadata: snap file first, then the WAL record that
// refers to it (the order etcd uses).
func (n *Node) saveSnapshot(s *raftpb.Snapshot) error {
	if err := n.snapshotter.SaveSnap(s); err != nil {
		return fmt.Errorf("save snap: %w", err)
	}
	md := s.GetMetadata()
	ws := &walpb.Snapshot{Index: new(md.GetIndex()), Term: new(md.GetTerm()), ConfState: md.GetConfState()}
	if err := n.wal.SaveSnapshot(ws); err != nil {
		return fmt.Errorf("wal save snapshot: %w", err)
	}
	return nil
}

// fail marks the node unhealthy for good and says so loudly.
func (n *Node) fail(problem string) {
	n.log.Error("CONSENSUS NODE UNHEALTHY: stopped applying", "problem", problem)
	n.mu.Lock()
	if !n.diverged {
		n.diverged = true
		n.problem = problem
	}
	n.notifyLocked()
	n.mu.Unlock()
}

// notifyLocked wakes everyone waiting for a state change. n.mu must be held.
func (n *Node) notifyLocked() {
	close(n.changed)
	n.changed = make(chan struct{})
}

func (n *Node) updateState(ss *raft.SoftState, hs *raftpb.HardState) {
	if ss == nil && raft.IsEmptyHardState(hs) {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if ss != nil {
		wasLeader := n.raftState == raft.StateLeader
		n.leader, n.raftState = ss.Lead, ss.RaftState
		if wasLeader && ss.RaftState != raft.StateLeader {
			for id, ch := range n.reads { // raft drops pending reads with leadership
				close(ch)
				delete(n.reads, id)
			}
		}
	}
	if !raft.IsEmptyHardState(hs) {
		n.term, n.commit = hs.GetTerm(), hs.GetCommit()
	}
	info := LeaderInfo{ID: n.leader, Term: n.term, Addr: n.addrs[n.leader]}
	if info.ID != n.published.ID {
		n.log.Info("leader changed", "leader", info.ID, "term", info.Term, "self", info.ID == n.cfg.ID)
	}
	if info.ID != n.published.ID || info.Term != n.published.Term {
		n.published = info
		for _, ch := range n.subs {
			publish(ch, info)
		}
	}
	n.notifyLocked()
}

// publish never blocks: a slow subscriber loses the oldest notice, never the newest.
func publish(ch chan LeaderInfo, info LeaderInfo) {
	for {
		select {
		case ch <- info:
			return
		default:
		}
		select {
		case <-ch:
		default:
		}
	}
}

// Subscribe delivers (leaderID, term) whenever either changes. The channel is closed by the
// returned cancel function or by Stop.
func (n *Node) Subscribe() (<-chan LeaderInfo, func()) {
	ch := make(chan LeaderInfo, 16)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped {
		close(ch)
		return ch, func() {}
	}
	id := n.nextSub
	n.nextSub++
	n.subs[id] = ch
	return ch, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if c, ok := n.subs[id]; ok {
			delete(n.subs, id)
			close(c)
		}
	}
}

// leaderErrLocked returns why this node cannot act as leader now, or nil.
func (n *Node) leaderErrLocked() error {
	switch {
	case n.stopped:
		return ErrStopped
	case n.removedAt != 0:
		return ErrRemoved
	case n.diverged:
		return ErrDiverged
	case n.raftState != raft.StateLeader:
		return &NotLeaderError{LeaderID: n.leader, LeaderAddr: n.addrs[n.leader]}
	}
	return nil
}

func (n *Node) leaderErr() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.leaderErrLocked()
}

// Propose appends data to the log if this node leads. It returns once the leader accepted
// the entry, not when it is committed: the caller learns the outcome from Apply.
func (n *Node) Propose(ctx context.Context, data []byte) error {
	if len(data) == 0 {
		return errors.New("consensus: empty proposal")
	}
	if err := n.leaderErr(); err != nil {
		return err
	}
	return n.raftErr(n.raft.Propose(ctx, data))
}

func (n *Node) raftErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrStopped):
		return ErrStopped
	case errors.Is(err, raft.ErrProposalDropped):
		if lerr := n.leaderErr(); lerr != nil {
			return lerr
		}
		return fmt.Errorf("consensus: proposal dropped (leadership transfer in progress?): %w", err)
	}
	return err
}

// LeaderReady blocks until this node is leader and has applied the first entry of its term,
// and returns that term. It returns a *NotLeaderError at once when another node leads.
func (n *Node) LeaderReady(ctx context.Context) (uint64, error) {
	for {
		n.mu.Lock()
		switch {
		case n.stopped:
			n.mu.Unlock()
			return 0, ErrStopped
		case n.diverged:
			n.mu.Unlock()
			return 0, ErrDiverged
		case n.raftState == raft.StateLeader && n.appliedTerm == n.term:
			// Entries are applied in order and the first entry of a term is its leader's
			// empty entry: having applied any entry of our term means it is applied.
			t := n.term
			n.mu.Unlock()
			return t, nil
		case n.leader != 0 && n.leader != n.cfg.ID:
			err := &NotLeaderError{LeaderID: n.leader, LeaderAddr: n.addrs[n.leader]}
			n.mu.Unlock()
			return 0, err
		}
		ch := n.changed
		n.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// ReadIndex returns an index such that a read served once the state machine has applied it
// is linearizable (raft ReadIndex, ReadOnlySafe). Leader only. Concurrent calls share
// read-index rounds (see readLoop).
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	if err := n.leaderErr(); err != nil {
		return 0, err
	}
	ch := make(chan readResult, 1)
	select {
	case n.readReqs <- ch:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-n.stopc:
		return 0, ErrStopped
	}
	select {
	case r := <-ch:
		return r.index, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-n.stopc:
		return 0, ErrStopped
	}
}

type readResult struct {
	index uint64
	err   error
}

// readRoundTimeout bounds one read-index round (a leader cut off from its quorum never
// completes one); the callers' own contexts usually end first.
const readRoundTimeout = 5 * time.Second

// readLoop serves ReadIndex calls in rounds: every caller queued when a round starts shares
// its read index. A caller that arrives during a round waits for the next one, which starts
// after it arrived, so each read still sees every write acknowledged before it began. Under
// concurrent reads this sends one heartbeat round per batch instead of one per read.
func (n *Node) readLoop() {
	defer n.wg.Done()
	var batch []chan readResult
	for {
		batch = batch[:0]
		select {
		case ch := <-n.readReqs:
			batch = append(batch, ch)
		case <-n.stopc:
			return
		}
	more:
		for len(batch) < cap(n.readReqs) {
			select {
			case ch := <-n.readReqs:
				batch = append(batch, ch)
			default:
				break more
			}
		}
		ctx, cancel := context.WithTimeout(n.ctx, readRoundTimeout)
		idx, err := n.readIndexRound(ctx)
		cancel()
		n.readRounds.Add(1)
		for _, ch := range batch {
			ch <- readResult{idx, err} // buffered: never blocks
		}
	}
}

// readIndexRound asks raft for a read index (one heartbeat round confirming leadership).
func (n *Node) readIndexRound(ctx context.Context) (uint64, error) {
	id := n.readSeq.Add(1)
	ch := make(chan uint64, 1)
	n.mu.Lock()
	if err := n.leaderErrLocked(); err != nil {
		n.mu.Unlock()
		return 0, err
	}
	n.reads[id] = ch
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.reads, id)
		n.mu.Unlock()
	}()
	rctx := binary.BigEndian.AppendUint64(nil, id)
	if err := n.raft.ReadIndex(ctx, rctx); err != nil {
		return 0, n.raftErr(err)
	}
	select {
	case idx, ok := <-ch:
		if !ok {
			if err := n.leaderErr(); err != nil {
				return 0, err
			}
			return 0, &NotLeaderError{}
		}
		return idx, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Status returns a point-in-time view of the node.
func (n *Node) Status() Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	return Status{
		ID:         n.cfg.ID,
		Leader:     n.leader,
		Term:       n.term,
		Commit:     n.commit,
		Applied:    n.applied,
		LeaderAddr: n.addrs[n.leader],
		Members:    n.membersLocked(),
		Healthy:    !n.diverged && n.removedAt == 0,
		Problem:    n.problem,
		RemovedAt:  n.removedAt,
	}
}

// Removed is closed once this node has applied (or restarted from) a configuration that
// no longer holds it. A removed node is not promotable, so raft keeps it from campaigning;
// it still answers Status, and its owner is expected to stop it.
func (n *Node) Removed() <-chan struct{} { return n.removedc }

// markRemovedLocked records the removal at index once. n.mu must be held, or the node not
// yet shared.
func (n *Node) markRemovedLocked(index uint64) {
	if n.removedAt != 0 {
		return
	}
	n.removedAt = max(index, 1)
	if n.problem != "" {
		n.problem += "; "
	}
	n.problem += fmt.Sprintf("removed from the cluster at index %d", index)
	close(n.removedc)
	n.notifyLocked()
}

// isMember reports whether id is in cs. An empty configuration (a node waiting to be added)
// counts as holding everyone: nothing has removed it.
func isMember(cs *raftpb.ConfState, id uint64) bool {
	if len(cs.GetVoters())+len(cs.GetLearners())+len(cs.GetVotersOutgoing())+len(cs.GetLearnersNext()) == 0 {
		return true
	}
	return slices.Contains(cs.GetVoters(), id) || slices.Contains(cs.GetLearners(), id) ||
		slices.Contains(cs.GetVotersOutgoing(), id) || slices.Contains(cs.GetLearnersNext(), id)
}

func (n *Node) membersLocked() []Member {
	var ms []Member
	for _, id := range n.conf.GetVoters() {
		ms = append(ms, Member{ID: id, Addr: n.addrs[id], Role: RoleVoter})
	}
	for _, id := range n.conf.GetLearners() {
		ms = append(ms, Member{ID: id, Addr: n.addrs[id], Role: RoleLearner})
	}
	slices.SortFunc(ms, func(a, b Member) int { return cmpU64(a.ID, b.ID) })
	return ms
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
