package consensus

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// applier is the apply goroutine's own state.
type applier struct {
	index     uint64            // last committed index processed (applied or skipped)
	lastSnap  uint64            // index of the newest snapshot (local or installed)
	snapBytes uint64            // bytes of the entries applied since lastSnap
	conf      *raftpb.ConfState // configuration as of index
	snapRetry uint64            // after a failed SaveSnapshot, do not retry before this index
}

// applyJob is either committed entries or a snapshot to install (done gets the result).
type applyJob struct {
	ents []*raftpb.Entry
	snap *raftpb.Snapshot
	done chan error
}

func (n *Node) applyLoop() {
	defer n.wg.Done()
	n.ap.index = n.ap.lastSnap
	for {
		select {
		case j := <-n.applyc:
			if j.snap != nil {
				n.installSnapshot(j.snap)
				j.done <- nil
				continue
			}
			n.applyEntries(j.ents)
		case <-n.stopc:
			return
		}
	}
}

func (n *Node) isDiverged() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.diverged
}

func (n *Node) applyEntries(ents []*raftpb.Entry) {
	for len(ents) > 0 && ents[0].GetIndex() <= n.ap.index {
		ents = ents[1:]
	}
	if len(ents) == 0 {
		return
	}
	if first := ents[0].GetIndex(); first != n.ap.index+1 {
		n.fail(fmt.Sprintf("gap in committed entries: applied %d, next %d", n.ap.index, first))
		return
	}
	diverged := n.isDiverged()
	if !diverged {
		batch := make([]Entry, len(ents))
		for i, e := range ents {
			batch[i] = Entry{Index: e.GetIndex(), Term: e.GetTerm()}
			if e.GetType() == raftpb.EntryNormal && len(e.GetData()) > 0 {
				batch[i].Data = e.GetData()
			}
		}
		if err := n.cfg.StateMachine.Apply(batch); err != nil {
			n.fail(fmt.Sprintf("apply entries %d..%d: %v", batch[0].Index, batch[len(batch)-1].Index, err))
			diverged = true
		}
	}
	// Raft's configuration must follow the log even when the state machine has stopped.
	added := false
	for _, e := range ents {
		if e.GetType() != raftpb.EntryNormal {
			added = n.applyConfChange(e) || added
		}
	}
	last := ents[len(ents)-1]
	n.ap.index = last.GetIndex()
	n.mu.Lock()
	if !diverged {
		n.applied, n.appliedTerm = last.GetIndex(), last.GetTerm()
	}
	n.notifyLocked()
	n.mu.Unlock()

	// A node added after the newest snapshot could not install it (raft refuses a snapshot
	// whose configuration lacks the receiver), so once the log is compacted a new member
	// forces a fresh snapshot.
	first, _ := n.storage.FirstIndex()
	force := added && first > 1
	for _, e := range ents {
		n.ap.snapBytes += uint64(len(e.GetData()))
	}
	due := n.ap.index-n.ap.lastSnap >= n.cfg.SnapshotEvery || n.ap.snapBytes >= n.cfg.SnapshotBytes
	if !diverged && (force || due) && n.ap.index >= n.ap.snapRetry {
		if err := n.takeSnapshot(n.ap.index); err != nil {
			n.log.Error("snapshot failed; will retry", "index", n.ap.index, "err", err)
			n.ap.snapRetry = n.ap.index + max(n.cfg.SnapshotEvery/4, 1)
		}
	}
}

