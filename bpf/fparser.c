// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* fparser's kernel datapath: one parser and one update routine, shared by an XDP
 * program (ingress) and a TC program (TCX ingress or egress), that count every TCP and
 * UDP packet into a per-flow LRU hash entry. offline/parse.go, offline/tunnel.go and
 * offline/datapath.go mirror this file rule for rule; a differential test holds
 * them equal. */
#include "bpf_defs.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Set at load time. Timeouts in ns; active_ns 0 means no active timeout. */
volatile const __u64 idle_ns = 600000000000ULL;
volatile const __u64 fin_ns = 30000000000ULL;
volatile const __u64 active_ns = 0;
/* For the differential test: when set, the clock is test_now, which the test writes
 * before each run, instead of the kernel's monotonic clock. 0 in production, where the
 * verifier removes the branch. */
volatile const __u8 test_clock = 0;
__u64 test_now;
/* When set, timestamps come from the coarse monotonic clock (the kernel's tick, a few
 * ms): a third of a hot packet's cost on some machines, at tick resolution. */
volatile const __u8 coarse_clock = 0;
/* Set by the loader when it has spliced a packet filter into fparser_filter. */
volatile const __u8 filter_on = 0;
/* When set, each packet also updates its direction's statistics (struct dir_stats):
 * two more cache lines and a few ns a packet, so only when asked for. */
volatile const __u8 stats_on = 0;
/* When set, each TCP packet also updates its flow's TCP quality (struct
 * tcp_quality): handshake RTT, retransmissions, out-of-order segments and zero
 * windows, by tshark's rules. */
volatile const __u8 quality_on = 0;
/* When set, the packet is read by parse_tunnels, which opens tunnels (up to
 * MAX_TUNNELS deep) and keys it on the headers inside; the flow keeps the
 * outermost tunnel (struct tunnel). */
volatile const __u8 decap_on = 0;
/* How many packets of each flow are recorded for userspace's history: 0 none (the
 * verifier then drops the code), 0xFFFFFFFF all. */
volatile const __u32 history_limit = 0;
/* When set, the TC programs find the process and cgroup that sent each direction of
 * a flow from a local socket (attribute). */
volatile const __u8 owners_on = 0;

#define PROTO_TCP 6
#define PROTO_UDP 17
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10
#define MARK_FIN 0x01
#define MARK_RST 0x02

/* userspace.Key: the two endpoints in canonical order, IPv4 v4-mapped. */
struct flow_key {
	__u8 a[16];
	__u8 b[16];
	__u16 port_a;
	__u16 port_b;
	__u16 vlan;
	__u8 proto;
	__u8 pad;
};

/* userspace.Counters */
struct counters {
	__u64 packets;
	__u64 bytes;
	__s64 first;
	__s64 last;
};

/* userspace.DirStats: sums, so that a packet updates them in place with no loop and
 * no division. Gaps between a direction's packets are in whole microseconds. */
struct dir_stats {
	__u32 size_min;
	__u32 size_max;
	__u64 size_squares;
	__u64 gap_min;
	__u64 gap_max;
	__u64 gap_sum;
	__u64 gap_squares;
	__u32 flag_packets[8]; /* by bit: FIN, SYN, RST, PSH, ACK, URG, ECE, CWR */
};

/* userspace.TCPDirQuality: one direction's TCP sequence analysis, the state tshark's
 * tcp_analyze_sequence_number keeps for it (nextseq, maxseqtobeacked, lastack,
 * window, dupacknum, and its last segment's keep-alive and zero-window-probe marks),
 * and what it counted. The time of the direction's last segment, tshark's
 * lastacktime, is the direction's counters' last. window starts at 0xFFFFFFFF,
 * which no TCP window equals, as tshark's. */
#define NO_WINDOW 0xFFFFFFFF /* userspace.NoWindow */

struct tcp_dir_quality {
	__s64 nextseq_time;
	__u32 nextseq;
	__u32 maxseq_to_ack;
	__u32 lastack;
	__u32 window;
	__u32 dupacks;
	__u32 retransmissions;
	__u32 out_of_order;
	__u32 zero_windows;
	__u32 last_marks;
	__u32 pad;
};

/* userspace.TCPQuality: the handshake's times, 0 until measured (tshark's
 * ts_mru_syn and ts_first_rtt, and the SYN to SYN+ACK part), whether the ACK that
 * gave first_rtt completed the handshake (the initiator's, without RST), then each
 * direction's analysis. */
struct tcp_quality {
	__s64 syn_time;
	__s64 first_rtt;
	__s64 synack_rtt;
	__u32 completed;
	__u32 pad;
	struct tcp_dir_quality d[2];
};

/* userspace.Tunnel: the outermost tunnel a flow's first packet came through, with
 * the outermost IP header's addresses (zero when it had none: MPLS or PPPoE
 * alone). In a packet, outer_a is that header's source; in a flow, the address on
 * endpoint A's side. */
enum {
	TUNNEL_VXLAN = 1,
	TUNNEL_GENEVE,
	TUNNEL_GRE,
	TUNNEL_ERSPAN,
	TUNNEL_GTPU,
	TUNNEL_IPIP,
	TUNNEL_IPV6IP,
	TUNNEL_MPLS,
	TUNNEL_PPPOE,
};

struct tunnel {
	__u8 kind;
	__u8 pad[3];
	__u32 id;
	__u8 outer_a[16];
	__u8 outer_b[16];
};

/* userspace.State. bits holds, from its low byte up: TCP flags of direction 0 (A to
 * B), TCP flags of direction 1, the initiator (0: A, 1: B), the FIN/RST marks: one
 * atomic OR updates flags and marks at once. recorded counts the packet records
 * sent (or lost), up to history_limit. gap_avg and size_avg16 are moving averages
 * over both directions, each packet weighing 1/8: the gap since the flow's previous
 * packet (ns), and the size in 1/16 bytes. where is the place each direction is
 * counted at, the first it was seen at (a "where" value, see count); duplicates
 * counts the packets seen again at another place. owner holds, by direction, whether
 * its sender was looked for (OWNER_DECIDED) and found (OWNER_FOUND): see attribute.
 * What every packet touches comes first, in two cache lines; the statistics, when
 * on, follow. */
struct flow_state {
	struct counters dir[2];
	__u32 bits;
	__u32 recorded;
	__u64 gap_avg;
	__u32 size_avg16;
	__u32 where[2];
	__u32 owner;
	__u64 duplicates;
	struct dir_stats st[2];
	struct tcp_quality q;
	struct tunnel t;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1 << 20);
	__type(key, struct flow_key);
	__type(value, struct flow_state);
} flows SEC(".maps");

/* A new flow's state is built here, not on the stack, which it would mostly fill. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct flow_state);
} scratch SEC(".maps");

/* Attribution. A socket's creator, kept with the socket from its creation by
 * fparser_sock_create; an accepted socket inherits its listener's (BPF_F_CLONE). */
struct sock_owner {
	__u32 pid;
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct sock_owner);
} sock_owners SEC(".maps");

/* The sender of one direction of a flow (userspace reads it as loader.Sender),
 * under the flow's key with pad set to the direction. since is the direction's first
 * packet's time: it tells userspace the entry is this flow's, not an earlier one's
 * of the same key. pid and comm are 0 and empty for a socket created before the
 * program was attached. */
struct sender {
	__s64 since;
	__u64 cgroup;
	__u32 pid;
	char comm[16];
	__u32 pad;
};

/* Entries only for flows with a local socket, made as they are found and removed by
 * userspace when the flow ends. An LRU map, an eighth of the flow map's size: a flow
 * that leaves the flow map unreported (evicted, or ended while no process read the
 * map) leaves its entries, which the LRU ages out rather than let them fill it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1 << 17);
	__type(key, struct flow_key);
	__type(value, struct sender);
} owners SEC(".maps");

/* Fragments: the flow of each first fragment, for the later ones. */
struct frag_key {
	__u8 src[16];
	__u8 dst[16];
	__u32 id;
	__u8 proto;
	__u8 pad[3];
};

