package store

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/tandemdb/tandem/internal/sqlite"
)

// Request is one write (or any statement) sent through a database's writer.
type Request struct {
	ClientID, RequestID uint64 // RequestID 0 = no de-duplication
	SQL                 string
	Args                []sqlite.Value // only with a single statement
	Deadline            time.Time      // dropped with ErrDeadline if not started by then
}

// Result is the outcome of one request.
type Result struct {
	Columns      []string
	DeclTypes    []string // declared types of the columns ("" for expressions)
	Rows         [][]sqlite.Value
	LastInsertID int64
	RowsAffected int64
	Index        uint64        // Raft index of the entry that carried it (read-your-writes)
	Err          *sqlite.Error // the statement's own error; other requests in the batch unaffected
}

const (
	jobQueued int32 = iota
	jobStarted
	jobCancelled
)

// job is a queued request, interactive transaction or Outcome question.
type job struct {
	ctx context.Context
	req Request
	tx  *Tx // non-nil: Begin of an interactive transaction
	// lookup: not a write but a question for Outcome, answered in queue order.
	lookup bool
	state  atomic.Int32
	done   chan jobResult // buffered: the writer never blocks answering
}

type jobResult struct {
	res   Result
	err   error
	chunk *txChunk // a transaction's read that streams (txQuery, txFetch)
}

func (j *job) finish(res Result, err error) {
	select {
	case j.done <- jobResult{res: res, err: err}:
	default:
	}
}

func (j *job) expired(now time.Time) bool {
	return !j.req.Deadline.IsZero() && now.After(j.req.Deadline)
}

// Exec runs req through the database's writer (group commit) and returns its result once the
// entry carrying it is applied on this node. A statement's own failure is in Result.Err; an
// error return means the request did not run (ErrQueueFull, ErrDeadline, not leader, ...) or
// its outcome is unknown (ErrOutcomeUnknown).
func (s *Store) Exec(ctx context.Context, dbName string, req Request) (Result, error) {
	if err := s.Diverged(); err != nil {
		return Result{}, err
	}
	if req.expiredNow() {
		return Result{}, ErrDeadline
	}
	db, err := s.writable(ctx, dbName)
	if err != nil {
		return Result{}, err
	}
	j := &job{ctx: ctx, req: req, done: make(chan jobResult, 1)}
	return db.submit(ctx, j)
}

func (r *Request) expiredNow() bool { return !r.Deadline.IsZero() && time.Now().After(r.Deadline) }

// submit queues j and waits for its answer.
func (db *database) submit(ctx context.Context, j *job) (Result, error) {
	if !db.startWriter() {
		return Result{}, ErrClosed
	}
	select {
	case db.queue <- j:
	default:
		return Result{}, ErrQueueFull
	}
	select {
	case r := <-j.done:
		return r.res, r.err
	case <-ctx.Done():
		if j.state.CompareAndSwap(jobQueued, jobCancelled) {
			return Result{}, ctx.Err()
		}
		return Result{}, fmt.Errorf("%w: %w", ErrOutcomeUnknown, ctx.Err())
	case <-db.ctx.Done():
		if j.state.CompareAndSwap(jobQueued, jobCancelled) {
			return Result{}, ErrClosed
		}
		r := <-j.done // a started job is always answered by the writer
		return r.res, r.err
	}
}

// writer is the state of a database's writer goroutine.
type writer struct {
	s       *Store
	db      *database
	w       *wconn
	pending []*job

	lastBatch int           // requests in the previous batch
	lastRound time.Duration // how long the previous batch took, execution to apply
	// solo: this many next batches hold one request each (the requests of a batch whose
	// entry was too large, see tooLarge).
	solo int
	// unresolvedTerm is the last term in which this writer gave up waiting for a proposal
	// that raft may still commit (ProposalTimeout, or Propose failing after all): until
	// the writer's next entry of that term is applied, the outcome of the given-up one is
	// open (see runLookup).
	unresolvedTerm uint64
}

// Coalescing bounds: see coalesceWindow.
const (
	coalesceMinGap  = 100 * time.Microsecond // the shortest wait for the next request
	coalesceMaxWait = 2 * time.Millisecond   // never wait longer than this in all
)

