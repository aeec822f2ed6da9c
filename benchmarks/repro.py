"""Reproducible build against a normal one, same variant, one run: wall time and the export's share.

    .venv/bin/python benchmarks/repro.py --variant cu117 --overlay overlays/local-debian.yaml

Both builds rebuild every layer (--no-cache; the pip and apt download caches stay), so they do the same work
up to the export: the engine's zstd exporter for the normal build, the uncompressed OCI archive with
rewritten timestamps, then `docker load`, for the reproducible one.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from torchdev.table import render_table  # noqa: E402


def export_seconds(log: str) -> float:
    """How long BuildKit's export step took, from the plain progress log."""
    step = re.search(r"^#(\d+) exporting to (?:image|oci image format)$", log, re.M).group(1)
    return float(re.search(rf"^#{step} DONE ([\d.]+)s$", log, re.M).group(1))


def timed_build(variant: str, overlay: str | None, *extra: str) -> tuple[float, float]:
    command = [sys.executable, "-m", "invoke", "build", "--variant", variant, "--no-cache", *extra]
    command += ["--overlay", overlay] if overlay else []
    started = time.monotonic()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    total = time.monotonic() - started
    return total, export_seconds((ROOT / "reports" / "build" / f"{variant}.log").read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="cu117")
    parser.add_argument("--overlay", default=None)
    args = parser.parse_args()
    normal = timed_build(args.variant, args.overlay)
    reproducible = timed_build(args.variant, args.overlay, "--reproducible")
    rows = [(name, f"{total:.0f} s", f"{export:.0f} s ({export / total:.0%})", f"{total - export:.0f} s")
            for name, (total, export) in (("normal", normal), ("reproducible", reproducible))]
    print(f"\n{args.variant}, both with --no-cache (downloads cached)\n")
    print(render_table(["build", "wall time", "export step (share)", "everything else"], rows))
    print(f"\nreproducible / normal = {reproducible[0] / normal[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
