"""compose.multinode.yaml on the test image: two "nodes" (containers on a network of their own), each a torchrun with
two processes, meeting at node0's c10d rendezvous by service name, gloo between them. Proven here: world size 4,
every rank's parameters bit-identical at the end, one checkpoint and one metrics file (rank 0's) with a falling
loss, a resume across the same two nodes; a node that never arrives, and one killed mid-training, fail the other
within the timeout with one line naming it, and leave no container running. Not proven: NCCL between real machines
(no GPU here), and nodes on separate hosts (one Docker bridge carries the "network")."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers.cli import ROOT
from tests.helpers.variants import TEST_REPOSITORY, TEST_VARIANT

WORKSPACE_OWNER = 4242
FILE = "compose.multinode.yaml"


@pytest.fixture()
def nodes(built_image, tmp_path):
    """A copy of what the two nodes need, owned by a non-root 'host user'; everything compose made is removed."""
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    for name in ("compose.yaml", FILE, "docker", "train"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, workspace / name)
    for path in [workspace, *workspace.rglob("*")]:
        os.chown(path, WORKSPACE_OWNER, WORKSPACE_OWNER)
    name = f"torchdev-mn-{uuid.uuid4().hex[:8]}"
    yield workspace, name
    compose(workspace, name, "down", "--remove-orphans", "--timeout", "5", check=False)


def compose(workspace: Path, project: str, *args: str, check: bool = True, timeout: float = 600,
            **variables: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VARIANT": TEST_VARIANT, "TORCHDEV_REPOSITORY": TEST_REPOSITORY, **variables}
    result = subprocess.run(["docker", "compose", "--project-name", project, "-f", FILE, *args], cwd=workspace,
                            env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert not check or result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    return result


def exit_codes(workspace: Path, project: str) -> dict[str, int]:
    listed = compose(workspace, project, "ps", "--all", "--format", "json").stdout
    rows = [json.loads(line) for line in listed.splitlines() if line.strip()]
    return {row["Service"]: row["ExitCode"] for row in rows}


def running(project: str) -> list[str]:
    return subprocess.run(["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={project}"],
                          capture_output=True, text=True, check=True).stdout.split()


def done_event(output: str) -> dict:
    events = [json.loads(line[line.index("{"):]) for line in output.splitlines() if '"event": "done"' in line]
    assert len(events) == 1, f"one done event (rank 0's) expected:\n{output[-4000:]}"
    return events[0]


def test_two_nodes_train_as_one_job_with_identical_parameters_one_checkpoint_and_a_falling_loss(nodes):
    workspace, project = nodes
    # plain `up`: it ends when both nodes have ended. --abort-on-container-exit stops the other node the moment the
    # first exits, so a successful job could end with the slower node killed in its own shutdown (exit 143).
    first = compose(workspace, project, "up", EPOCHS="3")
    assert exit_codes(workspace, project) == {"node0": 0, "node1": 0}
    done = done_event(first.stdout)
    assert done["world_size"] == 4 and done["accuracy"] > 0.9
    digests = done["parameter_digests"]
    assert len(digests) == 4 and len(set(digests)) == 1, f"ranks ended apart: {digests}"
    run_dir = workspace / "runs" / "mlp"
    assert sorted(p.name for p in (workspace / "runs").iterdir()) == ["mlp"]
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.pt", "metrics.jsonl"]
    losses = [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 3 and losses[-1] < losses[0] / 2, losses
    assert run_dir.stat().st_uid == WORKSPACE_OWNER

    compose(workspace, project, "down", "--timeout", "5")
    second = compose(workspace, project, "up", EPOCHS="4")
    assert exit_codes(workspace, project) == {"node0": 0, "node1": 0}
    assert "resuming from epoch 4" in second.stdout
    assert done_event(second.stdout)["epochs"] == 4
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 4


def test_a_node_that_never_arrives_fails_the_other_within_the_timeout_naming_it(nodes):
    workspace, project = nodes
    started = time.monotonic()
    result = compose(workspace, project, "up", "--abort-on-container-exit", "node0", check=False, RDZV_TIMEOUT="15")
    waited = time.monotonic() - started
    assert exit_codes(workspace, project) == {"node0": 1}
    assert "peer node node1 did not resolve within 15 s" in result.stdout + result.stderr, result.stdout[-3000:]
    assert waited < 15 + 45, f"failed only after {waited:.0f} s"
    assert running(project) == []


def test_a_node_killed_mid_training_fails_the_other_at_once_naming_it(nodes):
    workspace, project = nodes
    outcome: dict[str, subprocess.CompletedProcess] = {}
    job = threading.Thread(target=lambda: outcome.update(up=compose(
        workspace, project, "up", "node0", "node1", check=False, TASK="cnn", EPOCHS="500")))
    job.start()
    metrics = workspace / "runs" / "cnn" / "metrics.jsonl"
    deadline = time.monotonic() + 180
    while not (metrics.exists() and metrics.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert metrics.exists(), "the two nodes trained no epoch within 180 s"
    killed = time.monotonic()
    subprocess.run(["docker", "kill", f"{project}-node1-1"], check=True, capture_output=True)
    job.join(timeout=180)
    assert not job.is_alive(), "node0 kept running after node1 was killed"
    assert time.monotonic() - killed < 120
    codes = exit_codes(workspace, project)
    assert codes["node0"] != 0 and codes["node1"] == 137, codes
    output = outcome["up"].stdout + outcome["up"].stderr
    assert "lost the connection to peer" in output and "node1" in output, output[-4000:]
    assert running(project) == []