// coalesceWindow says how long the writer waits for more requests before a batch, given the
// previous batch: in all (wait) and for each next request (gap). Zero: start at once.
//
// Under a closed-loop load (clients that each wait for their answer before sending again)
// the clients answered by the previous batch come back a little later. Without waiting for
// them they split into two cohorts that alternate, each waiting for the other's round
// before its own starts: two Raft rounds per request. Waiting for them costs one
// turnaround instead and pays whenever the turnaround is shorter than the fixed part of a
// round (replication, mostly fsyncs). The wait scales with the previous round: up to
// half of it in all, and an eighth of it without a new request (at least coalesceMinGap) —
// longer rounds mean a busier machine and slower turnarounds. A lone writer (previous batch
// of one) never waits: nobody else is coming. The same idea as PostgreSQL's commit_delay.
func coalesceWindow(lastBatch int, lastRound time.Duration) (wait, gap time.Duration) {
	if lastBatch < 2 {
		return 0, 0
	}
	return min(lastRound/2, coalesceMaxWait), max(lastRound/8, coalesceMinGap)
}

// coalesce waits up to wait (and up to gap for each next request) until the requests
// answered by the previous batch (lastBatch of them) are back in pending, then takes what
// else is queued at that moment.
func (wr *writer) coalesce(wait, gap time.Duration) {
	if wait <= 0 || len(wr.pending) >= maxBatch {
		return
	}
	want := min(maxBatch, len(wr.pending)+wr.lastBatch)
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	next := time.NewTimer(gap)
	defer next.Stop()
	for len(wr.pending) < want {
		select {
		case j := <-wr.db.queue:
			wr.pending = append(wr.pending, j)
			next.Reset(gap)
		case <-next.C:
			return
		case <-deadline.C:
			return
		case <-wr.db.ctx.Done():
			return
		}
	}
	for len(wr.pending) < maxBatch {
		select {
		case j := <-wr.db.queue:
			wr.pending = append(wr.pending, j)
		default:
			return
		}
	}
}

func (db *database) writerLoop() {
	defer close(db.writerDone)
	wr := &writer{s: db.s, db: db}
	defer wr.shutdown()
	for {
		if len(wr.pending) == 0 {
			select {
			case j := <-db.queue:
				wr.pending = append(wr.pending, j)
			case <-db.ctx.Done():
				return
			}
		}
	drain:
		for len(wr.pending) < maxBatch {
			select {
			case j := <-db.queue:
				wr.pending = append(wr.pending, j)
			default:
				break drain
			}
		}
		if db.ctx.Err() != nil {
			return
		}
		if wr.w == nil {
			if err := wr.openConn(); err != nil {
				wr.failPending(err)
				continue
			}
		}
		if j := wr.pending[0]; j.tx != nil || j.lookup {
			wr.pending = wr.pending[1:]
			if j.lookup {
				wr.runLookup(j)
			} else {
				wr.runTx(j)
			}
			continue
		}
		limit := maxBatch
		if wr.solo > 0 {
			wr.solo--
			limit = 1
		} else {
			wr.coalesce(coalesceWindow(wr.lastBatch, wr.lastRound))
		}
		n := 0
		for n < len(wr.pending) && n < limit && wr.pending[n].tx == nil && !wr.pending[n].lookup {
			n++
		}
		batch := append([]*job(nil), wr.pending[:n]...)
		rest := wr.pending[n:]
		started := time.Now()
		deferred := wr.runBatch(batch)
		wr.lastBatch, wr.lastRound = n-len(deferred), time.Since(started)
		wr.pending = append(append([]*job(nil), deferred...), rest...)
	}
}

func (wr *writer) openConn() error {
	c, err := sqlite.Open(wr.db.path, sqlite.OpenOptions{ForeignKeys: true, BusyTimeout: busyTimeout, MaxLength: MaxValueBytes})
	if err != nil {
		return fmt.Errorf("store: open writer connection: %w", err)
	}
	// The writer commits its held transactions (the leader's apply of its own entries):
	// like the apply connection, it leaves checkpoints to the background checkpointer.
	if err := c.TrackWALFrames(); err != nil {
		c.Close()
		return fmt.Errorf("store: open writer connection: %w", err)
	}
	wr.w = &wconn{conn: c, stmts: stmtCache{conn: c}}
	wr.db.writerConn.Store(c)
	return nil
}

