// Command rusage runs a command and reports the peak RSS and CPU time that its
// process took: rusage CMD [ARG...] runs CMD with this process's standard input,
// output and error, then writes one line to standard error,
//
//	rusage: maxrss-kib=N user-ns=N sys-ns=N
//
// and exits with CMD's status.
//
// A benchmark cannot read a child's peak RSS itself: Go starts a child with vfork,
// and Linux counts the memory of the process that forked into the child's peak, so
// every child of a benchmark that has grown to 100 MiB peaks at 100 MiB or more.
// Started from this small process instead, the child's peak is its own, with a floor
// of this process's few MiB.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: rusage CMD [ARG...]")
		os.Exit(2)
	}
	cmd := exec.Command(os.Args[1], os.Args[2:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		fmt.Fprintln(os.Stderr, "rusage:", err)
		os.Exit(127)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	fmt.Fprintf(os.Stderr, "rusage: maxrss-kib=%d user-ns=%d sys-ns=%d\n", ru.Maxrss, ru.Utime.Nano(), ru.Stime.Nano())
	os.Exit(cmd.ProcessState.ExitCode())
}
