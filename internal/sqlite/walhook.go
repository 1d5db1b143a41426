package sqlite

import (
	"modernc.org/libc"
	lib "modernc.org/sqlite/lib"
)

// walHook is the sqlite3_wal_hook callback installed by TrackWALFrames: it stores the number
// of frames in the WAL after a commit in the int32 its context points at.
func walHook(_ *libc.TLS, pArg, _, _ uintptr, nFrames int32) int32 {
	writeInt32(pArg, nFrames)
	return lib.SQLITE_OK
}

var walHookPtr = cFunc(walHook)

// TrackWALFrames makes c count the frames in the WAL after each of its commits (WALFrames)
// instead of checkpointing: SQLite's automatic checkpoint is itself a WAL hook, so this turns
// it off on c. It is for connections that commit often and leave checkpoints to another
// connection, deciding from the count when one is due.
func (c *Conn) TrackWALFrames() error {
	if c.db == 0 {
		return errClosed()
	}
	if c.walFrames == 0 {
		c.walFrames = cMalloc(c.tls, 4)
		if c.walFrames == 0 {
			return &Error{Code: lib.SQLITE_NOMEM, Msg: "out of memory"}
		}
	}
	writeInt32(c.walFrames, 0)
	lib.Xsqlite3_wal_hook(c.tls, c.db, walHookPtr, c.walFrames)
	return nil
}

// WALFrames is the number of frames in the WAL after c's last commit, as SQLite's WAL hook
// reported it (0 before the first commit, or without TrackWALFrames). A checkpoint that
// copies the whole WAL lets the next commit start it again from its first frame.
func (c *Conn) WALFrames() int {
	if c.walFrames == 0 {
		return 0
	}
	return int(readInt32(c.walFrames))
}

// rollbackHook is the sqlite3_rollback_hook callback of every connection: it notes the
// rollback in the int32 its context points at (Conn.rolledBack).
func rollbackHook(_ *libc.TLS, pArg uintptr) {
	writeInt32(pArg, 1)
}

var rollbackHookPtr = cFunc(rollbackHook)

// schemaCachesCheck drops the caches keyed by schema_version if a transaction rolled back
// since the last check: the numbers it used are given out again, to other schemas.
func (c *Conn) schemaCachesCheck() {
	if c.rolledBack == 0 || readInt32(c.rolledBack) == 0 {
		return
	}
	writeInt32(c.rolledBack, 0)
	c.dropShapes()
	c.keyedVersion = -1
}
