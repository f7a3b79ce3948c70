// SPDX-License-Identifier: GPL-2.0
/*
 * xdpd's XDP program, compiled by bcc at daemon start.
 *
 * Classification without a per-rule loop (bpf-iptables' linear bit-vector
 * search): rule i of the active rule set owns bit i of a 128-bit mask.  Every
 * match field is looked up once and yields the mask of the rules it
 * satisfies; ANDing them leaves the rules that match, and the lowest set bit
 * of the decisive ones (drop/pass) is the first match in config order.
 *
 *   proto      array[bank][256]           rules accepting this protocol
 *   sport      array[bank][65536 + 1]     rules accepting this port; slot
 *                                          65536 is "packet has no ports"
 *   dport      array[bank][tcp|udp][65536 + 1]
 *                                          rules accepting this port AND this
 *                                          protocol: one lookup for both
 *   src/dst    hash {bank, addr}          exact /32 and /128 entries
 *              lpm  {bank, addr}/plen     shorter prefixes (cilium's prefilter
 *                                          split: the trie stays small)
 *              blocks array[bank][65536]  per IPv4 /16: the prefixes covering
 *                                          it, and whether a longer one lies in
 *                                          it (else the trie is not consulted);
 *                                          for IPv6 per hash of the /32: the
 *                                          rules of prefixes reaching it
 *              filter: bitmap[2^24]       one bit per hash value of every
 *                                          exact key (both banks): a clear bit
 *                                          proves a miss without the hash map
 *   ttl        array[bank][256]           IPv4 TTL / IPv6 hop limit
 *   length     array[bank][65536]         IP packet length
 *   vlan       array[bank][4096]          outer VLAN id (untagged frames: only
 *                                          the rules that name no VLAN)
 *   tcp_flags  array[bank][256]           the TCP flags byte
 *   icmp_type  array[bank][v4|v6][256]
 *   icmp_code  array[bank][256]
 *
 * Each interface's entry (iface_cfg) carries the mask of the rules that
 * apply on it, and the same without the rules naming a vlan for untagged
 * frames: rules scoped to other interfaces, and vlan rules for the common
 * untagged frame, are out before any lookup.
 * Rules without a constraint on a field have their bit set everywhere for
 * that field ("wild").  The packet that matches nothing is the common case,
 * so the program stops as soon as the mask is empty and skips every lookup
 * (protocol, ports, addresses) that no remaining rule needs.  A hash map
 * lookup costs several times an array lookup, so the exact-address maps are
 * guarded by a bitmap filter (an inlined array read): for a source that is
 * in no list, the hash map is consulted only on a filter collision (about
 * n / 2^24 of the time for n keys).
 *
 * Every key carries a bank number.  Userspace writes a new rule set into the
 * inactive bank and switches with one write to `state`: a packet sees either
 * the old or the new rule set, never a mix, and never none.
 *
 * The header fields after the ports (ttl ... icmp_code) are consulted only
 * when some rule of the bank uses them (F_HDR, and one flag per field: a
 * field no rule names costs one bit test): a rule set without them pays one
 * flags test.  The ttl and length checks come first: most packets fall in
 * the longest run of their tables, held in the bank settings, and leave no
 * rule after them.  A non-first fragment carries no TCP or ICMP header, so
 * rules naming tcp_flags or an ICMP type or code do not match it (as with
 * ports).
 *
 * An interface in observe mode is classified and counted as usual, but what
 * would be dropped is passed and counted as observe_drop_*.
 *
 * Malformed frames (truncated headers, bad IP version or header length, an
 * IPv6 extension chain deeper than MAX_V6_EXT) are dropped and counted apart:
 * the kernel's stack would drop them too, and a filter must not be bypassed by
 * frames it cannot read.
 *
 * Rate limits (action limit) are token buckets kept as GCRA "theoretical
 * arrival times" (one u64 per bucket, updated with atomics, so CPUs share a
 * bucket without a lock): per rule in an array by counter slot, per source
 * (IPv4 address, IPv6 /64) in an LRU hash, so a flood of spoofed sources
 * evicts old buckets instead of growing memory.  A limit rule that a packet
 * matches and that is within its rate lets the packet go on to later rules,
 * as count does; over the rate it is dropped (drop_limit) and, with a ban,
 * its source goes into the ban table.
 *
 * Bans (from limit rules and `xdpd ban`) live in a hash pinned apart from
 * the other maps (BAN_DIR), so they survive restarts and upgrades that change
 * this program.  A banned source is dropped before any rule (drop_ban).
 * While no ban exists, state->bans_armed is 0 and packets read nothing more;
 * with bans, a byte filter (one byte per hash value, written with plain byte
 * stores so no concurrent writer loses another's mark) answers for most
 * sources that are not banned without the hash.  Expiry is compared on
 * lookup (CLOCK_MONOTONIC deadlines); the daemon's sweep only frees memory.
 *
 * Samples: a rule with `sample` hands the headers of up to its rate of the
 * packets it matches to the daemon through a ring buffer (one sample per
 * packet at most, taken by the first matching rule that wants one and whose
 * sample bucket allows it, sent once the packet's verdict is known).  Rules
 * without `sample` cost one test of a field already loaded.
 *
 * Build-time parameters (-D): PIN_DIR, BAN_DIR, MAX_EXACT, MAX_PREFIXES,
 * IFINDEX_MAX, MAX_LIMIT_SOURCES, MAX_BANS.
 */
/* Only the UAPI headers: the header structs and constants are all there.
 * <linux/ip.h> and the like pull in the kernel's sk_buff world, and parsing
 * it was half of every compile (2.2 s -> 1.1 s with bcc 0.26; the program
 * built is the same, tag for tag). */
#include <uapi/linux/bpf.h>
#include <uapi/linux/in.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>
#include <uapi/linux/tcp.h>
#include <uapi/linux/udp.h>

#ifndef PIN_DIR
#error "PIN_DIR must be defined (-DPIN_DIR=\"/sys/fs/bpf/xdpd/maps-...\")"
#endif
#ifndef MAX_EXACT
#define MAX_EXACT 4000000
#endif
#ifndef MAX_PREFIXES
#define MAX_PREFIXES 200000
#endif
#ifndef IFINDEX_MAX
#define IFINDEX_MAX 65536
#endif
#ifndef BAN_DIR
#error "BAN_DIR must be defined (-DBAN_DIR=\"/sys/fs/bpf/xdpd/bans-...\")"
#endif
#ifndef MAX_LIMIT_SOURCES
#define MAX_LIMIT_SOURCES 1000000
#endif
#ifndef MAX_BANS
#define MAX_BANS 1000000
#endif

#define MAX_RULES 128		/* bits in struct mask */
#define MAX_RULE_SLOTS 256	/* counter slots: old and new rule set at once */
#define MAX_IFACES 256
#define MAX_V6_EXT 8
#define NO_PORT 65536
#define PORT_SLOTS 65537
#define FILTER_BITS 24
#define FILTER_WORDS (1 << (FILTER_BITS - 6))
#define VLAN_UNTAGGED 4096
#define LEN_SLOTS 65536

/* Verdicts counted per interface; mirrored in xdpd/layout.py. */
#define V_PASS_RULE 0
#define V_DROP_RULE 1
#define V_PASS_DEFAULT 2
#define V_DROP_DEFAULT 3
#define V_DROP_MALFORMED 4
#define V_PASS_EXEMPT 5		/* ARP / IPv6 ND passed despite default drop */
#define V_OBSERVE_DROP_RULE 6	/* observe mode: would have been dropped ... */
#define V_OBSERVE_DROP_DEFAULT 7
#define V_OBSERVE_DROP_MALFORMED 8
#define V_DROP_LIMIT 9		/* over a limit rule's rate */
#define V_DROP_BAN 10		/* the source is banned */
#define V_OBSERVE_DROP_LIMIT 11
#define V_OBSERVE_DROP_BAN 12
#define NVERDICTS 13

