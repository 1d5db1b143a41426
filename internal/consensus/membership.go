package consensus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
)

// retryEvery is how long a membership operation waits for its effect before proposing again
// (raft drops a conf change while another one is pending, without telling).
func (n *Node) retryEvery() time.Duration {
	return 2 * time.Duration(n.cfg.ElectionTicks) * n.cfg.TickInterval
}

func (n *Node) roleLocked(id uint64) (Role, bool) {
	for _, m := range n.membersLocked() {
		if m.ID == id {
			return m.Role, true
		}
	}
	return "", false
}

// changeMembership proposes cc until done reports true (checked under n.mu on every state
// change), or ctx ends. Only the leader proposes.
func (n *Node) changeMembership(ctx context.Context, cc func() *raftpb.ConfChangeV2, done func() (bool, error)) error {
	for {
		n.mu.Lock()
		ok, err := done()
		if err == nil && !ok {
			err = n.leaderErrLocked()
		}
		n.mu.Unlock()
		if ok || err != nil {
			return err
		}
		if err := n.raft.ProposeConfChange(ctx, cc()); err != nil && !errors.Is(err, raft.ErrProposalDropped) {
			return n.raftErr(err)
		}
		if ok, err := n.awaitChange(ctx, done); ok || err != nil {
			return err
		}
	}
}

// awaitChange checks cond (under n.mu) on every state change of the node for up to
// retryEvery. It returns true once cond holds, false when the time is up, or the error of
// cond, ctx or a stopped node.
func (n *Node) awaitChange(ctx context.Context, cond func() (bool, error)) (bool, error) {
	deadline := time.NewTimer(n.retryEvery())
	defer deadline.Stop()
	for {
		n.mu.Lock()
		ok, err := cond()
		ch := n.changed
		n.mu.Unlock()
		if ok || err != nil {
			return ok, err
		}
		select {
		case <-ch:
		case <-deadline.C:
			return false, nil
		case <-ctx.Done():
			return false, ctx.Err()
		case <-n.stopc:
			return false, ErrStopped
		}
	}
}

func confChange(typ raftpb.ConfChangeType, id uint64, addr string) *raftpb.ConfChangeV2 {
	ctx, _ := json.Marshal(memberContext{ID: id, Addr: addr})
	return &raftpb.ConfChangeV2{
		Changes: []*raftpb.ConfChangeSingle{{Type: typ.Enum(), NodeId: new(id)}},
		Context: ctx,
	}
}

// AddMember adds id as a learner. The leader promotes it to voter once it has caught up
// (Match >= commit - CatchUpMargin). Returns when the learner is in the configuration; at
// once if it is there already at addr (a join whose answer was lost, asked again).
//
// It refuses (ErrMembership) an ID that is a member at another address, an address that is
// another member's, and an ID that was removed while its removal is still in the log: a node
// with that ID would replay its predecessor's removal while catching up and stop, leaving
// the cluster a voter short (etcd refuses removed IDs for good).
func (n *Node) AddMember(ctx context.Context, id uint64, addr string) error {
	if id == 0 || addr == "" {
		return errors.New("consensus: AddMember needs an id and an address")
	}
	n.mu.Lock()
	err := n.checkNewMemberLocked(id, addr)
	n.mu.Unlock()
	if err != nil {
		return err
	}
	return n.changeMembership(ctx,
		func() *raftpb.ConfChangeV2 { return confChange(raftpb.ConfChangeAddLearnerNode, id, addr) },
		func() (bool, error) {
			if _, ok := n.roleLocked(id); !ok {
				return false, nil
			}
			if a := n.addrOfLocked(id); a != addr {
				return false, fmt.Errorf("%w: node %d is already a member at %s", ErrMembership, id, a)
			}
			return true, nil
		})
}

