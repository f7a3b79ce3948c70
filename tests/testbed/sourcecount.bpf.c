// SPDX-License-Identifier: GPL-2.0
/*
 * A flood's receiver for the test bed (tests/testbed/sourcecount.py): an
 * XDP program that takes the UDP datagrams to port DPORT, counts them per
 * source, checks their checksums and drops them.  Everything else passes
 * (ARP and ND keep the bed working).
 *
 *   per_source[low SLOT_BITS bits of the source address]   frames
 *   totals[T_FRAMES]    frames counted
 *   totals[T_IP_BAD]    IPv4 header checksum wrong
 *   totals[T_L4_BAD]    UDP checksum wrong (or the datagram does not fit the frame)
 *   totals[T_L4_NONE]   UDP checksum not checked: zero over IPv4 ("none"), an
 *                       odd or longer than MAX_L4_WORDS * 2 datagram
 *
 * Only IPv4 without options and IPv6 without extension headers are taken.
 * Checksums are verified the way the stack does: the one's complement sum
 * over the header (IPv4) or the pseudo header and the datagram (UDP),
 * checksum field included, must be 0xffff.  Words are summed as they lie in
 * memory, which one's complement sums allow; the pseudo header's protocol
 * and length words are built in network order to match.
 */

#include <uapi/linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>

#define SLOTS (1 << SLOT_BITS)
#define MAX_L4_WORDS 128

enum { T_FRAMES, T_IP_BAD, T_L4_BAD, T_L4_NONE, T_MAX };

BPF_ARRAY(per_source, u32, SLOTS);
BPF_ARRAY(totals, u64, T_MAX);

static __always_inline void bump(u32 which)
{
	u64 *v = totals.lookup(&which);

	if (v)
		__sync_fetch_and_add(v, 1);
}

static __always_inline u32 fold(u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	return (sum & 0xffff) + (sum >> 16);
}

/* Sum of the datagram's words; sets *ok to 0 if it does not lie within the frame. */
static __always_inline u32 sum_datagram(u16 *w, u32 words, void *data_end, int *ok)
{
	u32 sum = 0;

	/* Hide words' bound (take() checked it is at most MAX_L4_WORDS) from
	 * clang: knowing it, clang 19 (Debian 13's bcc) merges the two exit
	 * tests into one down-counter from words, which the verifier cannot
	 * bound ("The sequence of 8193 jumps is too complex").  This way
	 * i < MAX_L4_WORDS stays the loop's own bound. */
	asm volatile("" : "+r"(words));
	for (int i = 0; i < MAX_L4_WORDS; i++) {
		if (i >= words)
			break;
		u16 *p = w + i;
		/* Hide p's origin from clang, which would otherwise move the
		 * offset onto data_end (pointer arithmetic the verifier refuses). */
		asm volatile("" : "+r"(p));
		if ((void *)(p + 1) > data_end) {
			*ok = 0;
			break;
		}
		sum += *p;
	}
	return sum;
}

/* Counts the datagram at `udp` (which fits the frame) with pseudo header sum `pseudo`. */
static __always_inline int take(struct udphdr *udp, void *data_end, u32 pseudo, u32 low32, int zero_is_none)
{
	u32 slot = bpf_ntohl(low32) & (SLOTS - 1);
	u32 *seen = per_source.lookup(&slot);
	u32 len = bpf_ntohs(udp->len);

	if (seen)
		__sync_fetch_and_add(seen, 1);
	bump(T_FRAMES);
	if ((zero_is_none && udp->check == 0) || (len & 1) || len > MAX_L4_WORDS * 2 || len < sizeof(*udp)) {
		bump(T_L4_NONE);
		return XDP_DROP;
	}
	int ok = 1;
	u32 sum = pseudo + udp->len + bpf_htons(IPPROTO_UDP) + sum_datagram((u16 *)udp, len / 2, data_end, &ok);
	if (!ok || fold(fold(sum)) != 0xffff)
		bump(T_L4_BAD);
	return XDP_DROP;
}

int xdp_sourcecount(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		struct udphdr *udp = (void *)(ip + 1);

		if ((void *)(udp + 1) > data_end || ip->ihl != 5 || ip->protocol != IPPROTO_UDP ||
		    udp->dest != bpf_htons(DPORT))
			return XDP_PASS;
		u16 *w = (u16 *)ip;
		u32 sum = 0;
#pragma unroll
		for (int i = 0; i < 10; i++)
			sum += w[i];
		if (fold(sum) != 0xffff)
			bump(T_IP_BAD);
		u16 *a = (u16 *)&ip->saddr;
		u32 pseudo = a[0] + a[1] + a[2] + a[3];
		return take(udp, data_end, pseudo, ip->saddr, 1);
	}
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		struct udphdr *udp = (void *)(ip6 + 1);

		if ((void *)(udp + 1) > data_end || ip6->nexthdr != IPPROTO_UDP || udp->dest != bpf_htons(DPORT))
			return XDP_PASS;
		u16 *a = (u16 *)&ip6->saddr;
		u32 pseudo = 0;
#pragma unroll
		for (int i = 0; i < 16; i++)
			pseudo += a[i];
		/* Bits 96-127 and 32-63 both: the generator varies one or the
		 * other (per host, or per /64). */
		return take(udp, data_end, pseudo,
			    ip6->saddr.in6_u.u6_addr32[3] ^ ip6->saddr.in6_u.u6_addr32[1], 0);
	}
	return XDP_PASS;
}
