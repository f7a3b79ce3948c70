"""xdpd's tests: ``unit`` (pure logic), ``kernel`` (real BPF and veths in throwaway
namespaces), ``e2e`` (the .deb under systemd), and ``testbed``, the helpers they share."""
