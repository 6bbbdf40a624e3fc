//go:build !unix

package atomicfile

import "os"

// lockFile does nothing where flock is missing: RemoveStale then goes by
// age alone.
func lockFile(*os.File) error { return nil }

func tryLock(*os.File) (bool, error) { return true, nil }
