"""Build benchmark: cold build, no-op rebuild, and image size against its payload; prints one table.

    .venv/bin/python benchmarks/build.py --variant cu117 --overlay overlays/local-debian.yaml

Targets: a no-op rebuild under 5 s; image size within 5% of its payload (the base image plus the
installed site-packages). "Cold" rebuilds every layer (--no-cache) while pip's download cache stays,
which is what a developer who changed the Dockerfile waits for.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from torchdev.engine import Engine  # noqa: E402
from torchdev.matrix import load_matrix  # noqa: E402
from torchdev.checkout import read_plans  # noqa: E402
from torchdev.project import Paths  # noqa: E402
from torchdev.table import human_size, render_table  # noqa: E402


def timed_build(variant: str, overlay: str | None, *extra: str) -> float:
    command = [sys.executable, "-m", "invoke", "build", "--variant", variant, *extra]
    command += ["--overlay", overlay] if overlay else []
    started = time.monotonic()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def bytes_used(engine: Engine, image: str, path: str) -> int:
    """Bytes under `path` in a fresh container of `image` (one file system: no /proc, no mounts)."""
    return int(engine.output(image, "bash", "-c", f"du -sxb {path}", user="0").split()[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="cu117")
    parser.add_argument("--overlay", default=None)
    args = parser.parse_args()
    engine = Engine.connect()
    matrix = load_matrix(ROOT / "images.yaml", overlay=args.overlay)
    variant = matrix.variant(args.variant)
    reference = read_plans(Paths.at(ROOT), matrix, [variant])[0].primary_reference

    cold = timed_build(args.variant, args.overlay, "--no-cache")
    noop = timed_build(args.variant, args.overlay)
    image_bytes = bytes_used(engine, reference, "/")
    base_bytes = bytes_used(engine, variant.base, "/")
    site_bytes = bytes_used(engine, reference, "/opt/venv/lib/python3*/site-packages")
    payload = base_bytes + site_bytes
    overhead = (image_bytes - payload) / payload
    rows = [
        ("cold build (--no-cache, downloads cached)", f"{cold:.1f} s", "-"),
        ("no-op rebuild", f"{noop:.1f} s", "< 5 s: " + ("met" if noop < 5 else "MISSED")),
        ("image size (unpacked)", human_size(image_bytes), "-"),
        ("payload: base + site-packages", f"{human_size(base_bytes)} + {human_size(site_bytes)}", "-"),
        ("overhead over payload", f"{overhead:.1%}", "< 5%: " + ("met" if overhead < 0.05 else "MISSED")),
    ]
    print(f"\n{reference} on {platform.node()} ({platform.machine()}, {len(os.sched_getaffinity(0))} "
          f"cores), {engine.version()['Version']} engine\n")
    print(render_table(["measure", "value", "target"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
