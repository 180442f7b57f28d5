// Package benchref is the reference program of the kernel datapath's benchmark: a
// featureless LRU flow counter (bpf/bench/counter.c), against which the benchmark
// states fparser's cost as a ratio measured in the same run. Only the benchmark
// imports it; fparser never loads it.
package benchref
