"""`docker compose run train` on the test image: trains, resumes, stops cleanly, files belong to the host user."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers.cli import ROOT
from tests.helpers.variants import TEST_REPOSITORY, TEST_VARIANT
from tests.helpers.wheels import download_wheel

WORKSPACE_OWNER = 4242
"""Not root and not the image's 1000: files owned by it can only come from the run-as-owner entrypoint."""


IMAGE_UID = 1000
"""The image's user torchdev, whom run-as-owner.sh runs as when root owns /workspace."""
ROOT_OWNED_LINE = "run-as-owner: /workspace belongs to root, so this runs as torchdev (uid 1000), not as root"
IDENTITY = ("sh", "-c", "id -u; touch /workspace/written; stat -c %u /workspace/written; "
            "awk '/^(CapEff|NoNewPrivs):/ {print $2}' /proc/self/status")


def copy_project(tmp_path: Path, owner: int, mode: int = 0o755) -> Path:
    """A copy of what compose needs, owned by `owner` (the workspace folder itself with `mode`)."""
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    for name in ("compose.yaml", "compose.gpu.yaml", "docker", "train", "smoke"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, workspace / name)
    for path in [workspace, *workspace.rglob("*")]:
        os.chown(path, owner, owner)
    workspace.chmod(mode)
    return workspace


def remove_project(docker_client, workspace: Path, name: str) -> None:
    """What compose made for the project: its containers and networks (`down`), and its home volumes, whichever
    variant named them (compose labels them with the project)."""
    compose(workspace, name, "down", "--remove-orphans", check=False)
    for volume in docker_client.volumes.list(filters={"label": f"com.docker.compose.project={name}"}):
        volume.remove(force=True)
    assert not docker_client.volumes.list(filters={"label": f"com.docker.compose.project={name}"})


@pytest.fixture()
def project(built_image, tmp_path, docker_client):
    """A copy of what compose needs, owned by a non-root 'host user', so ownership is really tested."""
    workspace = copy_project(tmp_path, WORKSPACE_OWNER)
    name = f"torchdev-test-{uuid.uuid4().hex[:8]}"
    yield workspace, name
    remove_project(docker_client, workspace, name)


@pytest.fixture()
def root_owned_project(built_image, tmp_path, docker_client):
    """The same, owned by root (a checkout made with sudo, a CI runner's, a Docker Desktop mount), and writable by
    everyone as Docker Desktop's mounts and many runners' work folders are, so the trainer can write its run."""
    workspace = copy_project(tmp_path, 0, mode=0o777)
    name = f"torchdev-test-{uuid.uuid4().hex[:8]}"
    yield workspace, name
    remove_project(docker_client, workspace, name)


def project_env(project_name: str, variant: str = TEST_VARIANT) -> dict[str, str]:
    """The test image, and a home volume of the project's own (never a user's torchdev-compose-home-<variant>)."""
    return {**os.environ, "VARIANT": variant, "TORCHDEV_REPOSITORY": TEST_REPOSITORY,
            "TORCHDEV_HOME_VOLUME": f"{project_name}-home"}


def compose(workspace: Path, project_name: str, *args: str, check: bool = True, timeout: float = 300,
            variant: str = TEST_VARIANT, **variables: str) -> subprocess.CompletedProcess:
    env = {**project_env(project_name, variant), **variables}
    result = subprocess.run(["docker", "compose", "--project-name", project_name, *args], cwd=workspace, env=env,
                            capture_output=True, text=True, timeout=timeout, check=False)
    assert not check or result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def test_train_converges_writes_host_owned_files_and_resumes(project):
    workspace, name = project
    first = compose(workspace, name, "run", "--rm", "train", "--epochs", "2")  # the default task is kept: mlp
    assert last_json(first.stdout)["final_loss"] < 0.05
    run_dir = workspace / "runs" / "mlp"
    for path in (run_dir, run_dir / "checkpoint.pt", run_dir / "metrics.jsonl"):
        assert path.stat().st_uid == WORKSPACE_OWNER, f"{path} belongs to uid {path.stat().st_uid}"
    second = compose(workspace, name, "run", "--rm", "train", "--task", "mlp", "--epochs", "4")
    assert "resuming from epoch 3" in second.stdout
    assert [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]


