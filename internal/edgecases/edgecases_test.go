package edgecases

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the generated captures in testdata/")

//go:generate go test -run TestGeneratedCapturesUpToDate -update

// TestGeneratedCapturesUpToDate keeps testdata/ equal to what the generator writes.
func TestGeneratedCapturesUpToDate(t *testing.T) {
	dir := filepath.Join("..", "..", "testdata")
	if *update {
		if err := WriteAll(dir); err != nil {
			t.Fatal(err)
		}
	}
	tmp := t.TempDir()
	if err := WriteAll(tmp); err != nil {
		t.Fatal(err)
	}
	for _, c := range All() {
		want, err := os.ReadFile(filepath.Join(tmp, c.Name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, c.Name))
		if err != nil {
			t.Fatalf("%v (run go generate ./internal/edgecases)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("testdata/%s differs from the generator's output (run go generate ./internal/edgecases)", c.Name)
		}
	}
}
