"""Training throughput inside the container against the same program natively, with the same torch.

    .venv/bin/python benchmarks/train_throughput.py --native-python /path/to/venv/bin/python \
        --image torchdev:cu117 [--task cnn] [--rounds 5]

Native and container runs alternate, so drift in the machine's load hits both alike; the table shows
the median samples/s of each and their ratio (target: container / native >= 0.97). The container starts as
torchdev.profile.BENCHMARK says (compose's settings: init, a /dev/shm of its own of TORCHDEV_SHM_SIZE, a 64 MiB
stack, no-new-privileges and no capability; as the image's user), with the repository mounted at /workspace.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from torchdev.profile import BENCHMARK, docker_run_arguments  # noqa: E402
from torchdev.table import render_table  # noqa: E402


def samples_per_s(command: list[str]) -> tuple[float, str]:
    output = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    result = json.loads(output.strip().splitlines()[-1])
    return result["samples_per_s"], result["torch"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--native-python", required=True, help="a Python whose torch matches the image's")
    parser.add_argument("--image", required=True)
    parser.add_argument("--task", default="cnn")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=500)
    args = parser.parse_args()
    program = ["train/train.py", "--task", args.task, "--benchmark", "--bench-steps", str(args.steps)]
    native = [args.native_python, *program]
    container = ["docker", "run", "--rm", *docker_run_arguments(BENCHMARK, os.environ), "-v", f"{ROOT}:/workspace",
                 "-w", "/workspace", args.image, "python", *program]
    results: dict[str, list[float]] = {"native": [], "container": []}
    versions = {}
    for _ in range(args.rounds):
        for name, command in (("native", native), ("container", container)):
            speed, versions[name] = samples_per_s(command)
            results[name].append(speed)
    if versions["native"] != versions["container"]:
        print(f"warning: torch differs: native {versions['native']}, container {versions['container']}")
    native_median, container_median = (statistics.median(results[name]) for name in ("native", "container"))
    ratio = container_median / native_median
    rows = [(name, versions[name], f"{statistics.median(values):,.0f}", " ".join(f"{v:,.0f}" for v in values))
            for name, values in results.items()]
    print(f"\n--task {args.task} --benchmark, {args.rounds} alternating rounds on {platform.node()} "
          f"({platform.machine()}, {len(os.sched_getaffinity(0))} cores)\n")
    print(render_table(["where", "torch", "median samples/s", "each round"], rows))
    print(f"\ncontainer / native = {ratio:.3f} (target >= 0.97: {'met' if ratio >= 0.97 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