def test_the_command_runs_as_the_workspace_owner_with_no_capability_and_no_way_to_gain_one(project):
    workspace, name = project
    result = compose(workspace, name, "run", "--rm", "--entrypoint", "sh /workspace/docker/run-as-owner.sh", "train",
                     *IDENTITY)
    assert result.stdout.split()[-4:] == [str(WORKSPACE_OWNER), str(WORKSPACE_OWNER), "0000000000000000", "1"], \
        result.stdout + result.stderr
    assert "run-as-owner" not in result.stderr


def test_a_root_owned_workspace_trains_as_torchdev_not_root_and_says_why_in_one_line(root_owned_project):
    workspace, name = root_owned_project
    result = compose(workspace, name, "run", "--rm", "train", "--epochs", "1")
    assert last_json(result.stdout)["epochs"] == 1, result.stdout[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("run-as-owner:")]
    assert len(lines) == 1 and lines[0].startswith(ROOT_OWNED_LINE), result.stderr[-3000:]
    assert "TORCHDEV_RUN_AS=root" in lines[0]
    for path in (workspace / "runs" / "mlp", workspace / "runs" / "mlp" / "checkpoint.pt"):
        assert path.stat().st_uid == IMAGE_UID, f"{path} belongs to uid {path.stat().st_uid}"
    identity = compose(workspace, name, "run", "--rm", "--entrypoint", "sh /workspace/docker/run-as-owner.sh",
                       "train", *IDENTITY)
    assert identity.stdout.split()[-4:] == [str(IMAGE_UID), str(IMAGE_UID), "0000000000000000", "1"]


def test_root_runs_the_command_only_when_asked_for_by_name(root_owned_project):
    workspace, name = root_owned_project
    result = compose(workspace, name, "run", "--rm", "--entrypoint", "sh /workspace/docker/run-as-owner.sh", "train",
                     *IDENTITY, TORCHDEV_RUN_AS="root")
    assert result.stdout.split()[-4:-2] == ["0", "0"] and "run-as-owner" not in result.stderr
    refused = compose(workspace, name, "run", "--rm", "train", check=False, TORCHDEV_RUN_AS="yes")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1] == ("run-as-owner: TORCHDEV_RUN_AS=yes: the one value is root "
                                                       "(run as root); unset it to run as the owner of /workspace")