#define ACT_PASS 0
#define ACT_DROP 1
#define ACT_COUNT 2
#define ACT_LIMIT 3

/* rule_ent.flags of a limit rule */
#define LIM_BYTES 1		/* the rate counts bytes (cost is per byte) */
#define LIM_PER_SOURCE 2	/* one bucket per source, else one for the rule */
#define LIM_FINE_CLOCK 4	/* the burst is under two ticks of the rate: the coarse
				 * clock (one read per tick, 10-20 ns cheaper) would hold
				 * the rate down to the burst per tick */
/* Limit arithmetic runs in 1/TIME_SCALE ns: the cost of a byte at 100 Gbit/s
 * is 0.08 ns, 5 units (2% off); u64 holds 9 years of uptime in these units. */
#define TIME_SCALE 64
#define BAN_FILTER_BITS 22	/* one byte per hash value: 4 MiB */
#define BAN_FILTER_WORDS (1 << (BAN_FILTER_BITS - 3))
#define BAN_BY_CLI 0xffffffff	/* ban.rule_slot of a ban made by `xdpd ban` */
#define BAN_STAT_BY_RULE 0	/* ban_stats: bans made by limit rules */
#define BAN_STAT_FULL 1		/* ... refused: the ban table was full */
#define BAN_STATS 2

/* bank_cfg.flags: which address maps hold entries in this bank. */
#define F_SRC4_EXACT (1 << 0)
#define F_SRC4_LPM (1 << 1)
#define F_SRC6_EXACT (1 << 2)
#define F_SRC6_LPM (1 << 3)
#define F_DST4_EXACT (1 << 4)
#define F_DST4_LPM (1 << 5)
#define F_DST6_EXACT (1 << 6)
#define F_DST6_LPM (1 << 7)
/* A direction and family with at most SMALL_MAX entries (hosts and
 * prefixes together) is held in one small table and matched by a short
 * branch-free scan: cheaper than the hash and the trie together. */
#define F_SRC4_SMALL (1 << 8)
#define F_SRC6_SMALL (1 << 9)
#define F_DST4_SMALL (1 << 10)
#define F_DST6_SMALL (1 << 11)
#define SMALL_MAX 8
/* The bank's /16 block index holds its IPv4 prefixes of a direction (not
 * small): the trie is consulted only for an address in a block that a
 * prefix longer than /16 reaches; elsewhere the block's `sure` mask, its
 * covering prefixes' rules, is the trie's answer (an entry's mask holds its
 * covering prefixes' bits).  Most addresses are in such a block, and an
 * array read costs a fraction of a trie lookup. */
#define F_SRC4_BLOCKS (1 << 12)
#define F_DST4_BLOCKS (1 << 13)
/* The same for IPv6, by buckets: a hash of the address's /32 picks one of
 * 2^16 masks, the rules with a prefix reaching some /32 of that bucket; none
 * proves the trie holds nothing for the address.  (Only for tables with no
 * prefix shorter than /28: see xdpd/tables.py, block6_index.) */
#define F_SRC6_BLOCKS (1 << 20)
#define F_DST6_BLOCKS (1 << 21)
#define BLOCK6_BITS 16
#define F_TTL (1 << 14)		/* some rule names ttl (and so on) */
#define F_LEN (1 << 15)
#define F_VLAN (1 << 16)
#define F_TCPF (1 << 17)
#define F_ICMPT (1 << 18)
#define F_ICMPC (1 << 19)
#define F_HDR (F_TTL | F_LEN | F_VLAN | F_TCPF | F_ICMPT | F_ICMPC)

struct mask {
	u64 w[2];
};

/* The longest run of equal entries of a range-built table (ttl, length):
 * most packets fall in it, and then the mask comes from here, not a lookup. */
struct span {
	u32 lo;
	u32 hi;
	struct mask m;
};

struct bank_cfg {
	struct mask l4_wild;		/* rules naming neither protocol nor dst port */
	struct mask src_wild;
	struct mask dst_wild;
	struct mask decisive;
	struct mask proto_wild;		/* rules that name no protocol */
	struct mask sport_wild;		/* ... no source port */
	struct mask dport_wild;		/* ... no destination port */
	struct mask ttl_wild;		/* ... no ttl (and so on) */
	struct mask len_wild;
	struct mask vlan_wild;
	struct mask tcpf_wild;
	struct mask icmpt_wild;
	struct mask icmpc_wild;
	struct span ttl_common;
	struct span len_common;
	u32 flags;
	u32 nrules;
};

/* The switch and both banks' settings in one value: one lookup per packet.
 * Userspace changes either cfg[inactive] or the bank number in one write,
 * never bytes a packet of the active bank reads.  bans_armed is set by the
 * program and `xdpd ban` when they add a ban (the map is mmapable: a single
 * u32 store, no read-modify-write of the bank) and cleared by the daemon only
 * when the ban table is empty. */
struct state {
	u32 bank;
	u32 bans_armed;
	u64 generation;
	struct bank_cfg cfg[2];
};

struct rule_ent {
	u32 action;
	u32 slot;
	u64 cost;	/* limit: TIME_SCALE units per packet, or per byte (LIM_BYTES) */
	u64 tau;	/* limit: the burst, in the same units */
	u64 ban_ns;	/* limit: how long a source over the rate is banned; 0: never */
	u32 flags;	/* LIM_* */
	u32 bucket;	/* limit: names the rule's per-source buckets (a hash of its
			 * name), so a rule given a retired rule's slot starts afresh */
	u64 sample_cost;	/* sample: TIME_SCALE units per sample; 0: no samples */
	u64 sample_tau;		/* sample: the burst of samples, same units */
};

/* One sampled packet, as the daemon logs it (xdpd/layout.py: Sample). */
struct sample {
	u32 rule_slot;
	u32 ifindex;
	u32 verdict;
	u32 family;
	u32 proto;
	u32 sport;	/* NO_PORT: none */
	u32 dport;
	u32 length;	/* IP packet length */
	u32 frame_len;
	u32 icmp_type;
	u32 icmp_code;
	u32 tcp_flags;
	u32 l4;		/* icmp_* or tcp_flags were read */
	u32 vlan;	/* VLAN_UNTAGGED: none */
	u8 src[16];
	u8 dst[16];
};

struct iface_ent {
	u8 enabled;
	u8 default_drop;
	u8 observe;
	u8 pad;
	u16 slot;
	u16 pad2;
	struct mask rules;	/* the rules of this bank that apply here */
	struct mask untagged;	/* ... and to an untagged frame: no vlan rule */
};

struct counter {
	u64 packets;
	u64 bytes;
};

struct key4 {
	u32 bank;
	u32 addr;		/* network byte order */
};

struct key6 {
	u32 bank;
	u8 addr[16];
};

struct lpm4 {
	u32 prefixlen;		/* 32 (bank) + prefix length */
	u32 bank;
	u32 addr;
};

struct lpm6 {
	u32 prefixlen;
	u32 bank;
	u8 addr[16];
};

struct small4 {
	u32 n;
	u32 pad;
	struct {
		u32 net;	/* network byte order, like the packet's */
		u32 netmask;
		struct mask m;
	} e[SMALL_MAX];
};

/* Per /16 block of IPv4 space, for a small table: the rules whose prefixes
 * cover the whole block (a sure match) and the rules with longer entries
 * inside it (the scan decides).  Most addresses hit a block with neither:
 * one array read answers for them. */
