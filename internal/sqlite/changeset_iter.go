package sqlite

import (
	lib "modernc.org/sqlite/lib"
)

// changesetIter walks a changeset held in C memory (sqlite3changeset_start/next/finalize).
// Its scratch area in C memory receives the out-parameters of the calls.
type changesetIter struct {
	c  *Conn
	it uintptr
	m  uintptr
}

// Offsets in the scratch area.
const (
	ciIter = 0  // sqlite3_changeset_iter *
	ciTab  = 8  // const char *zTab
	ciNCol = 16 // int nCol
	ciOp   = 20 // int op
	ciPtr  = 24 // unsigned char *abPK, or sqlite3_value *
	ciN    = 32 // int nPK
	ciSize = 40
)

// startChangeset starts iterating the n bytes of changeset at p; close releases the iterator.
func (c *Conn) startChangeset(p uintptr, n int) (*changesetIter, error) {
	tls := c.tls
	m := tls.Alloc(ciSize)
	writePtr(m+ciIter, 0)
	if rc := lib.Xsqlite3changeset_start(tls, m+ciIter, int32(n), p); rc != lib.SQLITE_OK {
		tls.Free(ciSize)
		return nil, errorFor(tls, 0, rc)
	}
	return &changesetIter{c: c, it: readPtr(m + ciIter), m: m}, nil
}

func (ci *changesetIter) close() {
	lib.Xsqlite3changeset_finalize(ci.c.tls, ci.it)
	ci.c.tls.Free(ciSize)
}

// next moves to the next change and reads its table (a C string, valid until the next call),
// column count and operation. ok is false at the end.
func (ci *changesetIter) next() (zTab uintptr, nCol int, op int32, ok bool, err error) {
	tls := ci.c.tls
	switch rc := lib.Xsqlite3changeset_next(tls, ci.it); rc {
	case lib.SQLITE_ROW:
	case lib.SQLITE_DONE:
		return 0, 0, 0, false, nil
	default:
		return 0, 0, 0, false, errorFor(tls, 0, rc)
	}
	m := ci.m
	if rc := lib.Xsqlite3changeset_op(tls, ci.it, m+ciTab, m+ciNCol, m+ciOp, 0); rc != lib.SQLITE_OK {
		return 0, 0, 0, false, errorFor(tls, 0, rc)
	}
	return readPtr(m + ciTab), int(readInt32(m + ciNCol)), readInt32(m + ciOp), true, nil
}

// pk returns the PRIMARY KEY flags of the current change's table (C memory).
func (ci *changesetIter) pk() ([]byte, error) {
	m := ci.m
	if rc := lib.Xsqlite3changeset_pk(ci.c.tls, ci.it, m+ciPtr, m+ciN); rc != lib.SQLITE_OK {
		return nil, errorFor(ci.c.tls, 0, rc)
	}
	return cview(readPtr(m+ciPtr), int(readInt32(m+ciN))), nil
}

// value returns the old or new value of column i of the current change: an sqlite3_value
// pointer, 0 when the change has none.
func (ci *changesetIter) value(old bool, i int) uintptr {
	m := ci.m
	writePtr(m+ciPtr, 0)
	if old {
		lib.Xsqlite3changeset_old(ci.c.tls, ci.it, int32(i), m+ciPtr)
	} else {
		lib.Xsqlite3changeset_new(ci.c.tls, ci.it, int32(i), m+ciPtr)
	}
	return readPtr(m + ciPtr)
}