struct frag_flow {
	struct flow_key key;
	__u8 src_is_a;
	__u8 pad[7];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct frag_key);
	__type(value, struct frag_flow);
} frags SEC(".maps");

/* Events to userspace. */
enum {
	EVENT_MARK = 1,  /* a FIN or RST first marked the flow: it may end at time + fin_ns */
	EVENT_ENDED = 2, /* the datapath ended the flow (reason) and started it anew */
	EVENT_PACKET = 3, /* a packet record for the history (struct record) */
};

/* userspace.EndReason values used here. */
enum {
	END_IDLE = 1,
	END_FIN = 2,
	END_RST = 3,
	END_REUSED = 4,
	END_ACTIVE = 5,
};

struct event {
	__u8 type;
	__u8 reason;
	__u8 pad[6];
	__s64 time; /* EVENT_MARK: the packet's time; EVENT_ENDED: when the flow ended */
	struct flow_key key;
	struct flow_state state; /* EVENT_ENDED: the final counters */
};

/* userspace.PacketRecord, with its flow. dir is the canonical direction. */
struct record {
	__u8 type;
	__u8 dir;
	__u8 flags;
	__u8 ttl;
	__u16 ipid;
	__u16 window;
	__u32 length;
	__u32 seq;
	__u32 ack;
	__u32 pad;
	__s64 time;
	struct flow_key key;
};

/* Keeps struct event and struct record in BTF, so Go bindings are generated. */
const struct event *unused_event __attribute__((unused));
const struct record *unused_record __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} events SEC(".maps");

/* Packet records wake the reader once per 2^records_wake_shift bytes waiting: an
 * eighth of the ring, whose size the loader may change. A record takes its 72 bytes
 * and the ring's 8-byte header. */
volatile const __u32 records_wake_shift = 19;
#define RECORD_BYTES (sizeof(struct record) + 8)

/* Datapath counters (userspace.DatapathCounters). A packet increments exactly one of
 * the first six, its fate; userspace adds them up into "seen" and "accepted". */
enum {
	STAT_ACCEPTED_TCP,
	STAT_ACCEPTED_UDP,
	STAT_NON_IP,
	STAT_OTHER_L4,
	STAT_MALFORMED,
	STAT_UNATTRIBUTED,
	STAT_FRAGMENTS,
	STAT_NEW_FLOWS,
	STAT_RINGBUF_FAILED,
	STAT_LOST_INSERT, /* a new flow evicted before it could be counted */
	STAT_FILTERED,    /* rejected by the packet filter */
	STAT_RECORDS_LOST, /* packet records the ring buffer had no room for */
	STAT_RESTARTS,    /* of the new flows, those begun in place of one whose end was sent */
	STAT_DUPLICATES,  /* of the accepted, those seen before at another place */
	STAT_COUNT,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static __always_inline void stat_inc(__u32 which)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &which);
	if (v)
		*v += 1; /* per-CPU: no other writer */
}

/* What parse makes of a frame (offline.verdict). */
enum {
	V_FLOW,
	V_LATER_FRAG,
	V_NON_IP,
	V_OTHER_L4,
	V_MALFORMED,
};

enum { FRAG_NONE, FRAG_FIRST, FRAG_LATER };

struct packet {
	struct flow_key key; /* source as A; canonical order comes after */
	__u8 flags;
	__u8 frag;
	__u32 length;
	__u32 frag_id;
	/* The history's fields, read only when history_limit is set. */
	__u8 ttl;
	__u16 ipid;
	__u16 window;
	__u32 seq;
	__u32 ack;
	/* TCP: the payload's length, for the quality; analyzed only when a whole
	 * segment (no fragment). */
	__u32 seglen;
	/* With decap_on: the tunnel, its kind 0 when none was opened. */
	struct tunnel tun;
};

#define ETH_IPV4 0x0800
#define ETH_IPV6 0x86DD
#define ETH_VLAN 0x8100
#define ETH_QINQ 0x88A8
#define ETH_QINQ2 0x9100
#define MAX_VLANS 2
#define MAX_IPV6_EXT 8

static __always_inline __u16 load16(const __u8 *p) { return bswap16(*(const __u16 *)p); }
static __always_inline __u32 load32(const __u8 *p) { return bswap32(*(const __u32 *)p); }

/* Addresses are copied a word at a time: a memcpy from the packet, whose alignment
 * clang cannot know, becomes a load, a shift and an OR per byte. The kernel allows
 * unaligned packet loads wherever the CPU does them cheaply (no strict alignment). */
static __always_inline void copy_v4mapped(__u8 *to, const __u8 *from)
{
	*(__u64 *)to = 0;
	*(__u32 *)(to + 8) = 0xFFFF0000; /* bytes 0, 0, 0xff, 0xff */
	*(__u32 *)(to + 12) = *(const __u32 *)from;
}

static __always_inline void copy16(__u8 *to, const __u8 *from)
{
	*(__u64 *)to = *(const __u64 *)from;
	*(__u64 *)(to + 8) = *(const __u64 *)(from + 8);
}

#define ETH_TEB 0x6558 /* transparent Ethernet bridging: Ethernet in Geneve or GRE */
#define ETH_ERSPAN2 0x88BE
#define ETH_PPP 0x880B
#define ETH_MPLS 0x8847
#define ETH_MPLS_MC 0x8848
#define ETH_PPPOE 0x8864
#define PPP_IPV4 0x0021
#define PPP_IPV6 0x0057
#define PROTO_IPIP 4
#define PROTO_IPV6IP 41
#define PROTO_GRE 47
#define PORT_VXLAN 4789
#define PORT_GENEVE 6081
#define PORT_GTPU 2152
#define MAX_TUNNELS 2
#define MAX_MPLS_LABELS 4
#define MAX_GTP_EXT 4
/* Where a tunnel's inner IP header may start: every header the parser walks stays
 * within the 64 KiB the verifier tracks packet offsets to. */
#define MAX_INNER_OFF 0x3FFF

/* skip_vlans skips up to MAX_VLANS 802.1Q/802.1ad tags from off, returning the
 * EtherType after them, or 0 when the frame ends first. */
static __always_inline __u16 skip_vlans(__u8 *d, void *data_end, __u32 *off, __u16 etype)
{
#pragma unroll
	for (int i = 0; i < MAX_VLANS; i++) {
		if (etype != ETH_VLAN && etype != ETH_QINQ && etype != ETH_QINQ2)
			break;
		if ((void *)(d + *off + 4) > data_end)
			return 0;
		etype = load16(d + *off + 2);
		*off += 4;
	}
	return etype;
}

/* ip_version makes the EtherType of the IP header at h, by its version, 0 for
 * neither. */
static __always_inline __u16 ip_version(__u8 *h, void *data_end)
{
	if ((void *)(h + 1) > data_end)
		return 0;
	if ((h[0] >> 4) == 4)
		return ETH_IPV4;
	if ((h[0] >> 4) == 6)
		return ETH_IPV6;
	return 0;
}

/* ppp_type makes the EtherType of a PPP protocol, 0 for one that is not IP. */
static __always_inline __u16 ppp_type(__u16 proto)
{
	return proto == PPP_IPV4 ? ETH_IPV4 : proto == PPP_IPV6 ? ETH_IPV6 : 0;
}

/* Results of open_tunnel. */
enum {
	T_NONE,  /* no tunnel: the packet is what its headers say */
	T_IP,    /* an IP header follows, of EtherType *etype */
	T_ETHER, /* an Ethernet frame follows */
	T_NON_IP, /* a tunnel that carries something other than IP */
};

