"""The line-rate benchmark's renderers: xdpd, nftables and iptables are given the same rules.

The YAML and list files must load back into exactly the rules they were
written from (so the daemon enforces what the per-packet benchmark
measures); the nftables and iptables texts are checked line by line for a
few rules of each shape; the netlink parser of rule counters on a message
built by hand.  The kernel side runs in ``make bench`` only.
"""

from __future__ import annotations

import dataclasses
import struct

import pytest

from tools.bench import iptables, nftables, nftcounters, ruleparts, ruleyaml
from tools.bench.rulesets import aset, base_rules, port_rules
from xdpd.config import load_config
from xdpd.model import Action, Rule, TcpFlags


def rules() -> list[Rule]:
    big = aset([0x01020304 + i for i in range(40)], [0x05060700], [(0x2A00 << 112, 48)], [0x2A01 << 112])
    return base_rules() + port_rules() + [Rule("blocklist", Action.DROP, src=big),
                                          Rule("dst-list", Action.DROP, dst=aset([0x09090909 + i for i in range(20)]))]


def strip(rule: Rule) -> Rule:
    return dataclasses.replace(rule, src_files=(), dst_files=())


def test_yaml_loads_back_into_the_same_rules(tmp_path) -> None:
    text, files = ruleyaml.config(rules(), "veth0")
    (tmp_path / "rules.yaml").write_text(text)
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    tmp_path.chmod(0o755)
    cfg = load_config(tmp_path)
    assert [strip(r) for r in cfg.rules] == rules()
    assert sorted(files) == ["blocklist.src.txt", "dst-list.dst.txt"]


def test_nft_rules_per_family_in_order() -> None:
    text = nftables.script(rules(), "veth0")
    assert 'type filter hook ingress device "veth0" priority 0; policy accept;' in text
    lines = [line.strip() for line in text.splitlines()]
    assert 'ip saddr @r4_src4 counter drop comment "drop-hosts"' in lines
    assert 'ip6 saddr 2001:db8:bad::1 counter drop comment "drop-hosts"' in lines
    assert 'ip daddr 198.51.100.99 meta l4proto tcp th dport 22 counter drop comment "drop-db-ssh"' in lines
    assert 'meta l4proto tcp th dport 137-139 counter drop comment "drop-tcp-137"' in lines
    assert 'meta l4proto tcp th dport 80 counter comment "count-http"' in lines
    assert lines.index('ip saddr @r53_src4 counter drop comment "blocklist"') < lines.index(
        'ip6 saddr @r53_src6 counter drop comment "blocklist"') < lines.index('counter comment "default"')
    # prefixes need an interval set, hosts alone a hash set
    blocklist = text[text.index("set r53_src4"):text.index("set r53_src6")]
    assert "flags interval" in blocklist and "5.6.7.0/24" in blocklist and "1.2.3.4," in blocklist
    dst = text[text.index("set r54_dst4"):text.index("chain ingress")]
    assert "flags interval" not in dst


def test_iptables_rules_and_sets() -> None:
    s = iptables.scripts(rules())
    v4, v6 = s.rules[4].splitlines(), s.rules[6].splitlines()
    assert v4[:2] == ["*raw", ":PREROUTING ACCEPT [0:0]"] and v4[-1] == "COMMIT"
    assert "-A PREROUTING -p tcp --dport 137:139 -m comment --comment drop-tcp-137 -j DROP" in v4
    assert "-A PREROUTING -m set --match-set r53_src4 src -m comment --comment blocklist -j DROP" in v4
    assert "-A PREROUTING -m set --match-set r53_src6 src -m comment --comment blocklist -j DROP" in v6
    assert "-A PREROUTING -s 2001:db8:bad::1 -m comment --comment drop-hosts -j DROP" in v6
    assert "-A PREROUTING -p udp --dport 53 -m comment --comment drop-dns -j DROP" in v6  # no address: both
    assert v4[-2] == v6[-2] == "-A PREROUTING -m comment --comment default"
    assert "create r53_src4 hash:net family inet hashsize 1024 maxelem 65536" in s.ipset.splitlines()
    assert "add r53_src4 5.6.7.0/24" in s.ipset.splitlines()
    assert s.addresses == 3 + 41 + 2 + 20  # drop-hosts; blocklist: IPv4, IPv6; dst-list


def test_unsupported_fields_are_refused() -> None:
    flags = Rule("syn", Action.DROP, protos=frozenset({6}), tcp_flags=TcpFlags(0x12, 0x02))
    for render in (lambda r: ruleyaml.config(r, "veth0"), lambda r: nftables.script(r, "veth0"), iptables.scripts):
        with pytest.raises(ruleparts.Unsupported, match="tcp_flags"):
            render([flags])


def test_with_host_keeps_the_hosts_sorted() -> None:
    rule = ruleparts.with_host(Rule("b", Action.DROP, src=aset([0x01020304, 0xC6336409])), "198.51.100.7")
    assert ruleparts.cidrs(rule.src, 4) == ("1.2.3.4", "198.51.100.7", "198.51.100.9")


def _nla(kind: int, payload: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(payload), kind) + payload + b"\0" * (-len(payload) % 4)


def test_rule_counters_parsed_from_a_dump() -> None:
    counter = _nla(nftcounters.NFTA_EXPR_NAME, b"counter\0") + _nla(
        nftcounters.NFTA_EXPR_DATA | 0x8000, _nla(1, struct.pack(">Q", 999)) + _nla(2, struct.pack(">Q", 42)))
    exprs = _nla(nftcounters.NFTA_LIST_ELEM | 0x8000, counter)
    attrs = (_nla(nftcounters.NFTA_RULE_TABLE, b"xdpd_bench\0")
             + _nla(nftcounters.NFTA_RULE_EXPRESSIONS | 0x8000, exprs)
             + _nla(nftcounters.NFTA_RULE_USERDATA, bytes([0, 10]) + b"blocklist\0"))
    parsed = nftcounters._attrs(attrs)
    assert nftcounters._comment(parsed[nftcounters.NFTA_RULE_USERDATA][0]) == "blocklist"
    assert nftcounters._packets(parsed[nftcounters.NFTA_RULE_EXPRESSIONS][0]) == 42