// resetConn closes the writer connection after an error that may have left it in a
// transaction; the next batch opens a new one.
func (wr *writer) resetConn() {
	if wr.w == nil {
		return
	}
	wr.db.writerConn.Store(nil)
	wr.w.stmts.close()
	wr.w.closeUser()
	if err := wr.w.conn.Close(); err != nil {
		wr.s.log.Warn("store: closing writer connection", "db", wr.db.name, "err", err)
	}
	wr.w = nil
}

func (wr *writer) shutdown() {
	wr.failPending(ErrClosed)
	wr.db.failQueued(ErrClosed)
	wr.resetConn()
}

func (wr *writer) failPending(err error) {
	for _, j := range wr.pending {
		j.finish(Result{}, err)
	}
	wr.pending = nil
}

// leaderReady waits for LeaderReady on behalf of the jobs; it gives up when all their
// contexts are done or the database closes.
func (wr *writer) leaderReady(jobs []*job) (uint64, error) {
	p := wr.s.opts.Proposer
	if p == nil {
		return 0, errors.New("store: no proposer configured")
	}
	ctx, cancel := context.WithCancel(wr.db.ctx)
	defer cancel()
	var remaining atomic.Int64
	remaining.Store(int64(len(jobs)))
	for _, j := range jobs {
		stop := context.AfterFunc(j.ctx, func() {
			if remaining.Add(-1) == 0 {
				cancel()
			}
		})
		defer stop()
	}
	return p.LeaderReady(ctx)
}

// startAlone starts a job the writer serves on its own (an interactive transaction, an
// Outcome question): it returns the term to serve it in, or false after answering it.
func (wr *writer) startAlone(j *job) (uint64, bool) {
	if !j.state.CompareAndSwap(jobQueued, jobStarted) {
		return 0, false
	}
	if err := j.ctx.Err(); err != nil {
		j.finish(Result{}, err)
		return 0, false
	}
	term, err := wr.leaderReady([]*job{j})
	if err != nil {
		j.finish(Result{}, err)
		return 0, false
	}
	return term, true
}

// appliedIndex reads the database's own applied index as the writer's connection sees it.
func (wr *writer) appliedIndex() (uint64, error) {
	rows, err := wr.w.stmts.query(`SELECT idx FROM _tandem_applied WHERE id=1`)
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	v, _ := rows[0][0].(int64)
	return uint64(v), nil
}

// drainPreempt forgets preemption requests made before this write transaction began.
func (wr *writer) drainPreempt() {
	select {
	case <-wr.db.preemptC:
	default:
	}
}

func (wr *writer) preempted() bool {
	select {
	case <-wr.db.preemptC:
		return true
	default:
		return false
	}
}

type reqKey struct{ client, req uint64 }

// slot is a job of a batch and what became of it.
type slot struct {
	j        *job
	res      Result
	executed bool // ran (successfully or with its own error); answered at the end
	dupOf    int  // >= 0: same request id as an earlier slot of the batch
}

var errPreempted = fmt.Errorf("%w: writer preempted by a leadership change", ErrOutcomeUnknown)