/* open_tunnel reads, after an IP header whose payload of protocol proto starts at
 * l4, the tunnel it may carry (offline.openTunnel): IP in IP, GRE (version 0 with or
 * without checksum, key and sequence number, carrying IP, Ethernet or ERSPAN type
 * II; version 1, PPTP's, carrying PPP), or UDP to the VXLAN, Geneve or GTP-U port.
 * A header it does not recognize, or cut short, is no tunnel. On a tunnel it sets
 * *off to what follows and, when it is the outermost, the kind and id. */
static __always_inline int open_tunnel(struct packet *p, __u8 *d, void *data_end, __u32 l4, __u8 proto, int outermost, __u32 *off, __u16 *etype)
{
	__u8 *h = d + l4;
	__u8 kind;
	__u32 id = 0;
	int next;
	if (proto == PROTO_IPIP || proto == PROTO_IPV6IP) {
		kind = proto == PROTO_IPIP ? TUNNEL_IPIP : TUNNEL_IPV6IP;
		*etype = proto == PROTO_IPIP ? ETH_IPV4 : ETH_IPV6;
		*off = l4;
		next = T_IP;
	} else if (proto == PROTO_GRE) {
		/* The longest header read here is 16 bytes: a shorter packet carries no
		 * IP header inside. */
		if ((void *)(h + 16) > data_end)
			return T_NONE;
		__u16 flags = load16(h), type = load16(h + 2);
		__u32 len = 4;
		if (flags & 0x8000) /* checksum */
			len += 4;
		if ((flags & 0x4007) == 0) {
			kind = TUNNEL_GRE;
			if (flags & 0x2000) { /* key */
				id = load32(h + len);
				len += 4;
			}
			if (flags & 0x1000) /* sequence number */
				len += 4;
			if (type == ETH_IPV4 || type == ETH_IPV6) {
				*etype = type;
				next = T_IP;
			} else if (type == ETH_TEB) {
				next = T_ETHER;
			} else if (type == ETH_ERSPAN2 && (flags & 0x1000)) {
				__u8 *e = h + len;
				if ((void *)(e + 8) > data_end || (e[0] >> 4) != 1)
					return T_NONE;
				kind = TUNNEL_ERSPAN;
				id = load16(e + 2) & 0x03FF;
				len += 8;
				next = T_ETHER;
			} else
				return T_NONE;
		} else if ((flags & 0x4007) == 1 && (flags & 0x2000) && type == ETH_PPP) {
			/* PPTP: the key is the payload length and the call id. */
			kind = TUNNEL_GRE;
			id = load16(h + len + 2);
			len += 4;
			if (flags & 0x1000)
				len += 4;
			if (flags & 0x0080) /* acknowledgment number */
				len += 4;
			__u8 *q = h + len;
			if ((void *)(q + 4) > data_end)
				return T_NONE;
			if (q[0] == 0xFF && q[1] == 0x03) { /* address and control */
				q += 2;
				len += 2;
			}
			if (q[0] & 1) { /* a compressed one-byte protocol */
				*etype = ppp_type(q[0]);
				len += 1;
			} else {
				*etype = ppp_type(load16(q));
				len += 2;
			}
			next = *etype ? T_IP : T_NON_IP;
		} else
			return T_NONE;
		*off = l4 + len;
	} else if (proto == PROTO_UDP) {
		if ((void *)(h + 16) > data_end)
			return T_NONE;
		__u16 port = load16(h + 2);
		__u8 *t = h + 8;
		if (port == PORT_VXLAN) {
			if (!(t[0] & 0x08)) /* no VNI */
				return T_NONE;
			kind = TUNNEL_VXLAN;
			id = load32(t + 4) >> 8;
			*off = l4 + 16;
			next = T_ETHER;
		} else if (port == PORT_GENEVE) {
			if ((t[0] >> 6) != 0)
				return T_NONE;
			__u16 type = load16(t + 2);
			kind = TUNNEL_GENEVE;
			id = load32(t + 4) >> 8;
			*off = l4 + 16 + (t[0] & 0x3F) * 4;
			if (type == ETH_IPV4 || type == ETH_IPV6) {
				*etype = type;
				next = T_IP;
			} else if (type == ETH_TEB)
				next = T_ETHER;
			else
				return T_NONE;
		} else if (port == PORT_GTPU) {
			/* GTP-U version 1 carrying a T-PDU: a user's packet. */
			if ((t[0] >> 5) != 1 || !(t[0] & 0x10) || t[1] != 0xFF)
				return T_NONE;
			kind = TUNNEL_GTPU;
			id = load32(t + 4);
			__u32 len = 8;
			if (t[0] & 0x07) { /* sequence number, N-PDU number, extension */
				if ((void *)(t + 12) > data_end)
					return T_NONE;
				len = 12;
				__u8 ext = (t[0] & 0x04) ? t[11] : 0;
#pragma unroll
				for (int i = 0; i < MAX_GTP_EXT; i++) {
					if (!ext)
						break;
					__u8 *x = t + len;
					if ((void *)(x + 1) > data_end || x[0] == 0)
						return T_NONE;
					__u32 xlen = (__u32)x[0] * 4;
					__u8 *next_type = x + xlen - 1;
					if ((void *)(next_type + 1) > data_end)
						return T_NONE;
					ext = *next_type;
					len += xlen;
				}
				if (ext)
					return T_NONE;
			}
			*off = l4 + 8 + len;
			*etype = ip_version(d + *off, data_end);
			next = *etype ? T_IP : T_NON_IP;
		} else
			return T_NONE;
	} else
		return T_NONE;
	if (outermost) {
		p->tun.kind = kind;
		p->tun.id = id;
	}
	return next;
}

/* link_header reads the Ethernet header and up to MAX_VLANS tags (vlan and tags
 * are a tag the driver already took off), and gives where the network header
 * starts and its EtherType. */
static __always_inline int link_header(struct packet *p, __u8 *d, void *data_end, __u16 vlan, int tags, __u32 *off_out, __u16 *etype_out)
{
	__u32 off = 14;
	if ((void *)(d + 14) > data_end)
		return V_MALFORMED;
	__u16 etype = load16(d + 12);

	p->key.vlan = vlan;
#pragma unroll
	for (int i = 0; i < MAX_VLANS; i++) {
		if (i < tags)
			continue;
		if (etype != ETH_VLAN && etype != ETH_QINQ && etype != ETH_QINQ2)
			break;
		if ((void *)(d + off + 4) > data_end)
			return V_MALFORMED;
		if (p->key.vlan == 0)
			p->key.vlan = load16(d + off) & 0x0FFF;
		etype = load16(d + off + 2);
		off += 4;
	}
	*off_out = off;
	*etype_out = etype;
	return V_FLOW;
}

/* ip_header reads the IP header of EtherType etype at off: the packet's IP length
 * (wire is the packet's length, for the offload case where the header says 0), its
 * addresses (the source as A), protocol and fragment role, and where the payload
 * after the header and its extension headers starts, and its length. V_FLOW says it
 * read it. */
