"""Push benchmark: gzip against zstd layers of one image to a loopback registry; one table.

    .venv/bin/python benchmarks/push.py --variant cu117 --overlay overlays/local-debian.yaml

Starts Debian's docker-registry on a free loopback port (as the tests do) and pushes the built runtime image with
`./dev push --force` once per compression, each to a repository of its own (so neither finds the other's layers),
reading the pushed bytes and digest from reports/push/. It says whether the pushed digest is the image's own ID:
gzip layers go as the engine stores them, zstd ones from a copy made first (torchdev/oci.py). What a pull of each
costs is cold_node.py's table: a pull into this engine finds every layer already here and transfers nothing.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the checkout first, and not benchmarks/ (the script's own folder), whose smoke.py would hide the smoke package
sys.path[:] = [str(ROOT), *(entry for entry in sys.path if Path(entry or ".").resolve() != ROOT / "benchmarks")]

from tests.helpers.registry import serve_registry  # noqa: E402
from benchmarks.shared import push_runtime  # noqa: E402
from torchdev.table import human_size, render_table  # noqa: E402


def local_ids(tags: tuple[str, ...]) -> set[str]:
    """The short IDs of the local images under any of these tags (the pushed image's, in its local repository)."""
    listed = subprocess.run(["docker", "image", "ls", "--format", "{{.Tag}} {{.ID}}"], capture_output=True, text=True,
                            check=True).stdout.split("\n")
    return {line.split()[1] for line in listed if line.strip() and line.split()[0] in tags}


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
            push_s, report = push_runtime(args.variant, repository, compression, overlay)
            own = report.digest.split(":")[1][:12] in local_ids(report.tags)
            rows.append((compression, f"{push_s:.0f} s", human_size(report.size), report.digest[:19],
                         "yes" if own else "no (a copy)"))
    print(render_table(["layers", "push (incl. recompression)", "pushed bytes", "digest", "digest = image ID"],
                       rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
