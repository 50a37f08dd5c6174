// SPDX-License-Identifier: GPL-2.0
//
// The vif offload: two tc programs (TCX) that do the packet loop's common
// case in the kernel and hand everything else to it (TCX_NEXT: the packet
// goes on as if no program were there, to the TUN's queue or to the raw
// socket). vif/loop.go is the reference implementation of every rule
// checked here; a packet this code is not sure about is the loop's, which
// decides, answers (ICMP) and counts the drop.
//
//   vif_tun_egress    on the TUN's egress: encapsulate to the peer of the
//                     inner destination, send it out of the slave.
//   vif_slave_ingress on the slave's ingress: decapsulate a peer's packet
//                     for us and hand it to the TUN's ingress, as if read
//                     from the vif.
//
// Maps are filled by the daemon (package internal/offload); nothing is
// pinned.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char __license[] SEC("license") = "GPL";

#define TCX_NEXT (-1) // TC_ACT_UNSPEC: the next program, or the stack

#ifndef AF_INET
#define AF_INET 2
#endif

#define IP_MF 0x2000
#define IP_DF 0x4000
#define IP_OFFMASK 0x1fff

#define PROTO_IPIP 94
#define PROTO_IPINIP 4
#define PROTO_IPV6 41

#define ICMP_REDIRECT 5

// struct tunnel is the tunnel, the one entry of the array config. Addresses
// are in network byte order.
struct tunnel {
	__u32 local;         // outer source; 0 while the tunnel is paused
	__u32 tun_ifindex;   // the vif
	__u32 slave_ifindex; // the underlay
	__u32 dev_mtu;       // the vif's MTU
	__u8 proto;          // 94 or 4
	__u8 ttl;            // outer TTL
	__u8 inherit_ttl;    // copy the inner TTL instead
	__u8 pad;
};

// Keys of the LPM tries: prefix length, then the address.
struct lpm_key {
	__u32 prefixlen;
	__u32 addr;
};

// struct peer is a peer's state the programs need.
struct peer {
	__u32 pmtu; // tunnel MTU towards the peer (inner packets)
};

// struct counters counts a peer's offloaded traffic, per CPU: tx are
// outer bytes, rx inner bytes, as the loop counts them.
struct counters {
	__u64 tx_pkts, tx_bytes;
	__u64 rx_pkts, rx_bytes;
};

// Why a packet was handed to the userspace loop: the index of the
// per-CPU array passed, which also counts the one drop of the programs
// (DROP_TX_ERROR). Keep in step with passNames in offload.go.
enum pass_reason {
	PASS_TX_NOT_IPV4,  // not IPv4 (IPv6: 6in4 is the loop's)
	PASS_TX_MALFORMED, // bad version, IHL, total length
	PASS_TX_LOOPBACK,  // for one of the vif's addresses
	PASS_TX_REDIRECT,  // an ICMP redirect (the loop drops it)
	PASS_TX_NO_PEER,   // no peer's prefix holds the destination
	PASS_TX_TO_PEER,   // the destination is a peer's underlay address
	PASS_TX_NO_LOCAL,  // the tunnel is paused
	PASS_TX_TTL,       // inner TTL 0
	PASS_TX_TOO_BIG,   // larger than the tunnel MTU to the peer
	PASS_TX_GSO,       // a GSO packet the kernel cannot segment after encapsulation
	PASS_TX_ERROR,     // a helper failed
	PASS_RX_NOT_PEER,  // outer source not a peer
	PASS_RX_OUTER,     // outer header: IHL, length, checksum, fragment
	PASS_RX_INNER,     // inner header: version, IHL, length, checksum
	PASS_RX_TTL,       // inner TTL 0
	PASS_RX_NESTED,    // inner protocol 4, 41 or 94
	PASS_RX_ECN,       // outer CE over inner Not-ECT
	PASS_RX_NOT_LOCAL, // inner destination neither ours nor forwarded
	PASS_RX_BAD_SOURCE,// inner source not the peer's, or ours, or not unicast
	PASS_RX_GSO,       // a GSO packet to forward
	PASS_RX_ERROR,     // a helper failed
	DROP_TX_ERROR,     // dropped: a helper failed on a packet half encapsulated
	PASS_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tunnel);
} config SEC(".maps");

// own holds the vif's addresses (/32, value 1), its ranges (value 1) and
// the addresses excluded from them (/32, value 0).
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_key);
	__type(value, __u8);
} own SEC(".maps");

