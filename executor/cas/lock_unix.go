//go:build unix

package cas

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// flock tries to take f's advisory lock, shared or exclusive, without
// waiting.
func flock(f *os.File, exclusive bool) (bool, error) {
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return false, nil
	}
	return err == nil, err
}
