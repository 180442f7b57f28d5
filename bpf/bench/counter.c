// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* The reference the kernel datapath's benchmark measures fparser against: the
 * featureless flow counter everyone writes first. It parses Ethernet, IPv4 and TCP or
 * UDP, looks the 5-tuple up in an LRU hash map (inserting it when new), adds the
 * packet and its bytes atomically, stores the packet's time, and sends an event for a
 * FIN or RST. No VLAN, no IPv6, no canonical order, no initiator, no flags, no rates,
 * no history, no filter. Built only for the benchmark (internal/loader/benchref);
 * fparser never loads it. */
#include "../bpf_defs.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct ref_key {
	__u32 src;
	__u32 dst;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct ref_value {
	__u64 packets;
	__u64 bytes;
	__u64 first;
	__u64 last;
};

struct ref_event {
	struct ref_key key;
	__u64 time;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1 << 16); /* the benchmark sets fparser's size */
	__type(key, struct ref_key);
	__type(value, struct ref_value);
} ref_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} ref_events SEC(".maps");

struct ethhdr {
	__u8 dst[6];
	__u8 src[6];
	__u16 proto;
};

struct iphdr {
	__u8 ihl_version;
	__u8 tos;
	__u16 tot_len;
	__u16 id;
	__u16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__u32 saddr;
	__u32 daddr;
};

struct ports {
	__u16 src;
	__u16 dst;
};

SEC("xdp")
int ref_counter(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end || eth->proto != bswap16(0x0800))
		return XDP_PASS;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end)
		return XDP_PASS;
	__u32 ihl = (ip->ihl_version & 0x0F) * 4;
	if (ihl < sizeof(*ip) || (ip->protocol != 6 && ip->protocol != 17))
		return XDP_PASS;
	struct ports *l4 = (void *)ip + ihl;
	if ((void *)(l4 + 1) > end)
		return XDP_PASS;
	__u8 flags = 0;
	if (ip->protocol == 6) {
		__u8 *tcp_flags = (__u8 *)l4 + 13;
		if ((void *)(tcp_flags + 1) > end)
			return XDP_PASS;
		flags = *tcp_flags;
	}

	struct ref_key k = {.src = ip->saddr, .dst = ip->daddr, .sport = l4->src, .dport = l4->dst, .proto = ip->protocol};
	__u64 now = bpf_ktime_get_ns();
	__u64 length = bswap16(ip->tot_len);
	struct ref_value *v = bpf_map_lookup_elem(&ref_flows, &k);
	if (v) {
		__sync_fetch_and_add(&v->packets, 1);
		__sync_fetch_and_add(&v->bytes, length);
		v->last = now;
	} else {
		struct ref_value fresh = {.packets = 1, .bytes = length, .first = now, .last = now};
		bpf_map_update_elem(&ref_flows, &k, &fresh, BPF_NOEXIST);
	}
	if (flags & 0x05) { /* FIN or RST */
		struct ref_event *e = bpf_ringbuf_reserve(&ref_events, sizeof(*e), 0);
		if (e) {
			e->key = k;
			e->time = now;
			bpf_ringbuf_submit(e, 0);
		}
	}
	return XDP_PASS;
}
