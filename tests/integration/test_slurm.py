"""deploy/slurm/train.sbatch on a real Slurm cluster: two nodes, n1 and n2, on this machine (scripts/slurm.sh).

The module's fixture starts the cluster (installing Debian's Slurm and MUNGE when missing) and stops it at the end
if it started it. Locally it skips, with the reason, when the cluster cannot be started; under CI=true that fails.
The dry-run tests need no container engine: each node prints the command it would run, so what reaches torchrun
from Slurm's variables is checked on real `sbatch -N2` jobs. The Docker test trains in the test image.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers.cli import ROOT, unavailable
from tests.helpers.fake_commands import ahead_of_path, command_folder
from torchdev.profile import SLURM_DOCKER, docker_run_arguments, docker_run_entry

SLURM = ROOT / "scripts" / "slurm.sh"
SBATCH = ROOT / "deploy" / "slurm" / "train.sbatch"
NODE_LINE = re.compile(r"^torchdev-slurm: node (\d+) \(([^)]*)\): (.*)$", re.MULTILINE)


@pytest.fixture(scope="module")
def slurm_env():
    """The environment that reaches the test cluster (SLURM_CONF), with the cluster up for the whole module."""
    if os.geteuid() != 0:
        unavailable("the test Slurm cluster needs root: sudo bash scripts/slurm.sh start")
    try:
        started = subprocess.run(["bash", str(SLURM), "start"], capture_output=True, text=True, timeout=600,
                                 check=False)
    except subprocess.TimeoutExpired:
        subprocess.run(["bash", str(SLURM), "stop"], capture_output=True, timeout=120, check=False)
        unavailable("scripts/slurm.sh start did not finish within 600 s")
    if started.returncode != 0:
        reason = (started.stderr.strip().splitlines() or ["no output"])[-1]
        unavailable(f"the test Slurm cluster did not start: {reason}")
    state = os.environ.get("TORCHDEV_SLURM_STATE", "/var/lib/torchdev-slurm")
    yield {**os.environ, "SLURM_CONF": f"{state}/slurm.conf"}
    if started.stdout.strip().splitlines()[-1:] == ["started"]:
        stopped = subprocess.run(["bash", str(SLURM), "stop"], capture_output=True, text=True, timeout=120,
                                 check=False)
        assert stopped.returncode == 0, stopped.stderr


def submit(env: dict, output: Path, *args: str, workdir: Path = ROOT, timeout: float = 300, **variables: str):
    """`sbatch -N2 --wait` of the real script; returns (job id, sbatch's exit status, the job's output)."""
    result = subprocess.run(["sbatch", "--nodes=2", "--wait", f"--output={output}", "--parsable", str(SBATCH), *args],
                            cwd=workdir, env={**env, **variables}, capture_output=True, text=True, timeout=timeout,
                            check=False)
    job_id = result.stdout.strip().split(";")[0]
    text = output.read_text() if output.exists() else ""
    assert job_id.isdigit(), f"sbatch did not submit:\n{result.stdout}\n{result.stderr}\n{text}"
    return job_id, result.returncode, text


def dry_run(env: dict, tmp_path: Path, runtime: str, *args: str,
            **variables: str) -> tuple[str, dict[int, tuple[str, list[str]]]]:
    """The job id and, per node rank from SLURM_NODEID, the node's name and the command it would have run."""
    job_id, status, text = submit(env, tmp_path / f"{runtime}.out", *args, TORCHDEV_DRY_RUN="1",
                                  TORCHDEV_RUNTIME=runtime, TORCHDEV_IMAGE="torchdev-test:cpu", **variables)
    assert status == 0, text
    nodes = {int(rank): (name, shlex.split(command)) for rank, name, command in NODE_LINE.findall(text)}
    assert len(nodes) == 2 == len(NODE_LINE.findall(text)), text
    return job_id, nodes


def torchrun_part(command: list[str]) -> list[str]:
    return command[command.index("torchrun"):]


def flags(command: list[str]) -> dict[str, str]:
    return dict(arg[2:].split("=", 1) for arg in torchrun_part(command) if arg.startswith("--") and "=" in arg)


