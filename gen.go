package fparser

// The kernel datapath: bpf/fparser.c compiled for little-endian BPF, with its Go
// bindings, into internal/loader. The outputs are committed, so building fparser
// needs only Go; CI regenerates them with clang and fails on any difference.
//
//go:generate go tool bpf2go -go-package loader -output-dir internal/loader -output-stem fparser -target bpfel -cflags "-O2 -g -mcpu=v3 -Wall -Werror" -type event -type record fparser bpf/fparser.c
//
// The reference program of the kernel datapath's benchmark (bpf/bench), with the same
// flags, into a package that only the benchmark imports.
//
//go:generate go tool bpf2go -go-package benchref -output-dir internal/loader/benchref -output-stem counter -target bpfel -cflags "-O2 -g -mcpu=v3 -Wall -Werror" counter bpf/bench/counter.c
