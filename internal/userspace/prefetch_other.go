//go:build !amd64 && !arm64

package userspace

func prefetch(addr uintptr) {}