static __always_inline int ip_header(struct packet *p, __u8 *d, void *data_end, __u32 wire, __u32 off, __u16 etype, __u32 *l4_out, __u32 *l4len_out)
{
	if (etype == ETH_IPV4) {
		__u8 *ip = d + off;
		if ((void *)(ip + 20) > data_end || (ip[0] >> 4) != 4)
			return V_MALFORMED;
		__u32 ihl = (ip[0] & 0x0F) * 4;
		if (ihl < 20 || (void *)(ip + ihl) > data_end)
			return V_MALFORMED;
		__u32 total = load16(ip + 2);
		if (total == 0)
			total = wire - off; /* segmentation offload: the frame is the packet */
		if (total < ihl)
			return V_MALFORMED;
		p->length = total;
		if (history_limit) {
			p->ipid = load16(ip + 4);
			p->ttl = ip[8];
		}
		p->key.proto = ip[9];
		copy_v4mapped(p->key.a, ip + 12);
		copy_v4mapped(p->key.b, ip + 16);
		__u16 fo = load16(ip + 6);
		p->frag = FRAG_NONE;
		if (fo & 0x1FFF) {
			p->frag = FRAG_LATER;
			p->frag_id = load16(ip + 4);
		} else if (fo & 0x2000) {
			p->frag = FRAG_FIRST;
			p->frag_id = load16(ip + 4);
		}
		*l4_out = off + ihl;
		*l4len_out = total - ihl;
		return V_FLOW;
	}
	if (etype != ETH_IPV6)
		return V_NON_IP;
	__u8 *ip = d + off;
	if ((void *)(ip + 40) > data_end || (ip[0] >> 4) != 6)
		return V_MALFORMED;
	__u32 payload = load16(ip + 4);
	if (payload == 0)
		payload = wire - off - 40; /* a jumbogram, or offload */
	p->length = payload + 40;
	if (history_limit) {
		p->ipid = 0; /* over an IPv4 header a tunnel's IPv6 has none */
		p->ttl = ip[7];
	}
	copy16(p->key.a, ip + 8);
	copy16(p->key.b, ip + 24);
	__u8 next = ip[6];
	__u32 pos = off + 40;
	p->frag = FRAG_NONE;
#pragma unroll
	for (int i = 0; i < MAX_IPV6_EXT; i++) {
		if (next == 0 || next == 43 || next == 60) {
			__u8 *h = d + pos;
			if ((void *)(h + 8) > data_end)
				return V_MALFORMED;
			next = h[0];
			pos += ((__u32)h[1] + 1) * 8;
			continue;
		}
		if (next == 44) {
			__u8 *h = d + pos;
			if ((void *)(h + 8) > data_end)
				return V_MALFORMED;
			__u16 fo = load16(h + 2);
			next = h[0];
			p->frag_id = load32(h + 4);
			pos += 8;
			if (fo & 0xFFF8)
				p->frag = FRAG_LATER;
			else if (fo & 1)
				p->frag = FRAG_FIRST;
			continue;
		}
		break;
	}
	p->key.proto = next;
	*l4_out = pos;
	*l4len_out = off + 40 + payload - pos;
	return V_FLOW;
}

/* transport decides what an IP packet whose header ip_header read is: other
 * traffic, a later fragment, or a flow's, whose TCP or UDP header at l4 it reads. */
static __always_inline int transport(struct packet *p, __u8 *d, void *data_end, __u32 l4, __u32 l4len)
{
	if (p->key.proto != PROTO_TCP && p->key.proto != PROTO_UDP)
		return V_OTHER_L4;
	if (p->frag == FRAG_LATER)
		return V_LATER_FRAG;
	/* For the verifier, which wants a bound on the offset, and a margin below 64 KiB
	 * for the header's length: it can reach no more than MAX_INNER_OFF + 40 + 8 *
	 * 2048 bytes, so the Go mirror needs no such check. */
	if (l4 > 0xFF00)
		return V_MALFORMED;
	__u8 *t = d + l4;
	if (p->key.proto == PROTO_TCP) {
		if ((void *)(t + 20) > data_end || (int)l4len < 20)
			return V_MALFORMED;
		__u32 doff = (t[12] >> 4) * 4;
		if (doff < 20 || doff > l4len)
			return V_MALFORMED;
		p->flags = t[13];
		if (quality_on)
			p->seglen = l4len - doff;
		if (history_limit || quality_on) {
			p->seq = load32(t + 4);
			p->ack = load32(t + 8);
			p->window = load16(t + 14);
		}
	} else {
		if ((void *)(t + 8) > data_end || (int)l4len < 8)
			return V_MALFORMED;
		p->flags = 0;
	}
	p->key.port_a = load16(t);
	p->key.port_b = load16(t + 2);
	return V_FLOW;
}

/* parse reads an Ethernet frame, without opening tunnels (parse_tunnels). wire is
 * the packet's length; vlan and tags are a tag the driver already took off. */
static __always_inline int parse(struct packet *p, void *data, void *data_end, __u32 wire, __u16 vlan, int tags)
{
	__u8 *d = data;
	__u32 off, l4, l4len;
	__u16 etype;
	int v = link_header(p, d, data_end, vlan, tags, &off, &etype);
	if (v != V_FLOW)
		return v;
	v = ip_header(p, d, data_end, wire, off, etype, &l4, &l4len);
	if (v != V_FLOW)
		return v;
	return transport(p, d, data_end, l4, l4len);
}

/* The tunnel walk's state between its levels (offline: parse's locals). */
struct walk {
	__u32 off;    /* in: the IP header; out: the next one */
	__u32 l4;     /* out: the payload after the IP header, and its length */
	__u32 l4len;
	__u16 etype;  /* in and out, beside off */
	__u8 how;     /* in: LEVEL_* */
	__u8 pad;
};

#define LEVEL_OPEN 0x01      /* the walk may open a tunnel here */
#define LEVEL_OUTERMOST 0x02 /* no tunnel was opened before: this one is the flow's */
#define LEVEL_FIRST_IP 0x04  /* the frame's first IP header: the tunnel's outer addresses */
#define LEVEL_LAST 0x100     /* no tunnel: the IP header read is the packet's */
#define LEVEL_INNER 0x101    /* a tunnel, opened: the next IP header is at off */

/* tunnel_level reads the IP header at w->off and opens the tunnel it carries, if it
 * may and there is one. */
static __always_inline int tunnel_level(struct packet *p, void *data, void *data_end, __u32 wire, struct walk *w)
{
	__u8 *d = data;
	__u32 off = w->off;
	if (off > MAX_INNER_OFF)
		return V_MALFORMED;
	__u32 l4, l4len;
	int v = ip_header(p, d, data_end, wire, off, w->etype, &l4, &l4len);
	if (v != V_FLOW)
		return v;
	w->l4 = l4;
	w->l4len = l4len;
	/* A fragment carries no whole tunnel header: it counts as what it is. */
	if (!(w->how & LEVEL_OPEN) || p->frag != FRAG_NONE)
		return LEVEL_LAST;
	__u16 etype;
	int inner = open_tunnel(p, d, data_end, l4, p->key.proto, w->how & LEVEL_OUTERMOST, &off, &etype);
	if (inner == T_NONE)
		return LEVEL_LAST;
	if (w->how & LEVEL_FIRST_IP) {
		copy16(p->tun.outer_a, p->key.a);
		copy16(p->tun.outer_b, p->key.b);
	}
	if (inner == T_NON_IP)
		return V_NON_IP;
	if (inner == T_ETHER) {
		if (off > MAX_INNER_OFF || (void *)(d + off + 14) > data_end)
			return V_MALFORMED;
		etype = load16(d + off + 12);
		off += 14;
		etype = skip_vlans(d, data_end, &off, etype);
		if (!etype)
			return V_MALFORMED;
	}
	w->off = off;
	w->etype = etype;
	return LEVEL_INNER;
}

/* The tunnel walk's parts are global functions: the verifier checks each once, on
 * its own, and the code that calls it once, whatever the way through the tunnels,
 * which it could not finish otherwise. Their pointers may be NULL, for the
 * verifier. */
__attribute__((noinline)) int tunnel_level_xdp(struct xdp_md *ctx, struct packet *p, struct walk *w)
{
	if (!p || !w)
		return V_MALFORMED;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	return tunnel_level(p, data, data_end, data_end - data, w);
}

__attribute__((noinline)) int tunnel_level_tc(struct __sk_buff *skb, struct packet *p, struct walk *w)
{
	if (!p || !w)
		return V_MALFORMED;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	return tunnel_level(p, data, data_end, skb->len, w);
}