def test_sigterm_stops_training_cleanly_with_a_loadable_checkpoint(project):
    workspace, name = project
    container = f"{name}-train-sigterm"
    env = project_env(name)
    process = subprocess.Popen(["docker", "compose", "--project-name", name, "run", "--rm", "--name", container,
                                "train", "--task", "cnn", "--epochs", "500"], cwd=workspace, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics = workspace / "runs" / "cnn" / "metrics.jsonl"
    try:
        deadline = time.monotonic() + 120
        while not (metrics.exists() and metrics.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert metrics.exists(), "training wrote no epoch within 120 s"
        subprocess.run(["docker", "kill", "--signal", "TERM", container], check=True, capture_output=True)
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
    assert "checkpoint saved" in output, output[-3000:]
    check = compose(workspace, name, "run", "--rm", "--entrypoint", "python", "train", "-c",
                    "import torch; c = torch.load('runs/cnn/checkpoint.pt'); print(c['epoch'])")
    assert int(check.stdout.strip().splitlines()[-1]) >= 1


RUN_AS_OWNER = ("--entrypoint", "sh /workspace/docker/run-as-owner.sh")


def test_a_users_pip_install_lasts_in_the_home_volume_behind_the_images_packages(project):
    """HOME is /home/owners/UID in the project's home volume: what the workspace's owner pip-installs there is
    importable in the next `run`, from ~/.local, while torch still comes from the image."""
    workspace, name = project
    download_wheel(workspace / "wheels", "einops==0.8.1")
    installed = compose(workspace, name, "run", "--rm", *RUN_AS_OWNER, "train", "sh", "-c",
                        'echo "HOME=$HOME"; python -m pip install --no-index --find-links /workspace/wheels '
                        "einops==0.8.1")
    assert f"HOME=/home/owners/{WORKSPACE_OWNER}" in installed.stdout, installed.stdout
    assert "cannot be made" not in installed.stderr, "the volume is open to every user, as the image's folder"
    later = compose(workspace, name, "run", "--rm", *RUN_AS_OWNER, "train", "python", "-c",
                    "import einops, torch; print(einops.__file__); print(torch.__file__)")
    einops_file, torch_file = later.stdout.split()[-2:]
    assert einops_file.startswith(f"/home/owners/{WORKSPACE_OWNER}/.local/lib/python3.11/site-packages/einops/")
    assert torch_file.startswith("/opt/venv/lib/python3.11/site-packages/torch/")


def test_the_startup_checks_say_nothing_when_all_is_well_and_never_stop_the_command(project):
    workspace, name = project
    quiet = compose(workspace, name, "run", "--rm", *RUN_AS_OWNER, "train", "echo", "ran")
    assert quiet.stdout.split()[-1] == "ran" and "torchdev check" not in quiet.stderr, quiet.stderr
    small = compose(workspace, name, "run", "--rm", *RUN_AS_OWNER, "train", "echo", "ran", TORCHDEV_SHM_SIZE="64m")
    assert small.stdout.split()[-1] == "ran", "a problem is said, and the command runs all the same"
    [line] = [line for line in small.stderr.splitlines() if line.startswith("torchdev check:")]
    assert line.startswith("torchdev check: /dev/shm is 64 MiB and this container runs 1 process with ")
    assert "TORCHDEV_SHM_SIZE=8g" in line


def test_help_works_through_compose(project):
    workspace, name = project
    result = compose(workspace, name, "run", "--rm", "train", "--help")
    assert "--task" in result.stdout and "--epochs" in result.stdout


def test_a_missing_image_names_the_build_command_instead_of_pulling(project):
    workspace, name = project
    result = compose(workspace, name, "run", "--rm", "train", check=False, variant="nosuchvariant")
    assert result.returncode != 0
    last = (result.stdout + result.stderr).strip().splitlines()[-1]
    assert last.endswith(f"image {TEST_REPOSITORY}:nosuchvariant is not built: run ./dev build --variant nosuchvariant "
                         "(with --overlay FILE if you build through one; ./dev matrix lists the variants)"), last


@pytest.mark.parametrize("files", [["compose.yaml"], ["compose.yaml", "compose.gpu.yaml"]])
def test_compose_files_validate(docker_client, files):
    args = [arg for name in files for arg in ("-f", name)]
    env = {key: value for key, value in os.environ.items() if key not in ("TORCHDEV_SHM_SIZE", "TORCHDEV_RUN_AS")}
    result = subprocess.run(["docker", "compose", *args, "config", "--format", "json"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, check=False, env=env)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert set(services) == {"train", "dev", "smoke"}
    reservations = services["train"].get("deploy", {}).get("resources", {}).get("reservations", {})
    assert bool(reservations.get("devices")) == ("compose.gpu.yaml" in files)
    train = services["train"]
    assert train["init"] is True and train["ipc"] == "private" and train["shm_size"] == "8589934592"
    assert train["security_opt"] == ["no-new-privileges:true"] and train["cap_drop"] == ["ALL"]
    assert sorted(train["cap_add"]) == ["DAC_READ_SEARCH", "KILL", "SETGID", "SETUID"]
    assert train["environment"]["TORCHDEV_RUN_AS"] is None, "no value: compose passes on the host's, where it is set"
