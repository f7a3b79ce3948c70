// SPDX-License-Identifier: GPL-2.0
/*
 * The traffic generator's XDP program, compiled by bcc (tools/trafficgen/program.py).
 *
 * BPF_PROG_TEST_RUN runs it in live frames mode (BPF_F_TEST_XDP_LIVE_FRAMES)
 * once per frame to send, and its XDP_TX makes the kernel transmit the frame
 * out of the interface named by the test run's ingress_ifindex.  Where live
 * frames are refused (tools/trafficgen/relay.py), it is attached to a veth
 * of its own instead, frames are fed into that veth's peer, and it
 * redirects each one out of the sending interface (out_ifindex).
 *
 * Per frame it may rewrite 32 bits of the IPv4 or IPv6 source address (a
 * counter or bpf_get_prandom_u32(), masked into a prefix): the low 32 bits,
 * or for IPv6 bits 32-63, so that each frame comes from another /64, and
 * patches the IPv4 header checksum and the TCP/UDP/ICMPv6 checksum
 * incrementally (RFC 1624, eqn. 3), so a frame that was valid stays valid.
 * Where the fields are, and what to write, is in `config`, filled by
 * userspace from the frame before each flood: the program parses nothing.
 *
 * The kernel recycles the live-mode pages without rewriting them
 * (Documentation/bpf/bpf_prog_run.rst: a program "has to be prepared to see
 * either the original content or the modified version on subsequent
 * invocations").  So the new address is always built from the prefix base
 * in `config`, never from what is in the packet, and the checksum delta is
 * taken between the address found in the packet and the new one: whichever
 * version a page holds, it is self-consistent, and so is the result.
 */

#include <uapi/linux/bpf.h>

#define MODE_KEEP 0     /* send the frame as it is */
#define MODE_COUNTER 1  /* frame n of the flood gets host part n (mod the prefix size) */
#define MODE_RANDOM 2   /* host part from bpf_get_prandom_u32() */

#define L4_UDP 1        /* a computed 0 is sent as 0xffff (RFC 768, RFC 8200) */
#define L4_ZERO_NONE 2  /* UDP over IPv4: a zero checksum means "none" and stays zero */

/* Offsets are checked against this before the packet bounds check, so the
 * verifier knows the variable offset's range (Ethernet, two VLAN tags, an
 * IPv4 header with options or IPv6 extension headers all fit). */
#define MAX_FIELD_OFF 512

struct gen_config {
	u32 mode;
	u32 src_off;      /* frame offset of the source address (even) */
	u32 src_words;    /* its 16-bit words: 2 (IPv4) or 8 (IPv6) */
	u32 ip_csum_off;  /* IPv4 header checksum, 0: none (IPv6) */
	u32 l4_csum_off;  /* TCP/UDP/ICMPv6 checksum, 0: none (ICMP, fragments, ...) */
	u32 l4_flags;     /* L4_UDP | L4_ZERO_NONE */
	u32 host_mask;    /* which of the 32 varying address bits vary (host order) */
	u32 vary_word;    /* the 16-bit word of the address where those 32 bits start:
			   * 0 (IPv4), 6 (IPv6 host) or 2 (IPv6 /64) */
	u16 base[8];      /* the prefix address as it goes in the frame (network order) */
	u32 out_ifindex;  /* relayed: redirect out of this interface; 0: XDP_TX (live frames) */
	u32 copies;       /* relayed, MODE_KEEP: frames out per frame fed in (out_copies' entries) */
	u64 budget;       /* ... while this many frames are not yet out: the flood's count */
};

BPF_ARRAY(config, struct gen_config, 1);
/* Frames the program ran on since userspace last reset it: the counter mode's n.
 * Global, not per CPU: a test run may move to another CPU between batches. */
BPF_ARRAY(frames, u64, 1);

/* A relayed flood of one unchanged frame: each frame fed in leaves as many
 * frames as this map has entries (each the sending interface; a broadcast
 * redirect clones the frame for each), so the sender pays for one skb per
 * `copies` frames.  The fed frames go through one veth's NAPI, in order, so
 * no other run moves the counter between its test and its update here. */