/* parse_tunnels is parse that opens tunnels (decap_on): MPLS or PPPoE under the
 * IP header, then, at most MAX_TUNNELS deep in all, the tunnels open_tunnel knows;
 * the packet is the innermost IP header's. ctx is the XDP program's when xdp is
 * set, else the TC program's. */
static __always_inline int parse_tunnels(struct packet *p, void *ctx, int xdp, void *data, void *data_end, __u16 vlan, int tags)
{
	__u8 *d = data;
	struct walk w = {};
	__u32 off;
	__u16 etype;
	int v = link_header(p, d, data_end, vlan, tags, &off, &etype);
	if (v != V_FLOW)
		return v;

	int tunnels = 0;
	if (etype == ETH_MPLS || etype == ETH_MPLS_MC) {
		__u32 bottom = 0;
#pragma unroll
		for (int i = 0; i < MAX_MPLS_LABELS; i++) {
			__u8 *label = d + off;
			if ((void *)(label + 4) > data_end)
				return V_NON_IP;
			if (i == 0) {
				p->tun.kind = TUNNEL_MPLS;
				p->tun.id = load32(label) >> 12;
			}
			bottom = label[2] & 1;
			off += 4;
			if (bottom)
				break;
		}
		/* A stack deeper than MAX_MPLS_LABELS, or a pseudowire's control word. */
		etype = bottom ? ip_version(d + off, data_end) : 0;
		tunnels = 1;
	} else if (etype == ETH_PPPOE) {
		__u8 *h = d + off;
		if ((void *)(h + 8) > data_end || h[0] != 0x11 || h[1] != 0)
			return V_NON_IP;
		p->tun.kind = TUNNEL_PPPOE;
		p->tun.id = load16(h + 2);
		etype = ppp_type(load16(h + 6));
		off += 8;
		tunnels = 1;
	}

	w.off = off;
	w.etype = etype;
#pragma unroll
	for (int level = 0; level <= MAX_TUNNELS; level++) {
		w.how = (tunnels < MAX_TUNNELS ? LEVEL_OPEN : 0) | (tunnels == 0 ? LEVEL_OUTERMOST : 0) | (level == 0 ? LEVEL_FIRST_IP : 0);
		v = xdp ? tunnel_level_xdp(ctx, p, &w) : tunnel_level_tc(ctx, p, &w);
		if (v == LEVEL_LAST)
			break;
		if (v != LEVEL_INNER)
			return v;
		tunnels++;
	}
	return transport(p, d, data_end, w.l4, w.l4len);
}

/* canonicalize puts the key's endpoints in order and reports whether the source is
 * endpoint A (userspace.Key.Canonicalize). */
static __always_inline int canonicalize(struct flow_key *k)
{
	__u64 a0 = __builtin_bswap64(*(__u64 *)&k->a[0]), b0 = __builtin_bswap64(*(__u64 *)&k->b[0]);
	__u64 a1 = __builtin_bswap64(*(__u64 *)&k->a[8]), b1 = __builtin_bswap64(*(__u64 *)&k->b[8]);
	int less;
	if (a0 != b0)
		less = a0 < b0;
	else if (a1 != b1)
		less = a1 < b1;
	else
		less = k->port_a < k->port_b;
	if (less)
		return 1;
	__u8 tmp[16];
	__builtin_memcpy(tmp, k->a, 16);
	__builtin_memcpy(k->a, k->b, 16);
	__builtin_memcpy(k->b, tmp, 16);
	__u16 tp = k->port_a;
	k->port_a = k->port_b;
	k->port_b = tp;
	return 0;
}

static __always_inline int send_event(__u8 type, __u8 reason, __s64 time, struct flow_key *k, struct flow_state *s)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		stat_inc(STAT_RINGBUF_FAILED);
		return 0;
	}
	e->type = type;
	e->reason = reason;
	e->time = time;
	e->key = *k;
	if (s && (stats_on || quality_on || decap_on))
		e->state = *s;
	else if (s) {
		/* Without statistics, quality and tunnels the map value ends where they
		 * would start. */
		__builtin_memcpy(&e->state, s, __builtin_offsetof(struct flow_state, st));
		__builtin_memset(&e->state.st, 0, sizeof(e->state) - __builtin_offsetof(struct flow_state, st));
	} else
		__builtin_memset(&e->state, 0, sizeof(e->state));
	bpf_ringbuf_submit(e, 0);
	return 1;
}

/* deadline mirrors userspace.Timeouts.Deadline: when the flow ends if no packet
 * comes first, and why. */
static __always_inline __u8 deadline(struct flow_state *s, __s64 *end)
{
	__s64 last = s->dir[0].last > s->dir[1].last ? s->dir[0].last : s->dir[1].last;
	__u8 reason = END_IDLE;
	*end = last + (__s64)idle_ns;
	__u8 marks = s->bits >> 24;
	if (marks) {
		__s64 fin = last + (__s64)fin_ns;
		if (fin <= *end) {
			*end = fin;
			reason = (marks & MARK_RST) ? END_RST : END_FIN;
		}
	}
	if (active_ns) {
		__s64 first;
		if (s->dir[0].packets == 0)
			first = s->dir[1].first;
		else if (s->dir[1].packets == 0)
			first = s->dir[0].first;
		else
			first = s->dir[0].first < s->dir[1].first ? s->dir[0].first : s->dir[1].first;
		__s64 act = first + (__s64)active_ns;
		if (act < *end) {
			*end = act;
			reason = END_ACTIVE;
		}
	}
	return reason;
}

/* count_flags counts a packet's TCP flags, one counter per flag it carries (plain
 * adds, as the other statistics). */
static __always_inline void count_flags(struct dir_stats *st, __u8 flags)
{
#pragma unroll
	for (int i = 0; i < 8; i++)
		if (flags & (1 << i))
			st->flag_packets[i] += 1;
}

/* add_stats adds a packet to its direction's statistics (userspace.DirStats.add):
 * before is the direction's packet count before it, prev the time of the one before
 * it. Plain reads and writes: atomics for them measured 36 ns a packet, and a
 * direction's packets reach one CPU at a time but in rare cases, where a statistic
 * may miss one packet's share. */
static __always_inline void add_stats(struct dir_stats *st, __u64 before, __s64 prev, __u32 length, __u8 flags, __s64 now)
{
	__u64 size = length;
	st->size_squares += size * size;
	if (before == 0) {
		st->size_min = length;
		st->size_max = length;
	} else {
		__u64 gap = now <= prev ? 0 : (__u64)(now - prev) / 1000;
		/* The monotonic clock is never 0: a 0 is the direction's first packet,
		 * counted on another CPU, that has not stored its time yet. The test
		 * clock, which replays capture times, may be 0. */
		if (prev == 0 && !test_clock)
			gap = 0;
		st->gap_sum += gap;
		st->gap_squares += gap * gap;
		if (before == 1 || gap < st->gap_min)
			st->gap_min = gap;
		if (gap > st->gap_max)
			st->gap_max = gap;
		if (length < st->size_min)
			st->size_min = length;
		if (length > st->size_max)
			st->size_max = length;
	}
	count_flags(st, flags);
}

/* fresh_state is a new flow's state after its first packet (userspace.State.AddPacket
 * on a zero state). */