// applyConfChange applies a conf change entry and reports whether it added a new member.
func (n *Node) applyConfChange(e *raftpb.Entry) bool {
	var (
		cc  raftpb.ConfChangeI
		ctx []byte
	)
	switch e.GetType() {
	case raftpb.EntryConfChange:
		var c raftpb.ConfChange
		if err := proto.Unmarshal(e.GetData(), &c); err != nil {
			n.fail(fmt.Sprintf("bad conf change at %d: %v", e.GetIndex(), err))
			return false
		}
		cc, ctx = &c, c.GetContext()
	case raftpb.EntryConfChangeV2:
		var c raftpb.ConfChangeV2
		if err := proto.Unmarshal(e.GetData(), &c); err != nil {
			n.fail(fmt.Sprintf("bad conf change at %d: %v", e.GetIndex(), err))
			return false
		}
		cc, ctx = &c, c.GetContext()
	default:
		return false
	}
	before := map[uint64]bool{}
	for _, id := range append(append([]uint64{}, n.ap.conf.GetVoters()...), n.ap.conf.GetLearners()...) {
		before[id] = true
	}
	if leavesNoVoter(n.ap.conf, cc) {
		// raft panics on a configuration without voters, on every restart once the entry is
		// committed. RemoveMember refuses to propose one; an entry of an earlier build may
		// hold it. raft is not told of it (an empty change would mean "leave a joint
		// configuration"), which leaves its configuration as it was.
		n.log.Error("ignoring a committed configuration change that would leave no voter", "index", e.GetIndex())
		return false
	}
	notices := n.removalNotices(cc, e.GetIndex())
	cs := n.raft.ApplyConfChange(cc)
	var mc memberContext
	_ = json.Unmarshal(ctx, &mc) // conf changes without our context carry no address
	n.ap.conf = cloneConfState(cs)
	// The notices go out before setConfLocked retires the removed peers' connections,
	// which still deliver what they hold.
	n.cfg.Transport.Send(notices)

	n.mu.Lock()
	if mc.ID != 0 && mc.Addr != "" && mc.ID != n.cfg.ID {
		n.addrs[mc.ID] = mc.Addr
	}
	n.recordFormersLocked(before, cs, e.GetIndex())
	n.setConfLocked(cs)
	removedHere := before[n.cfg.ID] && !isMember(cs, n.cfg.ID)
	if removedHere {
		n.markRemovedLocked(e.GetIndex())
	}
	n.mu.Unlock()
	n.log.Info("configuration changed", "index", e.GetIndex(), "voters", cs.GetVoters(),
		"learners", cs.GetLearners())
	if removedHere {
		n.log.Warn("this node was removed from the cluster; it takes no further part", "index", e.GetIndex())
	}
	for _, id := range append(append([]uint64{}, cs.GetVoters()...), cs.GetLearners()...) {
		if !before[id] {
			return true
		}
	}
	return false
}

// leavesNoVoter reports whether applying cc to conf leaves no voter.
func leavesNoVoter(conf *raftpb.ConfState, cc raftpb.ConfChangeI) bool {
	voters := map[uint64]bool{}
	for _, id := range conf.GetVoters() {
		voters[id] = true
	}
	if len(voters) == 0 {
		return false // the bootstrap's first configuration
	}
	for _, c := range cc.AsV2().GetChanges() {
		switch c.GetType() {
		case raftpb.ConfChangeAddNode:
			voters[c.GetNodeId()] = true
		case raftpb.ConfChangeRemoveNode, raftpb.ConfChangeAddLearnerNode:
			delete(voters, c.GetNodeId())
		}
	}
	return len(voters) == 0
}

// removalNotices tells the members that cc removes that they are out, when this node leads.
// Once the leader applies the change it stops replicating to them, so a removed node may
// never learn that the entry removing it committed, and would wait for a leader forever.
// The notice is the heartbeat raft itself would send: the leader's term and a commit index
// no higher than what the member has acknowledged (so that it holds the entry), here the
// index of the removal. The member then commits and applies its own removal. A member that
// has not acknowledged the entry (down, or lagging) gets no notice.
func (n *Node) removalNotices(cc raftpb.ConfChangeI, index uint64) []*raftpb.Message {
	var removed []uint64
	for _, c := range cc.AsV2().GetChanges() {
		if c.GetType() == raftpb.ConfChangeRemoveNode && c.GetNodeId() != n.cfg.ID {
			removed = append(removed, c.GetNodeId())
		}
	}
	if len(removed) == 0 {
		return nil
	}
	st := n.raft.Status() // Progress is filled in on the leader only
	if st.RaftState != raft.StateLeader {
		return nil
	}
	var msgs []*raftpb.Message
	for _, id := range removed {
		if pr, ok := st.Progress[id]; ok && pr.Match >= index {
			msgs = append(msgs, &raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), To: new(id),
				From: new(n.cfg.ID), Term: new(st.HardState.GetTerm()), Commit: new(index)})
		}
	}
	return msgs
}

