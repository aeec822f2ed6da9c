"""Trainer throughput on CPU, one node x 2 processes against 2 nodes x 1 process, on this machine, in one run.

    .venv/bin/python benchmarks/multinode.py [--variant cpu] [--repository torchdev] [--task cnn] [--rounds 3]

The same world size (2) both ways, on the same image: `docker compose run --rm train` with NPROC=2 (torchrun
--standalone, gloo over loopback in one container) against compose.multinode.yaml with NPROC_PER_NODE=1 (two
containers, c10d rendezvous by service name, gloo over the Docker bridge). Rounds alternate, so the machine's load
hits both alike; the table shows the median samples/s of each and their ratio: what the container network costs.
Everything compose makes is removed: each project's containers and network, and the homes' volume, named for
this run (TORCHDEV_HOME_VOLUME), so no user's home volume is touched.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from torchdev.table import render_table  # noqa: E402


def benchmark_event(output: str) -> dict:
    lines = [line[line.index("{"):] for line in output.splitlines() if '"event": "benchmark"' in line]
    if len(lines) != 1:
        raise SystemExit(f"expected one benchmark line from rank 0:\n{output[-3000:]}")
    return json.loads(lines[0])


def run(command: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if result.returncode:
        raise SystemExit(f"`{' '.join(command)}` failed:\n{result.stdout[-3000:]}\n{result.stderr[-2000:]}")
    return result.stdout


def one_node(program: list[str], env: dict[str, str]) -> dict:
    project = f"torchdev-bench-{uuid.uuid4().hex[:6]}"
    try:
        return benchmark_event(run(["docker", "compose", "--project-name", project, "run", "--rm", "train", *program],
                                   {**env, "NPROC": "2"}))
    finally:  # `run --rm` removes the container, not the project's network
        subprocess.run(["docker", "compose", "--project-name", project, "down", "--timeout", "5"], cwd=ROOT, env=env,
                       capture_output=True, check=False)


def two_nodes(program: list[str], env: dict[str, str], override: Path) -> dict:
    project = f"torchdev-bench-{uuid.uuid4().hex[:6]}"
    files = ["-f", "compose.multinode.yaml", "-f", str(override)]
    try:
        return benchmark_event(run(["docker", "compose", "--project-name", project, *files, "up",
                                    "--abort-on-container-exit", "--exit-code-from", "node0"],
                                   {**env, "NPROC_PER_NODE": "1"}))
    finally:
        subprocess.run(["docker", "compose", "--project-name", project, *files, "down", "--timeout", "5"], cwd=ROOT,
                       env=env, capture_output=True, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="cpu")
    parser.add_argument("--repository", default="torchdev")
    parser.add_argument("--task", default="cnn")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    program = ["--task", args.task, "--benchmark", "--bench-steps", str(args.steps), "--threads", "1"]
    home = f"torchdev-bench-home-{uuid.uuid4().hex[:6]}"  # the homes' volume: this run's, not a user's
    env = {**os.environ, "VARIANT": args.variant, "TORCHDEV_REPOSITORY": args.repository, "TORCHDEV_HOME_VOLUME": home}
    results: dict[str, list[float]] = {"1 node x 2 processes": [], "2 nodes x 1 process": []}
    with tempfile.TemporaryDirectory(prefix="torchdev-bench-") as folder:
        override = Path(folder) / "benchmark.yaml"
        override.write_text(json.dumps({"services": {node: {"command": program} for node in ("node0", "node1")}}))
        try:
            for _ in range(args.rounds):
                results["1 node x 2 processes"].append(one_node(program, env)["samples_per_s"])
                results["2 nodes x 1 process"].append(two_nodes(program, env, override)["samples_per_s"])
        finally:
            subprocess.run(["docker", "volume", "rm", f"{home}-{args.variant}"], capture_output=True, check=False)
    single = statistics.median(results["1 node x 2 processes"])
    rows = [(name, "2", f"{statistics.median(speeds):,.0f}", ", ".join(f"{s:,.0f}" for s in speeds),
             f"{statistics.median(speeds) / single:.2f}") for name, speeds in results.items()]
    print(render_table(["layout", "world size", "median samples/s", "rounds", "vs 1 node"], rows))
    print(f"\nimage {args.repository}:{args.variant}, task {args.task}, {args.steps} steps per round, gloo, "
          f"{os.cpu_count()} CPU cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
