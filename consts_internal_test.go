package fparser

import (
	"testing"

	"github.com/fparser/fparser/internal/userspace"
)

// TestPublicConstantsMatchTheDatapath: the root package states its constants'
// values, so that go doc shows them; they must be the values the datapaths use.
func TestPublicConstantsMatchTheDatapath(t *testing.T) {
	for _, c := range []struct {
		name         string
		public, used uint64
	}{
		{"TCP", uint64(TCP), userspace.ProtoTCP}, {"UDP", uint64(UDP), userspace.ProtoUDP},
		{"FIN", uint64(FIN), userspace.FlagFIN}, {"SYN", uint64(SYN), userspace.FlagSYN},
		{"RST", uint64(RST), userspace.FlagRST}, {"PSH", uint64(PSH), userspace.FlagPSH},
		{"ACK", uint64(ACK), userspace.FlagACK}, {"URG", uint64(URG), userspace.FlagURG},
		{"ECE", uint64(ECE), userspace.FlagECE}, {"CWR", uint64(CWR), userspace.FlagCWR},
		{"EndIdle", uint64(EndIdle), uint64(userspace.EndIdle)}, {"EndFIN", uint64(EndFIN), uint64(userspace.EndFIN)},
		{"EndRST", uint64(EndRST), uint64(userspace.EndRST)}, {"EndReused", uint64(EndReused), uint64(userspace.EndReused)},
		{"EndActive", uint64(EndActive), uint64(userspace.EndActive)},
		{"EndEndOfCapture", uint64(EndEndOfCapture), uint64(userspace.EndEndOfCapture)},
		{"EndStopped", uint64(EndStopped), uint64(userspace.EndStopped)},
		{"EndEvicted", uint64(EndEvicted), uint64(userspace.EndEvicted)},
		{"DefaultFlowTimeout", uint64(DefaultFlowTimeout), uint64(userspace.DefaultIdle)},
		{"DefaultFinTimeout", uint64(DefaultFinTimeout), uint64(userspace.DefaultFIN)},
	} {
		if c.public != c.used {
			t.Errorf("%s is %d; the datapath uses %d", c.name, c.public, c.used)
		}
	}
}
