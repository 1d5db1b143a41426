package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// fakeCluster is an in-process stand-in for Raft: the leader's proposals are appended to a
// log and fed, in order, to Apply on every store (the leader's too) by one goroutine.
type fakeCluster struct {
	t      testing.TB
	dirs   []string
	stores []*Store

	mu       sync.Mutex
	cond     *sync.Cond
	log      []Entry
	fed      int // entries of log given to Apply
	term     uint64
	termHack func(e *Entry) // rewrites an entry as it is appended (tests)
	applyErr []error
	ready    chan struct{} // when non-nil, LeaderReady waits for it to be closed
	waiting  int           // LeaderReady calls blocked on ready
	notLead  error
	stopped  bool
	done     chan struct{}
	proposed int
	modOpts  func(*Options)
	dropping bool
	paused   bool // the applier feeds nothing while set
	lead     int  // index of the leading store
}

var errFakeNotLeader = errors.New("fake: not the leader")

// nodeProposer is store i's view of the fake cluster: only the leading store may propose.
type nodeProposer struct {
	f *fakeCluster
	i int
}

func (p nodeProposer) Propose(ctx context.Context, data []byte) error {
	p.f.mu.Lock()
	lead := p.f.lead
	p.f.mu.Unlock()
	if lead != p.i {
		return errFakeNotLeader
	}
	return p.f.Propose(ctx, data)
}

func (p nodeProposer) LeaderReady(ctx context.Context) (uint64, error) {
	p.f.mu.Lock()
	lead := p.f.lead
	p.f.mu.Unlock()
	if lead != p.i {
		return 0, errFakeNotLeader
	}
	return p.f.LeaderReady(ctx)
}

// elect makes store i the leader of a new term: an empty entry of that term is appended
// and applied everywhere before the new leader writes (as raft does), and every store
// hears of the change.
func (f *fakeCluster) elect(i int) {
	f.mu.Lock()
	f.term++
	f.lead = i
	term := f.term
	f.mu.Unlock()
	f.appendEntry(term, nil)
	f.sync()
	for k, s := range f.stores {
		s.LeaderChanged(term, k == i)
	}
}

// setPaused stops or restarts feeding committed entries to the stores.
func (f *fakeCluster) setPaused(on bool) {
	f.mu.Lock()
	f.paused = on
	f.cond.Broadcast()
	f.mu.Unlock()
}

func (f *fakeCluster) setDropping(on bool) {
	f.mu.Lock()
	f.dropping = on
	f.mu.Unlock()
}

func newCluster(t testing.TB, n int, mod func(*Options)) *fakeCluster {
	t.Helper()
	f := &fakeCluster{t: t, term: 1, done: make(chan struct{}), modOpts: mod}
	f.cond = sync.NewCond(&f.mu)
	root := t.TempDir()
	for i := 0; i < n; i++ {
		dir := filepath.Join(root, fmt.Sprintf("n%d", i+1))
		f.dirs = append(f.dirs, dir)
		s := f.open(i)
		f.stores = append(f.stores, s)
		f.applyErr = append(f.applyErr, nil)
	}
	go f.applier()
	t.Cleanup(f.close)
	return f
}

func (f *fakeCluster) options(i int) Options {
	o := Options{Dir: f.dirs[i], NodeID: uint64(i + 1), TxIdleTimeout: 5 * time.Second,
		Proposer: nodeProposer{f, i}}
	if f.modOpts != nil {
		f.modOpts(&o)
	}
	return o
}

func (f *fakeCluster) open(i int) *Store {
	f.t.Helper()
	s, err := Open(f.options(i))
	if err != nil {
		f.t.Fatalf("open store %d: %v", i, err)
	}
	return s
}

func (f *fakeCluster) leader() *Store {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stores[f.lead]
}

func (f *fakeCluster) Propose(ctx context.Context, data []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.notLead != nil {
		return f.notLead
	}
	if f.dropping {
		return nil // accepted, never committed
	}
	e := Entry{Index: uint64(len(f.log)) + 1, Term: f.term, Data: append([]byte(nil), data...)}
	if f.termHack != nil {
		f.termHack(&e)
	}
	f.log = append(f.log, e)
	f.proposed++
	f.cond.Broadcast()
	return nil
}