// runBatch executes jobs as one entry (group commit) and answers them. It returns the jobs
// it did not start (they go first in the next batch).
func (wr *writer) runBatch(jobs []*job) (deferred []*job) {
	now := time.Now()
	live := jobs[:0:0]
	for _, j := range jobs {
		switch {
		case j.state.Load() == jobCancelled:
		case j.ctx.Err() != nil:
			j.finish(Result{}, j.ctx.Err())
		case j.expired(now):
			j.finish(Result{}, ErrDeadline)
		default:
			live = append(live, j)
		}
	}
	if len(live) == 0 {
		return nil
	}
	term, err := wr.leaderReady(live)
	if err != nil {
		for _, j := range live {
			j.finish(Result{}, err)
		}
		return nil
	}
	w := wr.w
	c := w.conn
	wr.drainPreempt()
	if err := wr.w.stmts.exec("BEGIN IMMEDIATE"); err != nil { // cached, like SAVEPOINT
		for _, j := range live {
			j.finish(Result{}, fmt.Errorf("store: begin: %w", err))
		}
		wr.resetConn()
		return nil
	}
	var sess *sqlite.Session
	fatal := func(err error) []*job {
		// Nothing was proposed: the requests that ran did not happen. Those not started yet
		// go to the next batch.
		if sess != nil {
			sess.Close()
			sess = nil
		}
		_ = c.Exec("ROLLBACK")
		wr.resetConn()
		var rest []*job
		for _, j := range live {
			switch j.state.Load() {
			case jobStarted:
				j.finish(Result{}, err)
			case jobQueued:
				rest = append(rest, j)
			}
		}
		return rest
	}
	base, sess, err := wr.beginEffects()
	if err != nil {
		return fatal(err)
	}

	slots := make([]slot, 0, len(live))
	inflight := map[reqKey]int{}
	var ddl []string
	executed := 0
	for i, j := range live {
		if j.expired(time.Now()) {
			if j.state.CompareAndSwap(jobQueued, jobStarted) {
				j.finish(Result{}, ErrDeadline)
			}
			continue
		}
		if !j.state.CompareAndSwap(jobQueued, jobStarted) {
			continue // the caller gave up
		}
		sl := slot{j: j, dupOf: -1}
		if j.req.RequestID != 0 {
			k := reqKey{j.req.ClientID, j.req.RequestID}
			if first, ok := inflight[k]; ok {
				sl.dupOf = first
				slots = append(slots, sl)
				continue
			}
			res, found, err := lookupRequest(&w.stmts, k)
			if err != nil {
				return fatal(err)
			}
			if found {
				j.finish(res, nil)
				continue
			}
		}
		// The savepoint statements are cached: preparing them was a tenth of a small write's cost.
		if err := w.stmts.exec("SAVEPOINT tandem_req"); err != nil {
			return fatal(err)
		}
		// The connection serves every client: a request that inserts nothing must not
		// report the rowid of another's insert.
		c.SetLastInsertRowID(0)
		stop := c.CancelOn(j.ctx)
		out := w.run(j.req.SQL, j.req.Args, sess.IsEmpty, executed == 0)
		stop()
		if c.Autocommit() {
			// The statement ended the whole transaction (ON CONFLICT ROLLBACK, RAISE(ROLLBACK),
			// a write cancelled mid-way): the requests before it in this batch went with it.
			sess.Close()
			sess = nil
			if wr.rolledBackByApply(out.res.Err, j.ctx) {
				return fatal(errPreempted) // outcome unknown: clients retry
			}
			return wr.batchRolledBack(j, out.res, slots, live[i+1:])
		}
		if out.res.Err != nil || out.again {
			if err := w.stmts.exec("ROLLBACK TO tandem_req"); err != nil {
				return fatal(err)
			}
			if err := w.stmts.exec("RELEASE tandem_req"); err != nil {
				return fatal(err)
			}
		} else if err := w.stmts.exec("RELEASE tandem_req"); err != nil {
			return fatal(err)
		}
		if out.again {
			// A schema change goes first in its entry: run it again in the next batch.
			j.state.Store(jobQueued)
			deferred = live[i:]
			break
		}
		if wr.preempted() {
			return fatal(errPreempted)
		}
		sl.res, sl.executed = out.res, true
		slots = append(slots, sl)
		executed++
		if j.req.RequestID != 0 {
			inflight[reqKey{j.req.ClientID, j.req.RequestID}] = len(slots) - 1
		}
		if out.schemaChanged {
			ddl = out.ddl
			deferred = live[i+1:]
			break
		}
	}

	cmd, err := wr.endEffects(sess, base)
	sess = nil
	if err != nil {
		return fatal(err)
	}
	cmd.DDL = ddl
	if cmd.empty() {
		// Nothing changed (reads, failures, no-op writes): nothing to replicate.
		if err := c.Exec("ROLLBACK"); err != nil {
			return fatal(err)
		}
		wr.answer(slots, wr.s.AppliedIndex(), nil)
		return deferred
	}
	for _, sl := range slots {
		if sl.executed && sl.j.req.RequestID != 0 {
			cmd.Requests = append(cmd.Requests, requestRecord{
				ClientID: sl.j.req.ClientID, RequestID: sl.j.req.RequestID, Result: encodeResult(nil, &sl.res)})
		}
	}
	if size := cmd.size(); size > wr.s.opts.MaxEntryBytes {
		if err := c.Exec("ROLLBACK"); err != nil {
			return fatal(err)
		}
		return wr.tooLarge(slots, size, deferred)
	}
	// The executed transaction stays open (held) and becomes this node's apply of the entry
	// (see waiter), except when the tests verify that applying the changeset reproduces the
	// executed content: then it is rolled back and the changeset applied as on a follower.
	held := !wr.s.verifyExec
	executedHash := wr.verifyBefore()
	if !held {
		if err := c.Exec("ROLLBACK"); err != nil {
			return fatal(err)
		}
	}
	cmd.BaseIndex = base.index
	carried := 0
	for _, sl := range slots {
		if sl.executed {
			carried++
		}
	}
	index, err := wr.propose(term, cmd, carried, held)
	if err == nil {
		wr.verifyAfter(executedHash, index)
	}
	if held && err != nil {
		wr.rollbackHeld()
	}
	wr.answer(slots, index, err)
	return deferred
}

