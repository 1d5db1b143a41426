//go:build !linux

package consensus

// directIO: zero-filling goes through the page cache where O_DIRECT is not used.
const directIO = 0