static __always_inline void fresh_state(struct flow_state *s, int dir, __u32 where, __u32 length, __u8 flags, __s64 now)
{
	/* Without statistics their part of the value is never written: it stays 0;
	 * likewise the quality's. */
	if (stats_on)
		__builtin_memset(s, 0, __builtin_offsetof(struct flow_state, q));
	else
		__builtin_memset(s, 0, __builtin_offsetof(struct flow_state, st));
	if (quality_on) {
		__builtin_memset(&s->q, 0, sizeof(s->q));
		s->q.d[0].window = NO_WINDOW;
		s->q.d[1].window = NO_WINDOW;
	}
	__u32 initiator = dir;
	if ((flags & (TCP_SYN | TCP_ACK)) == (TCP_SYN | TCP_ACK))
		initiator ^= 1; /* the capture began after the SYN */
	s->where[dir] = where;
	s->dir[dir].packets = 1;
	s->dir[dir].bytes = length;
	s->dir[dir].first = now;
	s->dir[dir].last = now;
	s->size_avg16 = length << 4;
	if (stats_on)
		add_stats(&s->st[dir], 0, 0, length, flags, now);
	__u32 marks = 0;
	if (flags & TCP_FIN)
		marks |= MARK_FIN;
	if (flags & TCP_RST)
		marks |= MARK_RST;
	s->bits = ((__u32)flags << (dir * 8)) | (initiator << 16) | (marks << 24);
}

/* set_tunnel keeps, with decap_on, the tunnel of a new flow's first packet, its
 * outer addresses by endpoint (dir 0: the packet's source is endpoint A). */
static __always_inline void set_tunnel(struct flow_state *s, struct packet *p, int dir)
{
	if (!decap_on)
		return;
	s->t = p->tun;
	if (dir) {
		copy16(s->t.outer_a, p->tun.outer_b);
		copy16(s->t.outer_b, p->tun.outer_a);
	}
}

/* add_packet counts a packet into an existing flow, in place: a hit makes no map
 * update call (userspace.State.AddPacket). The counts use atomics and are exact; the
 * moving averages, like the statistics, are plain reads and writes. */
static __always_inline void add_packet(struct flow_key *k, struct flow_state *s, int dir, __u32 length, __u8 flags, __s64 now)
{
	struct counters *c = &s->dir[dir];

	__s64 flow_last = s->dir[0].last > s->dir[1].last ? s->dir[0].last : s->dir[1].last;
	__u64 flow_gap = now > flow_last ? (__u64)(now - flow_last) : 0;
	if (s->dir[0].packets + s->dir[1].packets == 1)
		s->gap_avg = flow_gap;
	else
		s->gap_avg = s->gap_avg - (s->gap_avg >> 3) + (flow_gap >> 3);
	s->size_avg16 = s->size_avg16 - (s->size_avg16 >> 3) + (length << 1);

	__u64 before = __sync_fetch_and_add(&c->packets, 1);
	__sync_fetch_and_add(&c->bytes, (__u64)length);
	__s64 prev = c->last;
	c->last = now;
	if (before == 0)
		c->first = now; /* the direction's first packet */
	if (stats_on)
		add_stats(&s->st[dir], before, prev, length, flags, now);
	__u32 marks = 0;
	if (flags & TCP_FIN)
		marks |= MARK_FIN;
	if (flags & TCP_RST)
		marks |= MARK_RST;
	__u32 add = ((__u32)flags << (dir * 8)) | (marks << 24);
	/* Most packets of a flow bring no flag it lacks: a plain read spares the
	 * atomic. A race only repeats an OR that changes nothing. */
	if ((s->bits & add) != add) {
		__u32 old = __sync_fetch_and_or(&s->bits, add);
		if (marks && !(old >> 24))
			send_event(EVENT_MARK, 0, now, k, 0);
	}
}

/* Sequence comparisons modulo 2^32, as tshark's LT_SEQ, GT_SEQ and LE_SEQ. */
#define SEQ_LT(a, b) ((__s32)((a) - (b)) < 0)
#define SEQ_GT(a, b) ((__s32)((b) - (a)) < 0)
#define SEQ_LE(a, b) ((__s32)((a) - (b)) <= 0)
#define Q_KEEPALIVE 0x01
#define Q_ZERO_WINDOW_PROBE 0x02
#define FAST_RETRANSMISSION_NS 20000000
#define OUT_OF_ORDER_NS 3000000 /* before the handshake's RTT is known */

/* tcp_quality analyzes a TCP segment of direction dir (userspace.TCPQuality.Add):
 * tshark 4.0's tcp_analyze_sequence_number, reduced to what decides the
 * retransmissions (its plain, fast and spurious kinds), the out-of-order segments
 * and the zero windows it flags, and then its handshake RTT. rev_last is the time
 * of the other direction's last segment. Plain reads and writes, as the statistics.
 * docs/fields.md states the rules. */
static __always_inline void tcp_quality(struct tcp_quality *q, int dir, __u32 initiator, struct packet *p, __s64 now, __s64 rev_last)
{
	struct tcp_dir_quality *fwd = &q->d[dir & 1];
	struct tcp_dir_quality *rev = &q->d[(dir & 1) ^ 1];
	__u32 seq = p->seq, ack = p->ack, win = p->window, len = p->seglen;
	__u8 f = p->flags;
	int syn_fin_rst = f & (TCP_SYN | TCP_FIN | TCP_RST);
	/* In locals: fwd and rev are one array indexed at run time, so clang cannot
	 * tell that a store to one leaves the other alone, and would load again. */
	__u32 nextseq = fwd->nextseq, lastack = fwd->lastack, dupacks = fwd->dupacks;
	__u32 rev_window = rev->window, rev_lastack = rev->lastack, rev_dupacks = rev->dupacks;
	__u32 rev_maxseq = rev->maxseq_to_ack;
	__u32 marks = 0;

	if (len == 1 && seq == nextseq && rev_window == 0) {
		marks = Q_ZERO_WINDOW_PROBE;
		goto acks_done;
	}
	if (win == 0 && !syn_fin_rst)
		fwd->zero_windows++;
	if (len <= 1 && seq == nextseq - 1 && !syn_fin_rst)
		marks = Q_KEEPALIVE;
	if (len == 0 && win == fwd->window && seq == nextseq && ack == lastack && !syn_fin_rst) {
		/* A keep-alive's or a zero window probe's ACK is no duplicate ACK. */
		__u32 rev_marks = rev->last_marks;
		if (win && (rev_marks & Q_KEEPALIVE))
			goto acks_done;
		if (!win && (rev_marks & Q_ZERO_WINDOW_PROBE))
			goto acks_done;
		if (win)
			dupacks++;
	}
acks_done:
	if (ack != lastack)
		dupacks = 0;
	/* An ACK beyond what the other side was seen to send in order: segments went
	 * uncaptured. The other side's in-order mark catches up with its nextseq, or
	 * if it has, its duplicate ACKs start over. */
	if (rev_maxseq && SEQ_GT(ack, rev_maxseq) && (f & TCP_ACK)) {
		__u32 rev_nextseq = rev->nextseq;
		if (SEQ_LT(rev_maxseq, rev_nextseq))
			rev->maxseq_to_ack = rev_nextseq;
		else
			rev->dupacks = rev_dupacks = 0;
	}

	if ((len > 0 || (f & (TCP_SYN | TCP_FIN))) && !(marks & Q_KEEPALIVE)) {
		int behind = nextseq && SEQ_LT(seq, nextseq);
		if (len > 1 && nextseq - 1 == seq)
			behind = 0;
		if (len > 0 && rev_lastack && SEQ_LE(seq + len, rev_lastack))
			fwd->retransmissions++; /* spurious: data already acknowledged */
		else if (behind) {
			if (rev_dupacks >= 2 && rev_lastack == seq && (__u64)(now - rev_last) < FAST_RETRANSMISSION_NS)
				fwd->retransmissions++; /* fast */
			else if ((__u64)(now - fwd->nextseq_time) < (__u64)(q->first_rtt ? q->first_rtt : OUT_OF_ORDER_NS) &&
				 nextseq != seq + len + ((f & (TCP_SYN | TCP_FIN)) ? 1 : 0))
				fwd->out_of_order++;
			else
				fwd->retransmissions++;
		}
	}

	if (!(marks & Q_ZERO_WINDOW_PROBE)) {
		__u32 next = seq + len + ((f & (TCP_SYN | TCP_FIN)) ? 1 : 0);
		if (SEQ_GT(next, nextseq) || !nextseq) {
			fwd->nextseq = nextseq = next;
			fwd->nextseq_time = now;
		}
		__u32 maxseq = fwd->maxseq_to_ack;
		if (seq == maxseq || !maxseq)
			fwd->maxseq_to_ack = nextseq;
	}
	fwd->window = win;
	fwd->lastack = ack;
	fwd->dupacks = dupacks;
	fwd->last_marks = marks;

	/* The handshake: the latest SYN, the responder's first SYN+ACK after it, and
	 * the first segment with ACK and without SYN after it (tshark's initial_rtt). */
	if ((f & (TCP_SYN | TCP_ACK)) == TCP_SYN) {
		q->syn_time = now;
		q->synack_rtt = 0; /* a SYN+ACK before it answered another SYN */
	} else if ((f & (TCP_SYN | TCP_ACK)) == (TCP_SYN | TCP_ACK)) {
		if (q->syn_time && !q->synack_rtt && (__u32)dir != initiator)
			q->synack_rtt = now - q->syn_time;
	} else if ((f & TCP_ACK) && !q->first_rtt && q->syn_time) {
		q->first_rtt = now - q->syn_time;
		q->completed = (__u32)dir == initiator && !(f & TCP_RST);
	}
}

