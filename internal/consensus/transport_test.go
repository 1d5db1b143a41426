package consensus

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

func TestSnapshotFileStream(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	big := bytes.Repeat([]byte("0123456789abcdef"), 200000) // 3.2 MB
	if err := os.WriteFile(filepath.Join(src, "db1"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "empty"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := writeSnapshotFiles(&buf, src, []string{"db1", "empty"}); err != nil {
		t.Fatal(err)
	}
	stream := buf.Bytes()
	if err := readSnapshotFiles(bytes.NewReader(stream), dst); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dst, "db1"))
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("db1 round trip: %v, %d bytes", err, len(got))
	}
	if st, err := os.Stat(filepath.Join(dst, "empty")); err != nil || st.Size() != 0 {
		t.Fatalf("empty file: %v", err)
	}

	// A flipped byte fails the crc.
	bad := bytes.Clone(stream)
	bad[len(bad)/2] ^= 0xff
	err = readSnapshotFiles(bytes.NewReader(bad), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "crc") {
		t.Fatalf("corrupt stream: %v", err)
	}
	// A truncated stream fails.
	if err := readSnapshotFiles(bytes.NewReader(stream[:len(stream)-3]), t.TempDir()); err == nil {
		t.Fatal("truncated stream accepted")
	}
	// Names with a path are refused.
	for _, name := range []string{"../x", "a/b", "..", ""} {
		if validFileName(name) {
			t.Errorf("name %q accepted", name)
		}
	}
}

type fakeSnaps struct {
	mu          sync.Mutex
	unreachable int
}

func (f *fakeSnaps) OpenSnapshot(uint64) (string, []string, func(), error) {
	return "", nil, nil, os.ErrNotExist
}
func (f *fakeSnaps) ReceiveDir(uint64) (string, error) { return "", os.ErrNotExist }
func (f *fakeSnaps) ReportUnreachable(uint64) {
	f.mu.Lock()
	f.unreachable++
	f.mu.Unlock()
}
func (f *fakeSnaps) ReportSnapshot(uint64, raft.SnapshotStatus) {}

// A peer that accepts but never reads must not keep Stop waiting, and a full queue drops
// (and reports) instead of blocking Send.
func TestTCPTransportStopsWithStalledPeer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	}()

	snaps := &fakeSnaps{}
	tr := NewTCPTransport(TCPConfig{Addr: "127.0.0.1:1", QueueSize: 64, IOTimeout: time.Minute})
	if err := tr.Start(1, func(*raftpb.Message) error { return nil }, snaps); err != nil {
		t.Fatal(err)
	}
	tr.SetPeer(2, l.Addr().String())
	// An inbound connection that never sends anything.
	a, b := net.Pipe()
	defer a.Close()
	served := make(chan struct{})
	go func() { tr.ServeConn(b); close(served) }()

	payload := bytes.Repeat([]byte("x"), 64<<10)
	start := time.Now()
	for range 2000 {
		tr.Send([]*raftpb.Message{{Type: raftpb.MsgApp.Enum(), To: new(uint64(2)), From: new(uint64(1)),
			Entries: []*raftpb.Entry{{Data: payload}}}})
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Send blocked for %v", d)
	}
	snaps.mu.Lock()
	dropped := snaps.unreachable
	snaps.mu.Unlock()
	if dropped == 0 {
		t.Fatal("a full queue dropped nothing")
	}
	done := make(chan struct{})
	go func() { tr.Stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Stop hangs on a stalled peer")
	}
	<-served
}

// RemovePeer lets the peer's connection deliver what was already queued for it (a removal
// notice is sent just before the peer is removed), and nothing sent afterwards.
func TestTCPTransportRemovedPeerGetsQueuedMessages(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var (
		mu       sync.Mutex
		received []uint64
	)
	dst := NewTCPTransport(TCPConfig{Addr: l.Addr().String()})
	if err := dst.Start(2, func(m *raftpb.Message) error {
		mu.Lock()
		received = append(received, m.GetCommit())
		mu.Unlock()
		return nil
	}, &fakeSnaps{}); err != nil {
		t.Fatal(err)
	}
	defer dst.Stop()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				var pre [4]byte
				if _, err := io.ReadFull(c, pre[:]); err != nil || string(pre[:]) != Preamble {
					c.Close()
					return
				}
				dst.ServeConn(c)
			}()
		}
	}()

	src := NewTCPTransport(TCPConfig{Addr: "127.0.0.1:1"})
	snaps := &fakeSnaps{}
	if err := src.Start(1, func(*raftpb.Message) error { return nil }, snaps); err != nil {
		t.Fatal(err)
	}
	defer src.Stop()
	src.SetPeer(2, l.Addr().String())
	heartbeat := func(commit uint64) []*raftpb.Message {
		return []*raftpb.Message{{Type: raftpb.MsgHeartbeat.Enum(), To: new(uint64(2)), From: new(uint64(1)),
			Term: new(uint64(1)), Commit: new(commit)}}
	}
	const queued = 50
	for i := range uint64(queued) {
		src.Send(heartbeat(i + 1))
	}
	src.RemovePeer(2) // before the peer's goroutine has even dialled
	src.Send(heartbeat(1000))
	waitFor(t, 5*time.Second, "the queued messages", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(received) >= queued
	})
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(received) != queued || received[queued-1] != queued {
		t.Fatalf("received %d messages (last %v), want the %d queued before RemovePeer", len(received), received[len(received)-1], queued)
	}
	snaps.mu.Lock()
	defer snaps.mu.Unlock()
	if snaps.unreachable == 0 {
		t.Fatal("the message sent after RemovePeer was not reported as undeliverable")
	}
}

// countingHandler counts the log records of one level whose message starts with a prefix.
type countingHandler struct {
	level  slog.Level
	prefix string
	n      atomic.Int64
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level == h.level && strings.HasPrefix(r.Message, h.prefix) {
		h.n.Add(1)
	}
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

// A peer that stays unreachable is a warning (it was a debug line only: a learner whose
// certificate the leader refused stayed a learner without a word), said once a minute.
func TestTCPTransportWarnsOfAnUnreachablePeer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nowhere := l.Addr().String()
	l.Close()
	h := &countingHandler{level: slog.LevelWarn, prefix: "peer unreachable"}
	tr := NewTCPTransport(TCPConfig{Addr: "127.0.0.1:1", Logger: slog.New(h)})
	if err := tr.Start(1, func(*raftpb.Message) error { return nil }, &fakeSnaps{}); err != nil {
		t.Fatal(err)
	}
	defer tr.Stop()
	tr.SetPeer(2, nowhere)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		tr.Send([]*raftpb.Message{{Type: raftpb.MsgHeartbeat.Enum(), To: new(uint64(2)), From: new(uint64(1))}})
		time.Sleep(20 * time.Millisecond)
	}
	if n := h.n.Load(); n != 1 {
		t.Fatalf("%d warnings about the unreachable peer in 3 s of retries, want 1", n)
	}
}