def test_slurm_variables_reach_torchrun_on_each_node(slurm_env, tmp_path):
    job_id, nodes = dry_run(slurm_env, tmp_path, "docker", "--task", "mlp", "--epochs", "2")
    assert sorted(nodes) == [0, 1]
    assert {name for name, _ in nodes.values()} == {"n1", "n2"}, "one task on each node"
    per_node = {rank: flags(command) for rank, (_, command) in nodes.items()}
    for rank, found in per_node.items():
        assert found["node-rank"] == str(rank)
        assert found["nnodes"] == "2"
        assert found["rdzv-id"] == job_id
        assert found["rdzv-backend"] == "c10d"
    # The first node's NodeAddr (every node of this cluster is at 127.0.0.1), on one port for the whole job.
    assert per_node[0]["rdzv-endpoint"] == per_node[1]["rdzv-endpoint"] == f"127.0.0.1:{29400 + int(job_id) % 1000}"
    for _, command in nodes.values():
        assert torchrun_part(command)[-5:] == ["train/train.py", "--task", "mlp", "--epochs", "2"]
        at = command.index("torchrun")
        assert command[at - 2:at] == ["python3", "train/preflight.py"], "the preflight runs torchrun"
        assert command[:2] == ["docker", "run"] and "--gpus" not in command  # this machine has no GPU
        profile = docker_run_arguments(SLURM_DOCKER, slurm_env)  # the container profile, as bash expands it
        assert any(command[at:at + len(profile)] == profile for at in range(len(command))), command
        assert "--cap-drop=ALL" in command and "--ipc=host" not in command
        entry = docker_run_entry(SLURM_DOCKER)  # run-as-owner.sh, between the image and the command
        image_at = command.index("torchdev-test:cpu")
        assert command[image_at + 1:image_at + 1 + len(entry) + 2] == [*entry, "python3", "train/preflight.py"]
    names = {command[command.index("--name") + 1] for _, command in nodes.values()}
    assert names == {f"torchdev-slurm-{job_id}-0", f"torchdev-slurm-{job_id}-1"}


def test_every_runtime_gets_the_same_torchrun_flags(slurm_env, tmp_path):
    commands = {}
    for runtime in ("docker", "pyxis", "apptainer", "host"):
        job_id, nodes = dry_run(slurm_env, tmp_path, runtime)
        endpoint = f"--rdzv-endpoint=127.0.0.1:{29400 + int(job_id) % 1000}"
        same = {f"--rdzv-id={job_id}": "--rdzv-id=JOB", endpoint: "--rdzv-endpoint=127.0.0.1:PORT"}
        commands[runtime] = {rank: [same.get(arg, arg) for arg in torchrun_part(command)]
                             for rank, (_, command) in nodes.items()}
    assert commands["docker"] == commands["pyxis"] == commands["apptainer"] == commands["host"]
    assert commands["docker"][0][-3:] == ["train/train.py", "--task", "mlp"], "the default trainer flags"


def test_the_static_backend_and_processes_per_node(slurm_env, tmp_path):
    _, nodes = dry_run(slurm_env, tmp_path, "host", TORCHDEV_RDZV_BACKEND="static", NPROC_PER_NODE="2")
    for rank, (_, command) in nodes.items():
        found = flags(command)
        assert (found["rdzv-backend"], found["nproc-per-node"], found["node-rank"]) == ("static", "2", str(rank))


def test_a_job_outside_the_repository_root_fails_with_the_reason(slurm_env, tmp_path):
    _, status, text = submit(slurm_env, tmp_path / "out", workdir=tmp_path, TORCHDEV_DRY_RUN="1")
    assert status != 0
    assert "has no train/train.py: submit from the repository root" in text


@pytest.fixture()
def fake_torchrun(tmp_path):
    """PATH with a `torchrun` that prints the node and its arguments and exits 0, for the host runtime."""
    torchrun = '#!/bin/sh\necho "fake torchrun on node $SLURM_NODEID: $*"\n'
    return ahead_of_path(command_folder(tmp_path / "bin", {"torchrun": torchrun}))


def test_the_preflight_checks_each_node_then_runs_torchrun(slurm_env, tmp_path, fake_torchrun):
    """Host runtime, no container: on each node train/preflight.py finds the rendezvous host (the first node's
    NodeAddr), passes, and becomes torchrun with the job's flags."""
    job_id, status, text = submit(slurm_env, tmp_path / "pre.out", "--task", "mlp", TORCHDEV_RUNTIME="host",
                                  PATH=fake_torchrun)
    assert status == 0, text
    port = 29400 + int(job_id) % 1000
    assert text.count(f"preflight: ok: rendezvous c10d at 127.0.0.1:{port} served by this node") == 2, text
    for node in (0, 1):
        assert f"fake torchrun on node {node}: --nnodes=2 --node-rank={node} --nproc-per-node=1" in text, text


