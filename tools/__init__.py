"""Developer tools, run as modules from the repository root: ``python3 -m tools.demo``,
``python3 -m tools.bench.packet``, ``python3 -m tools.bench.daemon``, ``python3 -m tools.bench.config_load``,
``python3 -m tools.trafficgen`` (floods a veth in a test bed; also a library, :mod:`tools.trafficgen`)."""