// appendEntry appends a raw entry (nil Data: an empty entry).
func (f *fakeCluster) appendEntry(term uint64, data []byte) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := Entry{Index: uint64(len(f.log)) + 1, Term: term, Data: data}
	f.log = append(f.log, e)
	f.cond.Broadcast()
	return e.Index
}

func (f *fakeCluster) LeaderReady(ctx context.Context) (uint64, error) {
	f.mu.Lock()
	if f.notLead != nil {
		err := f.notLead
		f.mu.Unlock()
		return 0, err
	}
	ready := f.ready
	if ready != nil {
		f.waiting++
		f.cond.Broadcast()
	}
	f.mu.Unlock()
	if ready != nil {
		select {
		case <-ready:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.term, nil
}

// gate makes LeaderReady block until the returned function is called.
func (f *fakeCluster) gate() (release func()) {
	ch := make(chan struct{})
	f.mu.Lock()
	f.ready = ch
	f.waiting = 0
	f.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			f.ready = nil
			f.mu.Unlock()
			close(ch)
		})
	}
}

// waitBlocked waits until n LeaderReady calls are blocked on the gate.
func (f *fakeCluster) waitBlocked(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.waiting < n {
		f.cond.Wait()
	}
}

func (f *fakeCluster) applier() {
	defer close(f.done)
	for {
		f.mu.Lock()
		for !f.stopped && (f.fed == len(f.log) || f.paused) {
			f.cond.Wait()
		}
		if f.stopped {
			f.mu.Unlock()
			return
		}
		ents := append([]Entry(nil), f.log[f.fed:]...)
		f.fed = len(f.log)
		stores := append([]*Store(nil), f.stores...)
		f.mu.Unlock()
		for i, s := range stores {
			if s == nil {
				continue
			}
			err := s.Apply(ents)
			if err != nil {
				f.mu.Lock()
				if f.applyErr[i] == nil {
					f.applyErr[i] = err
				}
				f.mu.Unlock()
			}
		}
		f.mu.Lock()
		f.cond.Broadcast()
		f.mu.Unlock()
	}
}

// sync waits until every healthy store has applied the whole log.
func (f *fakeCluster) sync() {
	f.t.Helper()
	f.mu.Lock()
	last := uint64(len(f.log))
	stores := append([]*Store(nil), f.stores...)
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i, s := range stores {
		if s == nil || s.Diverged() != nil {
			continue
		}
		if err := s.WaitApplied(ctx, last); err != nil && !errors.Is(err, ErrDiverged) {
			f.t.Fatalf("store %d: WaitApplied(%d): %v (applied %d)", i, last, err, s.AppliedIndex())
		}
	}
}

// replace swaps store i (stopping feeding while the caller reopens it).
func (f *fakeCluster) replace(i int, s *Store) {
	f.mu.Lock()
	f.stores[i] = s
	f.mu.Unlock()
}

func (f *fakeCluster) entries() []Entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Entry(nil), f.log...)
}

func (f *fakeCluster) close() {
	f.mu.Lock()
	f.stopped = true
	f.cond.Broadcast()
	f.mu.Unlock()
	<-f.done
	for _, s := range f.stores {
		if s != nil {
			s.Close()
		}
	}
}

func (f *fakeCluster) err(i int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applyErr[i]
}

// hashes returns ContentHash of db on every store.
func (f *fakeCluster) hashes(db string) []string {
	f.t.Helper()
	var out []string
	for i, s := range f.stores {
		h, err := s.ContentHash(context.Background(), db)
		if err != nil {
			f.t.Fatalf("store %d: ContentHash: %v", i, err)
		}
		out = append(out, h)
	}
	return out
}

// requireHealthy waits until every store has applied the whole log and fails the test if
// any of them diverged.
func (f *fakeCluster) requireHealthy() {
	f.t.Helper()
	f.sync()
	for i := range f.stores {
		if err := f.err(i); err != nil {
			f.t.Fatalf("store %d diverged: %v", i, err)
		}
	}
}

func (f *fakeCluster) requireSameContent(db string) {
	f.t.Helper()
	f.sync()
	hs := f.hashes(db)
	for i := 1; i < len(hs); i++ {
		if hs[i] != hs[0] {
			f.t.Fatalf("content differs: store 0 %s, store %d %s", hs[0], i, hs[i])
		}
	}
}