// checkNewMemberLocked refuses what AddMember cannot do (see there).
func (n *Node) checkNewMemberLocked(id uint64, addr string) error {
	for _, m := range n.membersLocked() {
		a := n.addrOfLocked(m.ID)
		switch {
		case m.ID == id && a != addr:
			return fmt.Errorf("%w: node %d is already a member at %s", ErrMembership, id, a)
		case m.ID != id && a == addr:
			return fmt.Errorf("%w: address %s is already node %d's", ErrMembership, addr, m.ID)
		}
	}
	if f := n.formers.Load(); f != nil {
		if fm, ok := (*f)[id]; ok {
			return fmt.Errorf("%w: node %d was removed from the cluster (at index %d); a removed node cannot join again under its old ID: give it a new ID and an empty data directory",
				ErrMembership, id, fm.removedAt)
		}
	}
	return nil
}

// addrOfLocked is the address of member id as the configuration knows it.
func (n *Node) addrOfLocked(id uint64) string {
	if id == n.cfg.ID {
		return n.cfg.Addr
	}
	return n.addrs[id]
}

// RemoveMember removes id from the configuration and returns once that is applied here
// (at once if it was removed already: a removal whose answer was lost, asked again).
// Removing the leader itself works (it steps down); transferring leadership first is kinder.
func (n *Node) RemoveMember(ctx context.Context, id uint64) error {
	n.mu.Lock()
	role, member := n.roleLocked(id)
	onlyVoter := n.onlyVoterLocked(id)
	n.mu.Unlock()
	if onlyVoter != nil {
		return onlyVoter
	}
	if member && role == RoleVoter {
		if err := n.checkQuorumAfterRemoval(ctx, id); err != nil {
			return err
		}
	}
	if !member {
		if f := n.formers.Load(); f != nil {
			if _, ok := (*f)[id]; ok {
				return nil
			}
		}
		return fmt.Errorf("%w: node %d is not a member", ErrMembership, id)
	}
	return n.changeMembership(ctx,
		func() *raftpb.ConfChangeV2 { return confChange(raftpb.ConfChangeRemoveNode, id, "") },
		func() (bool, error) {
			if _, ok := n.roleLocked(id); !ok {
				return true, nil
			}
			// Checked before every proposal: a concurrent removal may have left id alone
			// since (a review saw two at once propose no-voter changes until their timeout).
			return false, n.onlyVoterLocked(id)
		})
}

// onlyVoterLocked refuses removing id when it is the only voter: raft cannot run without
// one, and the entry would panic every node that applied it. n.mu must be held.
func (n *Node) onlyVoterLocked(id uint64) error {
	voters, isVoter := 0, false
	for _, m := range n.membersLocked() {
		if m.Role == RoleVoter {
			voters++
			isVoter = isVoter || m.ID == id
		}
	}
	if isVoter && voters == 1 {
		return fmt.Errorf("%w: node %d is the only voter; a cluster without voters can decide nothing (add another voter first, or stop the node)", ErrMembership, id)
	}
	return nil
}

// checkQuorumAfterRemoval refuses, on the leader, to remove voter id when the voters left
// would not hold a quorum of members that answer the leader: the cluster would take no
// writes until enough of them came back (a QA pass removed a live voter while another was
// down; etcd's strict reconfiguration check refuses the same). Elsewhere the leader
// decides. raft clears a follower's RecentActive every election timeout and sets it at its
// next answer (a heartbeat later), and a new leader starts with it clear: a failed check
// is looked at again every tick for two election timeouts before it refuses.
func (n *Node) checkQuorumAfterRemoval(ctx context.Context, id uint64) error {
	deadline := time.Now().Add(n.retryEvery())
	for {
		err := n.quorumAfterRemoval(id)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-time.After(n.cfg.TickInterval):
		case <-ctx.Done():
			return err
		case <-n.stopc:
			return ErrStopped
		}
	}
}

