package store

import (
	"errors"
	"fmt"
	"time"

	"github.com/tandemdb/tandem/internal/sqlite"
)

// RequestRetention is how long (in the proposing leader's wall-clock time, carried in each
// entry so that every node trims alike) the state machine remembers the outcome of a request
// id. A client must not retry a request id later than that after its first attempt; the Go
// client gives up retrying well before (client.MaxRetryAge). Trimming by time rather than by
// a window of ids matters: a writer whose retry was delayed while other writers of the same
// client went on would otherwise find its record trimmed and apply its write twice.
const RequestRetention = 2 * time.Minute

// applyTx is the open transaction of one database during one Apply call.
type applyTx struct {
	db    *database
	idx   uint64 // the database's own applied index inside the transaction
	began bool
}

type pendingOutcome struct {
	k proposalKey
	o applyOutcome
}

// Apply applies committed entries in log order. Entries of one database share one SQLite
// transaction per call; an error wraps ErrDiverged and stops all further applying.
func (s *Store) Apply(ents []Entry) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.Lock()
	div, closed := s.diverged, s.closed
	s.mu.Unlock()
	if div != nil {
		return div
	}
	if closed {
		return ErrClosed
	}

	var (
		txs      []*applyTx
		byDB     = map[*database]*applyTx{}
		outcomes []pendingOutcome
		maxIdx   uint64
	)
	for _, e := range ents {
		maxIdx = max(maxIdx, e.Index)
		if len(e.Data) == 0 {
			continue
		}
		cmd, err := decodeCommand(e.Data)
		if err != nil {
			return s.diverge(txs, "", e.Index, err)
		}
		db, err := s.database(cmd.DB, true)
		if err != nil {
			return s.diverge(txs, cmd.DB, e.Index, err)
		}
		t := byDB[db]
		if t == nil {
			t = &applyTx{db: db, idx: db.applied.Load()}
			byDB[db] = t
			txs = append(txs, t)
		}
		if e.Index <= t.idx {
			continue // already applied before a restart: replay is idempotent
		}
		mine := cmd.Node == s.opts.NodeID
		if cmd.ExecTerm != e.Term || cmd.BaseIndex != t.idx {
			// Executed under another leadership or on a state that has moved since: skipped the
			// same way on every node. Its waiters learn the outcome is unknown (it is in fact
			// "not applied"; the retry with the same request id is safe either way).
			s.log.Debug("store: skipping stale command", "db", cmd.DB, "index", e.Index,
				"term", e.Term, "exec_term", cmd.ExecTerm, "base", cmd.BaseIndex, "db_index", t.idx)
			if mine {
				outcomes = append(outcomes, pendingOutcome{proposalKey{cmd.ExecTerm, cmd.Seq},
					applyOutcome{err: fmt.Errorf("%w: command executed in term %d on index %d was skipped", ErrOutcomeUnknown, cmd.ExecTerm, cmd.BaseIndex)}})
			}
			continue
		}
		if mine {
			handed, err := s.handOff(t, e.Index, cmd)
			if err != nil {
				return s.diverge(txs, cmd.DB, e.Index, err)
			}
			if handed {
				continue
			}
		}
		if !t.began {
			if err := s.beginApply(db); err != nil {
				return s.diverge(txs, cmd.DB, e.Index, err)
			}
			t.began = true
		}
		if err := s.applyCommand(t, e.Index, cmd); err != nil {
			return s.diverge(txs, cmd.DB, e.Index, err)
		}
		t.idx = e.Index
		if mine {
			outcomes = append(outcomes, pendingOutcome{proposalKey{cmd.ExecTerm, cmd.Seq}, applyOutcome{index: e.Index}})
		}
	}
	for _, t := range txs {
		if !t.began {
			continue
		}
		if err := s.finishApply(t); err != nil {
			return s.diverge(txs, t.db.name, t.idx, err)
		}
	}
	s.mu.Lock()
	for _, o := range outcomes {
		s.resolveLocked(o.k, o.o)
	}
	if maxIdx > s.applied {
		s.applied = maxIdx
		close(s.appliedC)
		s.appliedC = make(chan struct{})
	}
	s.mu.Unlock()
	return nil
}

// handOff lets the writer that executed this node's entry commit the transaction it kept
// open, which is the apply of the entry on this node (see waiter): the leader then does not
// replay its own changeset, and its answer to the clients does not wait for that replay.
// It reports false when no writer holds the entry (it gave up, or rolled back when
// committing failed): the caller applies the changeset as on any other node.
func (s *Store) handOff(t *applyTx, index uint64, cmd *command) (bool, error) {
	if t.began {
		// Not reached: a writer holding its transaction would have kept the apply
		// connection from beginning one. Commit what is open so that the order holds.
		if err := s.finishApply(t); err != nil {
			return false, err
		}
	}
	h := s.takeHeld(proposalKey{cmd.ExecTerm, cmd.Seq}, index, cmd)
	if h == nil {
		return false, nil
	}
	if err := <-h.done; err != nil {
		s.log.Warn("store: the writer could not commit its entry; applying the changeset",
			"db", cmd.DB, "index", index, "err", err)
		return false, nil
	}
	t.idx = index // the writer published db.applied before it answered done
	return true, nil
}

