package sqlite

import (
	"context"
	"sync"
	"sync/atomic"

	"modernc.org/libc"
	lib "modernc.org/sqlite/lib"
)

// progressHandler is the sqlite3_progress_handler callback CancelOn installs: a non-zero
// return (the flag its context points at is set) makes SQLite fail the statement being
// stepped with SQLITE_INTERRUPT.
func progressHandler(_ *libc.TLS, pArg uintptr) int32 {
	return atomic.LoadInt32((*int32)(cptr(pArg)))
}

var progressHandlerPtr = cFunc(progressHandler)

// cancelEvery is how many virtual machine instructions pass between two looks at the flag.
const cancelEvery = 1000

// CancelOn makes the statement c is stepping fail with SQLITE_INTERRUPT once ctx ends, until
// the returned stop is called. Unlike InterruptOn it leaves nothing behind: sqlite3_interrupt
// sets a flag of the connection that SQLite clears only when a statement starts while no
// other is active, so on a connection that keeps a statement open mid-result (a cursor) it
// fails every later statement too. CancelOn sets a flag of its own that a progress handler
// reads, which fails only the statement being stepped, and stop clears it (once an update
// that already started has landed). One CancelOn at a time per connection; stop may be
// called more than once.
func (c *Conn) CancelOn(ctx context.Context) (stop func()) {
	if c.db == 0 {
		return func() {}
	}
	if c.cancelFlag == 0 {
		p := cMalloc(c.tls, 4)
		if p == 0 {
			return c.InterruptOn(ctx) // out of memory: the connection-wide way
		}
		writeInt32(p, 0)
		c.imu.Lock()
		c.cancelFlag = p
		c.imu.Unlock()
		lib.Xsqlite3_progress_handler(c.tls, c.db, cancelEvery, progressHandlerPtr, p)
	}
	stopSetting := onDone(ctx, func() { c.setCancel(1) })
	var once sync.Once
	return func() {
		once.Do(func() {
			stopSetting()
			c.setCancel(0) // once only: a later CancelOn may have set it meanwhile
		})
	}
}

// setCancel sets CancelOn's flag, unless c has been closed (and the flag freed).
func (c *Conn) setCancel(v int32) {
	c.imu.Lock()
	defer c.imu.Unlock()
	if c.idb != 0 && c.cancelFlag != 0 {
		atomic.StoreInt32((*int32)(cptr(c.cancelFlag)), v)
	}
}
