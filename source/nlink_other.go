//go:build !unix

package source

import "io/fs"

// nlink returns 1: the link count is not available here.
func nlink(fs.FileInfo) uint64 { return 1 }