// formerMember is a node that this node saw removed: the index of the change and its address.
type formerMember struct {
	removedAt uint64
	addr      string
}

// recordFormersLocked notes the members that were in before and are not in cs, and forgets
// any former member that cs takes back. n.mu must be held (n.addrs still holds the removed).
func (n *Node) recordFormersLocked(before map[uint64]bool, cs *raftpb.ConfState, index uint64) {
	old := map[uint64]formerMember{}
	if f := n.formers.Load(); f != nil {
		old = *f
	}
	next := make(map[uint64]formerMember, len(old)+1)
	for id, fm := range old {
		if !isMember(cs, id) {
			next[id] = fm
		}
	}
	for id := range before {
		if id != n.cfg.ID && !isMember(cs, id) {
			next[id] = formerMember{removedAt: index, addr: n.addrs[id]}
		}
	}
	if len(next) == 0 && len(old) == 0 {
		return
	}
	n.formers.Store(&next)
}

// formerDescs lists the former members for a snapshot description, by ID.
func (n *Node) formerDescs() []formerDesc {
	f := n.formers.Load()
	if f == nil {
		return nil
	}
	out := make([]formerDesc, 0, len(*f))
	for id, fm := range *f {
		out = append(out, formerDesc{ID: id, RemovedAt: fm.removedAt, Addr: fm.addr})
	}
	slices.SortFunc(out, func(a, b formerDesc) int { return cmpU64(a.ID, b.ID) })
	return out
}

// mergeFormers adds the former members of a snapshot to those this node knows, and forgets
// every one that cs (the configuration now in force) holds: a snapshot can bring a member
// back that this node saw removed, without the conf change that did it.
func (n *Node) mergeFormers(descs []formerDesc, cs *raftpb.ConfState) {
	next := map[uint64]formerMember{}
	if f := n.formers.Load(); f != nil {
		maps.Copy(next, *f)
	}
	for _, d := range descs {
		if d.ID != n.cfg.ID {
			if _, known := next[d.ID]; !known {
				next[d.ID] = formerMember{removedAt: d.RemovedAt, addr: d.Addr}
			}
		}
	}
	for id := range next {
		if isMember(cs, id) {
			delete(next, id)
		}
	}
	n.formers.Store(&next)
}