// rolledBackByApply reports whether a statement that ended its whole transaction (with
// err) was interrupted by apply, which takes the write lock back for another leader's
// entry, rather than failing of its own accord: a preemption is pending, or it was
// interrupted while its caller (ctx) still waits.
func (wr *writer) rolledBackByApply(err *sqlite.Error, ctx context.Context) bool {
	return wr.preempted() || err != nil && errors.Is(err, sqlite.ErrInterrupt) && ctx.Err() == nil
}

// batchRolledBack handles a request whose statement rolled back the batch's whole
// transaction: it gets its own error, and the requests that ran before it go back to the
// queue's head to run again (nothing of theirs happened). Without this they failed with "no
// such savepoint", their own errors lost (found by a QA pass on 2026-12-03).
func (wr *writer) batchRolledBack(j *job, res Result, slots []slot, rest []*job) []*job {
	if res.Err == nil {
		res.Err = requestError(codeError, "tandem: the statement rolled back the transaction it ran in")
	}
	j.finish(Result{Err: res.Err}, nil)
	again := make([]*job, 0, len(slots)+len(rest))
	for _, sl := range slots {
		sl.j.state.Store(jobQueued)
		again = append(again, sl.j)
	}
	return append(again, rest...)
}

// tooLarge answers a batch whose entry would pass Options.MaxEntryBytes (its transaction is
// rolled back, nothing was proposed). A request alone fails with the error; several go back
// to the queue's head to run one per batch, so that only those too large on their own fail.
func (wr *writer) tooLarge(slots []slot, size int, deferred []*job) []*job {
	executed := 0
	for _, sl := range slots {
		if sl.executed {
			executed++
		}
	}
	if executed <= 1 {
		tooBig := entryTooLarge(size, wr.s.opts.MaxEntryBytes)
		for i := range slots {
			slots[i].res = Result{Err: tooBig}
		}
		wr.answer(slots, 0, nil)
		return deferred
	}
	again := make([]*job, 0, len(slots)+len(deferred))
	for _, sl := range slots {
		sl.j.state.Store(jobQueued) // nothing of it happened
		again = append(again, sl.j)
	}
	wr.solo = len(again)
	return append(again, deferred...)
}

// rollbackHeld ends a held transaction whose entry this node did not commit (it was skipped,
// the wait was given up, the commit failed); Apply applies the entry if it commits after all.
func (wr *writer) rollbackHeld() {
	if wr.w == nil || wr.w.conn.Autocommit() {
		return
	}
	if err := wr.w.conn.Exec("ROLLBACK"); err != nil {
		wr.resetConn()
	}
}

