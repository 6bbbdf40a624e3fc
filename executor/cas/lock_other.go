//go:build !unix

package cas

import "os"

// flock is a no-op where advisory locks are missing: maintenance then
// relies on age alone.
func flock(*os.File, bool) (bool, error) { return true, nil }
