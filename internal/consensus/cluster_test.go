package consensus

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// testCluster runs nodes in one process over a MemNetwork (or TCP, see tcp_test.go).
type testCluster struct {
	t       *testing.T
	nw      *MemNetwork
	root    string
	mu      sync.Mutex
	nodes   map[uint64]*Node
	sms     map[uint64]*listSM
	tweak   func(*Config)
	newTr   func(id uint64) Transport
	addr    func(id uint64) string
	stopped map[uint64]bool
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("CONSENSUS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

func newMemCluster(t *testing.T, tweak func(*Config)) *testCluster {
	nw := NewMemNetwork()
	c := &testCluster{
		t: t, nw: nw, root: t.TempDir(),
		nodes: map[uint64]*Node{}, sms: map[uint64]*listSM{}, stopped: map[uint64]bool{},
		tweak: tweak,
		newTr: func(id uint64) Transport { return nw.Transport(id) },
		addr:  func(id uint64) string { return fmt.Sprintf("mem-%d", id) },
	}
	t.Cleanup(c.stopAll)
	return c
}

func (c *testCluster) config(id uint64, bootstrap bool) Config {
	sm, err := openListSM(filepath.Join(c.root, fmt.Sprint(id), "sm"))
	if err != nil {
		c.t.Fatal(err)
	}
	cfg := Config{
		ID: id, Addr: c.addr(id), Dir: filepath.Join(c.root, fmt.Sprint(id), "raft"),
		Bootstrap: bootstrap, StateMachine: sm, Transport: c.newTr(id),
		TickInterval: 10 * time.Millisecond, ElectionTicks: 10, HeartbeatTicks: 1,
		SnapshotEvery: 10000, CatchUpMargin: 10, Logger: testLogger(c.t).With("node", id),
		// Zero-filling writes 64 MB per node start; the tests that need it turn it on.
		PreallocateWAL: true,
	}
	if c.tweak != nil {
		c.tweak(&cfg)
	}
	return cfg
}

// start starts (or restarts from its directory) node id.
func (c *testCluster) start(id uint64, bootstrap bool) *Node {
	c.t.Helper()
	cfg := c.config(id, bootstrap)
	n, err := Start(cfg)
	if err != nil {
		c.t.Fatalf("start node %d: %v", id, err)
	}
	c.mu.Lock()
	c.nodes[id], c.sms[id] = n, cfg.StateMachine.(*listSM)
	delete(c.stopped, id)
	c.mu.Unlock()
	return n
}

func (c *testCluster) stop(id uint64) {
	c.t.Helper()
	c.mu.Lock()
	n := c.nodes[id]
	c.stopped[id] = true
	c.mu.Unlock()
	if err := n.Stop(); err != nil {
		c.t.Errorf("stop node %d: %v", id, err)
	}
}

func (c *testCluster) stopAll() {
	c.mu.Lock()
	var ns []*Node
	for id, n := range c.nodes {
		if !c.stopped[id] {
			ns = append(ns, n)
			c.stopped[id] = true
		}
	}
	c.mu.Unlock()
	for _, n := range ns {
		n.Stop()
	}
}

func (c *testCluster) node(id uint64) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id]
}

func (c *testCluster) sm(id uint64) *listSM {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sms[id]
}