// commitHeld commits the held transaction as this node's apply of the entry h names: the
// same request records and applied index that Apply writes on every other node.
func (wr *writer) commitHeld(h *handoff) error {
	if wr.w == nil || wr.w.conn.Autocommit() {
		// Never expected: writing the records outside the transaction would mark the entry
		// applied without its changes. Apply applies it instead.
		return errors.New("store: handoff to a writer without an open transaction")
	}
	st := &wr.w.stmts
	err := recordRequests(st, h.index, h.cmd)
	if err == nil {
		err = writeAppliedIndex(st, h.index)
	}
	if err == nil {
		wr.db.writerCommitted.Store(true) // before the COMMIT: set whether or not it succeeds
		err = wr.w.stmts.exec("COMMIT")
	}
	if err != nil {
		wr.rollbackHeld()
		return fmt.Errorf("store: commit entry %d: %w", h.index, err)
	}
	wr.db.applied.Store(h.index) // before the clients hear of it, and before Apply goes on
	wr.db.noteCommitted(wr.w.conn)
	wr.s.statHeldCommits.Add(1)
	return nil
}

// verifyBefore (tests) hashes the executed state before the rollback.
func (wr *writer) verifyBefore() string {
	if !wr.s.verifyExec {
		return ""
	}
	h, err := hashConn(wr.w.conn)
	if err != nil {
		wr.s.recordVerify(fmt.Sprintf("hash before rollback: %v", err))
	}
	return h
}

// verifyAfter (tests) checks that applying the entry reproduced the executed state.
func (wr *writer) verifyAfter(executed string, index uint64) {
	if !wr.s.verifyExec {
		return
	}
	h, err := hashConn(wr.w.conn)
	if err != nil {
		wr.s.recordVerify(fmt.Sprintf("hash after apply: %v", err))
	} else if h != executed {
		wr.s.recordVerify(fmt.Sprintf("entry %d: applied content differs from executed content", index))
	}
}

func (s *Store) recordVerify(msg string) {
	s.verifyMu.Lock()
	s.verifyErrs = append(s.verifyErrs, msg)
	s.verifyMu.Unlock()
}

// effectsBase is the state a batch (or transaction) starts from, read before it runs.
type effectsBase struct {
	index       uint64           // the database's applied index
	seq         map[string]int64 // sqlite_sequence
	userVersion int64            // PRAGMA user_version
}

// beginEffects reads what the batch's entry is relative to and starts the session.
func (wr *writer) beginEffects() (base effectsBase, sess *sqlite.Session, err error) {
	if base.index, err = wr.appliedIndex(); err != nil {
		return base, nil, err
	}
	if base.seq, err = readSeq(&wr.w.stmts); err != nil {
		return base, nil, err
	}
	if base.userVersion, err = readUserVersion(&wr.w.stmts); err != nil {
		return base, nil, err
	}
	if sess, err = wr.w.conn.CreateSession(); err != nil {
		return base, nil, err
	}
	return base, sess, nil
}

// endEffects collects the changeset, the rowids it cannot carry, the sqlite_sequence changes
// and a changed user_version, and closes the session.
func (wr *writer) endEffects(sess *sqlite.Session, base effectsBase) (*command, error) {
	defer sess.Close()
	seqAfter, err := readSeq(&wr.w.stmts)
	if err != nil {
		return nil, err
	}
	uv, err := readUserVersion(&wr.w.stmts)
	if err != nil {
		return nil, err
	}
	cs, err := sess.Changeset()
	if err != nil {
		return nil, err
	}
	if cs, err = dropTables(cs, isSequenceTable); err != nil { // it travels as SeqChanges; sessions leave the statistics out
		return nil, err
	}
	cmd := &command{DB: wr.db.name, Changeset: cs, SeqChanges: seqDiff(base.seq, seqAfter)}
	if cmd.RowIDs, err = wr.w.conn.ChangesetRowIDs(cs); err != nil {
		return nil, err
	}
	if uv != base.userVersion {
		cmd.UserVersion, cmd.HasUserVersion = uv, true
	}
	return cmd, nil
}

// readUserVersion reads PRAGMA user_version, which Tandem replicates (the session extension
// does not see it: it lives in the database header, not in a table).
func readUserVersion(st *stmtCache) (int64, error) {
	rows, err := st.query(`PRAGMA main.user_version`)
	if err != nil {
		return 0, fmt.Errorf("user_version: %w", err)
	}
	if len(rows) != 1 || len(rows[0]) != 1 {
		return 0, fmt.Errorf("user_version: %d rows", len(rows))
	}
	v, _ := rows[0][0].(int64)
	return v, nil
}

