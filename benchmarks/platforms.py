"""Emulated linux/arm64 against native linux/amd64, in one run: one table.

    .venv/bin/python benchmarks/platforms.py [--overlay overlays/local-debian.yaml] [--native cu117] [--arm64 cpu]

For each of two images of the same overlay, the native one (default cu117, linux/amd64) and the emulated one
(default cpu, linux/arm64 under qemu: scripts/emulation.sh enable), this measures a warm-cache rebuild with no layer
cache (`./dev build --no-cache`: downloads stay cached, so it times installing, not the network), the smoke suite's
environment and convergence checks (`./dev smoke --checks environment,convergence`), `import torch` (median of 3)
and the sizes on disk and to download. Every image it builds goes to a repository of its own (torchdev-bench) and
is removed at the end (`docker builder prune` takes the build cache). Native and emulated differ in more than
emulation: the amd64 image carries torch's CUDA libraries (2.6 GB), so the build and size columns compare install
work, not like for like; the smoke and import columns are the same Python work on both.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from torchdev.engine import ContainerSpec, Engine  # noqa: E402
from torchdev.matrix import load_matrix  # noqa: E402
from torchdev.checkout import read_plans  # noqa: E402
from torchdev.project import Paths  # noqa: E402
from torchdev.table import human_size, render_table  # noqa: E402

REPOSITORY = "torchdev-bench"


def dev(*args: str) -> float:
    """Run a torchdev task, fail loudly, return its wall time."""
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"`./dev {' '.join(args)}` failed:\n{result.stdout[-3000:]}\n{result.stderr[-2000:]}")
    return time.monotonic() - started


def import_seconds(engine: Engine, image: str, platform: str) -> float:
    times = []
    for _ in range(3):
        started = time.monotonic()
        result = engine.run(ContainerSpec(image, ("python", "-c", "import torch"), platform=platform), timeout=600)
        if result.exit_code != 0:
            raise SystemExit(f"import torch failed in {image} on {platform}: {result.output[-2000:]}")
        times.append(time.monotonic() - started)
    return statistics.median(times)


def measure(engine: Engine, overlay: Path, variant: str, platform: str) -> tuple:
    build = dev("build", "--variant", variant, "--platform", platform, "--overlay", str(overlay), "--no-cache")
    with tempfile.TemporaryDirectory(prefix="torchdev-bench-") as reports:
        smoke = dev("smoke", "--variant", variant, "--platform", platform, "--checks", "environment,convergence",
                    "--overlay", str(overlay), "--reports", reports)
    matrix = load_matrix(ROOT / "images.yaml", overlay=str(overlay))
    reference = read_plans(Paths.at(ROOT), matrix, [matrix.variant(variant)], platform=platform)[0].primary_reference
    sizes = engine.image_sizes(reference)
    imported = import_seconds(engine, reference, platform)
    return (variant, platform, f"{build:.0f} s", f"{smoke:.0f} s", f"{imported:.1f} s", human_size(sizes.on_disk),
            human_size(sizes.download))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--overlay", default=str(ROOT / "overlays" / "local-debian.yaml"))
    parser.add_argument("--native", default="cu117", help="variant built natively for linux/amd64")
    parser.add_argument("--arm64", default="cpu", help="variant built for linux/arm64 (emulated on amd64)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="torchdev-bench-") as folder:
        overlay = Path(folder) / "overlay.yaml"
        overlay.write_text(Path(args.overlay).read_text() + f"\nimage:\n  repository: {REPOSITORY}\n")
        engine = Engine.connect()
        try:
            rows = [measure(engine, overlay, args.native, "linux/amd64"),
                    measure(engine, overlay, args.arm64, "linux/arm64")]
        finally:
            subprocess.run(f"docker image ls -q {REPOSITORY} | sort -u | xargs -r docker image rm -f", shell=True,
                           capture_output=True)
            engine.close()
    print(render_table(["variant", "platform", "build (no layer cache)", "smoke env+conv", "import torch",
                        "on disk", "download"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
