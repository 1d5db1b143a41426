package sqlite

import (
	"modernc.org/libc"
	lib "modernc.org/sqlite/lib"
)

// Thin wrappers for tests that walk a changeset.

func freeC(c *Conn, p uintptr) { lib.Xsqlite3_free(c.tls, p) }

func libStart(tls *libc.TLS, pp uintptr, n int, p uintptr) int32 {
	return lib.Xsqlite3changeset_start(tls, pp, int32(n), p)
}
func libNext(tls *libc.TLS, it uintptr) int32     { return lib.Xsqlite3changeset_next(tls, it) }
func libFinalize(tls *libc.TLS, it uintptr) int32 { return lib.Xsqlite3changeset_finalize(tls, it) }
func libOp(tls *libc.TLS, it, pzTab, pnCol, pOp uintptr) int32 {
	return lib.Xsqlite3changeset_op(tls, it, pzTab, pnCol, pOp, 0)
}

func libPK(tls *libc.TLS, it, ppk, pn uintptr) int32 {
	return lib.Xsqlite3changeset_pk(tls, it, ppk, pn)
}
