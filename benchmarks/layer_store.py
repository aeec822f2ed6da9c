"""gzip or zstd layers in the engine's store: what a build and then a gzip push cost with each; one table.

    .venv/bin/python benchmarks/layer_store.py --variant cu117 --overlay overlays/local-debian.yaml [--rounds 2]

torchdev's builds store gzip layers in the engine (torchdev.plan.ENGINE_OUTPUT): BuildKit compresses each new layer
to gzip as it exports it, and a push, gzip by default for older engines, sends the layers as stored, so the pushed
digest is the tested image's own ID. The other way, which torchdev used until this measurement, is zstd in the
store (faster to export) and a gzip copy of the whole image made at push (torchdev/oci.py: save, recompress every layer,
load). This measures both for the runtime image of the variant, built from this checkout's committed tree
(`git archive HEAD`), in rounds alternating zstd, gzip:

- a cold build (--no-cache: every layer rebuilt, the pip and apt download caches warm), then a gzip push to an
  empty loopback registry (Debian's docker-registry, as the tests start it);
- a one-line change to docker/write_manifest.py (a comment: only the last two, small steps run again), a rebuild,
  and a gzip push to the same registry, which already holds every other layer.

The gzip side is the build and `./dev push --compression gzip` as shipped. The zstd side is the same with one change,
made in torchdev's own process: the exporter's `compression=zstd` at oci.py's zstd level, and the push told that the
store keeps zstd, so that its gzip push makes the copy. Each round builds into
a repository of its own (torchdev-bench-store-*), removed with its registry when the round ends. Prints each step,
then the medians per side and the totals a build and a push cost.
"""
from __future__ import annotations

import argparse
import os
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
from tests.helpers.registry import serve_registry  # noqa: E402
from torchdev.checkout import BUILD_INPUTS  # noqa: E402
from torchdev.oci import GZIP_LEVEL, LEVELS  # noqa: E402
from torchdev.plan import ENGINE_OUTPUT  # noqa: E402
from torchdev.records import read_push_record  # noqa: E402
from torchdev.table import human_size, render_table  # noqa: E402

ZSTD_OUTPUT = tuple((key, {"compression": "zstd", "compression-level": str(LEVELS["zstd"])}.get(key, value))
                    for key, value in ENGINE_OUTPUT.settings)
"""The shipped exporter's settings, zstd at torchdev.oci's zstd level in place of the store's compression: nothing
else differs between the sides."""
DEV = ("import sys; sys.path[0] = sys.argv.pop(1); store = sys.argv.pop(1)\n"
       "if store == 'zstd':\n"
       "    import dataclasses, torchdev.plan as plan, torchdev.push as push\n"
       f"    plan.ENGINE_OUTPUT = dataclasses.replace(plan.ENGINE_OUTPUT, settings={ZSTD_OUTPUT!r})\n"
       "    push.STORE_COMPRESSION = 'zstd'\n"
       "from torchdev.cli import main; main()")
"""./dev's own launch line, with the exporter's compression, and what the push takes the store to hold, replaced
first when the store is zstd."""


@dataclass(frozen=True)
class Step:
    seconds: float
    export: float = 0.0
    detail: str = ""


def dev(tree: Path, store: str, *args: str, epoch: str) -> str:
    """Run a torchdev command on `tree`; its output, or exit with it when the command failed."""
    done = subprocess.run([sys.executable, "-c", DEV, str(tree), store, *args], cwd=tree, capture_output=True,
                          text=True, env={**os.environ, "SOURCE_DATE_EPOCH": epoch}, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:1])} ({store} store) failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def build(tree: Path, store: str, overlay: Path, variant: str, *, no_cache: bool, epoch: str) -> Step:
    started = time.monotonic()
    dev(tree, store, "build", "--variant", variant, "--flavour", "runtime", "--overlay", str(overlay),
        *(["--no-cache"] if no_cache else []), epoch=epoch)
    seconds = time.monotonic() - started
    log = (tree / "reports" / "build" / f"{variant}.log").read_text()
    return Step(seconds, export_seconds(log))


def push(tree: Path, store: str, overlay: Path, variant: str, registry: str, epoch: str) -> Step:
    started = time.monotonic()
    dev(tree, store, "push", "--variant", variant, "--flavour", "runtime", "--overlay", str(overlay), "--to",
        f"{registry}/bench/{store}", "--compression", "gzip", "--force", epoch=epoch)
    seconds = time.monotonic() - started
    record = read_push_record(tree / "reports" / "push" / f"{variant}.json")
    return Step(seconds, detail=f"{human_size(record.size)}, {record.digest[:19]}")


def run_round(tree: Path, store: str, args: argparse.Namespace, number: int, epoch: str) -> dict[str, Step]:
    """Cold build, push, one-line change, rebuild, push; the change is undone, the images and registry removed."""
    steps: dict[str, Step] = {}
    with bench_round(tree, args.overlay, f"torchdev-bench-store-{store}{number}", number) as (overlay, change), \
            tempfile.TemporaryDirectory(prefix="torchdev-bench-registry-") as folder, \
            serve_registry(Path(folder)) as registry:
        steps["cold"] = build(tree, store, overlay, args.variant, no_cache=True, epoch=epoch)
        steps["push"] = push(tree, store, overlay, args.variant, registry, epoch)
        change()
        steps["rebuild"] = build(tree, store, overlay, args.variant, no_cache=False, epoch=epoch)
        steps["push again"] = push(tree, store, overlay, args.variant, registry, epoch)
    print(f"{store}{number}: " + ", ".join(f"{name} {step.seconds:.0f} s"
                                           + (f" (export {step.export:.0f} s)" if step.export else "")
                                           + (f" ({step.detail})" if step.detail else "")
                                           for name, step in steps.items()), flush=True)
    return steps


def median(rounds: list[dict[str, Step]], name: str) -> float:
    return statistics.median(steps[name].seconds for steps in rounds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="cu117")
    parser.add_argument("--overlay", default="overlays/local-debian.yaml", help="path inside the checkout")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    epoch = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%ct", "HEAD", "--", *BUILD_INPUTS],
                           capture_output=True, text=True, check=True).stdout.strip()
    results: dict[str, list[dict[str, Step]]] = {"zstd": [], "gzip": []}
    with tempfile.TemporaryDirectory(prefix="torchdev-bench-store-") as scratch:
        tree = export_tree(ROOT, "HEAD", Path(scratch) / "tree")
        for number in range(1, args.rounds + 1):
            for store in ("zstd", "gzip"):
                results[store].append(run_round(tree, store, args, number, epoch))
    rows = [(f"{store} ({'gzip copy at push' if store == 'zstd' else 'pushed as stored'})",
             *(spread([steps[name].seconds for steps in rounds])
               for name in ("cold", "push", "rebuild", "push again")),
             f"{median(rounds, 'cold') + median(rounds, 'push'):.0f} s",
             f"{median(rounds, 'rebuild') + median(rounds, 'push again'):.0f} s",
             f"{statistics.median(steps['cold'].export for steps in rounds):.0f} s")
            for store, rounds in results.items()]
    print(f"\n{args.variant} runtime ({args.overlay}), rounds alternating zstd, gzip; medians (min-max); "
          f"gzip at level {GZIP_LEVEL} on both sides\n")
    print(render_table(["layers in the store", "cold build", "gzip push", "one-line rebuild", "gzip push again",
                        "cold build + push", "rebuild + push", "cold: export step"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
