"""Capture benchmark: from `./dev capture --write` to a rebuilt image whose smoke suite passes, one table.

    .venv/bin/python benchmarks/capture.py [--overlay overlays/local-debian.yaml] [--variant cu117] [--flavour devel]
                                           [--package einops==0.8.1]

What it times, as a user meets it: a container of the variant's image (the flavour a dev container uses) in which the
image's user has pip-installed PACKAGE into the home volume, stopped; then `./dev capture --container C --write`
(read the additions, declare them, lock them with uv, build runtime and the flavour again: only the images' last
step runs, the rest comes from the build cache), then `./dev smoke` on the rebuilt flavour. Goal (issue 25): at most
60 s from the capture to a passing smoke suite on the CI machine. Build the image first:
./dev build --variant cu117 --flavour devel --overlay overlays/local-debian.yaml.

Nothing it makes stays: its overlay and lock copies live in a temporary folder (the checkout is not written), the
rebuilt images go to a repository of its own (<repository>-capture-bench), and the container, its volume and those
images are removed at the end.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from torchdev.checkout import read_plans  # noqa: E402
from torchdev.matrix import load_matrix  # noqa: E402
from torchdev.project import Paths  # noqa: E402
from torchdev.table import render_table  # noqa: E402

NAME = f"torchdev-capture-bench-{os.getpid()}"


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=600)


def dev(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "torchdev.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=1800, check=False)
    return time.monotonic() - started, done


def bench_overlay(folder: Path, overlay: Path, variant: str, repository: str) -> Path:
    """The overlay with the benchmark's own repository, and the variant's lock copied into `folder` (the same bytes:
    torch's layer stays cached), so the added packages' lock is written there, not into the checkout."""
    matrix = load_matrix(ROOT / "images.yaml", overlay=str(overlay))
    lock = folder / "main.lock.txt"
    shutil.copy(matrix.lock_file(matrix.variant(variant)), lock)
    data = yaml.safe_load(overlay.read_text())
    data.setdefault("variants", {}).setdefault(variant, {})["lock"] = str(lock)
    data.setdefault("image", {})["repository"] = repository
    path = folder / "overlay.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def steps(output: str) -> tuple[int, int]:
    """(RUN steps the builds executed, RUN steps they took from the cache), from buildx's plain progress."""
    started = set(re.findall(r"^(#\d+) \[[^\]]+\] RUN ", output, flags=re.M))
    cached = set(re.findall(r"^(#\d+) CACHED$", output, flags=re.M))
    return len(started - cached), len(started & cached)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--overlay", default="overlays/local-debian.yaml")
    parser.add_argument("--variant", default="cu117")
    parser.add_argument("--flavour", default="devel")
    parser.add_argument("--package", default="einops==0.8.1")
    options = parser.parse_args()
    overlay = (ROOT / options.overlay).resolve()
    matrix = load_matrix(ROOT / "images.yaml", overlay=str(overlay))
    plan = read_plans(Paths.at(ROOT), matrix, [matrix.variant(options.variant)], [matrix.flavour(options.flavour)])[0]
    image = plan.primary_reference
    if docker("image", "inspect", image, check=False).returncode != 0:
        print(f"{image} is not built: ./dev build --variant {options.variant} --flavour {options.flavour} "
              f"--overlay {options.overlay}", file=sys.stderr)
        return 2
    repository = f"{matrix.image.repository}-capture-bench"
    folder = Path(tempfile.mkdtemp(prefix="torchdev-capture-bench-"))
    folder.chmod(0o755)
    volume = f"{NAME}-home"
    try:
        wheels = folder / "wheels"
        subprocess.run([sys.executable, "-m", "pip", "download", options.package, "--no-deps", "--only-binary",
                        ":all:", "--dest", str(wheels), "--quiet"], check=True, timeout=300)
        wheels.chmod(0o755)
        for wheel in wheels.iterdir():
            wheel.chmod(0o644)
        docker("run", "-d", "--name", NAME, "-v", f"{volume}:/home/torchdev", "-v", f"{wheels}:/wheels:ro",
               "--network", "none", image, "sleep", "infinity")
        installed = docker("exec", NAME, "python", "-m", "pip", "install", "--no-index", "--find-links", "/wheels",
                           options.package)
        print(installed.stdout.strip().splitlines()[-1])
        docker("stop", "-t", "1", NAME)
        capture_overlay = bench_overlay(folder, overlay, options.variant, repository)

        captured_s, captured = dev("capture", "--container", NAME, "--write", "--overlay", str(capture_overlay))
        if captured.returncode != 0:
            print(captured.stdout[-3000:] + captured.stderr[-2000:], file=sys.stderr)
            return 1
        executed, cached = steps(captured.stdout)
        smoke_s, smoke = dev("smoke", "--variant", options.variant, "--flavour", options.flavour, "--overlay",
                             str(capture_overlay), "--gpus", "none", "--reports", str(folder / "smoke"))
        if smoke.returncode != 0:
            print(smoke.stdout[-3000:] + smoke.stderr[-2000:], file=sys.stderr)
            return 1
        rows = [("./dev capture --write (declare, lock, build runtime and " + options.flavour + ")",
                 f"{captured_s:.1f}", f"{executed} run, {cached} cached"),
                (f"./dev smoke --flavour {options.flavour}", f"{smoke_s:.1f}", ""),
                ("total: capture to a passing smoke suite (goal <= 60 s)", f"{captured_s + smoke_s:.1f}", "")]
        print(render_table(["step", "seconds", "RUN steps"], rows))
        return 0
    finally:
        docker("rm", "-f", NAME, check=False)
        docker("volume", "rm", "-f", volume, check=False)
        tags = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", repository, check=False).stdout.split()
        if tags:
            docker("image", "rm", *tags, check=False)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