/* analyze runs tcp_quality on a whole TCP segment, when the quality is on. */
static __always_inline void analyze(struct flow_key *k, struct flow_state *s, struct packet *p, int dir, __s64 now)
{
	if (!quality_on || k->proto != PROTO_TCP || p->frag != FRAG_NONE)
		return;
	tcp_quality(&s->q, dir, (s->bits >> 16) & 1, p, now, s->dir[dir ^ 1].last);
}

/* send_record sends a packet's record for the history. A record the ring buffer has
 * no room for stays counted in the flow's recorded: userspace sees it missing. */
static __always_inline void send_record(struct flow_key *k, struct packet *p, int dir, __s64 now)
{
	struct record *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
	if (!r) {
		stat_inc(STAT_RECORDS_LOST);
		return;
	}
	r->type = EVENT_PACKET;
	r->dir = dir;
	r->flags = p->flags;
	r->ttl = p->ttl;
	r->ipid = p->ipid;
	r->window = p->window;
	r->length = p->length;
	r->seq = p->seq;
	r->ack = p->ack;
	r->pad = 0;
	r->time = now;
	r->key = *k;
	/* Waking the reader for each record (what the default does whenever it has
	 * caught up) costs more than the record. Records wake it each time the data
	 * waiting crosses a multiple of 2^records_wake_shift; the reader also catches up
	 * before each sweep. The data waiting includes this record, reserved. */
	__u64 waiting = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	__u32 shift = records_wake_shift & 63;
	__u64 crossed = (waiting >> shift) != ((waiting - RECORD_BYTES) >> shift);
	bpf_ringbuf_submit(r, crossed ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
}

/* record sends the packet's record while the flow is below history_limit. */
static __always_inline void record(struct flow_key *k, struct flow_state *s, struct packet *p, int dir, __s64 now)
{
	if (!history_limit || s->recorded >= history_limit)
		return;
	if (__sync_fetch_and_add(&s->recorded, 1) < history_limit)
		send_record(k, p, dir, now);
}

/* seen_elsewhere decides, for a packet seen at a place that is not where its
 * direction is counted, whether it is a duplicate: it is unless the direction has
 * no place yet (its first packet), which this one then becomes. A duplicate counts
 * only in the flow's duplicates (userspace.State.SeenElsewhere). */
static __always_inline int seen_elsewhere(struct flow_state *s, int dir, __u32 where)
{
	if (s->where[dir] == 0 && __sync_val_compare_and_swap(&s->where[dir], 0, where) == 0)
		return 0;
	if (s->where[dir] == where) /* another CPU claimed it for this place */
		return 0;
	__sync_fetch_and_add(&s->duplicates, 1);
	stat_inc(STAT_DUPLICATES);
	return 1;
}

/* attribute finds the sender of a packet that a local socket sent, the first time a
 * direction of the flow does (owners_on, in the TC programs only: skb is NULL in
 * XDP). The packet still holds its socket at TC egress, and at TC ingress on a veth
 * whose other end is in another network namespace (a container's packets): one of
 * the protocol and source port of the flow's direction is the direction's sender,
 * and its cgroup is the socket's. Packets from elsewhere have no socket at ingress.
 * A direction whose first OWNER_TRIES packets bring no such socket (forwarded, or
 * leaving by a device that orphaned it) is decided unattributed. Once decided, a
 * packet pays one branch. */
#define OWNER_TRIES 4
#define OWNER_DECIDED(dir) (1u << (dir))
#define OWNER_FOUND(dir) (4u << (dir))
static __always_inline void attribute(struct flow_key *k, struct flow_state *s, int dir, struct __sk_buff *skb)
{
	if (!owners_on || !skb || (s->owner & OWNER_DECIDED(dir)))
		return;
	struct bpf_sock *sk = skb->sk;
	if (sk)
		sk = bpf_sk_fullsock(sk);
	if (!sk || sk->protocol != k->proto || sk->src_port != (dir ? k->port_b : k->port_a)) {
		if (s->dir[dir].packets >= OWNER_TRIES)
			__sync_fetch_and_or(&s->owner, OWNER_DECIDED(dir));
		return;
	}
	struct sender w = {};
	w.since = s->dir[dir].first;
	w.cgroup = bpf_skb_cgroup_id(skb);
	struct sock_owner *o = bpf_sk_storage_get(&sock_owners, sk, 0, 0);
	if (o) {
		w.pid = o->pid;
		__builtin_memcpy(w.comm, o->comm, sizeof(w.comm));
	}
	struct flow_key ok = *k;
	ok.pad = dir;
	__u32 found = OWNER_DECIDED(dir);
	if (bpf_map_update_elem(&owners, &ok, &w, BPF_ANY) == 0)
		found |= OWNER_FOUND(dir);
	__sync_fetch_and_or(&s->owner, found);
}

/* update finds or creates the flow, ends it first if it is already over or a new
 * connection reuses its 5-tuple, then counts the packet (offline.Datapath.update).
 * p supplies the length, the flags and the record's fields. It returns 0 only when
 * the packet could not be counted. */
static __always_inline int update(struct flow_key *k, int src_is_a, struct packet *p, __u32 where, __s64 now, struct __sk_buff *skb)
{
	int dir = src_is_a ? 0 : 1;
	__u32 length = p->length;
	__u8 flags = p->flags;
	struct flow_state *s = bpf_map_lookup_elem(&flows, k);
	if (s) {
		__s64 end;
		__u8 reason = deadline(s, &end);
		if (now < end) {
			reason = 0;
			if ((s->bits >> 24) && (flags & (TCP_SYN | TCP_ACK)) == TCP_SYN) {
				reason = END_REUSED;
				end = now;
			}
		}
		if (reason) {
			/* An end that reaches userspace is a flow that leaves the table
			 * reported; one the ring buffer lost, a flow dropped unreported.
			 * Counted before STAT_NEW_FLOWS, which userspace reads first, so a
			 * new flow it sees begun in place is never missing from these. */
			if (send_event(EVENT_ENDED, reason, end, k, s))
				stat_inc(STAT_RESTARTS);
			/* In place: the state, with statistics, is too large to build on
			 * the stack beside the packet. */
			fresh_state(s, dir, where, length, flags, now);
			set_tunnel(s, p, dir);
			attribute(k, s, dir, skb);
			stat_inc(STAT_NEW_FLOWS);
			if (flags & (TCP_FIN | TCP_RST))
				send_event(EVENT_MARK, 0, now, k, 0);
			goto counted;
		}
		if (s->where[dir] != where && seen_elsewhere(s, dir, where))
			return 1;
		add_packet(k, s, dir, length, flags, now);
		attribute(k, s, dir, skb);
		goto counted;
	}
	__u32 zero = 0;
	struct flow_state *fresh = bpf_map_lookup_elem(&scratch, &zero);
	if (!fresh)
		return 0;
	fresh_state(fresh, dir, where, length, flags, now);
	set_tunnel(fresh, p, dir);
	analyze(k, fresh, p, dir, now);
	attribute(k, fresh, dir, skb);
	if (history_limit)
		fresh->recorded = 1;
	if (bpf_map_update_elem(&flows, k, fresh, BPF_NOEXIST) == 0) {
		stat_inc(STAT_NEW_FLOWS);
		if (flags & (TCP_FIN | TCP_RST))
			send_event(EVENT_MARK, 0, now, k, 0);
		if (history_limit)
			send_record(k, p, dir, now);
		return 1;
	}
	/* Another CPU created it first: count into theirs. */
	s = bpf_map_lookup_elem(&flows, k);
	if (!s) {
		stat_inc(STAT_LOST_INSERT);
		return 0;
	}
	if (s->where[dir] != where && seen_elsewhere(s, dir, where))
		return 1;
	add_packet(k, s, dir, length, flags, now);
	attribute(k, s, dir, skb);
counted:
	/* One place for what every counted packet of an entry does last: the
	 * quality's code, inlined once. */
	analyze(k, s, p, dir, now);
	record(k, s, p, dir, now);
	return 1;
}

/* fparser_filter decides whether a packet is counted. As compiled it accepts every
 * packet; the loader replaces its body with a pcap filter translated from classic
 * BPF. It must stay a real function taking data, data_end and the packet length in
 * R1-R3: noinline keeps it one, and the empty asm keeps clang from dropping the
 * arguments or assuming the result. */
static __attribute__((noinline)) int fparser_filter(void *data, void *data_end, __u32 len)
{
	int accept = 1;
	asm volatile("" : "+r"(accept) : "r"(data), "r"(data_end), "r"(len));
	return accept;
}

/* count is the datapath: filter, parse, attribute, update, and the counters. where
 * is the place the packet is seen at: the interface's index, with WHERE_EGRESS set
 * when it is leaving (userspace.Where). A packet that crosses the host is seen at
 * more than one place; each direction of a flow counts at the first. */
#define WHERE_EGRESS 0x80000000u
static __always_inline void count(void *data, void *data_end, __u32 wire, __u16 vlan, int tags, __u32 where, struct __sk_buff *skb, struct xdp_md *xdp)
{
	if (filter_on && !fparser_filter(data, data_end, wire)) {
		stat_inc(STAT_FILTERED);
		return;
	}
	struct packet p = {};
	int v;
	if (!decap_on)
		v = parse(&p, data, data_end, wire, vlan, tags);
	else if (xdp)
		v = parse_tunnels(&p, xdp, 1, data, data_end, vlan, tags);
	else
		v = parse_tunnels(&p, skb, 0, data, data_end, vlan, tags);
	if (v == V_NON_IP) {
		stat_inc(STAT_NON_IP);
		return;
	}
	if (v == V_OTHER_L4) {
		stat_inc(STAT_OTHER_L4);
		return;
	}
	if (v == V_MALFORMED) {
		stat_inc(STAT_MALFORMED);
		return;
	}
	/* Only packets that count in a flow read the clock. */
	__s64 now;
	if (test_clock)
		now = test_now;
	else if (coarse_clock)
		now = bpf_ktime_get_coarse_ns();
	else
		now = bpf_ktime_get_ns();
	if (v == V_FLOW) {
		struct frag_key fk;
		if (p.frag == FRAG_FIRST) {
			__builtin_memcpy(fk.src, p.key.a, 16);
			__builtin_memcpy(fk.dst, p.key.b, 16);
			fk.id = p.frag_id;
			fk.proto = p.key.proto;
			__builtin_memset(fk.pad, 0, sizeof(fk.pad));
		}
		int src_is_a = canonicalize(&p.key);
		if (p.frag == FRAG_FIRST) {
			struct frag_flow ff = {};
			ff.key = p.key;
			ff.src_is_a = src_is_a;
			bpf_map_update_elem(&frags, &fk, &ff, BPF_ANY);
			stat_inc(STAT_FRAGMENTS);
		}
		if (!update(&p.key, src_is_a, &p, where, now, skb))
			return;
	} else {
		/* V_LATER_FRAG */
		stat_inc(STAT_FRAGMENTS);
		struct frag_key fk = {};
		__builtin_memcpy(fk.src, p.key.a, 16);
		__builtin_memcpy(fk.dst, p.key.b, 16);
		fk.id = p.frag_id;
		fk.proto = p.key.proto;
		struct frag_flow *ff = bpf_map_lookup_elem(&frags, &fk);
		if (!ff) {
			stat_inc(STAT_UNATTRIBUTED);
			return;
		}
		struct flow_key k = ff->key;
		p.flags = 0;
		if (!update(&k, ff->src_is_a, &p, where, now, 0))
			return;
	}
	stat_inc(p.key.proto == PROTO_TCP ? STAT_ACCEPTED_TCP : STAT_ACCEPTED_UDP);
}

SEC("xdp")
int fparser_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	count(data, data_end, data_end - data, 0, 0, ctx->ingress_ifindex, 0, ctx);
	return XDP_PASS;
}