// quorumAfterRemoval is one look of checkQuorumAfterRemoval.
func (n *Node) quorumAfterRemoval(id uint64) error {
	st := n.raft.Status()
	if st.RaftState != raft.StateLeader {
		return nil
	}
	// A follower answers every heartbeat: one silent for two heartbeat intervals (and some
	// room for a loaded machine) does not answer now. raft's RecentActive would say so
	// only up to an election timeout later (a QA pass removed a live voter right after
	// another died, and the cluster lost its quorum).
	fresh := 2*time.Duration(n.cfg.HeartbeatTicks)*n.cfg.TickInterval + 50*time.Millisecond
	var left, answering []uint64
	for vid, pr := range st.Progress {
		if pr.IsLearner || vid == id {
			continue
		}
		left = append(left, vid)
		if vid == n.cfg.ID || pr.RecentActive && n.heardWithin(vid, fresh) {
			answering = append(answering, vid)
		}
	}
	if len(left) == 0 || len(answering) >= len(left)/2+1 {
		return nil
	}
	slices.Sort(left)
	slices.Sort(answering)
	return fmt.Errorf("%w: removing node %d would leave voters %v, of which only %v answer the leader: "+
		"the cluster would take no writes until more of them come back; bring them back first "+
		"(or retry in a moment if a leader was just elected)", ErrMembership, id, left, answering)
}

// TransferLeadership hands leadership to voter to (0: the voter with the highest Match)
// and waits until that node leads or ctx ends.
func (n *Node) TransferLeadership(ctx context.Context, to uint64) error {
	if err := n.leaderErr(); err != nil {
		return err
	}
	st := n.raft.Status()
	if to == 0 {
		var best uint64
		for id, pr := range st.Progress {
			if id == n.cfg.ID || pr.IsLearner {
				continue
			}
			if to == 0 || pr.Match > best || (pr.Match == best && id < to) {
				to, best = id, pr.Match
			}
		}
		if to == 0 {
			return errors.New("consensus: no other voter to transfer leadership to")
		}
	}
	if to == n.cfg.ID {
		return nil
	}
	n.mu.Lock()
	role, ok := n.roleLocked(to)
	n.mu.Unlock()
	if !ok || role != RoleVoter {
		return fmt.Errorf("%w: node %d is not a voter", ErrMembership, to)
	}
	for {
		n.raft.TransferLeadership(ctx, n.cfg.ID, to)
		if ok, err := n.awaitChange(ctx, func() (bool, error) { return n.leader == to, nil }); ok || err != nil {
			return err
		}
		if err := n.leaderErr(); err != nil {
			// Leadership went elsewhere; only the old leader can retry.
			return fmt.Errorf("consensus: transfer to %d did not complete: %w", to, err)
		}
	}
}

// manageMembers runs on every node; while this node leads it promotes caught-up learners,
// one conf change at a time, and probes the members it saw removed (probeFormers).
func (n *Node) manageMembers() {
	defer n.wg.Done()
	ticker := time.NewTicker(2 * n.cfg.TickInterval)
	defer ticker.Stop()
	var pending uint64
	var pendingAt time.Time
	probes := map[uint64]*probeSchedule{}
	for {
		select {
		case <-ticker.C:
		case <-n.stopc:
			return
		}
		if n.leaderErr() != nil {
			continue
		}
		st := n.raft.Status()
		if st.RaftState != raft.StateLeader {
			continue
		}
		n.probeFormers(probes, time.Now())
		if pending != 0 {
			n.mu.Lock()
			role, ok := n.roleLocked(pending)
			n.mu.Unlock()
			if ok && role == RoleLearner && time.Since(pendingAt) < n.retryEvery() {
				continue // wait for the promotion to apply
			}
			pending = 0
		}
		commit := st.HardState.GetCommit()
		for id, pr := range st.Progress {
			// Caught up: replicating steadily (it has answered), recently heard from, and
			// within the margin of the commit index.
			if !pr.IsLearner || pr.State != tracker.StateReplicate || !pr.RecentActive ||
				pr.Match == 0 || pr.Match+n.cfg.CatchUpMargin < commit {
				continue
			}
			n.mu.Lock()
			addr := n.addrs[id]
			n.mu.Unlock()
			ctx, cancel := context.WithTimeout(n.ctx, n.retryEvery())
			err := n.raft.ProposeConfChange(ctx, confChange(raftpb.ConfChangeAddNode, id, addr))
			cancel()
			if err != nil {
				n.log.Debug("promotion not proposed", "id", id, "err", err)
				break
			}
			n.log.Info("promoting caught-up learner to voter", "id", id, "match", pr.Match, "commit", commit)
			pending, pendingAt = id, time.Now()
			break
		}
	}
}