// forward holds Config.Forward: inner destinations handed on.
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_key);
	__type(value, __u8);
} forward SEC(".maps");

// routes maps the peers' IPv4 prefixes to the peer's underlay address.
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_key);
	__type(value, __u32);
} routes SEC(".maps");

// peers maps a peer's underlay address to its state.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct peer);
} peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct counters);
} peer_stats SEC(".maps");

// totals is the interface's offloaded traffic, per CPU: entry 0.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counters);
} totals SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PASS_MAX);
	__type(key, __u32);
	__type(value, __u64);
} passed SEC(".maps");

static __always_inline int pass(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&passed, &reason);
	if (n)
		*n += 1;
	return TCX_NEXT;
}

// drop drops a packet the program cannot hand on: a helper failed after
// it changed the packet. The loop's Stats count it.
static __always_inline int drop(void)
{
	pass(DROP_TX_ERROR);
	return TC_ACT_SHOT;
}

static __always_inline void count(__u32 peer, int rx, __u64 pkts, __u64 bytes)
{
	__u32 zero = 0;
	struct counters *s = bpf_map_lookup_elem(&peer_stats, &peer);
	if (!s) {
		struct counters init = {};
		bpf_map_update_elem(&peer_stats, &peer, &init, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&peer_stats, &peer);
	}
	struct counters *t = bpf_map_lookup_elem(&totals, &zero);
	if (rx) {
		if (s) {
			s->rx_pkts += pkts;
			s->rx_bytes += bytes;
		}
		if (t) {
			t->rx_pkts += pkts;
			t->rx_bytes += bytes;
		}
	} else {
		if (s) {
			s->tx_pkts += pkts;
			s->tx_bytes += bytes;
		}
		if (t) {
			t->tx_pkts += pkts;
			t->tx_bytes += bytes;
		}
	}
}

// csum20 returns the one's complement sum of a 20-byte header, folded,
// complemented: 0 for a header whose checksum is right.
static __always_inline __u16 csum20(const void *hdr)
{
	const __u16 *w = hdr;
	__u32 sum = 0;
#pragma unroll
	for (int k = 0; k < 10; k++)
		sum += w[k];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum & 0xffff;
}

static __always_inline int is_own(__u32 addr)
{
	struct lpm_key k = {.prefixlen = 32, .addr = addr};
	__u8 *v = bpf_map_lookup_elem(&own, &k);
	return v && *v;
}

// bad_source: what must never be an inner source from a tunnel (the
// loop's addrSet.badSource): 0/8, 127/8, 224/4 and 240/4 (broadcast
// included), and our own addresses.
static __always_inline int bad_source(__u32 addr)
{
	__u8 first = bpf_ntohl(addr) >> 24;
	if (first == 0 || first == 127 || first >= 224)
		return 1;
	return is_own(addr);
}