// noticeFormer tells a removed member of its removal when removalNotices could not (its
// acknowledgement of the removal came after the leader applied it, it was cut off then, or
// it was down and comes back with an older log). It acts on a message from the member that
// shows how far its log matches this leader's:
//   - an answer to this leader's appends (same term): an acknowledgement up to some index,
//     or a rejection whose hint names an entry of the member's log (index and term);
//   - a (pre-)vote request whose last entry matches this node's log at that index: by the
//     log matching property the member's log equals this node's up to there.
//
// If the member holds the removal entry, it gets the heartbeat raft itself would send, with
// the removal as commit index. If not, it gets the committed entries it lacks up to the
// removal (1 MiB per message, the next part when it acknowledges), as raft's append would
// carry them, with their own commit index. A removed voter that hears no leader asks for
// votes every election timeout, so it learns within one of coming back; a learner asks
// for nothing, and learns from the answer to the leader's probe (probeFormers). One whose
// log does not match, or which needs entries this node has compacted, is not told:
// committing an index it does not hold would corrupt its log. It waits for an operator, as
// its status says.
func (n *Node) noticeFormer(m *raftpb.Message, fm formerMember) {
	st := n.raft.Status()
	term := st.HardState.GetTerm()
	if st.RaftState != raft.StateLeader || fm.addr == "" {
		return
	}
	var held uint64 // the member's log matches this node's up to here
	switch m.GetType() {
	case raftpb.MsgAppResp:
		if m.GetTerm() != term {
			return
		}
		held = m.GetIndex()
		if m.GetReject() {
			hint, hintTerm := m.GetRejectHint(), m.GetLogTerm()
			if t, err := n.storage.Term(hint); err != nil || t != hintTerm {
				// Not a match: probe the last entry here that may match, as raft's
				// leader does with such a hint.
				if idx, t, ok := n.lastEntryWithTermAtMost(hint, hintTerm); ok {
					n.sendToFormer(m.GetFrom(), fm, n.formerProbe(m.GetFrom(), term, idx, t))
				} else {
					n.sendRemovalNotice(m.GetFrom(), fm, term)
				}
				return
			}
			held = hint
		}
	case raftpb.MsgPreVote, raftpb.MsgVote:
		t, err := n.storage.Term(m.GetIndex())
		if err != nil || t != m.GetLogTerm() {
			return
		}
		held = m.GetIndex()
	default:
		return
	}
	id := m.GetFrom()
	msg := &raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), To: new(id), From: new(n.cfg.ID),
		Term: new(term), Commit: new(fm.removedAt)}
	if held < fm.removedAt {
		prevTerm, err := n.storage.Term(held)
		if err != nil {
			n.sendRemovalNotice(id, fm, term) // compacted
			return
		}
		ents, err := n.storage.Entries(held+1, fm.removedAt+1, 1<<20)
		if err != nil || len(ents) == 0 {
			n.sendRemovalNotice(id, fm, term)
			return
		}
		msg = &raftpb.Message{Type: raftpb.MsgApp.Enum(), To: new(id), From: new(n.cfg.ID),
			Term: new(term), Index: new(held), LogTerm: new(prevTerm), Entries: ents,
			Commit: new(ents[len(ents)-1].GetIndex())}
	}
	if n.sendToFormer(id, fm, msg) {
		n.log.Info("telling a removed member that it was removed", "member", id, "index", fm.removedAt,
			"matched", held, "sent", msg.GetType())
	}
}

// lastEntryWithTermAtMost finds the last entry of this node's log at or before index whose
// term is at most term: the last place where a log whose entry at index has that term may
// match this one (terms only grow along a log).
func (n *Node) lastEntryWithTermAtMost(index, term uint64) (uint64, uint64, bool) {
	first, err := n.storage.FirstIndex()
	if err != nil {
		return 0, 0, false
	}
	for i := index; i+1 >= first; i-- { // the term of first-1 is the snapshot's
		t, err := n.storage.Term(i)
		if err != nil {
			return 0, 0, false
		}
		if t <= term {
			return i, t, true
		}
		if i == 0 {
			break
		}
	}
	return 0, 0, false
}

// formerProbe is an empty append at index (whose term here is logTerm) with no commit
// index: a member that holds that entry acknowledges it, one that does not rejects it with
// a hint, and either answer reaches noticeFormer. It commits nothing on the member.
func (n *Node) formerProbe(id, term, index, logTerm uint64) *raftpb.Message {
	return &raftpb.Message{Type: raftpb.MsgApp.Enum(), To: new(id), From: new(n.cfg.ID),
		Term: new(term), Index: new(index), LogTerm: new(logTerm), Commit: new(uint64(0))}
}

// probeFormers sends each member this leader saw removed an empty append at its removal
// entry, first one retry interval after noticing it and then less and less often, up to
// maxFormerProbeEvery apart. A removed member that believes it is a learner sends the
// leader nothing of its own accord; its answer to the probe lets noticeFormer tell it. A
// member that stopped for good costs a failed dial per probe. probes is the caller's
// schedule (manageMembers owns it).
func (n *Node) probeFormers(probes map[uint64]*probeSchedule, now time.Time) {
	var formers map[uint64]formerMember
	if f := n.formers.Load(); f != nil {
		formers = *f
	}
	for id := range probes {
		if _, ok := formers[id]; !ok {
			delete(probes, id)
		}
	}
	st := n.raft.Status()
	if st.RaftState != raft.StateLeader {
		return
	}
	for id, fm := range formers {
		p := probes[id]
		if p == nil {
			probes[id] = &probeSchedule{next: now.Add(n.retryEvery()), every: n.retryEvery()}
			continue
		}
		if now.Before(p.next) {
			continue
		}
		p.every = min(2*p.every, maxFormerProbeEvery*n.retryEvery())
		p.next = now.Add(p.every)
		logTerm, err := n.storage.Term(fm.removedAt)
		if err != nil {
			// Compacted: the member cannot be sent the entries it may lack. It may not
			// even be there; the notice costs as little as a probe.
			n.sendRemovalNotice(id, fm, st.HardState.GetTerm())
			continue
		}
		if n.sendToFormer(id, fm, n.formerProbe(id, st.HardState.GetTerm(), fm.removedAt, logTerm)) {
			n.log.Debug("probing a removed member", "member", id, "index", fm.removedAt, "next", p.every)
		}
	}
}

