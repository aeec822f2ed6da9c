"""Push benchmark: gzip against zstd layers of one image to a loopback registry, and pulling each back; one table.

    .venv/bin/python benchmarks/push.py --variant cu117 --overlay overlays/local-debian.yaml

Starts Debian's docker-registry on a free loopback port (as the tests do), pushes the built runtime image with
`./dev push --force` once per compression, reads the pushed bytes from reports/push/, then times `docker pull` of
each digest. The pull finds the layers' files already unpacked in this engine (they are the built image's), so it
measures download and verification, not unpacking into an empty store.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the checkout first, and not benchmarks/ (the script's own folder), whose smoke.py would hide the smoke package
sys.path[:] = [str(ROOT), *(entry for entry in sys.path if Path(entry or ".").resolve() != ROOT / "benchmarks")]

from tests.helpers.registry import serve_registry  # noqa: E402
from torchdev.records import read_push_record  # noqa: E402
from torchdev.table import human_size, render_table  # noqa: E402


def timed(command: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="cu117")
    parser.add_argument("--overlay", default=None)
    args = parser.parse_args()
    overlay = ["--overlay", args.overlay] if args.overlay else []
    rows = []
    with tempfile.TemporaryDirectory(prefix="torchdev-bench-registry-") as folder, \
            serve_registry(Path(folder)) as registry:
        for compression in ("gzip", "zstd"):
            repository = f"{registry}/bench/{compression}"
            push_s = timed([sys.executable, "-m", "invoke", "push", "--variant", args.variant, "--flavour", "runtime",
                            "--to", repository, "--compression", compression, "--force", *overlay])
            report = read_push_record(ROOT / "reports" / "push" / f"{args.variant}.json")
            pinned = f"{repository}@{report.digest}"
            pull_s = timed(["docker", "pull", "-q", pinned])
            subprocess.run(["docker", "image", "rm", pinned], check=False, capture_output=True)
            rows.append((compression, f"{push_s:.0f} s", human_size(report.size), f"{pull_s:.0f} s",
                         report.digest[:19]))
    print(render_table(["layers", "push (incl. recompression)", "pushed bytes", "pull (download + verify)",
                        "digest"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