#define MAX_COPIES 64
BPF_DEVMAP(out_copies, MAX_COPIES);

/* ~(~csum + diff), folded: the RFC 1624 update of a checksum field. */
static __always_inline u16 csum_replace(u16 csum, u32 diff)
{
	u32 sum = (u16)~csum + diff;

	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (u16)~sum;
}

/* The 16-bit field at `off` of the frame, or NULL if it does not fit. */
static __always_inline u16 *field16(void *data, void *data_end, u32 off)
{
	if (off > MAX_FIELD_OFF)
		return NULL;
	u16 *p = data + off;
	if ((void *)(p + 1) > data_end)
		return NULL;
	return p;
}

/* Out of the interface the test run names, or the relay's sending interface. */
static __always_inline int send(const struct gen_config *cfg)
{
	u32 out = cfg->out_ifindex;

	return out ? bpf_redirect(out, 0) : XDP_TX;
}

int xdp_trafficgen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	u32 zero = 0;
	struct gen_config *cfg = config.lookup(&zero);
	u64 *count = frames.lookup(&zero);

	if (!cfg || !count)
		return XDP_ABORTED;
	if (cfg->mode == MODE_KEEP) {
		u32 k = cfg->copies;

		if (k > 1 && *count + k <= cfg->budget) {
			__sync_fetch_and_add(count, k);
			return out_copies.redirect_map(0, BPF_F_BROADCAST);
		}
		__sync_fetch_and_add(count, 1);
		return send(cfg);
	}
	u64 n = __sync_fetch_and_add(count, 1);

	u32 host = cfg->mode == MODE_COUNTER ? (u32)n : bpf_get_prandom_u32();
	u32 vw = cfg->vary_word;
	if (vw > 6)
		return XDP_ABORTED;
	/* base holds an IPv4 address in its last two words. */
	u32 bw = cfg->src_words == 8 ? vw : 6;
	u32 low = (((u32)bpf_ntohs(cfg->base[bw & 7]) << 16 | bpf_ntohs(cfg->base[(bw + 1) & 7])) &
		   ~cfg->host_mask) | (host & cfg->host_mask);
	u16 hi = bpf_htons(low >> 16), lo = bpf_htons(low & 0xffff);

	/* Words are summed as they lie in memory: one's complement sums do not
	 * care about byte order as long as every term is read the same way. */
	u32 diff = 0, off = cfg->src_off;
	if (off > MAX_FIELD_OFF)
		return XDP_ABORTED;
	u16 *src = data + off, *last = src;
	if (cfg->src_words == 8) {
		if ((void *)(src + 8) > data_end)
			return XDP_ABORTED;
#pragma unroll
		for (int i = 0; i < 8; i++) {
			if (i == vw || i == vw + 1)
				continue;
			diff += (u16)~src[i] + cfg->base[i];
			src[i] = cfg->base[i];
		}
		last = src + vw;
	} else if ((void *)(src + 2) > data_end) {
		return XDP_ABORTED;
	}
	if ((void *)(last + 2) > data_end)	/* a variable offset: checked again */
		return XDP_ABORTED;
	diff += (u16)~last[0] + hi + (u16)~last[1] + lo;
	last[0] = hi;
	last[1] = lo;

	u16 *csum;
	if (cfg->ip_csum_off) {
		if (!(csum = field16(data, data_end, cfg->ip_csum_off)))
			return XDP_ABORTED;
		*csum = csum_replace(*csum, diff);
	}
	if (cfg->l4_csum_off) {
		if (!(csum = field16(data, data_end, cfg->l4_csum_off)))
			return XDP_ABORTED;
		if (*csum || !(cfg->l4_flags & L4_ZERO_NONE)) {
			u16 sum = csum_replace(*csum, diff);
			*csum = sum == 0 && (cfg->l4_flags & L4_UDP) ? 0xffff : sum;
		}
	}
	return send(cfg);
}
