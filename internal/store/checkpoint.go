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
const (
	// checkpointBytes of changesets applied since the last checkpoint start the next one.
	checkpointBytes = 2 << 20
	// checkpointIdle: a database that received less than checkpointBytes is checkpointed
	// this long after its last write, so that its WAL does not stay large while idle.
	checkpointIdle = 2 * time.Second
	// applyAutoCheckpoint is the apply connection's own wal_autocheckpoint (pages): a safety
	// net that bounds the WAL if the background checkpoints fall behind.
	applyAutoCheckpoint = 16384
)

// noteApplied counts n bytes of changesets committed by the apply connection and wakes the
// checkpointer when enough have accumulated. Called by the apply goroutine after COMMIT.
func (db *database) noteApplied(n int) {
	if db.ckptBytes.Add(int64(max(n, 1))) >= checkpointBytes {
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
	idle := time.NewTicker(checkpointIdle)
	defer idle.Stop()
	lastSeen := int64(0)
	for {
		select {
		case <-db.ctx.Done():
			return
		case <-db.ckptC:
		case <-idle.C:
			// Checkpoint only a database that was written to and then stayed quiet.
			n := db.ckptBytes.Load()
			quiet := n == lastSeen
			lastSeen = n
			if n == 0 || !quiet {
				continue
			}
		}
		db.ckptBytes.Store(0)
		lastSeen = 0
		if c == nil {
			var err error
			c, err = sqlite.Open(db.path, sqlite.OpenOptions{})
			if err != nil {
				db.s.log.Warn("store: open checkpoint connection", "db", db.name, "err", err)
				continue
			}
		}
		// PASSIVE is busy only while another checkpoint runs (a snapshot's, or the apply
		// connection's safety net); the next round catches up.
		rows, err := queryAll(c, "PRAGMA wal_checkpoint(PASSIVE)")
		switch {
		case errors.Is(err, sqlite.ErrBusy):
		case err != nil:
			db.s.log.Warn("store: checkpoint", "db", db.name, "err", err)
		case len(rows) == 1 && len(rows[0]) == 3:
			// (busy, frames in the WAL, frames checkpointed so far)
			if n, _ := rows[0][2].(int64); n > 0 {
				db.s.statCheckpoints.Add(1)
				db.s.statCheckpointFrames.Add(uint64(n))
			}
		}
	}
}
