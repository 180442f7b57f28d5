package loader

import (
	"fmt"

	"github.com/fparser/fparser/internal/userspace"
)

// The per-CPU stats array's indices, as bpf/fparser.c numbers them. A packet counts
// in exactly one of the first six, in lost inserts when it could not be counted, or
// in filtered alone.
const (
	statAcceptedTCP = iota
	statAcceptedUDP
	statNonIP
	statOtherL4
	statMalformed
	statUnattributed
	statFragments
	statNewFlows
	statRingbufFailed
	statLostInsert
	statFiltered
	statRecordsLost
	statRestarts // read after statNewFlows: the kernel adds to it first (Info.Evictions)
	statDuplicates
	statCount
)

// Counters sums the datapath's per-CPU counters.
func (d *Datapath) Counters() (userspace.DatapathCounters, error) {
	var sums [statCount]uint64
	var perCPU []uint64
	for i := range uint32(statCount) {
		if err := d.objs.Stats.Lookup(i, &perCPU); err != nil {
			return userspace.DatapathCounters{}, fmt.Errorf("read counter %d: %w", i, err)
		}
		for _, v := range perCPU {
			sums[i] += v
		}
	}
	accepted := sums[statAcceptedTCP] + sums[statAcceptedUDP]
	var readErrors uint64
	if d.table != nil {
		readErrors = d.table.ReadErrors()
	}
	return userspace.DatapathCounters{
		Seen:     accepted + sums[statNonIP] + sums[statOtherL4] + sums[statMalformed] + sums[statUnattributed] + sums[statLostInsert] + sums[statFiltered],
		Filtered: sums[statFiltered],
		Accepted: accepted, AcceptedTCP: sums[statAcceptedTCP], AcceptedUDP: sums[statAcceptedUDP],
		NonIP: sums[statNonIP], OtherL4: sums[statOtherL4], Malformed: sums[statMalformed],
		Fragments: sums[statFragments], Unattributed: sums[statUnattributed],
		NewFlows: sums[statNewFlows], RingbufFailed: sums[statRingbufFailed], LostInserts: sums[statLostInsert],
		RecordsLost: sums[statRecordsLost], Restarts: sums[statRestarts], MapReadErrors: readErrors,
		Duplicates: sums[statDuplicates],
	}, nil
}
