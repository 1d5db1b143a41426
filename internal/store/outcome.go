package store

import (
	"context"
	"errors"
)

// Outcome tells a client whose connection broke while its write (typically the Commit of an
// interactive transaction, which cannot be retried: the transaction belonged to the
// connection) was in flight what became of it: the first outcome, or ErrNotCommitted.
//
// The answer is final because of where it is made. It runs on the leader, in the
// database's writer queue, after LeaderReady: every entry of earlier leaders that will ever
// commit is applied by then, and the writer runs one transaction or batch at a time, so a
// commit of this leader that was under way is applied (its record written) or abandoned
// before the question is answered; if the writer gave up waiting for one in this term, it
// first proposes an empty entry and waits for it (fence). A transaction that changed
// nothing is not recorded and reads as not committed, which for it is the same thing.
func (s *Store) Outcome(ctx context.Context, dbName string, clientID, requestID uint64) (Result, error) {
	if err := s.Diverged(); err != nil {
		return Result{}, err
	}
	if requestID == 0 {
		return Result{}, errors.New("store: outcome of request 0: requests without an id are not recorded")
	}
	db, err := s.database(dbName, false)
	if errors.Is(err, ErrNoSuchDatabase) {
		// A commit that created the database may still be applied by this leader.
		if p := s.opts.Proposer; p != nil {
			if _, err := p.LeaderReady(ctx); err != nil {
				return Result{}, err
			}
		}
		db, err = s.database(dbName, false)
		if errors.Is(err, ErrNoSuchDatabase) {
			return Result{}, ErrNotCommitted
		}
	}
	if err != nil {
		return Result{}, err
	}
	j := &job{ctx: ctx, req: Request{ClientID: clientID, RequestID: requestID}, lookup: true,
		done: make(chan jobResult, 1)}
	return db.submit(ctx, j)
}

// runLookup answers an Outcome question on the writer goroutine.
func (wr *writer) runLookup(j *job) {
	term, ok := wr.startAlone(j)
	if !ok {
		return
	}
	if wr.unresolvedTerm == term {
		if err := wr.fence(term); err != nil {
			j.finish(Result{}, err)
			return
		}
	}
	res, found, err := lookupRequest(&wr.w.stmts, reqKey{j.req.ClientID, j.req.RequestID})
	switch {
	case err != nil:
		j.finish(Result{}, err)
	case !found:
		j.finish(Result{}, ErrNotCommitted)
	default:
		j.finish(res, nil)
	}
}

// fence settles the proposals this writer gave up on in term: it proposes an empty command
// and waits until it is applied (or skipped). Raft keeps the order of one leader's
// proposals within a term, so a given-up entry that is ever committed comes before the
// fence and has been applied (its record written) by then; one that is not there never
// will be. The empty command changes nothing but the database's applied index.
func (wr *writer) fence(term uint64) error {
	base, err := wr.appliedIndex()
	if err != nil {
		return err
	}
	wr.unresolvedTerm = 0
	_, err = wr.propose(term, &command{DB: wr.db.name, BaseIndex: base}, 0, false)
	switch {
	case wr.unresolvedTerm == term:
		return err // the fence itself was given up: still open (ErrOutcomeUnknown)
	case err != nil && !errors.Is(err, ErrOutcomeUnknown):
		wr.unresolvedTerm = term
		return err // not proposed (closed, or no longer leader)
	}
	// Applied, or skipped because a given-up entry was applied first: settled either way.
	return nil
}
