package offline

import "sync"

// maxPlaceNames bounds the bytes of interface names that places remembers, whatever
// the file: an interface named past it is known by its number, as one without a
// name is.
const maxPlaceNames = 1 << 20

// places numbers a capture's interfaces as the places its packets are counted at
// (userspace.Where), from 0 in the order the file first describes them. Interfaces
// with the same name (pcapng's if_name) are one place in every section: a merged
// capture describes one interface again for each file it merges, and its packets
// were still seen at one place. An interface without a name is its number in its
// section, as the file says nothing more of it. A pcap file is one place, 0.
//
// It owns a lock because the names are asked for by whoever reports flows while the
// reader may be describing more interfaces.
type places struct {
	mu        sync.Mutex
	n         uint32            // places numbered
	byNum     []uint32          // unnamed interfaces' places plus one, by their number in the section
	byName    map[string]uint32 // named interfaces' places
	names     map[uint32]string // the names of the named places
	nameBytes int
}

// place returns the place of the interface numbered num in its section, called name
// ("" for none), numbering it when it is new.
func (p *places) place(num uint32, name string) uint32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if name != "" {
		if id, ok := p.byName[name]; ok {
			return id
		}
		if p.nameBytes+len(name) <= maxPlaceNames {
			if p.byName == nil {
				p.byName, p.names = make(map[string]uint32), make(map[uint32]string)
			}
			id := p.n
			p.n++
			p.byName[name], p.names[id] = id, name
			p.nameBytes += len(name)
			return id
		}
	}
	if uint64(num) >= uint64(len(p.byNum)) {
		p.byNum = append(p.byNum, make([]uint32, int(num)+1-len(p.byNum))...)
	}
	if p.byNum[num] == 0 {
		p.n++
		p.byNum[num] = p.n
	}
	return p.byNum[num] - 1
}

// name is the name of the place, "" when it has none.
func (p *places) name(place uint32) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.names[place]
}