// propose replicates cmd and waits until this node has applied it. requests is how many
// client requests the entry carries (for the batch-size counters). held: the writer's
// transaction is still open and is committed here when Apply hands the entry over (an error
// return leaves it open for the caller to roll back).
func (wr *writer) propose(term uint64, cmd *command, requests int, held bool) (uint64, error) {
	s := wr.s
	cmd.Node = s.opts.NodeID
	cmd.ExecTerm = term
	cmd.Seq = s.propSeq.Add(1)
	cmd.LeaderTime = s.leaderTime()
	cmd.WallTime = time.Now().UnixMilli()
	k := proposalKey{term, cmd.Seq}
	ch, err := s.register(k, held)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(wr.db.ctx, s.opts.ProposalTimeout)
	defer cancel()
	if err := s.opts.Proposer.Propose(ctx, encodeCommand(nil, cmd)); err != nil {
		return wr.giveUpOpen(term, k, ch, fmt.Errorf("%w: propose: %w", ErrOutcomeUnknown, err))
	}
	s.statEntries.Add(1)
	s.statRequests.Add(uint64(requests))
	// A held writer owns the write lock: when Apply needs it for another entry of this
	// database (one that makes this entry stale), it preempts, and the writer lets go.
	var preempt chan struct{}
	if held {
		preempt = wr.db.preemptC
	}
	select {
	case o := <-ch:
		return wr.outcome(o)
	case <-preempt:
		return wr.giveUp(k, ch, errPreempted)
	case <-ctx.Done():
		return wr.giveUpOpen(term, k, ch, fmt.Errorf("%w: waiting for apply: %w", ErrOutcomeUnknown, ctx.Err()))
	}
}

// giveUpOpen is giveUp for a proposal that raft may still commit later in term.
func (wr *writer) giveUpOpen(term uint64, k proposalKey, ch chan applyOutcome, err error) (uint64, error) {
	index, err := wr.giveUp(k, ch, err)
	if err != nil {
		wr.unresolvedTerm = term
	}
	return index, err
}

// giveUp stops waiting for the proposal k with err, unless its outcome has just been sent.
func (wr *writer) giveUp(k proposalKey, ch chan applyOutcome, err error) (uint64, error) {
	if wr.s.unregister(k) {
		return 0, err
	}
	return wr.outcome(<-ch) // sent under the store's lock before the waiter was removed
}

// outcome turns what Apply sent into propose's result; a handoff is committed (and Apply,
// waiting for it, told how that went).
func (wr *writer) outcome(o applyOutcome) (uint64, error) {
	if o.handoff == nil {
		return o.index, o.err
	}
	err := wr.commitHeld(o.handoff)
	o.handoff.done <- err
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
	}
	return o.index, nil
}

// answer replies to every executed slot (and its duplicates) of a batch.
func (wr *writer) answer(slots []slot, index uint64, err error) {
	for i := range slots {
		sl := &slots[i]
		src := sl
		if sl.dupOf >= 0 {
			src = &slots[sl.dupOf]
		}
		if err != nil {
			sl.j.finish(Result{}, err)
			continue
		}
		res := src.res
		res.Index = index
		sl.j.finish(res, nil)
	}
}

// lookupRequest returns the recorded outcome of a request, if the database remembers it.
func lookupRequest(c *stmtCache, k reqKey) (Result, bool, error) {
	rows, err := c.query(`SELECT idx, result FROM _tandem_requests WHERE client_id=? AND request_id=?`,
		int64(k.client), int64(k.req))
	if err != nil || len(rows) == 0 {
		return Result{}, false, err
	}
	idx, _ := rows[0][0].(int64)
	blob, _ := rows[0][1].([]byte)
	res, err := decodeResult(blob)
	if err != nil {
		return Result{}, false, fmt.Errorf("store: request record (%d, %d): %w", k.client, k.req, err)
	}
	res.Index = uint64(idx)
	return res, true, nil
}
