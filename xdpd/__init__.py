"""xdpd: declarative XDP packet filtering."""

__version__ = "0.1.0"