struct block16 {
	struct mask sure;
	struct mask maybe;
};

struct small6 {
	u32 n;
	u32 pad;
	struct {
		u32 net[4];
		u32 netmask[4];
		struct mask m;
	} e[SMALL_MAX];
};

/* Names for status while the daemon is down; never read by the program. */
struct rule_meta {
	char name[64];
	u32 action;
	u32 in_use;
	u64 digest;	/* of the rule's definition: what `plan` compares */
};

struct iface_meta {
	char name[16];
	u32 ifindex;
	u32 mode;
	u32 in_use;
	u32 pad;
};

/* A source as the ban table and per-source buckets know it: an IPv4 address
 * as ::ffff:a.b.c.d, an IPv6 address as its /64 (the rest zero). */
struct src_key {
	u8 addr[16];
};

struct ban {
	u64 expires;	/* CLOCK_MONOTONIC ns; 0: until deleted */
	u64 since;	/* CLOCK_MONOTONIC ns when it was made */
	u32 rule_slot;	/* counter slot of the limit rule that made it, or BAN_BY_CLI */
	u32 rule_hash;	/* and that rule's rule_ent.bucket (the slot may be reused) */
	char reason[64];
};

struct bucket_key {
	u32 slot;	/* the limit rule's counter slot */
	u32 bucket;	/* and its rule_ent.bucket */
	struct src_key src;
};

struct vlanhdr {
	__be16 tci;
	__be16 proto;
};

struct v6ext {
	u8 nexthdr;
	u8 hdrlen;
};

struct v6frag {
	u8 nexthdr;
	u8 reserved;
	__be16 frag_off;
	__be32 id;
};

struct pkt {
	u32 family;		/* 4 or 6 */
	u32 proto;
	u32 sport;		/* host order, or NO_PORT */
	u32 dport;
	u32 l4;			/* the TCP or ICMP header was read (first fragment) */
	u32 icmp_type;
	u32 icmp_code;
	u32 tcp_flags;
	u32 ttl;
	u32 len;		/* IP packet length */
	u32 vlan;		/* outer VLAN id, or VLAN_UNTAGGED */
	u32 s4, d4;
	u8 s6[16], d6[16];
};

