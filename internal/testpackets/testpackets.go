// Package testpackets gathers the packets the filter tests run on: every capture in
// the module's testdata and, when it sits beside the module, in ../shared/corpus.
package testpackets

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/fparser/fparser/filter"
	"github.com/fparser/fparser/internal/offline"
)

// Packet is one captured frame and where it came from.
type Packet struct {
	Data   []byte
	Wire   int
	Link   filter.Link
	Source string // file, relative to testdata or the corpus
	Index  int    // 0-based position in its file
}

// ModuleRoot finds the directory holding go.mod above the working directory.
func ModuleRoot(t testing.TB) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

// CorpusDir is ../shared/corpus beside the module root, or "" when it is absent.
func CorpusDir(t testing.TB) string {
	c := filepath.Join(ModuleRoot(t), "..", "shared", "corpus")
	if _, err := os.Stat(filepath.Join(c, "MANIFEST.tsv")); err != nil {
		return ""
	}
	return c
}

// Files lists the captures: testdata's, then the corpus's when present.
func Files(t testing.TB) []string {
	root := ModuleRoot(t)
	var files []string
	for _, pat := range []string{"*.pcap", "*.pcapng", "*.pcap.gz"} {
		m, _ := filepath.Glob(filepath.Join(root, "testdata", pat))
		files = append(files, m...)
	}
	if c := CorpusDir(t); c != "" {
		filepath.WalkDir(filepath.Join(c, "pcaps"), func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				files = append(files, path)
			}
			return nil
		})
	}
	sort.Strings(files)
	return files
}

// EachFile calls fn for each of files, as many at a time as there are CPUs (each
// call runs an external tool over a capture, say), and returns when all are done. i
// is the file's index in files.
func EachFile(files []string, fn func(i int, path string)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i, path := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			fn(i, path)
		}()
	}
	wg.Wait()
}

// Load reads every packet of every capture Files lists. Captures that cannot be read
// to the end contribute the packets before the damage.
func Load(t testing.TB) []Packet {
	root := ModuleRoot(t)
	var out []Packet
	for _, path := range Files(t) {
		src, err := offline.Open(path)
		if err != nil {
			continue
		}
		name := path
		if r, err := filepath.Rel(root, path); err == nil && !strings.HasPrefix(r, "..") {
			name = r
		} else if i := strings.Index(path, "corpus"+string(filepath.Separator)); i >= 0 {
			name = path[i:]
		}
		var f offline.Frame
		for i := 0; ; i++ {
			if err := src.Next(&f); err != nil {
				if err != io.EOF {
					t.Logf("%s: %v (kept the %d packets before)", name, err, i)
				}
				break
			}
			out = append(out, Packet{
				Data:   append([]byte(nil), f.Data...),
				Wire:   f.Wire,
				Link:   filter.Link{Type: f.LinkType, BigEndian: src.BigEndian()},
				Source: name,
				Index:  i,
			})
		}
		src.Close()
	}
	return out
}

// Expressions reads filter/testdata/expressions.txt, the pcap-filter expressions the
// filter tests compare: one a line, # comments.
func Expressions(t testing.TB) []string {
	f, err := os.Open(filepath.Join(ModuleRoot(t), "filter", "testdata", "expressions.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out
}