SEC("tcx/egress")
int vif_tun_egress(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct tunnel *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg)
		return pass(PASS_TX_ERROR);
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return pass(PASS_TX_NOT_IPV4);

	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	if (data + sizeof(struct iphdr) > data_end) {
		if (bpf_skb_pull_data(skb, sizeof(struct iphdr)))
			return pass(PASS_TX_MALFORMED);
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		if (data + sizeof(struct iphdr) > data_end)
			return pass(PASS_TX_MALFORMED);
	}
	struct iphdr *ip = data;
	__u32 len = skb->len;
	__u32 ihl = ip->ihl * 4;
	if (ip->version != 4 || ihl < 20 || bpf_ntohs(ip->tot_len) != len)
		return pass(PASS_TX_MALFORMED);
	__u32 dst = ip->daddr;
	__u8 tos = ip->tos, ttl = ip->ttl, proto = ip->protocol;
	__u16 df = ip->frag_off & bpf_htons(IP_DF);

	// The loop's order: loopback, redirect, peer, loop, paused.
	if (is_own(dst))
		return pass(PASS_TX_LOOPBACK);
	if (proto == IPPROTO_ICMP) {
		__u8 type;
		if (bpf_skb_load_bytes(skb, ihl, &type, 1) || type == ICMP_REDIRECT)
			return pass(PASS_TX_REDIRECT);
	}
	struct lpm_key k = {.prefixlen = 32, .addr = dst};
	__u32 *peer_addr = bpf_map_lookup_elem(&routes, &k);
	if (!peer_addr)
		return pass(PASS_TX_NO_PEER);
	__u32 paddr = *peer_addr;
	if (bpf_map_lookup_elem(&peers, &dst))
		return pass(PASS_TX_TO_PEER);
	struct peer *p = bpf_map_lookup_elem(&peers, &paddr);
	if (!p)
		return pass(PASS_TX_NO_PEER);
	__u32 local = cfg->local;
	if (!local)
		return pass(PASS_TX_NO_LOCAL);
	if (ttl == 0)
		return pass(PASS_TX_TTL);
	if (len + sizeof(struct iphdr) > 65535)
		return pass(PASS_TX_TOO_BIG);

	// seg is the largest inner packet on the wire: the packet, or one
	// segment of a GSO packet.
	__u32 seg = len, segs = 1, hdrs = 0;
	if (skb->gso_size) {
		// The kernel segments IPIP (protocol 4, SKB_GSO_IPXIP4) GSO
		// packets after encapsulation; protocol 94 it cannot: those go
		// to the loop, which reads them from the TUN in segments. Only
		// TCP: UDP GSO would need fixed segment sizes.
		if (cfg->proto != PROTO_IPINIP || proto != IPPROTO_TCP)
			return pass(PASS_TX_GSO);
		__u8 doff;
		if (bpf_skb_load_bytes(skb, ihl + 12, &doff, 1))
			return pass(PASS_TX_GSO);
		hdrs = ihl + (doff >> 4) * 4;
		if (len <= hdrs)
			return pass(PASS_TX_GSO);
		seg = hdrs + skb->gso_size;
		segs = (len - hdrs + skb->gso_size - 1) / skb->gso_size;
	}
	if (seg > p->pmtu)
		return pass(PASS_TX_TOO_BIG);

	// RFC 2003 section 3.1 and RFC 6040 section 4.1 (normal mode): the
	// outer header carries the inner TOS byte (ECN copied) and DF.
	struct iphdr outer = {
		.version = 4,
		.ihl = 5,
		.tos = tos,
		.tot_len = bpf_htons(len + sizeof(struct iphdr)),
		.id = (__u16)bpf_get_prandom_u32(),
		.frag_off = df,
		.ttl = cfg->inherit_ttl ? ttl : cfg->ttl,
		.protocol = cfg->proto,
		.saddr = local,
		.daddr = paddr,
	};
	outer.check = csum20(&outer);

	// Room for the outer header in front of the inner one. The ENCAP
	// flag marks a GSO packet SKB_GSO_IPXIP4 so that the kernel
	// segments it at the slave with its outer header; FIXED_GSO keeps
	// gso_size: the segments were cut for the vif's MTU already.
	if (bpf_skb_adjust_room(skb, sizeof(struct iphdr), BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_FIXED_GSO))
		return pass(PASS_TX_ERROR);
	if (bpf_skb_store_bytes(skb, 0, &outer, sizeof(outer), 0))
		return drop(); // the packet is half made: it cannot go on
	// bpf_redirect_neigh wants a link-layer header in front of the IP
	// one, which a TUN's packets lack: a blank one (not multicast), which
	// it replaces.
	if (bpf_skb_change_head(skb, ETH_HLEN, 0))
		return drop();
	__u16 ethp = bpf_htons(ETH_P_IP);
	if (bpf_skb_store_bytes(skb, 12, &ethp, 2, 0))
		return drop();

	count(paddr, 0, segs, len + segs * sizeof(struct iphdr) + (segs - 1) * hdrs);
	// The kernel routes the outer packet out of the slave, resolves the
	// next hop and writes the Ethernet header.
	return bpf_redirect_neigh(cfg->slave_ifindex, NULL, 0, 0);
}

#define RX_HDRS (ETH_HLEN + 2 * sizeof(struct iphdr))

