"""DDP check: collectives and DistributedDataParallel training across separate rank processes.

gloo runs on CPU with world size 2 everywhere. NCCL runs one process per requested GPU (world size 1
on a single GPU) and is skipped when no GPU is requested. Ranks are real processes started from
ddp_worker.py, each in its own session; the parent enforces a hard timeout (--ddp-timeout), kills
every rank's process group on any outcome, and names the ranks that did not finish.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("ddp_worker.py")
GLOO_WORLD_SIZE = 2
LOG_TAIL_CHARS = 1500


@dataclass
class RankProcess:
    """A launched rank and the files it reports through."""

    rank: int
    process: subprocess.Popen
    log: Path
    heartbeat: Path
    result: Path


def free_port():
    """A loopback port nobody listens on right now, for rank 0's TCPStore."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rank_environment(rank, world_size, port):
    """torchrun-style variables on loopback; interfaces pinned to lo so no container network is needed."""
    environment = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                       MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                       OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    for variable, value in (("GLOO_SOCKET_IFNAME", "lo"), ("NCCL_SOCKET_IFNAME", "lo"), ("NCCL_DEBUG", "WARN")):
        environment.setdefault(variable, value)
    return environment


def start_rank(rank, world_size, port, backend, workdir, init_timeout):
    """Start one rank in a new session (its own process group), logging to a file to avoid pipe stalls."""
    log = workdir / f"rank{rank}.log"
    command = [sys.executable, "-B", str(WORKER), "--backend", backend, "--out", str(workdir),
               "--timeout", str(init_timeout), "--parent-pid", str(os.getpid())]
    with open(log, "wb") as log_file:
        process = subprocess.Popen(command, env=rank_environment(rank, world_size, port), cwd=workdir,
                                   stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    return RankProcess(rank, process, log, workdir / f"rank{rank}.heartbeat", workdir / f"rank{rank}.json")


def describe_rank(rank_process):
    """Last heartbeat and log tail of a rank, for a failure message that locates the problem."""
    try:
        beat = json.loads(rank_process.heartbeat.read_text())
        heartbeat = f"last heartbeat '{beat['stage']}' {time.time() - beat['time']:.1f} s ago"
    except (OSError, ValueError):
        heartbeat = "no heartbeat yet"
    tail = rank_process.log.read_text(errors="replace")[-LOG_TAIL_CHARS:].strip() or "<empty>"
    return f"rank {rank_process.rank}: {heartbeat}; output tail:\n{tail}"


def exit_description(returncode):
    """'exited with code 1' or 'was killed by SIGBUS': Popen reports a signal as a negative code."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        return f"was killed by {signal.Signals(-returncode).name}"
    except ValueError:  # a real-time signal has no name
        return f"was killed by signal {-returncode}"


def wait_for_world(ranks, backend, timeout):
    """Wait until every rank exits 0; fail at the first crash or when the hard timeout passes."""
    deadline = time.monotonic() + timeout
    while True:
        crashed = [r for r in ranks if r.process.poll() not in (None, 0)]
        if crashed:
            pytest.fail(f"{backend}: " + "\n".join(
                f"rank {r.rank} {exit_description(r.process.returncode)} (other ranks killed); {describe_rank(r)}"
                for r in crashed), pytrace=False)
        running = [r for r in ranks if r.process.returncode is None]
        if not running:
            return
        if time.monotonic() > deadline:
            names = ", ".join(str(r.rank) for r in running)
            pytest.fail(f"{backend}: rank(s) {names} did not finish within {timeout:.0f} s (killed)\n"
                        + "\n".join(describe_rank(r) for r in running), pytrace=False)
        time.sleep(0.1)


def kill_world(ranks):
    """Kill the process group of every rank still running, then reap it: nothing may outlive the test."""
    for rank_process in ranks:
        if rank_process.process.poll() is None:
            try:
                os.killpg(rank_process.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        rank_process.process.wait()


def run_world(backend, world_size, workdir, timeout):
    """Launch all ranks, wait for them under the hard timeout, and return each rank's result."""
    port = free_port()
    # The ranks' own collective timeout is shorter, so a stuck rank can still say what it waited for.
    init_timeout = max(timeout / 2, 10.0)
    ranks = []
    try:
        for rank in range(world_size):
            ranks.append(start_rank(rank, world_size, port, backend, workdir, init_timeout))
        wait_for_world(ranks, backend, timeout)
    finally:
        kill_world(ranks)
    return [json.loads(r.result.read_text()) for r in ranks]


@pytest.fixture(scope="module", params=["gloo", "nccl"])
def world(request, tmp_path_factory):
    """One DDP world per backend, shared by the checks below: (world size, results of every rank)."""
    backend = request.param
    world_size = GLOO_WORLD_SIZE if backend == "gloo" else len(request.getfixturevalue("cuda_devices"))
    timeout = request.config.getoption("ddp_timeout")
    results = run_world(backend, world_size, tmp_path_factory.mktemp(f"ddp-{backend}"), timeout)
    return world_size, results


def test_all_reduce_sums_every_rank(world):
    """Every rank ends with the sum of all contributions [r+1, 10(r+1)]."""
    world_size, results = world
    total = world_size * (world_size + 1) / 2
    for result in results:
        assert result["all_reduce"] == [total, 10 * total], f"rank {result['rank']}"


def test_broadcast_reaches_every_rank(world):
    """Every rank holds the last rank's tensor after broadcast."""
    _, results = world
    for result in results:
        assert result["broadcast"] == [100.0, 101.0, 102.0, 103.0], f"rank {result['rank']}"


def test_gradients_are_equal_on_every_rank(world):
    """After each backward, gradients all_gathered from every rank are bit-identical (DDP averaged them)."""
    _, results = world
    for result in results:
        assert result["gradient_mismatch_steps"] == [], \
            f"rank {result['rank']} saw unequal gradients at steps {result['gradient_mismatch_steps']}"


def test_replicas_end_with_bit_identical_parameters(world):
    """Replicas started from different seeds end with exactly the same weights."""
    _, results = world
    reference = results[0]["final_parameters"]
    for result in results[1:]:
        assert result["final_parameters"] == reference, f"rank {result['rank']} differs from rank 0"


def test_training_loss_goes_down(world):
    """The global mean loss at least halves over the training steps."""
    _, results = world
    losses = results[0]["losses"]
    assert losses[-1] < 0.5 * losses[0], f"loss went from {losses[0]:.4f} to {losses[-1]:.4f}"
