package benchref

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// Counter is the reference program, loaded: XDP, with its flow map and the ring
// buffer of its FIN and RST events.
type Counter struct {
	objs counterObjects
}

// Load loads the reference counter with a flow map of maxFlows entries, the size
// the fparser program it is compared with has.
func Load(maxFlows uint32) (*Counter, error) {
	spec, err := loadCounter()
	if err != nil {
		return nil, fmt.Errorf("reference counter: %w", err)
	}
	spec.Maps["ref_flows"].MaxEntries = maxFlows
	c := new(Counter)
	if err := spec.LoadAndAssign(&c.objs, nil); err != nil {
		return nil, fmt.Errorf("reference counter: %w", err)
	}
	return c, nil
}

// Program is the XDP program.
func (c *Counter) Program() *ebpf.Program { return c.objs.RefCounter }

// Flows is the flow map.
func (c *Counter) Flows() *ebpf.Map { return c.objs.RefFlows }

// Close releases the program and its maps.
func (c *Counter) Close() error { return c.objs.Close() }
