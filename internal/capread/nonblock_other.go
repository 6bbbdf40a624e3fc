//go:build !unix

package capread

const nonblock = 0
