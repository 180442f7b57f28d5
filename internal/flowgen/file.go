package flowgen

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
)

// version changes whenever the same Config would write other bytes, so that a
// capture File left by an older generator is not taken for the new one.
const version = 1

// File returns the path of c's capture in os.TempDir() and its Summary, writing it
// first unless an earlier run left it there: benchmarks that replay a capture of
// gigabytes should not spend seconds writing it each time they start. The file's
// name comes from c and the generator's version; its Summary is kept beside it, as
// NAME.json, and a file whose size is not the one its Summary says is written again.
// Both are written under temporary names and renamed, so that a run that stops
// halfway, or two runs at once, leave no half-written capture under the name.
func File(c Config) (string, Summary, error) {
	if err := c.check(); err != nil {
		return "", Summary{}, err
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%d %+v", version, c)
	path := filepath.Join(os.TempDir(), fmt.Sprintf("fparser-flowgen-%016x.pcap", h.Sum64()))
	if s, err := cached(path); err == nil {
		return path, s, nil
	}
	s, err := WriteFile(path, c)
	if err != nil {
		return "", Summary{}, err
	}
	js, err := json.Marshal(s)
	if err != nil {
		return "", Summary{}, fmt.Errorf("flowgen: %w", err)
	}
	if err := writeRenamed(path+".json", func(f *os.File) error { _, err := f.Write(js); return err }); err != nil {
		return "", Summary{}, err
	}
	return path, s, nil
}

// cached returns the Summary of the capture at path when it is whole.
func cached(path string) (Summary, error) {
	var s Summary
	js, err := os.ReadFile(path + ".json")
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(js, &s); err != nil {
		return s, fmt.Errorf("%s.json: %w", path, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return s, err
	}
	if fi.Size() != s.FileBytes {
		return s, fmt.Errorf("%s: %d bytes, its summary says %d", path, fi.Size(), s.FileBytes)
	}
	return s, nil
}

// WriteFile writes c's capture to path, through a temporary file renamed once whole.
func WriteFile(path string, c Config) (Summary, error) {
	var s Summary
	err := writeRenamed(path, func(f *os.File) error {
		var err error
		s, err = Write(f, c)
		return err
	})
	return s, err
}

// writeRenamed writes path through a temporary file in the same directory.
func writeRenamed(path string, write func(*os.File) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("flowgen: %w", err)
	}
	defer os.Remove(f.Name()) // fails harmlessly once renamed
	// CreateTemp makes it 0600; a synthetic capture is no secret, and another user
	// replaying it should not have to write it again.
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return fmt.Errorf("flowgen: %w", err)
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("flowgen: write %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("flowgen: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("flowgen: %w", err)
	}
	return nil
}