/* tc is the TC programs' body; egress says which hook runs it, which the
 * program itself cannot tell reliably (a packet sent back out of the interface it
 * came in on looks the same at both). */
static __always_inline int tc(struct __sk_buff *skb, int egress)
{
	/* The headers may sit outside the linear part of the buffer: pull them in. */
	__u32 head = decap_on ? 256 : 128; /* a tunnel's inner headers come later */
	__u32 want = skb->len < head ? skb->len : head;
	if (skb->data_end - skb->data < want)
		bpf_skb_pull_data(skb, want);
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	/* A driver that strips the outer VLAN tag leaves it in the skb. */
	int tags = skb->vlan_present ? 1 : 0;
	count(data, data_end, skb->len, tags ? (skb->vlan_tci & 0x0FFF) : 0, tags, skb->ifindex | (egress ? WHERE_EGRESS : 0), skb, 0);
	return TCX_NEXT;
}

SEC("tc")
int fparser_tc_ingress(struct __sk_buff *skb) { return tc(skb, 0); }

SEC("tc")
int fparser_tc_egress(struct __sk_buff *skb) { return tc(skb, 1); }

/* fparser_sock_create keeps the creator of each TCP and UDP socket with the socket,
 * for attribute: its process id and name. Attached to the root of cgroup v2, it sees
 * every socket the host's processes create, in every network namespace. */
SEC("cgroup/sock_create")
int fparser_sock_create(struct bpf_sock *sk)
{
	if ((sk->family != AF_INET && sk->family != AF_INET6) || (sk->protocol != PROTO_TCP && sk->protocol != PROTO_UDP))
		return 1;
	struct sock_owner *o = bpf_sk_storage_get(&sock_owners, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (o) {
		o->pid = bpf_get_current_pid_tgid() >> 32;
		bpf_get_current_comm(o->comm, sizeof(o->comm));
	}
	return 1; /* allowed: fparser only watches */
}

/* fparser_filter_probe returns the filter's decision as XDP_PASS (match) or XDP_DROP,
 * so that tests and benchmarks can run the spliced filter alone. It is never
 * attached. */
SEC("xdp")
int fparser_filter_probe(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	return fparser_filter(data, data_end, data_end - data) ? XDP_PASS : XDP_DROP;
}
