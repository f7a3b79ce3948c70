"""Rule counters of one nftables table, read over netlink: what ``nft list`` cannot give in time.

Any ``nft list`` of a table (its chain, one named counter, with ``-t`` or
not) first fetches every set of the table with its elements into nft's
cache; with the line-rate benchmark's million addresses in interval sets
that takes about 40 s on nft 1.0.6, for each reading.  A rule dump
(``NFT_MSG_GETRULE``) carries no set elements: the kernel answers in
milliseconds.  Each rule's counter expression gives its packets, its
userdata TLV its comment (``NFTNL_UDATA_RULE_COMMENT``).
"""

from __future__ import annotations

import socket
import struct

from tests.testbed.netns import ns_socket

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_GETRULE = 7
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
NFTA_RULE_TABLE, NFTA_RULE_EXPRESSIONS, NFTA_RULE_USERDATA = 1, 4, 7
NFTA_LIST_ELEM, NFTA_EXPR_NAME, NFTA_EXPR_DATA = 1, 1, 2
NFTA_COUNTER_PACKETS = 2
NFTNL_UDATA_RULE_COMMENT = 0
NLA_TYPE_MASK = 0x3FFF


def _attrs(data: bytes) -> dict[int, list[bytes]]:
    """Netlink attributes (4-byte aligned TLVs) by type; nested flags masked off."""
    out: dict[int, list[bytes]] = {}
    i = 0
    while i + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, i)
        if length < 4:
            break
        out.setdefault(kind & NLA_TYPE_MASK, []).append(data[i + 4:i + length])
        i += (length + 3) & ~3
    return out


def _comment(userdata: bytes) -> str:
    """The comment in a rule's userdata (TLVs of a 1-byte type and a 1-byte length), '' if none."""
    i = 0
    while i + 2 <= len(userdata):
        kind, length = userdata[i], userdata[i + 1]
        if kind == NFTNL_UDATA_RULE_COMMENT:
            return userdata[i + 2:i + 2 + length].rstrip(b"\0").decode()
        i += 2 + length
    return ""


def _packets(expressions: bytes) -> int:
    """The packets of a rule's counter expressions (0 if it has none)."""
    total = 0
    for elem in _attrs(expressions).get(NFTA_LIST_ELEM, []):
        expr = _attrs(elem)
        if expr.get(NFTA_EXPR_NAME, [b""])[0].rstrip(b"\0") == b"counter":
            data = _attrs(expr[NFTA_EXPR_DATA][0])
            total += struct.unpack(">Q", data[NFTA_COUNTER_PACKETS][0])[0]
    return total


def rule_packets(netns: str, family: int, table: str) -> dict[str, int]:
    """Packets counted by the rules of ``table`` in ``netns``, summed per comment (NFPROTO_NETDEV is 5)."""
    out: dict[str, int] = {}
    with ns_socket(netns, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as sock:
        name = table.encode() + b"\0"
        attr = struct.pack("=HH", 4 + len(name), NFTA_RULE_TABLE) + name.ljust((len(name) + 3) & ~3, b"\0")
        body = struct.pack("=BBH", family, 0, 0) + attr
        sock.send(struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETRULE,
                              NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + body)
        while True:
            data = sock.recv(1 << 20)
            i = 0
            while i + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, i)
                if kind == NLMSG_DONE:
                    return out
                if kind == NLMSG_ERROR:
                    errno = -struct.unpack_from("=i", data, i + 16)[0]
                    if errno:
                        raise OSError(errno, f"nftables rule dump of table {table}")
                    return out
                attrs = _attrs(data[i + 20:i + length])
                if attrs.get(NFTA_RULE_TABLE, [b""])[0].rstrip(b"\0") == table.encode():
                    comment = _comment(attrs.get(NFTA_RULE_USERDATA, [b""])[0])
                    out[comment] = out.get(comment, 0) + _packets(attrs.get(NFTA_RULE_EXPRESSIONS, [b""])[0])
                i += (length + 3) & ~3