// maxFormerProbeEvery bounds the interval between probes of a former member, in retry
// intervals (2 election timeouts each: a minute with the default timings).
const maxFormerProbeEvery = 30

// probeSchedule is when a former member is probed next, and the interval after that.
type probeSchedule struct {
	next  time.Time
	every time.Duration
}

// removalNoticeContext marks a heartbeat as a removal notice (receiveRemovalNotice).
var removalNoticeContext = []byte("tandem: removed")

// sendRemovalNotice tells a former member out of band that the configuration change at
// fm.removedAt removed it: a heartbeat marked by its context, with the removal's index,
// that raft never sees. The leader sends it to a member that lacks entries it has
// compacted (so it can neither be sent them nor a snapshot, which would have to hold it).
func (n *Node) sendRemovalNotice(id uint64, fm formerMember, term uint64) {
	msg := &raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), To: new(id), From: new(n.cfg.ID),
		Term: new(term), Index: new(fm.removedAt), Commit: new(uint64(0)), Context: removalNoticeContext}
	if n.sendToFormer(id, fm, msg) {
		n.log.Info("telling a removed member that it was removed, by a notice (the log it lacks is compacted)",
			"member", id, "index", fm.removedAt)
	}
}

// sendToFormer sends msg to a former member, unless it has been taken back since or this
// node stopped; it reports whether it sent it.
func (n *Node) sendToFormer(id uint64, fm formerMember, msg *raftpb.Message) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped || fm.addr == "" {
		return false
	}
	if _, member := n.addrs[id]; member {
		return false // taken back since the caller looked
	}
	// The transport holds no peer for a former member: add it for this one message; the
	// retired peer still delivers what it queued.
	n.cfg.Transport.SetPeer(id, fm.addr)
	n.cfg.Transport.Send([]*raftpb.Message{msg})
	n.cfg.Transport.RemovePeer(id)
	return true
}

// setConfLocked installs a new configuration and brings the transport's peers in line.
func (n *Node) setConfLocked(cs *raftpb.ConfState) {
	n.conf = cloneConfState(cs)
	in := map[uint64]bool{}
	for _, id := range append(append([]uint64{}, cs.GetVoters()...), cs.GetLearners()...) {
		in[id] = true
	}
	for _, id := range append(append([]uint64{}, cs.GetVotersOutgoing()...), cs.GetLearnersNext()...) {
		in[id] = true
	}
	for id, addr := range n.addrs {
		switch {
		case id == n.cfg.ID:
		case in[id]:
			n.cfg.Transport.SetPeer(id, addr)
		default:
			delete(n.addrs, id)
			n.cfg.Transport.RemovePeer(id)
		}
	}
	if !in[n.cfg.ID] && len(in) > 0 {
		// A joining node replays the configurations from before it was added; a removal is
		// reported where it is applied (applyConfChange).
		n.log.Debug("this node is not in this configuration", "voters", cs.GetVoters(), "learners", cs.GetLearners())
	}
	n.notifyLocked()
}

func cloneConfState(cs *raftpb.ConfState) *raftpb.ConfState {
	if cs == nil {
		return &raftpb.ConfState{}
	}
	return proto.Clone(cs).(*raftpb.ConfState)
}