BPF_TABLE_PINNED("array", u32, struct state, state, 1, PIN_DIR "/state", BPF_F_MMAPABLE);
BPF_TABLE_PINNED("array", u32, struct rule_ent, rules, 2 * MAX_RULES, PIN_DIR "/rules");
BPF_TABLE_PINNED("array", u32, struct mask, proto_mask, 2 * 256, PIN_DIR "/proto_mask");
BPF_TABLE_PINNED("array", u32, struct mask, sport_mask, 2 * PORT_SLOTS, PIN_DIR "/sport_mask");
BPF_TABLE_PINNED("array", u32, struct mask, dport_mask, 2 * 2 * PORT_SLOTS, PIN_DIR "/dport_mask");
BPF_TABLE_PINNED("hash", struct key4, struct mask, src4_exact, MAX_EXACT, PIN_DIR "/src4_exact", BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("hash", struct key4, struct mask, dst4_exact, MAX_EXACT, PIN_DIR "/dst4_exact", BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("hash", struct key6, struct mask, src6_exact, MAX_EXACT, PIN_DIR "/src6_exact", BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("hash", struct key6, struct mask, dst6_exact, MAX_EXACT, PIN_DIR "/dst6_exact", BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("lpm_trie", struct lpm4, struct mask, src4_lpm, MAX_PREFIXES, PIN_DIR "/src4_lpm", BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("lpm_trie", struct lpm4, struct mask, dst4_lpm, MAX_PREFIXES, PIN_DIR "/dst4_lpm", BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("lpm_trie", struct lpm6, struct mask, src6_lpm, MAX_PREFIXES, PIN_DIR "/src6_lpm", BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("lpm_trie", struct lpm6, struct mask, dst6_lpm, MAX_PREFIXES, PIN_DIR "/dst6_lpm", BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("array", u32, struct small4, src4_small, 2, PIN_DIR "/src4_small");
BPF_TABLE_PINNED("array", u32, struct small4, dst4_small, 2, PIN_DIR "/dst4_small");
BPF_TABLE_PINNED("array", u32, struct small6, src6_small, 2, PIN_DIR "/src6_small");
BPF_TABLE_PINNED("array", u32, struct block16, src4_blocks, 2 * 65536, PIN_DIR "/src4_blocks");
BPF_TABLE_PINNED("array", u32, struct block16, dst4_blocks, 2 * 65536, PIN_DIR "/dst4_blocks");
BPF_TABLE_PINNED("array", u32, struct small6, dst6_small, 2, PIN_DIR "/dst6_small");
BPF_TABLE_PINNED("array", u32, struct mask, src6_blocks, 2 << BLOCK6_BITS, PIN_DIR "/src6_blocks");
BPF_TABLE_PINNED("array", u32, struct mask, dst6_blocks, 2 << BLOCK6_BITS, PIN_DIR "/dst6_blocks");
/* Not banked: each holds the bits of both banks' keys (a superset is safe). */
BPF_TABLE_PINNED("array", u32, u64, src4_filter, FILTER_WORDS, PIN_DIR "/src4_filter");
BPF_TABLE_PINNED("array", u32, u64, dst4_filter, FILTER_WORDS, PIN_DIR "/dst4_filter");
BPF_TABLE_PINNED("array", u32, u64, src6_filter, FILTER_WORDS, PIN_DIR "/src6_filter");
BPF_TABLE_PINNED("array", u32, u64, dst6_filter, FILTER_WORDS, PIN_DIR "/dst6_filter");
BPF_TABLE_PINNED("array", u32, struct mask, ttl_mask, 2 * 256, PIN_DIR "/ttl_mask");
BPF_TABLE_PINNED("array", u32, struct mask, len_mask, 2 * LEN_SLOTS, PIN_DIR "/len_mask");
BPF_TABLE_PINNED("array", u32, struct mask, vlan_mask, 2 * 4096, PIN_DIR "/vlan_mask");
BPF_TABLE_PINNED("array", u32, struct mask, tcpf_mask, 2 * 256, PIN_DIR "/tcpf_mask");
BPF_TABLE_PINNED("array", u32, struct mask, icmpt_mask, 2 * 2 * 256, PIN_DIR "/icmpt_mask");
BPF_TABLE_PINNED("array", u32, struct mask, icmpc_mask, 2 * 256, PIN_DIR "/icmpc_mask");
BPF_TABLE_PINNED("array", u32, struct iface_ent, iface_cfg, 2 * IFINDEX_MAX, PIN_DIR "/iface_cfg");
BPF_TABLE_PINNED("percpu_array", u32, struct counter, iface_stats, MAX_IFACES * NVERDICTS, PIN_DIR "/iface_stats");
BPF_TABLE_PINNED("percpu_array", u32, struct counter, rule_stats, MAX_RULE_SLOTS, PIN_DIR "/rule_stats");
BPF_TABLE_PINNED("array", u32, struct rule_meta, rule_names, MAX_RULE_SLOTS, PIN_DIR "/rule_names");
BPF_TABLE_PINNED("array", u32, struct iface_meta, iface_names, MAX_IFACES, PIN_DIR "/iface_names");
BPF_TABLE_PINNED("array", u32, u64, rule_buckets, MAX_RULE_SLOTS, PIN_DIR "/rule_buckets");
BPF_TABLE_PINNED("lru_hash", struct bucket_key, u64, src_buckets, MAX_LIMIT_SOURCES, PIN_DIR "/src_buckets");
BPF_TABLE_PINNED("percpu_array", u32, struct counter, limit_stats, MAX_RULE_SLOTS, PIN_DIR "/limit_stats");
BPF_TABLE_PINNED("percpu_array", u32, u64, ban_stats, BAN_STATS, PIN_DIR "/ban_stats");
BPF_TABLE_PINNED("array", u32, u64, sample_buckets, MAX_RULE_SLOTS, PIN_DIR "/sample_buckets");
/* Not pinned (bcc cannot pin a ring buffer and still offer ringbuf_output):
 * the daemon finds it among the program's maps by name. */
BPF_RINGBUF_OUTPUT(samples, 64);
BPF_TABLE_PINNED("hash", struct src_key, struct ban, bans, MAX_BANS, BAN_DIR "/bans", BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("array", u32, u64, ban_filter, BAN_FILTER_WORDS, BAN_DIR "/ban_filter", BPF_F_MMAPABLE);

/* Per-CPU working memory of one packet.
 *
 * The parsed packet lives here rather than on the stack: the verifier keeps
 * no record of what a program wrote to a map value, so the fields classify()
 * reads are unknown to it, and it verifies classify() once instead of once
 * for every combination of constants the parser's paths leave (family,
 * ports present or not, ...), which would exceed its budget of a million
 * instructions.  The same holds for the hand-off to walk_matched(), and for
 * the keys and values the walk passes to map helpers. */
struct scratch {
	struct pkt pkt;
	u64 bits[2];
	u32 bank;
	u32 observe;
	u32 verdict;		/* classify()'s, for when no limit stops the packet */
	u32 sample_slot;	/* 1 + the slot of the rule that takes a sample; 0: none */
	struct bucket_key bkey;	/* bkey.src: the packet's source */
	struct ban ban;
	struct sample sample;
};
BPF_PERCPU_ARRAY(scratch, struct scratch, 1);

enum parse_result { P_IP, P_NONIP, P_ARP, P_MALFORMED };

static __always_inline int is_empty(const struct mask *m)
{
	return !(m->w[0] | m->w[1]);
}

static __always_inline void mask_and(struct mask *m, const struct mask *o)
{
	m->w[0] &= o->w[0];
	m->w[1] &= o->w[1];
}

/* Does m hold a rule outside `wild`, i.e. one that constrains this field? */
static __always_inline int needs(const struct mask *m, const struct mask *wild)
{
	/* != 0: the OR is 64 bits wide and an int return would keep only 32. */
	return ((m->w[0] & ~wild->w[0]) | (m->w[1] & ~wild->w[1])) != 0;
}

/* Index of the lowest set bit of a nonzero x.  Written out because LLVM 14's
 * BPF backend crashes legalizing __builtin_ctzll on a runtime value. */
static __always_inline u32 ctz64(u64 x)
{
	u32 n = 0;
	if (!(x & 0xffffffffULL)) {
		n += 32;
		x >>= 32;
	}
	if (!(x & 0xffff)) {
		n += 16;
		x >>= 16;
	}
	if (!(x & 0xff)) {
		n += 8;
		x >>= 8;
	}
	if (!(x & 0xf)) {
		n += 4;
		x >>= 4;
	}
	if (!(x & 0x3)) {
		n += 2;
		x >>= 2;
	}
	if (!(x & 0x1))
		n += 1;
	return n;
}

static __always_inline void bump(struct counter *c, u64 bytes)
{
	if (c) {
		c->packets += 1;
		c->bytes += bytes;
	}
}

/* L4: ports for TCP/UDP, the type for ICMP/ICMPv6.  Full fixed headers are
 * required (the kernel's stack drops shorter ones too). */
static __always_inline int parse_l4(void *l4, void *end, struct pkt *p)
{
	if (p->proto == IPPROTO_TCP) {
		struct tcphdr *t = l4;
		if ((void *)(t + 1) > end || t->doff < 5)
			return P_MALFORMED;
		p->sport = bpf_ntohs(t->source);
		p->dport = bpf_ntohs(t->dest);
		p->tcp_flags = ((u8 *)t)[13];
		p->l4 = 1;
	} else if (p->proto == IPPROTO_UDP) {
		struct udphdr *u = l4;
		if ((void *)(u + 1) > end)
			return P_MALFORMED;
		p->sport = bpf_ntohs(u->source);
		p->dport = bpf_ntohs(u->dest);
	} else if (p->proto == IPPROTO_ICMP || p->proto == IPPROTO_ICMPV6) {
		u8 *icmp = l4;
		if ((void *)(icmp + 8) > end)
			return P_MALFORMED;
		p->icmp_type = icmp[0];
		p->icmp_code = icmp[1];
		p->l4 = 1;
	}
	return P_IP;
}

static __always_inline int parse_v4(void *cur, void *end, struct pkt *p)
{
	struct iphdr *ip = cur;
	if ((void *)(ip + 1) > end || ip->version != 4 || ip->ihl < 5)
		return P_MALFORMED;
	u32 hlen = ip->ihl * 4;
	if (cur + hlen > end)
		return P_MALFORMED;
	p->family = 4;
	p->proto = ip->protocol;
	p->s4 = ip->saddr;
	p->d4 = ip->daddr;
	p->ttl = ip->ttl;
	p->len = bpf_ntohs(ip->tot_len);
	/* A non-first fragment carries no L4 header: ports stay NO_PORT. */
	if (bpf_ntohs(ip->frag_off) & 0x1fff)
		return P_IP;
	return parse_l4(cur + hlen, end, p);
}

static __always_inline int parse_v6(void *cur, void *end, struct pkt *p)
{
	struct ipv6hdr *ip6 = cur;
	if ((void *)(ip6 + 1) > end || ip6->version != 6)
		return P_MALFORMED;
	p->family = 6;
	__builtin_memcpy(p->s6, &ip6->saddr, 16);
	__builtin_memcpy(p->d6, &ip6->daddr, 16);
	p->ttl = ip6->hop_limit;
	p->len = bpf_ntohs(ip6->payload_len) + 40;
	if (p->len > LEN_SLOTS - 1)
		p->len = LEN_SLOTS - 1;	/* the longest the config can name */
	u32 nh = ip6->nexthdr;
	int nonfirst = 0;
	cur = ip6 + 1;
	/* A fixed depth keeps the verifier's path count bounded. */
#pragma unroll
	for (int i = 0; i < MAX_V6_EXT; i++) {
		if (nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_DSTOPTS) {
			struct v6ext *h = cur;
			if ((void *)(h + 1) > end)
				return P_MALFORMED;
			nh = h->nexthdr;
			cur += (h->hdrlen + 1) * 8;
		} else if (nh == IPPROTO_FRAGMENT) {
			struct v6frag *f = cur;
			if ((void *)(f + 1) > end)
				return P_MALFORMED;
			nh = f->nexthdr;
			if (bpf_ntohs(f->frag_off) & 0xfff8)
				nonfirst = 1;
			cur = f + 1;
		} else {
			break;
		}
	}
	if (nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_DSTOPTS ||
	    nh == IPPROTO_FRAGMENT)
		return P_MALFORMED;	/* deeper than MAX_V6_EXT */
	p->proto = nh;
	if (nonfirst)
		return P_IP;
	return parse_l4(cur, end, p);
}

static __always_inline int parse(void *data, void *end, struct pkt *p)
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return P_MALFORMED;
	/* One 16-bit load: struct ethhdr is packed, and clang reads its
	 * fields a byte at a time. */
	u16 proto = *(__be16 *)((u8 *)data + 12);
	void *cur = eth + 1;
	/* Up to two tags: 802.1Q, or 802.1ad outer + 802.1Q inner (QinQ). */
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
			struct vlanhdr *v = cur;
			if ((void *)(v + 1) > end)
				return P_MALFORMED;
			proto = v->proto;
			cur = v + 1;
			if (i == 0)
				p->vlan = bpf_ntohs(v->tci) & 0xfff;
		}
	}
	if (proto == bpf_htons(ETH_P_IP))
		return parse_v4(cur, end, p);
	if (proto == bpf_htons(ETH_P_IPV6))
		return parse_v6(cur, end, p);
	if (proto == bpf_htons(ETH_P_ARP))
		return P_ARP;
	return P_NONIP;
}

static __always_inline void mask_or(struct mask *m, const struct mask *o)
{
	if (o) {
		m->w[0] |= o->w[0];
		m->w[1] |= o->w[1];
	}
}

/* The filter's hash of an address; xdpd/tables.py computes the same.  The
 * words are the address's bytes read as native (little-endian) u32s. */
static __always_inline u32 hash4(u32 a)
{
	return (a * 0x9E3779B1u) >> (32 - FILTER_BITS);
}

static __always_inline u32 hash6(const u8 *a)
{
	const u32 *w = (const u32 *)a;
	u32 x = (w[0] * 0x85EBCA6Bu) ^ (w[1] * 0xC2B2AE35u) ^ (w[2] * 0x27D4EB2Fu) ^ w[3];
	return (x * 0x9E3779B1u) >> (32 - FILTER_BITS);
}

/* The IPv6 bucket index's bucket of an address: its /32, hashed; xdpd/tables.py
 * computes the same (block6). */
static __always_inline u32 block6(const u8 *a)
{
	return (*(const u32 *)a * 0x9E3779B1u) >> (32 - BLOCK6_BITS);
}

static __always_inline int filter_hit(u64 *word, u32 h)
{
	return word && (*word & (1ULL << (h & 63)));
}

/* All ones if x == 0, else 0; without a branch (BPF has no setcc). */
static __always_inline u64 all_if_zero(u64 x)
{
	return ((x | (0 - x)) >> 63) - 1;
}

/* Index of the lowest set bit of a nonzero x, in arithmetic only: no
 * branches (each path would be a constant to the verifier) and nothing a
 * compiler turns into a table lookup (clang 19 compiles popcount((x & -x) - 1)
 * into a de Bruijn table in .rodata, which bcc does not load). */
static __always_inline u32 ctz64_flat(u64 x)
{
	u64 n = 0, s;
	s = all_if_zero(x & 0xffffffffULL) & 32;
	n += s;
	x >>= s;
	s = all_if_zero(x & 0xffff) & 16;
	n += s;
	x >>= s;
	s = all_if_zero(x & 0xff) & 8;
	n += s;
	x >>= s;
	s = all_if_zero(x & 0xf) & 4;
	n += s;
	x >>= s;
	s = all_if_zero(x & 0x3) & 2;
	n += s;
	x >>= s;
	n += all_if_zero(x & 0x1) & 1;
	return n;
}

/* OR of the masks of every small-table entry covering the address. */
static __always_inline struct mask small4_match(const struct small4 *t, u32 a)
{
	struct mask r = {};
	u32 n = t->n;
#pragma unroll
	for (int i = 0; i < SMALL_MAX; i++) {
		if (i >= n)
			break;
		u64 sel = all_if_zero((u64)((a & t->e[i].netmask) ^ t->e[i].net));
		r.w[0] |= t->e[i].m.w[0] & sel;
		r.w[1] |= t->e[i].m.w[1] & sel;
	}
	return r;
}

static __always_inline struct mask small6_match(const struct small6 *t, const u8 *addr)
{
	struct mask r = {};
	const u32 *a = (const u32 *)addr;
	u32 n = t->n;
#pragma unroll
	for (int i = 0; i < SMALL_MAX; i++) {
		if (i >= n)
			break;
		u64 x = ((a[0] & t->e[i].netmask[0]) ^ t->e[i].net[0]) |
			((a[1] & t->e[i].netmask[1]) ^ t->e[i].net[1]) |
			((a[2] & t->e[i].netmask[2]) ^ t->e[i].net[2]) |
			((a[3] & t->e[i].netmask[3]) ^ t->e[i].net[3]);
		u64 sel = all_if_zero(x);
		r.w[0] |= t->e[i].m.w[0] & sel;
		r.w[1] |= t->e[i].m.w[1] & sel;
	}
	return r;
}

/* Address lookups, one function per direction and family (bcc cannot rewrite
 * map calls inside macros).  The exact hash and the LPM trie are both
 * consulted and ORed: exact entries do not repeat the bits of covering
 * prefixes, so either map can be updated on its own. */
static __always_inline struct mask src4_match(u32 bank, u32 flags, const struct pkt *p)
{
	struct mask r = {};
	if (flags & F_SRC4_SMALL) {
		u32 k = bank * 65536 + (bpf_ntohl(p->s4) >> 16);
		struct block16 *x = src4_blocks.lookup(&k);
		if (!x)
			return r;
		if (!(x->maybe.w[0] | x->maybe.w[1]))
			return x->sure;
		struct small4 *t = src4_small.lookup(&bank);
		if (t)
			r = small4_match(t, p->s4);
		return r;
	}
	if (flags & F_SRC4_EXACT) {
		u32 h = hash4(p->s4);
		u32 w = h >> 6;
		if (filter_hit(src4_filter.lookup(&w), h)) {
			struct key4 k = {.bank = bank, .addr = p->s4};
			mask_or(&r, src4_exact.lookup(&k));
		}
	}
	if (flags & F_SRC4_LPM) {
		if (flags & F_SRC4_BLOCKS) {
			u32 bk = bank * 65536 + (bpf_ntohl(p->s4) >> 16);
			struct block16 *x = src4_blocks.lookup(&bk);
			if (x && !(x->maybe.w[0] | x->maybe.w[1])) {
				mask_or(&r, &x->sure);
				return r;
			}
		}
		struct lpm4 k = {.prefixlen = 64, .bank = bank, .addr = p->s4};
		mask_or(&r, src4_lpm.lookup(&k));
	}
	return r;
}

static __always_inline struct mask src6_match(u32 bank, u32 flags, const struct pkt *p)
{
	struct mask r = {};
	if (flags & F_SRC6_SMALL) {
		struct small6 *t = src6_small.lookup(&bank);
		if (t)
			r = small6_match(t, p->s6);
		return r;
	}
	if (flags & F_SRC6_EXACT) {
		u32 h = hash6(p->s6);
		u32 w = h >> 6;
		if (filter_hit(src6_filter.lookup(&w), h)) {
			struct key6 k = {.bank = bank};
			__builtin_memcpy(k.addr, p->s6, 16);
			mask_or(&r, src6_exact.lookup(&k));
		}
	}
	if (flags & F_SRC6_LPM) {
		if (flags & F_SRC6_BLOCKS) {
			u32 bk = (bank << BLOCK6_BITS) + block6(p->s6);
			struct mask *x = src6_blocks.lookup(&bk);
			if (x && !(x->w[0] | x->w[1]))
				return r;
		}
		struct lpm6 k = {.prefixlen = 160, .bank = bank};
		__builtin_memcpy(k.addr, p->s6, 16);
		mask_or(&r, src6_lpm.lookup(&k));
	}
	return r;
}

static __always_inline struct mask dst4_match(u32 bank, u32 flags, const struct pkt *p)
{
	struct mask r = {};
	if (flags & F_DST4_SMALL) {
		u32 k = bank * 65536 + (bpf_ntohl(p->d4) >> 16);
		struct block16 *x = dst4_blocks.lookup(&k);
		if (!x)
			return r;
		if (!(x->maybe.w[0] | x->maybe.w[1]))
			return x->sure;
		struct small4 *t = dst4_small.lookup(&bank);
		if (t)
			r = small4_match(t, p->d4);
		return r;
	}
	if (flags & F_DST4_EXACT) {
		u32 h = hash4(p->d4);
		u32 w = h >> 6;
		if (filter_hit(dst4_filter.lookup(&w), h)) {
			struct key4 k = {.bank = bank, .addr = p->d4};
			mask_or(&r, dst4_exact.lookup(&k));
		}
	}
	if (flags & F_DST4_LPM) {
		if (flags & F_DST4_BLOCKS) {
			u32 bk = bank * 65536 + (bpf_ntohl(p->d4) >> 16);
			struct block16 *x = dst4_blocks.lookup(&bk);
			if (x && !(x->maybe.w[0] | x->maybe.w[1])) {
				mask_or(&r, &x->sure);
				return r;
			}
		}
		struct lpm4 k = {.prefixlen = 64, .bank = bank, .addr = p->d4};
		mask_or(&r, dst4_lpm.lookup(&k));
	}
	return r;
}

static __always_inline struct mask dst6_match(u32 bank, u32 flags, const struct pkt *p)
{
	struct mask r = {};
	if (flags & F_DST6_SMALL) {
		struct small6 *t = dst6_small.lookup(&bank);
		if (t)
			r = small6_match(t, p->d6);
		return r;
	}
	if (flags & F_DST6_EXACT) {
		u32 h = hash6(p->d6);
		u32 w = h >> 6;
		if (filter_hit(dst6_filter.lookup(&w), h)) {
			struct key6 k = {.bank = bank};
			__builtin_memcpy(k.addr, p->d6, 16);
			mask_or(&r, dst6_exact.lookup(&k));
		}
	}
	if (flags & F_DST6_LPM) {
		if (flags & F_DST6_BLOCKS) {
			u32 bk = (bank << BLOCK6_BITS) + block6(p->d6);
			struct mask *x = dst6_blocks.lookup(&bk);
			if (x && !(x->w[0] | x->w[1]))
				return r;
		}
		struct lpm6 k = {.prefixlen = 160, .bank = bank};
		__builtin_memcpy(k.addr, p->d6, 16);
		mask_or(&r, dst6_lpm.lookup(&k));
	}
	return r;
}

/* The source of a packet as ban and bucket keys know it (struct src_key). */
static __always_inline void src_key_of(const struct pkt *p, struct src_key *k)
{
	u32 *w = (u32 *)k->addr;
	if (p->family == 4) {
		w[0] = 0;
		w[1] = 0;
		w[2] = bpf_htonl(0xffff);
		w[3] = p->s4;
	} else {
		const u32 *a = (const u32 *)p->s6;
		w[0] = a[0];
		w[1] = a[1];
		w[2] = 0;
		w[3] = 0;
	}
}

/* The ban filter's hash of a source key; xdpd/bans.py computes the same. */
static __always_inline u32 ban_hash(const struct src_key *k)
{
	const u32 *w = (const u32 *)k->addr;
	u32 x = (w[0] * 0x85EBCA6Bu) ^ (w[1] * 0xC2B2AE35u) ^ (w[2] * 0x27D4EB2Fu) ^ w[3];
	return (x * 0x9E3779B1u) >> (32 - BAN_FILTER_BITS);
}

static __always_inline int is_banned(const struct pkt *p)
{
	struct src_key k;
	src_key_of(p, &k);
	u32 h = ban_hash(&k);
	u32 w = h >> 3;
	u64 *word = ban_filter.lookup(&w);
	if (!word || !((volatile u8 *)word)[h & 7])
		return 0;
	struct ban *b = bans.lookup(&k);
	if (!b)
		return 0;
	u64 expires = b->expires;
	return !expires || bpf_ktime_get_ns() < expires;
}

/* GCRA: *tat is the time at which the bucket would be full again.  A packet
 * costing `cost` conforms if, after it, that time is at most `tau` (the
 * burst) ahead of now.  CPUs share the bucket through atomics; a packet over
 * the rate gives its cost back, so a flood does not starve the sources
 * behind it of the rate.  A packet already over the rate writes nothing: in
 * a flood that is most packets, and a read is far cheaper than an atomic. */
static __always_inline int conforms(u64 *tat, u64 now, u64 cost, u64 tau)
{
	if (cost > tau)
		return 0;		/* bigger than the whole burst: never */
	u64 seen = *(volatile u64 *)tat;
	if (seen < now) {
		/* Idle long enough to be full: start again from now. */
		if (__sync_val_compare_and_swap(tat, seen, now + cost) == seen)
			return 1;
		seen = *(volatile u64 *)tat;
	}
	if ((seen > now ? seen : now) + cost - now > tau)
		return 0;
	u64 old = __sync_fetch_and_add(tat, cost);
	if ((old > now ? old : now) + cost - now > tau) {
		__sync_fetch_and_sub(tat, cost);
		return 0;
	}
	return 1;
}

static __always_inline int within_limit(struct scratch *sc, const struct rule_ent *r, u32 slot, u64 bytes)
{
	u64 *tat;
	if (r->flags & LIM_PER_SOURCE) {
		src_key_of(&sc->pkt, &sc->bkey.src);	/* only a per-source limit needs it */
		sc->bkey.slot = slot;
		sc->bkey.bucket = r->bucket;
		tat = src_buckets.lookup(&sc->bkey);
		if (!tat) {
			u64 fresh = 0;	/* in the past: a full bucket */
			src_buckets.update(&sc->bkey, &fresh);	/* the LRU makes room */
			tat = src_buckets.lookup(&sc->bkey);
			if (!tat)
				return 1;	/* cannot keep a bucket: never drop for that */
		}
	} else {
		tat = rule_buckets.lookup(&slot);
		if (!tat)
			return 1;
	}
	u64 cost = r->cost;
	if (r->flags & LIM_BYTES)
		cost *= bytes;
	u64 now = (r->flags & LIM_FINE_CLOCK) ? bpf_ktime_get_ns() : bpf_ktime_get_coarse_ns();
	return conforms(tat, now * TIME_SCALE, cost, r->tau);
}

static __always_inline void ban_source(struct state *st, struct scratch *sc, const struct rule_ent *r,
				       u32 slot)
{
	u64 now = bpf_ktime_get_ns();
	sc->ban.expires = now + r->ban_ns;
	sc->ban.since = now;
	sc->ban.rule_slot = slot;
	sc->ban.rule_hash = r->bucket;
	src_key_of(&sc->pkt, &sc->bkey.src);
	u32 stat = BAN_STAT_BY_RULE;
	if (bans.update(&sc->bkey.src, &sc->ban) == 0) {
		/* The mark before the arm, the entry before both: a reader that
		 * sees the arm finds the mark, one that sees the mark finds the
		 * entry. */
		u32 h = ban_hash(&sc->bkey.src);
		u32 w = h >> 3;
		u64 *word = ban_filter.lookup(&w);
		if (word)
			((volatile u8 *)word)[h & 7] = 1;
		st->bans_armed = 1;
	} else {
		stat = BAN_STAT_FULL;
	}
	u64 *c = ban_stats.lookup(&stat);
	if (c)
		*c += 1;
}

/* Take a sample of this packet for `slot`'s rule, if none is taken yet and
 * the rule's sample bucket allows one (sent at the end, see send_sample()). */
static __always_inline void want_sample(struct scratch *sc, const struct rule_ent *r, u32 slot)
{
	if (sc->sample_slot)
		return;
	u64 *tat = sample_buckets.lookup(&slot);
	if (tat && conforms(tat, bpf_ktime_get_coarse_ns() * TIME_SCALE, r->sample_cost, r->sample_tau))
		sc->sample_slot = slot + 1;
}

static __always_inline void send_sample(struct scratch *sc, u32 ifindex, u32 verdict, u64 frame_len)
{
	struct sample *s = &sc->sample;
	const struct pkt *p = &sc->pkt;
	s->rule_slot = sc->sample_slot - 1;
	sc->sample_slot = 0;
	s->ifindex = ifindex;
	s->verdict = verdict;
	s->family = p->family;
	s->proto = p->proto;
	s->sport = p->sport;
	s->dport = p->dport;
	s->length = p->len;
	s->frame_len = frame_len;
	s->icmp_type = p->icmp_type;
	s->icmp_code = p->icmp_code;
	s->tcp_flags = p->tcp_flags;
	s->l4 = p->l4;
	s->vlan = p->vlan;
	if (p->family == 4) {
		__builtin_memset(s->src, 0, 16);
		__builtin_memset(s->dst, 0, 16);
		__builtin_memcpy(s->src, &p->s4, 4);
		__builtin_memcpy(s->dst, &p->d4, 4);
	} else {
		__builtin_memcpy(s->src, p->s6, 16);
		__builtin_memcpy(s->dst, p->d6, 16);
	}
	samples.ringbuf_output(s, sizeof(*s), 0);
}

/* Walk the rules classify() left in scratch, lowest bit (first in config
 * order) first: count each, and stop at a limit rule the packet is over.
 * Returns the verdict: the one classify() stored, or V_DROP_LIMIT.
 *
 * This runs last, reading its inputs back from the per-CPU scratch map:
 * values read from a map are unknown to the verifier, so every path through
 * the parser reaches the loop in the same state and the loop is verified
 * once instead of once per header combination (which exceeds the verifier's
 * budget of a million instructions). */
static __always_inline u32 walk_matched(struct xdp_md *ctx, struct state *st)
{
	u32 zero = 0;
	struct scratch *sc = scratch.lookup(&zero);
	if (!sc)
		return V_PASS_DEFAULT;
	u64 b0 = sc->bits[0], b1 = sc->bits[1];
	sc->bits[0] = 0;
	sc->bits[1] = 0;
	u32 bank = sc->bank & 1;
	u64 bytes = (u64)ctx->data_end - (u64)ctx->data;
#pragma clang loop unroll(disable)
	for (int j = 0; j < MAX_RULES; j++) {
		/* The lowest bit's index without branches: a ctz64() would give
		 * the verifier a known constant on each of its paths, and the
		 * body below would be verified once for every rule index. */
		u32 bit;
		if (b0) {
			bit = ctz64_flat(b0);
			b0 &= b0 - 1;
		} else if (b1) {
			bit = 64 + ctz64_flat(b1);
			b1 &= b1 - 1;
		} else {
			break;
		}
		u32 k = bank * MAX_RULES + (bit & (MAX_RULES - 1));
		struct rule_ent *r = rules.lookup(&k);
		if (!r)
			continue;
		u32 slot = r->slot;
		bump(rule_stats.lookup(&slot), bytes);
		if (r->sample_cost)
			want_sample(sc, r, slot);
		if (r->action == ACT_LIMIT && !within_limit(sc, r, slot, bytes)) {
			bump(limit_stats.lookup(&slot), bytes);
			if (r->ban_ns && !sc->observe)
				ban_source(st, sc, r, slot);
			return V_DROP_LIMIT;
		}
	}
	return sc->verdict;
}

/* The header fields after the ports: only called when some rule uses one.
 * Returns 0 when the mask went empty (no rule can match), 1 otherwise, -1
 * when a map read failed. */
static __always_inline int match_headers(const struct bank_cfg *bc, u32 bank, const struct pkt *p,
					 struct mask *m)
{
	u32 k;
	struct mask *f;
	u32 flags = bc->flags;
	int tcp = p->proto == IPPROTO_TCP && p->l4;
	int icmp = p->proto != IPPROTO_TCP && p->l4;	/* l4: TCP or ICMP header read */

	/* A frame without a TCP or ICMP header (a non-first fragment, or
	 * another protocol) matches no rule naming flags or ICMP fields.  For
	 * other protocols the protocol and port lookups already left those
	 * rules out (such rules name tcp or icmp as their only protocols);
	 * fragments are rare.  Untagged frames started from the interface's
	 * untagged mask, so the vlan field needs nothing here either. */
	if (!p->l4 && (flags & (F_TCPF | F_ICMPT | F_ICMPC))) {
		mask_and(m, &bc->tcpf_wild);
		mask_and(m, &bc->icmpt_wild);
		mask_and(m, &bc->icmpc_wild);
		if (is_empty(m))
			return 0;
	}

	/* Most packets fall in the longest run of the ttl and length tables:
	 * one AND each from the bank settings, and often nothing remains. */
	if (flags & F_TTL) {
		if (p->ttl >= bc->ttl_common.lo && p->ttl <= bc->ttl_common.hi) {
			mask_and(m, &bc->ttl_common.m);
		} else if (needs(m, &bc->ttl_wild)) {
			k = bank * 256 + (p->ttl & 0xff);
			f = ttl_mask.lookup(&k);
			if (!f)
				return -1;
			mask_and(m, f);
		}
	}
	if (flags & F_LEN) {
		if (p->len >= bc->len_common.lo && p->len <= bc->len_common.hi) {
			mask_and(m, &bc->len_common.m);
		} else if (needs(m, &bc->len_wild)) {
			k = bank * LEN_SLOTS + (p->len & 0xffff);
			f = len_mask.lookup(&k);
			if (!f)
				return -1;
			mask_and(m, f);
		}
	}
	if (is_empty(m))
		return 0;

	/* Then the lookups, each only when a remaining rule needs it. */
	if (p->vlan < VLAN_UNTAGGED && (flags & F_VLAN) && needs(m, &bc->vlan_wild)) {
		k = bank * 4096 + p->vlan;
		f = vlan_mask.lookup(&k);
		if (!f)
			return -1;
		mask_and(m, f);
	}
	if (tcp && (flags & F_TCPF) && needs(m, &bc->tcpf_wild)) {
		k = bank * 256 + (p->tcp_flags & 0xff);
		f = tcpf_mask.lookup(&k);
		if (!f)
			return -1;
		mask_and(m, f);
	}
	if (icmp && (flags & F_ICMPT) && needs(m, &bc->icmpt_wild)) {
		k = (bank * 2 + (p->family == 6)) * 256 + (p->icmp_type & 0xff);
		f = icmpt_mask.lookup(&k);
		if (!f)
			return -1;
		mask_and(m, f);
	}
	if (icmp && (flags & F_ICMPC) && needs(m, &bc->icmpc_wild)) {
		k = bank * 256 + (p->icmp_code & 0xff);
		f = icmpc_mask.lookup(&k);
		if (!f)
			return -1;
		mask_and(m, f);
	}
	return !is_empty(m);
}

/* Returns a verdict index (V_*). */
static __always_inline u32 classify(const struct bank_cfg *bc, u32 bank, const struct iface_ent *ie,
				    struct scratch *sc, u64 bytes, int *counting)
{
	struct pkt *p = &sc->pkt;
	u32 flags = bc->flags;
	struct mask m = p->vlan < VLAN_UNTAGGED ? ie->rules : ie->untagged;
	if (is_empty(&m))
		return NVERDICTS;

	/* Each lookup only when a remaining rule constrains its field. */
	u32 k;
	struct mask *f;
	if (p->proto == IPPROTO_TCP || p->proto == IPPROTO_UDP) {
		if (needs(&m, &bc->l4_wild)) {
			k = (bank * 2 + (p->proto == IPPROTO_UDP)) * PORT_SLOTS + p->dport;
			f = dport_mask.lookup(&k);
			if (!f)
				return V_PASS_DEFAULT;
			mask_and(&m, f);
			if (is_empty(&m))
				return NVERDICTS;
		}
	} else {
		if (needs(&m, &bc->proto_wild)) {
			k = bank * 256 + (p->proto & 0xff);
			f = proto_mask.lookup(&k);
			if (!f)
				return V_PASS_DEFAULT;
			mask_and(&m, f);
		}
		/* No ports: only the rules that name none remain. */
		mask_and(&m, &bc->dport_wild);
		mask_and(&m, &bc->sport_wild);
		if (is_empty(&m))
			return NVERDICTS;
	}
	if (needs(&m, &bc->sport_wild)) {
		k = bank * PORT_SLOTS + p->sport;
		f = sport_mask.lookup(&k);
		if (!f)
			return V_PASS_DEFAULT;
		mask_and(&m, f);
		if (is_empty(&m))
			return NVERDICTS;
	}
	if (flags & F_HDR) {
		int r = match_headers(bc, bank, p, &m);
		if (r < 0)
			return V_PASS_DEFAULT;
		if (!r)
			return NVERDICTS;
	}

	if (needs(&m, &bc->src_wild)) {
		struct mask a;
		if (p->family == 4)
			a = src4_match(bank, flags, p);
		else
			a = src6_match(bank, flags, p);
		m.w[0] &= a.w[0] | bc->src_wild.w[0];
		m.w[1] &= a.w[1] | bc->src_wild.w[1];
		if (is_empty(&m))
			return NVERDICTS;
	}
	if (needs(&m, &bc->dst_wild)) {
		struct mask a;
		if (p->family == 4)
			a = dst4_match(bank, flags, p);
		else
			a = dst6_match(bank, flags, p);
		m.w[0] &= a.w[0] | bc->dst_wild.w[0];
		m.w[1] &= a.w[1] | bc->dst_wild.w[1];
		if (is_empty(&m))
			return NVERDICTS;
	}

	/* First decisive rule = lowest set bit; count rules below it. */
	u64 d0 = m.w[0] & bc->decisive.w[0];
	u64 d1 = m.w[1] & bc->decisive.w[1];
	u32 first = MAX_RULES;
	u64 below0 = ~0ULL, below1 = ~0ULL;
	if (d0) {
		first = ctz64(d0);
		below0 = (1ULL << first) - 1;
		below1 = 0;
	} else if (d1) {
		first = 64 + ctz64(d1);
		below1 = (1ULL << (first - 64)) - 1;
	}
	u64 c0 = m.w[0] & ~bc->decisive.w[0] & below0;
	u64 c1 = m.w[1] & ~bc->decisive.w[1] & below1;
	u32 v = NVERDICTS;
	u32 slot = 0;
	struct rule_ent *r = NULL;
	if (first < MAX_RULES) {
		k = bank * MAX_RULES + first;
		r = rules.lookup(&k);
		if (!r)
			return NVERDICTS;
		slot = r->slot;
		v = r->action == ACT_DROP ? V_DROP_RULE : V_PASS_RULE;
	}
	if (c0 | c1) {
		/* Count and limit rules matched before the deciding rule: the
		 * walk counts them in order and the deciding rule after them,
		 * unless a limit stops the packet first. */
		if (first < 64)
			c0 |= 1ULL << first;
		else if (first < MAX_RULES)
			c1 |= 1ULL << (first - 64);
		sc->bits[0] = c0;
		sc->bits[1] = c1;
		sc->bank = bank;
		sc->observe = ie->observe;
		*counting = 1;
		return v;
	}
	if (r) {
		bump(rule_stats.lookup(&slot), bytes);
		if (r->sample_cost)
			want_sample(sc, r, slot);
	}
	return v;
}

static __always_inline int is_nd(const struct pkt *p)
{
	/* Router/neighbour solicitation and advertisement, redirect. */
	return p->family == 6 && p->proto == IPPROTO_ICMPV6 && p->l4 &&
	       p->icmp_type >= 133 && p->icmp_type <= 137;
}

int xdpd_main(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	u64 bytes = end - data;
	u32 zero = 0;

	struct state *st = state.lookup(&zero);
	if (!st)
		return XDP_PASS;
	u32 bank = st->bank & 1;
	const struct bank_cfg *bc = &st->cfg[bank];
	/* One opaque pointer: otherwise clang keeps st and bank * sizeof apart
	 * and rebuilds the address from two stack slots at every use. */
	asm volatile("" : "+r"(bc));
	u32 ifindex = ctx->ingress_ifindex;
	if (ifindex >= IFINDEX_MAX)
		return XDP_PASS;	/* refused at attach time; never reached */
	u32 ik = bank * IFINDEX_MAX + ifindex;
	struct iface_ent *ie = iface_cfg.lookup(&ik);
	if (!ie || !ie->enabled)
		return XDP_PASS;
	u32 default_v = ie->default_drop ? V_DROP_DEFAULT : V_PASS_DEFAULT;

	struct scratch *sc = scratch.lookup(&zero);
	if (!sc)
		return XDP_PASS;
	/* Only what parse() may leave unwritten: each other field is written
	 * before it is read on every path that reads it. */
	struct pkt *p = &sc->pkt;
	p->sport = NO_PORT;
	p->dport = NO_PORT;
	p->vlan = VLAN_UNTAGGED;
	p->l4 = 0;
	int counting = 0;
	u32 v;
	switch (parse(data, end, p)) {
	case P_MALFORMED:
		v = V_DROP_MALFORMED;
		break;
	case P_ARP:
		v = ie->default_drop ? V_PASS_EXEMPT : V_PASS_DEFAULT;
		break;
	case P_NONIP:
		v = default_v;
		break;
	default:
		/* A banned source is dropped before any rule; with no ban in
		 * the table this costs the test of a word already loaded. */
		if (st->bans_armed && is_banned(p)) {
			v = V_DROP_BAN;
			break;
		}
		v = classify(bc, bank, ie, sc, bytes, &counting);
		if (v == NVERDICTS)
			v = (ie->default_drop && is_nd(p)) ? V_PASS_EXEMPT : default_v;
	}
	if (counting) {
		/* The verdict goes through the scratch map: see walk_matched(). */
		sc->verdict = v;
		v = walk_matched(ctx, st);
	}

	int action = (v == V_DROP_RULE || v == V_DROP_DEFAULT || v == V_DROP_MALFORMED ||
		      v == V_DROP_LIMIT || v == V_DROP_BAN) ? XDP_DROP : XDP_PASS;
	if (action == XDP_DROP && ie->observe) {
		v = v == V_DROP_RULE ? V_OBSERVE_DROP_RULE :
		    v == V_DROP_DEFAULT ? V_OBSERVE_DROP_DEFAULT :
		    v == V_DROP_LIMIT ? V_OBSERVE_DROP_LIMIT :
		    v == V_DROP_BAN ? V_OBSERVE_DROP_BAN : V_OBSERVE_DROP_MALFORMED;
		action = XDP_PASS;
	}
	u32 sk = ie->slot * NVERDICTS + v;
	bump(iface_stats.lookup(&sk), bytes);
	if (sc->sample_slot)
		send_sample(sc, ctx->ingress_ifindex, v, bytes);
	return action;
}

/* The reference program the benchmark compares against. */
int xdpd_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}
