package store

import (
	"errors"
	"time"

	"github.com/tandemdb/tandem/internal/sqlite"
)

// Checkpoints run on a goroutine of each database, off the apply path. SQLite's automatic
// checkpoint runs inside the COMMIT that crosses wal_autocheckpoint pages, on the connection
// that commits: the apply connection. There it copied the WAL into the database file and
// synced it while every write waiting for that entry waited too (measured with 16 writers of
// 1 KiB rows: 2% of applies took 3–16 ms, most of the p99 latency). A PASSIVE checkpoint on a
// connection of its own neither takes the write lock nor waits for readers.
//
// The connections that commit (the apply connection, and the leader's writer, which commits
// its held transactions) count the WAL's frames instead (sqlite.Conn.TrackWALFrames), and a
// commit that leaves Options.CheckpointFrames more frames than the last checkpoint saw wakes
// the checkpointer. The default is large on purpose: a checkpoint writes each page once
// however often the WAL holds it, so rare checkpoints write less when writes revisit pages,
// and each one syncs the database file, which stalls the Raft log's syncs on the same disk
// (measured on 2026-12-03 with the 16-writer benchmark, 16,384 frames against the former
// trigger of 2 MiB of changesets, ~4,000 frames: p99 9–12 ms against 18–21 ms, writes/s
// unchanged; docs/status.md, round 16).
const (
	// defaultCheckpointFrames is Options.CheckpointFrames' default: 64 MiB of 4 KiB pages.
	defaultCheckpointFrames = 16384
	// defaultCheckpointIdle is Options.CheckpointIdle's default.
	defaultCheckpointIdle = 2 * time.Second
	// inlineCheckpointFactor: a committing connection that finds this many times
	// CheckpointFrames in the WAL checkpoints it itself (PASSIVE): a safety net that bounds
	// the WAL when the background checkpoints fall behind.
	inlineCheckpointFactor = 4
)

// noteCommitted is called after each COMMIT of c (the apply connection or the writer's) with
// the write lock released. It wakes the checkpointer when the WAL has grown by
// CheckpointFrames since the last checkpoint, and checkpoints on c if it has grown by
// inlineCheckpointFactor times that.
func (db *database) noteCommitted(c *sqlite.Conn) {
	db.ckptCommits.Add(1)
	frames := int64(c.WALFrames())
	from := db.ckptFrom.Load()
	if frames < from {
		// The WAL was started again from its first frame after a complete checkpoint.
		db.ckptFrom.CompareAndSwap(from, 0)
		from = 0
	}
	grown := frames - from
	limit := int64(db.s.opts.CheckpointFrames)
	switch {
	case grown >= inlineCheckpointFactor*limit:
		db.ckptFrom.Store(frames) // a busy one is not tried again at the next commit
		db.checkpoint(c, "PASSIVE")
	case grown >= limit:
		select {
		case db.ckptC <- struct{}{}:
		default:
		}
	}
}

// checkpointLoop is the database's checkpointer. It stops when the database closes.
func (db *database) checkpointLoop() {
	defer close(db.ckptDone)
	var c *sqlite.Conn
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	conn := func() bool {
		if c == nil {
			var err error
			if c, err = sqlite.Open(db.path, sqlite.OpenOptions{}); err != nil {
				db.s.log.Warn("store: open checkpoint connection", "db", db.name, "err", err)
				c = nil
			}
		}
		return c != nil
	}
	idle := time.NewTicker(db.s.opts.CheckpointIdle)
	defer idle.Stop()
	lastSeen := int64(0)
	truncated := false // the WAL was emptied and nothing was committed since
	for {
		quiet := false
		select {
		case <-db.ctx.Done():
			return
		case <-db.ckptC:
		case <-idle.C:
			// Checkpoint only a database that was written to and then stayed quiet.
			n := db.ckptCommits.Load()
			quiet = n == lastSeen
			lastSeen = n
			if !quiet {
				continue
			}
			if n == 0 {
				// Checkpointed already; the WAL may still wait to be emptied (a reader
				// held it, or it is the WAL the node started with).
				if !truncated && conn() {
					truncated = db.checkpoint(c, "TRUNCATE")
				}
				continue
			}
		}
		db.ckptCommits.Store(0)
		lastSeen = 0
		truncated = false
		if !conn() {
			continue
		}
		db.checkpoint(c, "PASSIVE")
		if quiet {
			truncated = db.checkpoint(c, "TRUNCATE")
		}
	}
}

// checkpoint runs a checkpoint in mode on c, notes how many frames the WAL held (the next one
// is counted from there) and reports whether it was complete (not busy).
//
// PASSIVE is busy only while another checkpoint runs (a snapshot's, or the safety net of
// noteCommitted); the next round catches up. TRUNCATE empties the WAL file of a database
// that stopped being written to, which SQLite otherwise leaves at its largest size (up to
// ~CheckpointFrames pages) for as long as the database stays idle: a node with many
// databases would keep tens of MiB each. It needs the write lock and no reader on the WAL;
// the checkpointer's connection has no busy handler, so when either is taken it gives up at
// once (SQLITE_BUSY) instead of holding writers back, and the next idle round tries again.
func (db *database) checkpoint(c *sqlite.Conn, mode string) (complete bool) {
	rows, err := queryAll(c, "PRAGMA wal_checkpoint("+mode+")")
	switch {
	case errors.Is(err, sqlite.ErrBusy):
	case err != nil:
		db.s.log.Warn("store: checkpoint", "db", db.name, "mode", mode, "err", err)
	case len(rows) == 1 && len(rows[0]) == 3:
		// (busy, frames in the WAL, frames checkpointed so far); -1 when not known
		busy, _ := rows[0][0].(int64)
		if n, _ := rows[0][1].(int64); n >= 0 {
			db.ckptFrom.Store(n)
		}
		if n, _ := rows[0][2].(int64); n > 0 {
			db.s.statCheckpoints.Add(1)
			db.s.statCheckpointFrames.Add(uint64(n))
		}
		return busy == 0
	}
	return false
}
