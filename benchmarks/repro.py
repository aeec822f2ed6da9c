"""Build time of this checkout against a baseline commit, side by side in one run: is reproducible-by-default free?

    .venv/bin/python benchmarks/repro.py --variant cu117 --overlay overlays/local-debian.yaml --baseline no-clamp
    .venv/bin/python benchmarks/repro.py --variant cu117 --overlay overlays/local-debian.yaml --baseline 8a6da38

Each side is the tree of a commit (`git archive`: the baseline REF, and --candidate, HEAD by default), built with its
own tasks (`invoke build`). `--baseline no-clamp` is the candidate's own tree with every RUN's closing clamp
(docker/clamp-mtimes.sh) replaced by `true`: the same build, not reproducible, so B / A is what reproducibility costs
and nothing else; a commit (8a6da38: the last before reproducible-by-default) also measures what changed since. Builds
run in rounds that alternate A, B, A, B so that load from other builds on the engine falls on both. A round is a cold
build (--no-cache: every layer rebuilt, the pip and apt download caches warm) and then a rebuild after a one-line
change to docker/write_manifest.py, which only the last two RUN steps of the runtime image mount (the manifest's and
the user layer's). Every build tags into a repository of its own (torchdev-bench-repro-*), removed when it is
measured, so no build meets another's immutable tag. Both sides get the same SOURCE_DATE_EPOCH (the candidate's).
Prints each build, then the medians, the spread, and B / A, whose target is at most 1.2; and whether B's cold builds
agreed.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the checkout first, and not benchmarks/ (the script's own folder), whose smoke.py would hide the smoke package
sys.path[:] = [str(ROOT), *(entry for entry in sys.path if Path(entry or ".").resolve() != ROOT / "benchmarks")]

from benchmarks.shared import bench_round, export_seconds, export_tree, spread  # noqa: E402
from torchdev.checkout import BUILD_INPUTS  # noqa: E402
from torchdev.table import render_table  # noqa: E402

TARGET = 1.2


@dataclass(frozen=True)
class Timed:
    seconds: float
    export: float
    image_id: str


CLAMP = "&& bash /tmp/torchdev/clamp-mtimes.sh"
NO_CLAMP = "no-clamp"


def without_clamp(tree: Path) -> Path:
    """The tree's Dockerfile with each RUN's closing clamp made a no-op, so its builds are the same but for it."""
    dockerfile = tree / "docker" / "Dockerfile"
    text = dockerfile.read_text()
    if CLAMP not in text:
        raise SystemExit(f"{dockerfile} has no '{CLAMP}' to take out: --baseline {NO_CLAMP} needs the clamp")
    dockerfile.write_text(text.replace(CLAMP, "&& true"))
    return tree


def build(tree: Path, variant: str, overlay: Path, *, no_cache: bool, epoch: str) -> Timed:
    command = [sys.executable, "-m", "invoke", "build", "--variant", variant, "--overlay", str(overlay)]
    started = time.monotonic()
    done = subprocess.run(command + (["--no-cache"] if no_cache else []), cwd=tree, capture_output=True, text=True,
                          env={**os.environ, "SOURCE_DATE_EPOCH": epoch}, check=False)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"build in {tree} failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    found = re.search(r"(sha256:[0-9a-f]{12})", done.stdout.rsplit("\n\n", 1)[-1])
    log = (tree / "reports" / "build" / f"{variant}.log").read_text()
    return Timed(seconds, export_seconds(log), found.group(1) if found else "?")


def run_round(name: str, tree: Path, args: argparse.Namespace, number: int, epoch: str) -> tuple[Timed, Timed]:
    """A cold build, then the one-line change and a rebuild; the change is undone and the tags removed after."""
    with bench_round(tree, args.overlay, f"torchdev-bench-repro-{name.lower()}{number}", number) as (overlay, change):
        cold = build(tree, args.variant, overlay, no_cache=True, epoch=epoch)
        change()
        rebuild = build(tree, args.variant, overlay, no_cache=False, epoch=epoch)
    print(f"{name}{number}: cold {cold.seconds:.0f} s (export {cold.export:.0f} s), one-line rebuild "
          f"{rebuild.seconds:.0f} s (export {rebuild.export:.0f} s), image {cold.image_id}", flush=True)
    return cold, rebuild


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="cu117")
    parser.add_argument("--overlay", default="overlays/local-debian.yaml", help="path inside each tree")
    parser.add_argument("--baseline", required=True, help=f"commit A, or {NO_CLAMP}: the candidate without the clamp")
    parser.add_argument("--candidate", default="HEAD", help="commit B (default HEAD; commit your changes first)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    epoch = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%ct", args.candidate, "--",
                            *BUILD_INPUTS], capture_output=True, text=True, check=True).stdout.strip()
    results: dict[str, list[tuple[Timed, Timed]]] = {"A": [], "B": []}
    with tempfile.TemporaryDirectory(prefix="torchdev-bench-repro-") as scratch:
        trees = {"B": export_tree(ROOT, args.candidate, Path(scratch) / "B")}
        trees["A"] = (without_clamp(export_tree(ROOT, args.candidate, Path(scratch) / "A")) if args.baseline == NO_CLAMP
                      else export_tree(ROOT, args.baseline, Path(scratch) / "A"))
        for number in range(1, args.rounds + 1):
            for name in ("A", "B"):
                results[name].append(run_round(name, trees[name], args, number, epoch))
    rows = [(f"{name}{number}", ref, f"{cold.seconds:.0f} s", f"{cold.export:.0f} s", f"{rebuild.seconds:.0f} s",
             f"{rebuild.export:.0f} s", cold.image_id)
            for name, ref in (("A", args.baseline), ("B", args.candidate))
            for number, (cold, rebuild) in enumerate(results[name], start=1)]
    print(f"\n{args.variant} ({args.overlay}), rounds alternating A, B; cold = --no-cache with downloads cached\n")
    print(render_table(["build", "commit", "cold", "cold: export step", "one-line rebuild", "rebuild: export step",
                        "image (cold)"], rows))
    summary = []
    for kind, index in (("cold", 0), ("one-line rebuild", 1)):
        a = [pair[index].seconds for pair in results["A"]]
        b = [pair[index].seconds for pair in results["B"]]
        ratio = statistics.median(b) / statistics.median(a)
        summary.append((kind, spread(a), spread(b), f"{ratio:.2f}",
                        f"<= {TARGET}: {'met' if ratio <= TARGET else 'MISSED'}"))
    print()
    print(render_table(["measure", "A: median (min-max)", "B: median (min-max)", "B / A", "target"], summary))
    agreed = {pair[0].image_id for pair in results["B"]}
    print(f"\nB's cold builds gave {'one image ID' if len(agreed) == 1 else f'{len(agreed)} image IDs'}: "
          f"{', '.join(sorted(agreed))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