SEC("tcx/ingress")
int vif_slave_ingress(struct __sk_buff *skb)
{
	// Most of what arrives is not the tunnel's: leave it at once.
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return TCX_NEXT;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	if (data + ETH_HLEN + sizeof(struct iphdr) > data_end)
		return TCX_NEXT; // too short for anything of ours, or not linear
	struct iphdr *ip = data + ETH_HLEN;
	__u32 zero = 0;
	struct tunnel *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg || ip->protocol != cfg->proto || !cfg->local || ip->daddr != cfg->local)
		return TCX_NEXT;
	if (skb->pkt_type != 0 /* PACKET_HOST */ || skb->vlan_present)
		return TCX_NEXT;
	__u32 src = ip->saddr;
	if (!bpf_map_lookup_elem(&peers, &src))
		return pass(PASS_RX_NOT_PEER);

	if (data + RX_HDRS > data_end) {
		if (skb->len < RX_HDRS || bpf_skb_pull_data(skb, RX_HDRS))
			return pass(PASS_RX_OUTER);
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		if (data + RX_HDRS > data_end)
			return pass(PASS_RX_OUTER);
	}
	ip = data + ETH_HLEN;
	struct iphdr *in = data + ETH_HLEN + sizeof(struct iphdr);

	// The outer header as ipip.Decap checks it; options are the loop's.
	__u32 len = skb->len - ETH_HLEN;
	if (ip->version != 4 || ip->ihl != 5 || bpf_ntohs(ip->tot_len) != len ||
	    (ip->frag_off & bpf_htons(IP_MF | IP_OFFMASK)) || csum20(ip) != 0)
		return pass(PASS_RX_OUTER);
	// The inner one; its total length must fill the outer payload
	// exactly (the loop trims what follows it).
	if (in->version != 4 || in->ihl != 5 || bpf_ntohs(in->tot_len) != len - sizeof(struct iphdr) ||
	    csum20(in) != 0)
		return pass(PASS_RX_INNER);
	if (in->ttl == 0)
		return pass(PASS_RX_TTL);
	if (in->protocol == PROTO_IPIP || in->protocol == PROTO_IPINIP || in->protocol == PROTO_IPV6)
		return pass(PASS_RX_NESTED);

	// RFC 6040 section 4.2, normal mode (ipip.DecapECN).
	__u8 oecn = ip->tos & 3, iecn = in->tos & 3, ecn = iecn;
	if (iecn == 0) {
		if (oecn == 3)
			return pass(PASS_RX_ECN);
	} else if (iecn == 3 || oecn == 3) {
		ecn = 3;
	} else if (oecn == 1) {
		ecn = 1;
	}

	// No open relay: the inner destination is ours or forwarded. The
	// source is the sending peer's by longest-prefix match, as the
	// answer will be routed.
	__u32 idst = in->daddr, isrc = in->saddr;
	int local = is_own(idst);
	if (!local) {
		struct lpm_key fk = {.prefixlen = 32, .addr = idst};
		if (!bpf_map_lookup_elem(&forward, &fk))
			return pass(PASS_RX_NOT_LOCAL);
	}
	if (bad_source(isrc))
		return pass(PASS_RX_BAD_SOURCE);
	struct lpm_key sk = {.prefixlen = 32, .addr = isrc};
	__u32 *owner = bpf_map_lookup_elem(&routes, &sk);
	if (!owner || *owner != src)
		return pass(PASS_RX_BAD_SOURCE);

	__u32 segs = 1, hdrs = 0, ilen = len - sizeof(struct iphdr);
	if (skb->gso_size) {
		// A GSO packet decapsulated keeps the tunnel's GSO type: fine
		// for local delivery, not for forwarding, which would segment
		// it as IPIP.
		if (!local)
			return pass(PASS_RX_GSO);
		if (in->protocol == IPPROTO_TCP) {
			__u8 doff;
			if (bpf_skb_load_bytes(skb, RX_HDRS + 12, &doff, 1) == 0) {
				hdrs = sizeof(struct iphdr) + (doff >> 4) * 4;
				if (ilen > hdrs)
					segs = (ilen - hdrs + skb->gso_size - 1) / skb->gso_size;
			}
		}
	}

	if (ecn != iecn) {
		// Set CE and fix the checksum incrementally (RFC 1624): the
		// first 16-bit word holds version, IHL and TOS.
		__u16 old = *(__u16 *)in;
		in->tos = (in->tos & ~3) | ecn;
		__u16 new = *(__u16 *)in;
		__u32 sum = (__u16)~in->check + (__u16)~old + new;
		sum = (sum & 0xffff) + (sum >> 16);
		sum = (sum & 0xffff) + (sum >> 16);
		in->check = ~sum;
	}

	if (bpf_skb_adjust_room(skb, -(int)sizeof(struct iphdr), BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_FIXED_GSO))
		return pass(PASS_RX_ERROR);
	count(src, 1, segs, ilen + (segs - 1) * hdrs);
	return bpf_redirect(cfg->tun_ifindex, BPF_F_INGRESS);
}
