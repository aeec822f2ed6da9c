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

from torchdev import engine  # noqa: E402
from torchdev.gitinfo import read_provenance  # noqa: E402
from torchdev.matrix import load_matrix  # noqa: E402
from torchdev.table import human_size, render_table  # noqa: E402
from torchdev.tags import image_references  # noqa: E402


def timed_build(variant: str, overlay: str | None, *extra: str) -> float:
    command = [sys.executable, "-m", "invoke", "build", "--variant", variant, *extra]
    command += ["--overlay", overlay] if overlay else []
    started = time.monotonic()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def bytes_used(client, image: str, path: str) -> int:
    """Bytes under `path` in a fresh container of `image` (one file system: no /proc, no mounts)."""
    output = client.containers.run(image, ["du", "-sxb", path], remove=True, user="0", entrypoint=[])
    return int(output.split()[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="cu117")
    parser.add_argument("--overlay", default=None)
    args = parser.parse_args()
    client = engine.connect()
    matrix = load_matrix(ROOT / "images.yaml", overlay=args.overlay)
    variant = matrix.variant(args.variant)
    reference = image_references(settings=matrix.image, variant=variant, stamp=read_provenance(ROOT).stamp)[0]

    cold = timed_build(args.variant, args.overlay, "--no-cache")
    noop = timed_build(args.variant, args.overlay)
    image_bytes = bytes_used(client, reference, "/")
    base_bytes = bytes_used(client, variant.base, "/")
    site_bytes = int(client.containers.run(reference, ["bash", "-c", "du -sxb /opt/venv/lib/python3*/site-packages"],
                                           remove=True).split()[0])
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
          f"cores), {client.version()['Version']} engine\n")
    print(render_table(["measure", "value", "target"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
