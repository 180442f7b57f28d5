// Package userspace is the flow engine that the live and the offline datapaths share.
//
// A datapath (the kernel program, or the Go mirror of it in package offline) counts
// packets into a flow table keyed by [Key]. The [Engine] owns the rest of a flow's life:
// it keeps the clock, ends flows whose idle, FIN or active timeout has passed (found
// through the table's deadline index offline, by events and an incremental walk of
// the kernel's map live), hands ended flows out in end order, answers lookups, and
// keeps the counters that Info reports. It owns its lock: datapaths hand it batches
// of packets or events, never take it. It never knows which datapath fills its table.
package userspace
