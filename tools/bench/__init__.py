"""xdpd's benchmarks, run as root from the repository root (``make bench`` runs the first three):

- ``python3 -m tools.bench.packet``: the XDP program's cost per packet (``bpftool prog run``);
- ``python3 -m tools.bench.daemon``: ``xdpd run`` cold start, list edits enforced, memory;
- ``python3 -m tools.bench.linerate``: Mpps on a veth from the live-frames generator: xdpd, nftables,
  iptables + ipset and the bare stack beside a drop-only XDP program;
- ``python3 -m tools.bench.config_load``: loading a config with a huge list file, cold and cached.

Modules by concern: :mod:`.session` (progress, signals, the machine),
:mod:`.progrun` and :mod:`.xdpfilter` (running programs),
:mod:`.daemonrun` and :mod:`.edits` (running the daemon and editing its
list), :mod:`.rulesets` and :mod:`.listfiles` (the workloads),
:mod:`.report` and :mod:`.linereport` (the tables printed); for the line rate,
:mod:`.ruleparts` with :mod:`.ruleyaml`, :mod:`.nftables` (and :mod:`.nftcounters`) and
:mod:`.iptables` give the daemon, nftables and iptables the same rules.
"""
