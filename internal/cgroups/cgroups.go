// Package cgroups names cgroup v2 groups by the ids the kernel's BPF helpers give
// (bpf_get_current_cgroup_id, bpf_skb_cgroup_id). A group's id is the inode number
// of its directory in the cgroup2 filesystem, so a walk of that filesystem maps ids
// to paths, such as /system.slice/nginx.service, without reading any process's
// files.
package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNoCgroup2: no cgroup2 filesystem is mounted.
var ErrNoCgroup2 = errors.New("no cgroup v2 filesystem mounted")

// Mount finds where the cgroup2 filesystem is mounted: /sys/fs/cgroup on a
// unified host, /sys/fs/cgroup/unified on a hybrid one, from /proc/self/mounts.
func Mount() (string, error) {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return "", fmt.Errorf("find the cgroup v2 mount: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// device mountpoint fstype options dump pass; the mount point has its
		// spaces escaped as \040, which cgroup mounts do not use.
		fields := strings.Fields(sc.Text())
		if len(fields) >= 3 && fields[2] == "cgroup2" {
			return fields[1], nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("find the cgroup v2 mount: %w", err)
	}
	return "", ErrNoCgroup2
}

// MinRewalk is the least time between two walks of the hierarchy that a Resolver
// makes for ids it does not know: a busy host's unknown ids (groups made and gone
// between a packet and its name's lookup) must not make every lookup walk.
const MinRewalk = time.Second

// Resolver names groups by id. It walks the hierarchy once at the first lookup,
// and again, at most once per MinRewalk, when asked for an id it has not seen:
// groups are made and removed while it runs. Its methods are safe for concurrent
// use.
type Resolver struct {
	root string

	mu     sync.Mutex
	paths  map[uint64]string
	walked time.Time // the last walk, zero before the first
	rewalk time.Duration
}

// NewResolver names the groups of the cgroup2 filesystem mounted at root.
func NewResolver(root string) *Resolver {
	return &Resolver{root: root, rewalk: MinRewalk}
}

// Path is the group's path below the cgroup2 mount, "/" for the root group, such
// as "/system.slice/nginx.service"; ok is false for an id that names no group (one
// gone before it was looked up, or that never was).
func (r *Resolver) Path(id uint64) (path string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if path, ok = r.paths[id]; ok {
		return path, true
	}
	if !r.walked.IsZero() && time.Since(r.walked) < r.rewalk {
		return "", false
	}
	r.walk()
	path, ok = r.paths[id]
	return path, ok
}

// walk maps every group's id to its path. Groups vanish while it walks: what it
// cannot read it passes over.
func (r *Resolver) walk() {
	r.walked = time.Now()
	paths := make(map[uint64]string, len(r.paths))
	filepath.WalkDir(r.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fs.SkipDir // gone, or not ours to read
		}
		if !d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return fs.SkipDir
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		rel, _ := filepath.Rel(r.root, p)
		paths[st.Ino] = filepath.Clean("/" + rel)
		return nil
	})
	r.paths = paths
}