def test_a_failed_preflight_fails_the_job_in_one_line_per_node(slurm_env, tmp_path, fake_torchrun):
    job_id, status, text = submit(slurm_env, tmp_path / "fail.out", TORCHDEV_RUNTIME="host", PATH=fake_torchrun,
                                  TORCHDEV_PEERS="n9.invalid", TORCHDEV_RDZV_TIMEOUT="1")
    assert status != 0
    assert "preflight: peer node n9.invalid did not resolve within 1 s" in text, text
    assert "fake torchrun" not in text, "torchrun started after a failed check"


# --- Needs the Docker engine and the test image (the session fixture built_image in tests/conftest.py). ---

SUBMITTER = 4242
"""The owner of the submitted folder: not root (run-as-owner.sh would run the job as torchdev, who may not write a
root-owned folder) and not the image's 1000, so files it owns can only come from the run-as-owner entrypoint."""


@pytest.fixture()
def workspace(tmp_path):
    """What the containers mount at /workspace, as a checkout has them: the trainer, the entrypoint and the startup
    checks the preflight runs (smoke/startup_checks.py), in a folder of the test's own, owned by the submitting user."""
    path = tmp_path / "workspace"
    path.mkdir()
    for name in ("docker", "train", "smoke"):
        shutil.copytree(ROOT / name, path / name)
    for item in [path, *path.rglob("*")]:
        os.chown(item, SUBMITTER, SUBMITTER)
    return path


def test_docker_runtime_trains_with_world_size_2(slurm_env, built_image, docker_client, workspace, tmp_path):
    """Two nodes each start one container of the test image; their torchrun agents meet at n1 and train as one
    job of world size 2; the job exits 0, rank 0's run files are in the shared workspace, no container is left."""
    image = built_image.references[0]
    # static: on this one machine both nodes are 127.0.0.1, and torch 2.0.1's c10d makes every node whose address is
    # the endpoint's try to host it (the second fails to bind, measured); static lets node rank 0 alone host it.
    job_id, status, text = submit(slurm_env, tmp_path / "train.out", "--task", "mlp", "--epochs", "2",
                                  workdir=workspace, timeout=600, TORCHDEV_RUNTIME="docker", TORCHDEV_IMAGE=image,
                                  TORCHDEV_RDZV_BACKEND="static")
    assert status == 0, text
    assert "node 0 (n1) starts 1 process(es)" in text and "node 1 (n2) starts 1 process(es)" in text, text
    assert "world size 2" in text, text
    done = json.loads([line for line in text.splitlines() if line.startswith('{"event"')][-1])
    assert (done["event"], done["world_size"]) == ("done", 2)
    digests = done["parameter_digests"]
    assert len(digests) == 2 and len(set(digests)) == 1, f"ranks ended apart: {digests}"
    run_dir = workspace / "runs" / "mlp"
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.pt", "metrics.jsonl"]
    assert {path.stat().st_uid for path in [run_dir, *run_dir.iterdir()]} == {SUBMITTER}, "the submitter's files"
    assert "run-as-owner" not in text, text
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["world_size"] for m in metrics] == [2, 2] and metrics[-1]["loss"] < metrics[0]["loss"]
    assert docker_client.containers.list(all=True, filters={"name": f"torchdev-slurm-{job_id}-"}) == []


def test_docker_runtime_cancelled_job_leaves_no_container(slurm_env, built_image, docker_client, workspace,
                                                           tmp_path):
    """scancel while both containers train: the job ends and its two containers are removed."""
    image = built_image.references[0]
    env = {**slurm_env, "TORCHDEV_RUNTIME": "docker", "TORCHDEV_IMAGE": image, "TORCHDEV_RDZV_BACKEND": "static"}
    submitted = subprocess.run(["sbatch", "--nodes=2", "--parsable", f"--output={tmp_path / 'cancel.out'}",
                                str(SBATCH), "--task", "cnn", "--epochs", "1000"], cwd=workspace, env=env,
                               capture_output=True, text=True, timeout=60, check=True)
    job_id = submitted.stdout.strip().split(";")[0]
    prefix = f"torchdev-slurm-{job_id}-"
    try:
        deadline = time.monotonic() + 300
        while len(docker_client.containers.list(filters={"name": prefix})) < 2:
            assert time.monotonic() < deadline, "the two containers did not start within 300 s"
            time.sleep(1)
        subprocess.run(["scancel", job_id], env=env, check=True, timeout=30)
        deadline = time.monotonic() + 120
        while docker_client.containers.list(all=True, filters={"name": prefix}):
            assert time.monotonic() < deadline, "containers left 120 s after scancel"
            time.sleep(1)
    finally:
        subprocess.run(["scancel", job_id], env=env, capture_output=True, timeout=30, check=False)
        for container in docker_client.containers.list(all=True, filters={"name": prefix}):
            container.remove(force=True)
