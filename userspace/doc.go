// Package userspace is the flow engine that the live and the offline datapaths share.
//
// A datapath (the kernel program, or the Go mirror of it in package offline) counts
// packets into a flow table keyed by [Key]. The [Engine] owns the rest of a flow's life:
// it keeps the clock, sweeps the table for flows whose idle, FIN or active timeout has
// passed, hands ended flows out in end order, answers lookups, and keeps the counters
// that Info reports. It never knows which datapath fills its table.
package userspace
