package fparser

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/fparser/fparser/internal/loader"
)

// modulePath is this module's import path, to find its version in the build
// information of whichever program imports it.
const modulePath = "github.com/fparser/fparser"

// VersionInfo says which fparser a program runs.
type VersionInfo struct {
	// Module is the module's version, as go install or a go.mod requirement gave
	// it (v1.2.3, or a pseudo-version). A build inside the module's own checkout
	// has none; Module is then its VCS revision, with "+dirty" for uncommitted
	// changes, or "(devel)" when the build recorded none.
	Module string
	// Go is the Go version the program was built with.
	Go string
	// KernelObject identifies the eBPF object built into the program: the first 12
	// hex digits of its SHA-256.
	KernelObject string
}

// Version reports the version of fparser built into the running program.
func Version() VersionInfo {
	v := VersionInfo{Module: "(devel)", Go: runtime.Version(), KernelObject: loader.ObjectID()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	mod := &bi.Main
	if mod.Path != modulePath {
		mod = nil
		for _, d := range bi.Deps {
			if d.Path == modulePath {
				mod = d
				if d.Replace != nil {
					mod = d.Replace
				}
				break
			}
		}
	}
	if mod != nil && mod.Version != "" && mod.Version != "(devel)" {
		v.Module = mod.Version
		return v
	}
	if bi.Main.Path != modulePath {
		return v // the VCS settings are the importing program's
	}
	var revision, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if revision != "" {
		v.Module = "(devel) " + revision[:min(len(revision), 12)] + dirty
	}
	return v
}

// String is the version in one line, as fparser --version prints it.
func (v VersionInfo) String() string {
	return fmt.Sprintf("fparser %s, built with %s, kernel object %s", v.Module, v.Go, v.KernelObject)
}
