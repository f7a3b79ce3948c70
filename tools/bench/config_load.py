"""How long loading the config takes with a huge list file, cold and after edits.

    python3 -m tools.bench.config_load [--lines 1000000] [--repeat 5]   (from the repository root)

Writes a throwaway config dir (one rule with inline addresses plus a list
file of --lines lines: mostly IPv4, some IPv6 and prefixes, comments) and
times, median of --repeat runs:

* the full parse of the list file alone, and a load_config without cache
  (daemon start);
* load_config through a ListCache (every reload): unchanged, one line
  changed, a block of 100 lines changed, and 100 lines scattered over the
  file (which falls back to a full parse: the changed stretch is the whole
  file).

The budget these serve: one changed line enforced within 500 ms (100 ms
debounce and the map writes included), so the reload should be well under
150 ms; the cold parse should stay under about 0.8 s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.testbed.daemon import REPO_ROOT, pythonpath
from tools.bench.listfiles import fresh_v4, make_lines
from xdpd.addrlist import load_addr_file
from xdpd.config import load_config
from xdpd.listcache import ListCache
from xdpd.model import Origin


def timed(repeat: int, before: Callable[[], None], action: Callable[[], object]) -> tuple[float, float]:
    """Median wall and CPU seconds of ``action`` over ``repeat`` runs, ``before`` untimed.

    CPU time is shown too because on a shared VM the wall time mostly
    measures the neighbours.
    """
    wall, cpu = [], []
    for _ in range(repeat):
        before()
        start, start_cpu = time.perf_counter(), time.process_time()
        action()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


# VmHWM rather than ru_maxrss: the latter keeps the parent's peak across
# fork and exec, and the parent holds the million lines of the generator.
_MEMORY = """
import json, sys
from xdpd.config import load_config
from xdpd.listcache import ListCache
cache = ListCache()
config = load_config(sys.argv[1], cache)
with open("/proc/self/status") as f:
    status = dict(line.split(":", 1) for line in f)
kib = lambda key: int(status[key].split()[0]) * 1024
print(json.dumps({"rss": kib("VmRSS"), "peak": kib("VmHWM")}))
"""


def memory(directory: Path) -> dict[str, int]:
    """RSS of a fresh process holding the loaded config and its ListCache (this tree's xdpd)."""
    env = {**os.environ, "PYTHONPATH": pythonpath()}
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY, str(directory)], cwd=REPO_ROOT, env=env, check=True, capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(42)
    lines = make_lines(args.lines, rng)

    with tempfile.TemporaryDirectory(prefix="xdpd-bench-config-") as name:
        directory = Path(name)
        listfile = directory / "blocklist.txt"
        (directory / "rules.yaml").write_text(
            "rules:\n"
            "  - {name: blocklist, action: drop, src: [192.0.2.1, '2001:db8::/32'], src_file: blocklist.txt}\n"
            "  - {name: web, action: count, proto: tcp, dst_port: [80, 443]}\n"
        )

        def write() -> None:
            listfile.write_bytes(b"\n".join(lines) + b"\n")

        write()
        size = listfile.stat().st_size
        repeat_cold = max(1, min(args.repeat, 3))
        parse = timed(repeat_cold, lambda: None, lambda: load_addr_file(str(listfile), Origin("bench")))
        cold = timed(repeat_cold, lambda: None, lambda: load_config(directory))

        cache = ListCache()
        config = load_config(directory, cache)
        addresses = len(config.rules[0].src or ())
        unchanged = timed(args.repeat, lambda: None, lambda: load_config(directory, cache))

        def change(count: int, scattered: bool) -> Callable[[], None]:
            def before() -> None:
                if scattered:
                    for i in rng.sample(range(2, len(lines)), count):
                        lines[i] = fresh_v4(rng)
                else:
                    at = rng.randrange(2, len(lines) - count)
                    lines[at : at + count] = [fresh_v4(rng) for _ in range(count)]
                write()

            return before

        results = []
        for label, count, scattered in (
            ("1 line changed", 1, False),
            ("100 lines changed (one block)", 100, False),
            ("100 lines changed (scattered)", 100, True),
        ):
            seconds = timed(args.repeat, change(count, scattered), lambda: load_config(directory, cache))
            how = cache.last[str(listfile)]
            results.append((label, seconds, how))
        # The result of the last cached load equals a fresh one (the unit tests
        # check this in depth; here it guards the benchmark itself).
        assert load_config(directory, cache) == load_config(directory)
        mem = memory(directory)

    print(
        f"config load, list file of {args.lines:,} lines ({size / 1e6:.1f} MB, {addresses:,} addresses), "
        f"median of {args.repeat} (cold: {repeat_cold}):"
    )
    rows = [
        ("full parse of the list file (load_addr_file)", parse, ""),
        ("load_config, no cache (daemon start)", cold, ""),
        ("load_config via ListCache, unchanged", unchanged, ""),
    ]
    for label, seconds, how in results:
        note = "" if how == "patched" else f"  ({how} in full: the changes span the file)"
        rows.append((f"load_config via ListCache, {label}", seconds, note))
    print(f"  {'':<62s}   wall     cpu")
    for label, (wall, cpu), note in rows:
        print(f"  {label:<62s}{wall * 1000:5.0f} ms{cpu * 1000:5.0f} ms{note}")
    print(
        f"  a process holding the loaded config and its ListCache: RSS {mem['rss'] / 2**20:.0f} MiB "
        f"(peak {mem['peak'] / 2**20:.0f} MiB); the cache's own share {cache.nbytes / 2**20:.1f} MiB (the file)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