func (c *testCluster) running() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []uint64
	for id := range c.nodes {
		if !c.stopped[id] {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// leader waits until one of ids is leader and LeaderReady, and returns it.
func (c *testCluster) leader(ids ...uint64) uint64 {
	c.t.Helper()
	if len(ids) == 0 {
		ids = c.running()
	}
	var lead uint64
	waitFor(c.t, 10*time.Second, "a ready leader", func() bool {
		for _, id := range ids {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			_, err := c.node(id).LeaderReady(ctx)
			cancel()
			if err == nil {
				lead = id
				return true
			}
		}
		return false
	})
	return lead
}

// bootstrap starts node 1 alone, then adds 2..size and waits until all are voters.
func (c *testCluster) bootstrap(size int) {
	c.t.Helper()
	c.start(1, true)
	c.leader(1)
	for id := uint64(2); id <= uint64(size); id++ {
		c.start(id, false)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := c.node(c.leader()).AddMember(ctx, id, c.addr(id)); err != nil {
			c.t.Fatalf("add member %d: %v", id, err)
		}
		cancel()
		c.waitVoter(id)
	}
}

func (c *testCluster) waitVoter(id uint64) {
	c.t.Helper()
	waitFor(c.t, 10*time.Second, fmt.Sprintf("node %d to become a voter", id), func() bool {
		for _, m := range c.node(c.leader()).Status().Members {
			if m.ID == id {
				return m.Role == RoleVoter
			}
		}
		return false
	})
}

// propose proposes data on whichever node leads and waits until that leader applied it,
// proposing again if leadership changed first and the new leader does not hold it. (A
// proposal raft accepted is lost if its leader loses office before replicating it; under
// the race detector on two cores, heartbeats late enough to cause an election happen.)
// It also returns once the leader's state machine has failed (a test's poisoned entry).
func (c *testCluster) propose(data string) {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		lead, term := c.readyLeader()
		if slices.Contains(c.sm(lead).data(), data) {
			return // proposed under an earlier leader and kept
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.node(lead).Propose(ctx, []byte(data))
		cancel()
		if err == nil {
			for time.Now().Before(deadline) {
				st := c.node(lead).Status()
				if slices.Contains(c.sm(lead).data(), data) || !st.Healthy {
					return
				}
				if st.Term != term || st.Leader != lead {
					break // leadership changed: ask the next leader
				}
				time.Sleep(time.Millisecond)
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("propose %q: not applied on a leader within 20s (last error: %v)", data, err)
		}
	}
}

// readyLeader is leader, with the term in which it is ready.
func (c *testCluster) readyLeader() (uint64, uint64) {
	c.t.Helper()
	for {
		lead := c.leader()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		term, err := c.node(lead).LeaderReady(ctx)
		cancel()
		if err == nil {
			return lead, term
		}
	}
}

// waitData waits until every given node's state machine holds want (as a prefix-free
// sequence of data entries) and checks that all of them saw the same log without gaps.
func (c *testCluster) waitConverged(want []string, ids ...uint64) {
	c.t.Helper()
	if len(ids) == 0 {
		ids = c.running()
	}
	for _, id := range ids {
		waitFor(c.t, 15*time.Second, fmt.Sprintf("node %d to apply %d entries", id, len(want)), func() bool {
			return len(c.sm(id).data()) >= len(want)
		})
	}
	ref := c.sm(ids[0]).entries()
	for _, id := range ids {
		sm := c.sm(id)
		if p := sm.problems(); len(p) > 0 {
			c.t.Errorf("node %d state machine saw gaps: %v", id, p)
		}
		if got := sm.data(); !slices.Equal(got[:len(want)], want) {
			c.t.Errorf("node %d data = %v..., want %v...", id, head(got), head(want))
		}
		ents := sm.entries()
		n := min(len(ents), len(ref))
		for i := range n {
			if ents[i].Index != ref[i].Index || ents[i].Term != ref[i].Term || string(ents[i].Data) != string(ref[i].Data) {
				c.t.Fatalf("node %d entry %d = %+v, node %d has %+v", id, i, ents[i], ids[0], ref[i])
			}
		}
		for i, e := range ents {
			if e.Index != uint64(i+1) {
				c.t.Fatalf("node %d: entry #%d has index %d", id, i, e.Index)
			}
		}
	}
}

func head(s []string) []string { return s[:min(len(s), 5)] }

func seq(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s-%d", prefix, i))
	}
	return out
}

func (c *testCluster) proposeAll(data []string) {
	c.t.Helper()
	for _, d := range data {
		c.propose(d)
	}
}
