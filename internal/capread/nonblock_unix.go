//go:build unix

package capread

import "syscall"

// nonblock keeps an open of a FIFO swapped in after the check from
// blocking; the check after opening then refuses it.
const nonblock = syscall.O_NONBLOCK