// beginApply starts the write transaction of the apply connection. The writer of the same
// database may hold the write lock only if this node just lost leadership; it is preempted.
//
// On the leader the writer commits schema changes itself (held entries), so the schema this
// connection cached may be stale, and SQLite checks a CREATE's "already exists" against the
// cached schema without re-reading it (a spurious divergence). Reading sqlite_schema
// verifies the schema cookie and reloads the schema when it changed. Only a database whose
// writer has committed (on a node that leads or led) needs it: elsewhere this connection is
// the only one that changes the schema.
func (s *Store) beginApply(db *database) error {
	for {
		err := db.applyStmt.exec("BEGIN IMMEDIATE") // cached: parsing it was ~1% of the CPU
		if err == nil {
			if !db.writerCommitted.Load() {
				return nil
			}
			if _, err := db.applyStmt.query(`SELECT 1 FROM sqlite_schema LIMIT 0`); err != nil {
				_ = db.applyConn.Exec("ROLLBACK")
				return fmt.Errorf("read schema: %w", err)
			}
			return nil
		}
		if !errors.Is(err, sqlite.ErrBusy) && !errors.Is(err, sqlite.ErrLocked) {
			return err
		}
		db.preempt()
		if s.ctx.Err() != nil {
			return ErrClosed
		}
	}
}

// preempt asks the writer to roll back whatever holds the write lock.
func (db *database) preempt() {
	select {
	case db.preemptC <- struct{}{}:
	default:
	}
	if c := db.writerConn.Load(); c != nil {
		c.Interrupt()
	}
}

func (s *Store) applyCommand(t *applyTx, index uint64, cmd *command) error {
	c := t.db.applyConn
	for _, ddl := range cmd.DDL {
		if err := c.Exec(ddl); err != nil {
			return fmt.Errorf("schema change %q: %w", ddl, err)
		}
	}
	cs, err := withoutStatTables(cmd.Changeset)
	if err != nil {
		return fmt.Errorf("changeset: %w", err)
	}
	if len(cs) > 0 {
		if err := c.ApplyChangesetRowIDs(cs, cmd.RowIDs); err != nil {
			return fmt.Errorf("changeset: %w", err)
		}
	}
	st := &t.db.applyStmt
	for _, sc := range cmd.SeqChanges {
		if sc.Delete {
			if err := st.exec(`DELETE FROM sqlite_sequence WHERE name=?`, sc.Table); err != nil {
				return fmt.Errorf("sqlite_sequence: %w", err)
			}
			continue
		}
		if err := st.exec(`UPDATE sqlite_sequence SET seq=? WHERE name=?`, sc.Value, sc.Table); err != nil {
			return fmt.Errorf("sqlite_sequence: %w", err)
		}
		if c.Changes() == 0 {
			if err := st.exec(`INSERT INTO sqlite_sequence(name, seq) VALUES(?, ?)`, sc.Table, sc.Value); err != nil {
				return fmt.Errorf("sqlite_sequence: %w", err)
			}
		}
	}
	if cmd.HasUserVersion {
		// Not through the statement cache: each value is a statement of its own (PRAGMA
		// takes no parameters).
		if err := c.Exec(fmt.Sprintf("PRAGMA main.user_version = %d", cmd.UserVersion)); err != nil {
			return fmt.Errorf("user_version: %w", err)
		}
	}
	return recordRequests(st, index, cmd)
}

// recordRequests stores the request records of the entry at index and trims the old ones;
// every node does it in the transaction that applies the entry.
func recordRequests(st *stmtCache, index uint64, cmd *command) error {
	for _, r := range cmd.Requests {
		err := st.exec(`INSERT OR IGNORE INTO _tandem_requests(client_id, request_id, idx, result, at) VALUES(?, ?, ?, ?, ?)`,
			int64(r.ClientID), int64(r.RequestID), int64(index), r.Result, cmd.WallTime)
		if err != nil {
			return fmt.Errorf("request record: %w", err)
		}
	}
	if cmd.WallTime > 0 {
		// An index range probe: nothing to delete costs one seek.
		if err := st.exec(`DELETE FROM _tandem_requests WHERE at < ?`, cmd.WallTime-RequestRetention.Milliseconds()); err != nil {
			return fmt.Errorf("trim request records: %w", err)
		}
	}
	return nil
}

// writeAppliedIndex records the database's applied index in its open transaction.
func writeAppliedIndex(st *stmtCache, index uint64) error {
	if err := st.exec(`INSERT OR REPLACE INTO _tandem_applied(id, idx) VALUES(1, ?)`, int64(index)); err != nil {
		return fmt.Errorf("applied index: %w", err)
	}
	return nil
}

// finishApply records the applied index, commits, publishes the committed index and tells
// the checkpointer.
func (s *Store) finishApply(t *applyTx) error {
	if err := writeAppliedIndex(&t.db.applyStmt, t.idx); err != nil {
		return err
	}
	if err := t.db.applyStmt.exec("COMMIT"); err != nil {
		return err
	}
	t.began = false
	t.db.applied.Store(t.idx)
	t.db.noteCommitted(t.db.applyConn)
	return nil
}

// diverge rolls back the open transactions, records the divergence and fails every waiter.
func (s *Store) diverge(txs []*applyTx, db string, index uint64, cause error) error {
	for _, t := range txs {
		if t.began {
			if err := t.db.applyConn.Exec("ROLLBACK"); err != nil {
				s.log.Error("store: rollback after divergence", "db", t.db.name, "err", err)
			}
		}
	}
	table := ""
	var ce *sqlite.ConflictError
	if errors.As(cause, &ce) {
		table = ce.Table
	}
	err := fmt.Errorf("%w: database %q, entry %d: %w", ErrDiverged, db, index, cause)
	s.log.Error("store: DIVERGENCE: a committed entry cannot be applied; this node stops applying",
		"db", db, "index", index, "table", table, "err", cause)
	s.mu.Lock()
	if s.diverged == nil {
		s.diverged = err
	}
	s.failWaitersLocked(func(proposalKey) bool { return true }, err)
	close(s.appliedC)
	s.appliedC = make(chan struct{})
	s.mu.Unlock()
	return err
}
