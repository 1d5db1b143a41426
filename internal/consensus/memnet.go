package consensus

import (
	"path/filepath"
	"sync"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// MemNetwork is an in-process network for tests: messages are serialized and delivered
// through bounded inboxes, snapshot files are copied from the sender's snapshot directory to
// the receiver's, and links can be cut and healed.
type MemNetwork struct {
	mu       sync.Mutex
	nodes    map[uint64]*memTransport
	cut      map[[2]uint64]bool
	isolated map[uint64]bool
	drop     func(*raftpb.Message) bool
}

// NewMemNetwork returns an empty network.
func NewMemNetwork() *MemNetwork {
	return &MemNetwork{
		nodes:    map[uint64]*memTransport{},
		cut:      map[[2]uint64]bool{},
		isolated: map[uint64]bool{},
	}
}

// Transport returns a new transport for node id (one per Node start).
func (nw *MemNetwork) Transport(id uint64) Transport {
	return &memTransport{nw: nw, id: id, inbox: make(chan *raftpb.Message, 4096), stopc: make(chan struct{})}
}

// Isolate drops every message to and from id until Heal.
func (nw *MemNetwork) Isolate(id uint64) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.isolated[id] = true
}

// Cut drops messages between a and b, both ways, until Heal.
func (nw *MemNetwork) Cut(a, b uint64) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.cut[[2]uint64{a, b}] = true
	nw.cut[[2]uint64{b, a}] = true
}

// Drop drops every message for which f returns true, until Heal. f runs on the sender's
// goroutine and must not block.
func (nw *MemNetwork) Drop(f func(*raftpb.Message) bool) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.drop = f
}

// Heal restores every link.
func (nw *MemNetwork) Heal() {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	clear(nw.cut)
	clear(nw.isolated)
	nw.drop = nil
}

// route returns the destination transport if m can go from its sender to its receiver now.
func (nw *MemNetwork) route(m *raftpb.Message) *memTransport {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	from, to := m.GetFrom(), m.GetTo()
	if nw.isolated[from] || nw.isolated[to] || nw.cut[[2]uint64{from, to}] || (nw.drop != nil && nw.drop(m)) {
		return nil
	}
	return nw.nodes[to]
}

type memTransport struct {
	nw      *MemNetwork
	id      uint64
	deliver func(*raftpb.Message) error
	snaps   SnapshotStore
	inbox   chan *raftpb.Message
	stopc   chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
	mu      sync.Mutex // guards stopped and wg.Add against Stop
	stopped bool
}

func (t *memTransport) Start(self uint64, deliver func(*raftpb.Message) error, snaps SnapshotStore) error {
	t.id, t.deliver, t.snaps = self, deliver, snaps
	t.nw.mu.Lock()
	t.nw.nodes[self] = t
	t.nw.mu.Unlock()
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		for {
			select {
			case m := <-t.inbox:
				_ = t.deliver(m)
			case <-t.stopc:
				return
			}
		}
	}()
	return nil
}

func (t *memTransport) Send(msgs []*raftpb.Message) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	for _, m := range msgs {
		dst := t.nw.route(m)
		if dst == nil {
			if m.GetType() == raftpb.MsgSnap {
				t.snaps.ReportSnapshot(m.GetTo(), raft.SnapshotFailure)
			}
			t.snaps.ReportUnreachable(m.GetTo())
			continue
		}
		b, err := proto.Marshal(m)
		if err != nil {
			continue
		}
		cp := &raftpb.Message{}
		if err := proto.Unmarshal(b, cp); err != nil {
			continue
		}
		if cp.GetType() == raftpb.MsgSnap {
			t.wg.Add(1)
			go t.sendSnapshot(dst, cp)
			continue
		}
		select {
		case dst.inbox <- cp:
		default:
			t.snaps.ReportUnreachable(m.GetTo())
		}
	}
}

// sendSnapshot copies the snapshot's files into the receiver's directory, then delivers.
func (t *memTransport) sendSnapshot(dst *memTransport, m *raftpb.Message) {
	defer t.wg.Done()
	status := raft.SnapshotFailure
	defer func() { t.snaps.ReportSnapshot(m.GetTo(), status) }()
	index := m.GetSnapshot().GetMetadata().GetIndex()
	dir, files, release, err := t.snaps.OpenSnapshot(index)
	if err != nil {
		return
	}
	defer release()
	rdir, err := dst.snaps.ReceiveDir(index)
	if err != nil {
		return
	}
	for _, name := range files {
		select {
		case <-t.stopc:
			return
		default:
		}
		if err := copyFile(filepath.Join(dir, name), filepath.Join(rdir, name)); err != nil {
			return
		}
	}
	if syncDir(rdir) != nil || dst.deliver(m) != nil {
		return
	}
	status = raft.SnapshotFinish
}

func (t *memTransport) SetPeer(uint64, string) {}
func (t *memTransport) RemovePeer(uint64)      {}

func (t *memTransport) Stop() {
	t.once.Do(func() {
		t.mu.Lock()
		t.stopped = true
		t.mu.Unlock()
		t.nw.mu.Lock()
		if t.nw.nodes[t.id] == t {
			delete(t.nw.nodes, t.id)
		}
		t.nw.mu.Unlock()
		close(t.stopc)
		t.wg.Wait()
	})
}
