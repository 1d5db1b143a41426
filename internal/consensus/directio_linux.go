package consensus

import "syscall"

// directIO is the open flag that bypasses the page cache for the zero-filling of spare
// segments (see writeZerosDirect).
const directIO = syscall.O_DIRECT
