"""The test bed: throwaway namespaces, traffic through them, and xdpd running in them.

Imported normally (``from tests.testbed.netbed import NetBed``) with the
repository root on ``sys.path`` (pytest's ``pythonpath``, or ``PYTHONPATH``
/ ``cwd`` for child processes and ``python3 -m tools...``).  No module here
depends on pytest, so the tools use them too.

- :mod:`~tests.testbed.netns`: enter a namespace per thread, ``ip`` and
  ``nsenter`` in it, owner files that tell a crashed run's namespaces apart;
- :mod:`~tests.testbed.netbed`: :class:`NetBed`, two namespaces and a veth pair;
- :mod:`~tests.testbed.traffic`: send UDP/TCP/ICMP across a bed and count arrivals;
- :mod:`~tests.testbed.probe`: :class:`UdpProbe`, a steady stream counted per packet;
- :mod:`~tests.testbed.frames`: Ethernet frames built byte by byte, and the checksum;
- :mod:`~tests.testbed.toptable`: ``xdpd top``'s table read back as numbers;
- :mod:`~tests.testbed.xdplink`: which XDP program an interface has, and every change;
- :mod:`~tests.testbed.daemon`: ``xdpd run`` in a bed's victim namespace;
- :mod:`~tests.testbed.program`: the compiled program run on frames (BPF_PROG_TEST_RUN);
- :mod:`~tests.testbed.sourcecount`: a native XDP receiver counting a flood per source, checksums checked.
"""
