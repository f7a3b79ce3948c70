"""Developer tools, run as modules from the repository root: ``python3 -m tools.demo``,
``python3 -m tools.bench.packet``, ``python3 -m tools.bench.daemon``, ``python3 -m tools.bench.config_load``."""
