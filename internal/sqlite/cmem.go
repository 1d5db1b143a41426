package sqlite

import (
	"unsafe"

	"modernc.org/libc"
	lib "modernc.org/sqlite/lib"
)

// This file holds the few unsafe helpers of the binding. Memory given to or
// received from SQLite lives outside the Go heap (modernc's allocator maps it
// itself), so a uintptr into it is a stable address.

// cptr turns an address of C memory into an unsafe.Pointer. The double
// indirection keeps go vet's unsafeptr check quiet: the address is not a Go
// pointer and never was.
func cptr(p uintptr) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&p)) }

// cview returns a slice aliasing n bytes of C memory at p (no copy).
func cview(p uintptr, n int) []byte {
	if p == 0 || n <= 0 {
		return nil
	}
	return unsafe.Slice((*byte)(cptr(p)), n)
}

// goBytes copies n bytes of C memory at p into a new, non-nil Go slice.
func goBytes(p uintptr, n int) []byte {
	b := make([]byte, n)
	copy(b, cview(p, n))
	return b
}

// goString copies the NUL-terminated C string at p.
func goString(p uintptr) string {
	if p == 0 {
		return ""
	}
	return libc.GoString(p)
}

func readInt32(p uintptr) int32     { return *(*int32)(cptr(p)) }
func writeInt32(p uintptr, v int32) { *(*int32)(cptr(p)) = v }
func readPtr(p uintptr) uintptr     { return *(*uintptr)(cptr(p)) }
func writePtr(p uintptr, v uintptr) { *(*uintptr)(cptr(p)) = v }

// cFunc returns the C function pointer ccgo-generated code expects for a Go
// function. A func value is a pointer to a (static, for top-level functions)
// closure record; ccgo calls through such a record. f must be a top-level
// function, never a closure or method value.
func cFunc[T any](f T) uintptr { return *(*uintptr)(unsafe.Pointer(&f)) }

// sqliteFree is sqlite3_free as a C destructor (void(*)(void*)). It is
// computed once and never changes.
var sqliteFree = cFunc(lib.Xsqlite3_free)

// cMalloc allocates n bytes (at least 1) with sqlite3_malloc64.
func cMalloc(tls *libc.TLS, n int) uintptr {
	if n < 1 {
		n = 1
	}
	return lib.Xsqlite3_malloc64(tls, uint64(n))
}

// cCopy allocates len(b) bytes (at least 1) with sqlite3_malloc64 and copies b.
func cCopy(tls *libc.TLS, b []byte) uintptr {
	p := cMalloc(tls, len(b))
	if p != 0 {
		copy(cview(p, len(b)), b)
	}
	return p
}

// cCopyString is cCopy for strings.
func cCopyString(tls *libc.TLS, s string) uintptr {
	p := cMalloc(tls, len(s))
	if p != 0 {
		copy(cview(p, len(s)), s)
	}
	return p
}

// cString returns a NUL-terminated copy of s made with sqlite3_malloc64.
func cString(tls *libc.TLS, s string) uintptr {
	p := cMalloc(tls, len(s)+1)
	if p != 0 {
		m := cview(p, len(s)+1)
		copy(m, s)
		m[len(s)] = 0
	}
	return p
}