// takeSnapshot asks the state machine for a copy of its state at index (everything applied
// so far), describes it in a raft snapshot, persists that, and compacts the in-memory log.
func (n *Node) takeSnapshot(index uint64) error {
	term, err := n.storage.Term(index)
	if err != nil {
		return err
	}
	dir := n.dbDir(index)
	files, err := n.writeLocalSnapshot(dir, n.cfg.StateMachine.SaveSnapshot)
	if err != nil {
		return err
	}
	n.mu.Lock()
	desc := snapshotDesc{Index: index, Term: term, Members: n.membersLocked(), Files: files, Formers: n.formerDescs()}
	n.mu.Unlock()
	data, err := json.Marshal(desc)
	if err != nil {
		return err
	}
	s, err := n.storage.CreateSnapshot(index, n.ap.conf, data)
	if errors.Is(err, raft.ErrSnapOutOfDate) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := n.saveSnapshot(s); err != nil {
		n.fail("persist snapshot: " + err.Error())
		return err
	}
	n.ap.lastSnap, n.ap.snapBytes = index, 0
	if compact := n.compactPoint(index); compact > 0 {
		if first, _ := n.storage.FirstIndex(); compact > first {
			if err := n.storage.Compact(compact); err != nil && !errors.Is(err, raft.ErrCompacted) {
				return err
			}
		}
	}
	n.log.Info("snapshot taken", "index", index, "term", term, "files", len(files))
	n.gcSnapshots()
	return nil
}

// installSnapshot replaces the state machine's state with a snapshot received from the leader
// (files in Dir/snap/recv-<index>). A copy is kept as Dir/snap/db-<index> so that this node
// can send the snapshot on when it leads.
func (n *Node) installSnapshot(s *raftpb.Snapshot) {
	index, term := s.GetMetadata().GetIndex(), s.GetMetadata().GetTerm()
	recv := n.recvDir(index)
	desc, err := parseSnapshotDesc(s.GetData())
	if err == nil {
		err = checkSnapshotFiles(recv, desc.Files)
	}
	if err == nil {
		_, err = n.writeLocalSnapshot(n.dbDir(index), func(dst string) error { return copyFiles(recv, dst) })
	}
	diverged := n.isDiverged()
	if err == nil && !diverged {
		err = n.cfg.StateMachine.RestoreSnapshot(recv, index)
	}
	if err != nil {
		n.fail(fmt.Sprintf("install snapshot %d: %v", index, err))
		diverged = true
	}
	n.ap.index, n.ap.lastSnap, n.ap.snapBytes = index, index, 0
	n.removeStaleReceives()
	n.ap.conf = cloneConfState(s.GetMetadata().GetConfState())

	n.mu.Lock()
	if !diverged {
		n.applied, n.appliedTerm = index, term
	}
	if desc != nil {
		for _, m := range desc.Members {
			if m.ID != n.cfg.ID {
				n.addrs[m.ID] = m.Addr
			}
		}
	}
	n.setConfLocked(n.ap.conf)
	if desc != nil {
		n.mergeFormers(desc.Formers, n.ap.conf)
	}
	n.mu.Unlock()
	n.log.Info("snapshot installed", "index", index, "term", term)
	// Safe before the raft loop records this snapshot: clean-up keeps the newest two db dirs
	// (this one and the previous newest) and releases WAL segments only up to the older of
	// the two newest snap files already recorded.
	n.gcSnapshots()
}

// compactPoint returns the index to compact the in-memory log to after a snapshot at index
// (raft's MemoryStorage.Compact(i) drops the entries up to i): at most CompactKeep entries
// stay before the snapshot's end, and no more than CompactKeepBytes of them.
func (n *Node) compactPoint(index uint64) uint64 {
	first, err := n.storage.FirstIndex()
	if err != nil {
		return 0
	}
	compact := first - 1
	if index > n.cfg.CompactKeep && index-n.cfg.CompactKeep > compact {
		compact = index - n.cfg.CompactKeep
	}
	ents, err := n.storage.Entries(compact+1, index+1, math.MaxUint64)
	if err != nil {
		return compact
	}
	var kept uint64
	for i := len(ents) - 1; i >= 0; i-- {
		kept += uint64(len(ents[i].GetData()))
		if kept > n.cfg.CompactKeepBytes {
			return ents[i].GetIndex() // it and everything before it go
		}
	}
	return compact
}
