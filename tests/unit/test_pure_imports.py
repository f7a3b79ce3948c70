"""``xdpd check`` and the planner run on a machine with no bpf at all.

Each case runs in a child interpreter where pyroute2 and bcc cannot be
imported and loading libbpf fails, then lists which kernel-side modules of
xdpd got imported anyway.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KERNEL_SIDE = {"xdpd.bpfsys", "xdpd.maps", "xdpd.datapath", "xdpd.bankread", "xdpd.links",
               "xdpd.linkevents", "xdpd.observe", "xdpd.pins", "xdpd.compiler", "xdpd.execute",
               "xdpd.daemon", "xdpd.status"}

CHILD = r"""
import ctypes, io, json, sys, contextlib
sys.modules["pyroute2"] = None      # ImportError on import
sys.modules["bcc"] = None
real_cdll = ctypes.CDLL
def no_bpf(name, *args, **kwargs):
    if name and "bpf" in str(name):
        raise OSError(f"{name}: cannot open shared object file (this machine has no bpf)")
    return real_cdll(name, *args, **kwargs)
ctypes.CDLL = no_bpf
out = io.StringIO()
with contextlib.redirect_stdout(out):
    exec(sys.argv[1])
print(json.dumps({"out": out.getvalue(), "result": result,
                  "modules": sorted(m for m in sys.modules if m.startswith("xdpd"))}))
"""


def run_child(code: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, code], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": REPO}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_check_runs_without_bpf_and_imports_nothing_kernel_side(tmp_path):
    (tmp_path / "rules.yaml").write_text(
        "interfaces: {eth0: {mode: auto}}\nrules:\n  - {name: bad, action: drop, src: [192.0.2.0/24]}\n")
    got = run_child(f"from xdpd.cli import main\nresult = main(['check', '--config-dir', {str(tmp_path)!r}])")
    assert got["result"] == 0
    assert "OK (1 interfaces, 1 rules" in got["out"]
    assert not KERNEL_SIDE & set(got["modules"]), KERNEL_SIDE & set(got["modules"])


@pytest.mark.parametrize("module", ["xdpd.plan", "xdpd.observed", "xdpd.tables", "xdpd.imagediff", "xdpd.filters",
                                    "xdpd.config", "xdpd.cli.plan", "xdpd.cli.check"])
def test_pure_modules_import_nothing_kernel_side(module):
    got = run_child(f"import {module}\nresult = None")
    assert module in got["modules"]
    assert not KERNEL_SIDE & set(got["modules"]), KERNEL_SIDE & set(got["modules"])
