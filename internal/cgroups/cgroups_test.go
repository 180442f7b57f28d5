package cgroups

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fparser/fparser/internal/testharness"
)

// idOf is the kernel's id of the group at path, from its file handle, which for
// cgroup2 carries the id the BPF helpers return: an independent reading of what
// Resolver takes from the inode number.
func idOf(t *testing.T, path string) uint64 {
	t.Helper()
	h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, path, 0)
	if err != nil {
		t.Fatalf("file handle of %s: %v", path, err)
	}
	if len(h.Bytes()) != 8 {
		t.Fatalf("file handle of %s: %d bytes, want 8", path, len(h.Bytes()))
	}
	return binary.NativeEndian.Uint64(h.Bytes())
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestResolver makes groups under the cgroup2 mount and names them by the ids the
// kernel gives them: at the first lookup, and after a later walk for a group made
// since.
func TestResolver(t *testing.T) {
	testharness.RequireRoot(t, "the cgroup tests (they make cgroups)")
	root, err := Mount()
	if errors.Is(err, ErrNoCgroup2) {
		testharness.Skip(t, "no cgroup2 filesystem mounted")
	}
	if err != nil {
		t.Fatal(err)
	}
	top := filepath.Join(root, "fparser-test-"+strconv.Itoa(os.Getpid()))
	nested := filepath.Join(top, "a", "b")
	if err := os.MkdirAll(nested, 0o755); err != nil {
		t.Fatal(err)
	}
	later := filepath.Join(top, "later")
	t.Cleanup(func() {
		for _, d := range []string{nested, filepath.Dir(nested), later, top} {
			os.Remove(d) // cgroups are removed with rmdir, deepest first
		}
	})
	for _, d := range []string{root, top, nested} {
		if id, ino := idOf(t, d), inode(t, d); id != ino {
			t.Fatalf("%s: id %d from its file handle, inode %d: the ids are not inode numbers here", d, id, ino)
		}
	}

	r := NewResolver(root)
	r.rewalk = 1 << 62 // no walk but the first, until the test says
	for d, want := range map[string]string{root: "/", top: "/" + filepath.Base(top), nested: "/" + filepath.Base(top) + "/a/b"} {
		if got, ok := r.Path(idOf(t, d)); !ok || got != want {
			t.Errorf("Path(id of %s) = %q, %v; want %q", d, got, ok, want)
		}
	}
	if got, ok := r.Path(1<<60 + 12345); ok {
		t.Errorf("an id no group has: %q", got)
	}
	if err := os.Mkdir(later, 0o755); err != nil {
		t.Fatal(err)
	}
	id := idOf(t, later)
	if _, ok := r.Path(id); ok {
		t.Error("a group made after the walk was found before the next walk was due")
	}
	r.mu.Lock()
	r.rewalk = 0
	r.mu.Unlock()
	if got, ok := r.Path(id); !ok || got != "/"+filepath.Base(top)+"/later" {
		t.Errorf("after a walk, Path(id of %s) = %q, %v", later, got, ok)
	}
}

// TestMountIsCgroup2: what Mount finds is a cgroup2 filesystem.
func TestMountIsCgroup2(t *testing.T) {
	root, err := Mount()
	if errors.Is(err, ErrNoCgroup2) {
		testharness.Skip(t, "no cgroup2 filesystem mounted")
	}
	if err != nil {
		t.Fatal(err)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(root, &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Type != unix.CGROUP2_SUPER_MAGIC {
		t.Errorf("%s: filesystem type %#x, want cgroup2's %#x", root, fs.Type, unix.CGROUP2_SUPER_MAGIC)
	}
}
