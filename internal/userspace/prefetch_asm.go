//go:build amd64 || arm64

package userspace

// prefetch asks the CPU to bring the cache line at addr closer. Unlike a load it
// never waits for the line, so a few of them in a row overlap their misses.
//
//go:noescape
func prefetch(addr uintptr)
