package consensus

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// newTCPCluster is a testCluster whose nodes talk TCPTransport over 127.0.0.1, each behind
// a listener that reads the preamble and hands the connection to the node's transport.
func newTCPCluster(t *testing.T, tweak func(*Config)) *testCluster {
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // runs last: after the nodes (and their transports) stopped
	c := newMemCluster(t, tweak)
	var mu sync.Mutex
	listeners := map[uint64]net.Listener{}
	transports := map[uint64]*TCPTransport{}
	t.Cleanup(func() { // runs first
		mu.Lock()
		defer mu.Unlock()
		for _, l := range listeners {
			l.Close()
		}
	})
	c.addr = func(id uint64) string {
		mu.Lock()
		defer mu.Unlock()
		if l, ok := listeners[id]; ok {
			return l.Addr().String()
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		listeners[id] = l
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				conn, err := l.Accept()
				if err != nil {
					return
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					var pre [4]byte
					conn.SetReadDeadline(time.Now().Add(5 * time.Second))
					if _, err := io.ReadFull(conn, pre[:]); err != nil || string(pre[:]) != Preamble {
						conn.Close()
						return
					}
					mu.Lock()
					tr := transports[id]
					mu.Unlock()
					if tr == nil {
						conn.Close()
						return
					}
					tr.ServeConn(conn)
				}()
			}
		}()
		return l.Addr().String()
	}
	c.newTr = func(id uint64) Transport {
		tr := NewTCPTransport(TCPConfig{Addr: c.addr(id), Logger: testLogger(t).With("node", id)})
		mu.Lock()
		transports[id] = tr
		mu.Unlock()
		return tr
	}
	return c
}

func TestTCPSnapshotCatchUp(t *testing.T) {
	c := newTCPCluster(t, func(cfg *Config) {
		cfg.SnapshotEvery = 20
		cfg.CompactKeep = 5
		cfg.StateMachine.(*listSM).blob = 3 << 20
	})
	c.bootstrap(2)
	want := seq("a", 0, 60)
	c.proposeAll(want)
	c.waitConverged(want)

	// A new node joins after compaction: it can only catch up through a snapshot, whose
	// files are streamed over its own connection.
	c.start(3, false)
	ctx := t.Context()
	if err := c.node(c.leader()).AddMember(ctx, 3, c.addr(3)); err != nil {
		t.Fatal(err)
	}
	c.waitVoter(3)
	c.waitConverged(want)
	if c.sm(3).restoreCount() == 0 {
		t.Fatal("new node caught up without a snapshot")
	}
	snapDir := filepath.Join(c.root, "3", "raft", "snap")
	ents, err := os.ReadDir(snapDir)
	if err != nil {
		t.Fatal(err)
	}
	var dbs int
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "recv-") {
			t.Errorf("receive directory left behind: %s", e.Name())
		}
		if strings.HasPrefix(e.Name(), "db-") {
			dbs++
			if st, err := os.Stat(filepath.Join(snapDir, e.Name(), "blob")); err != nil || st.Size() != 3<<20 {
				t.Errorf("kept snapshot copy %s lacks the streamed blob: %v", e.Name(), err)
			}
		}
	}
	if dbs == 0 {
		t.Error("installed snapshot not kept for serving")
	}

	// A follower down while the log moves on catches up again after restart (redial path).
	lead := c.leader()
	down := uint64(3)
	if down == lead {
		down = 2
	}
	c.stop(down)
	more := seq("b", 0, 40)
	c.proposeAll(more)
	want = append(want, more...)
	c.start(down, false)
	c.waitConverged(want)

	// Leader failover over TCP.
	old := c.leader()
	c.stop(old)
	c.proposeAll(seq("c", 0, 5))
	want = append(want, seq("c", 0, 5)...)
	c.waitConverged(want)
}
