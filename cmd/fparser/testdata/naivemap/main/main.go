// Command naivemap runs package naivemap on one capture file as a process of its own,
// so that its peak memory can be compared with the flow exporters': naivemap FILE
// writes the flows to standard output and what it saw to standard error.
package main

import (
	"fmt"
	"os"

	"github.com/fparser/fparser/cmd/fparser/testdata/naivemap"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: naivemap FILE")
		os.Exit(2)
	}
	st, err := naivemap.Run(os.Args[1], os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "naivemap:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "naivemap: %d packets, %d in %d flows\n", st.Packets, st.Counted, st.Flows)
}
