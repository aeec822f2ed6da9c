"""Smoke benchmark: wall time of `invoke smoke` for one variant on CPU, container start included.

    .venv/bin/python benchmarks/smoke.py --variant cu117 --overlay overlays/local-debian.yaml [--runs 3]

Target: under 60 s. Prints one table: each run's wall time and the suite's own pass/skip counts.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "smoke"))  # as the suite imports its interface: `smoke` here is this very file

from smoke_contract import read_summary  # noqa: E402
from torchdev.table import render_table  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="cu117")
    parser.add_argument("--overlay", default=None)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory() as reports:
            command = [sys.executable, "-m", "invoke", "smoke", "--variant", args.variant, "--gpus", "none",
                       "--reports", reports] + (["--overlay", args.overlay] if args.overlay else [])
            started = time.monotonic()
            status = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, check=False).returncode
            seconds = time.monotonic() - started
            summary = read_summary(Path(reports) / f"{args.variant}.json")
        rows.append((run, f"{seconds:.1f} s", "met" if seconds < 60 else "MISSED", status,
                     f"{summary.passed} passed, {summary.failed} failed, {summary.skipped} skipped"))
    print(f"\n`invoke smoke --variant {args.variant} --gpus none`, target < 60 s\n")
    print(render_table(["run", "wall time", "target", "exit", "suite"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
