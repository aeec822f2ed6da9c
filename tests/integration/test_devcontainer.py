"""The VS Code dev container configs (.devcontainer/*/devcontainer.json), driven by the real Dev Containers CLI.

`devcontainer up` on a copy of the configs and the smoke suite, retargeted at the session's test image through the
TORCHDEV_REPOSITORY/TORCHDEV_TAG variables the configs read; then the smoke suite through `devcontainer exec`.
updateRemoteUserUID only does something for a non-root host user whose UID the image lacks, so when the tests run as
root (CI) the CLI runs as a made-up user (UID 4242) that exists only in a private mount namespace's /etc/passwd:
the host's accounts are never touched. Everything the CLI creates (containers, the home volume, the vsc-...-uid
image, its temporary files) is removed afterwards, and the teardown checks that nothing is left.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.cli import ROOT, unavailable
from tests.helpers.tracked_container import engine_memlock

VARIANTS = ("cpu", "cu117", "cu118")
SUMMARY = "torchdev env: user torchdev uid {uid} | python "
STAND_IN_UID = 4242          # absent from the image's /etc/passwd, so the CLI must really remap torchdev to it
STAND_IN_NAME = "torchdevdc"


def devcontainer_cli() -> str:
    cli = shutil.which("devcontainer")
    if cli is None:
        unavailable("the Dev Containers CLI is missing: run scripts/install-devcontainer-cli.sh")
    return cli


def split_reference(reference: str) -> tuple[str, str]:
    """registry:5000/ns/name:tag -> (registry:5000/ns/name, tag)."""
    slash = reference.rfind("/")
    colon = reference.rfind(":")
    assert colon > slash, f"{reference} has no tag"
    return reference[:colon], reference[colon + 1:]


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_config_reads_with_its_default_image_and_can_be_retargeted(variant, tmp_path, docker_client):
    """read-configuration resolves the variables; it also asks the engine for a container, hence docker_client."""
    cli = devcontainer_cli()
    config = ROOT / ".devcontainer" / variant / "devcontainer.json"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TORCHDEV_")}, "TMPDIR": str(tmp_path)}

    def read(**variables: str) -> dict:
        result = subprocess.run([cli, "read-configuration", "--workspace-folder", str(ROOT), "--config", str(config)],
                                capture_output=True, text=True, timeout=120, env={**env, **variables}, check=False)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])["configuration"]

    default = read()
    assert default["image"] == f"torchdev:{variant}"
    assert default["remoteUser"] == "torchdev" and default["updateRemoteUserUID"] is True
    assert default["workspaceFolder"] == "/workspace"
    assert default["workspaceMount"] == f"source={ROOT},target=/workspace,type=bind"
    assert default["customizations"]["vscode"]["extensions"] == ["ms-python.python", "ms-toolsai.jupyter"]
    assert "features" not in default, "features download from registries; the configs must need no pull"
    assert "--ipc=host" in default["runArgs"]
    assert ("--ulimit=memlock=-1" in default["runArgs"]) == (variant != "cpu"), "locked memory only with CUDA"
    assert default.get("hostRequirements", {}).get("gpu") == (None if variant == "cpu" else "optional")
    assert any(m.startswith("source=torchdev-home-${devcontainerId},target=/home/torchdev,") for m in default["mounts"])

    moved = read(TORCHDEV_REPOSITORY="registry.example.com:5000/ml/torchdev", TORCHDEV_TAG="2.0.1-x-py3.10",
                 TORCHDEV_MEMLOCK="8388608")
    assert moved["image"] == "registry.example.com:5000/ml/torchdev:2.0.1-x-py3.10"
    assert ("--ulimit=memlock=8388608" in moved["runArgs"]) == (variant != "cpu")


@dataclass
class DevContainer:
    """A workspace copy, its config, and the host identity (prefix, UID, environment) the CLI runs as."""
    cli: str
    config: str
    workspace: Path
    uid: int
    prefix: list[str]
    env: dict[str, str]

    def up(self) -> tuple[dict, str]:
        """`devcontainer up`; returns its JSON outcome and its (debug) log."""
        result = subprocess.run([*self.prefix, self.cli, "up", "--workspace-folder", str(self.workspace), "--config",
                                 self.config, "--log-level", "debug"], capture_output=True, text=True, timeout=900,
                                env=self.env, check=False)
        outcome = json.loads(result.stdout.strip().splitlines()[-1]) if result.stdout.strip() else {}
        assert result.returncode == 0 and outcome.get("outcome") == "success", \
            f"devcontainer up failed: {outcome}\n{result.stderr[-6000:]}"
        return outcome, result.stderr

    def exec(self, *command: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """`devcontainer exec` as the remote user (the smoke suite must write nothing in /workspace/smoke)."""
        return subprocess.run([*self.prefix, self.cli, "exec", "--workspace-folder", str(self.workspace), "--config",
                               self.config, "--remote-env", "PYTHONDONTWRITEBYTECODE=1", *command],
                              capture_output=True, text=True, timeout=timeout, env=self.env, check=False)


def docker_socket_gid() -> int | None:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return None
    return os.stat(host[len("unix://"):]).st_gid


def as_stand_in_user(base: Path) -> list[str]:
    """Command prefix that runs as STAND_IN_UID, named in a private mount namespace's /etc/passwd and /etc/group,
    with the Docker socket's group. `unshare --mount` keeps the bind mounts out of the host's namespace."""
    nss = base / "nss"
    nss.mkdir()
    (nss / "passwd").write_text(Path("/etc/passwd").read_text()
                                + f"{STAND_IN_NAME}:x:{STAND_IN_UID}:{STAND_IN_UID}::{base / 'home'}:/bin/sh\n")
    (nss / "group").write_text(Path("/etc/group").read_text() + f"{STAND_IN_NAME}:x:{STAND_IN_UID}:\n")
    gid = docker_socket_gid()
    groups = f"--groups={gid}" if gid is not None else "--clear-groups"
    script = ('mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/group && shift 2 && '
              f'exec setpriv --reuid={STAND_IN_UID} --regid={STAND_IN_UID} {groups} --inh-caps=-all -- "$@"')
    prefix = ["unshare", "--mount", "--", "sh", "-c", script, "sh", str(nss / "passwd"), str(nss / "group")]
    check = subprocess.run([*prefix, "sh", "-c", "id -u -n && docker version --format '{{.Server.Version}}'"],
                           capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": str(base / "home")},
                           check=False)
    if check.returncode != 0:
        unavailable("running as root, the test needs a stand-in non-root user (unshare --mount, setpriv) that can "
                    f"reach the Docker socket, and could not make one: {check.stderr.strip()[-500:]}")
    return prefix


@pytest.fixture()
def devcontainer(request, docker_client, built_image):
    """A workspace copy (.devcontainer/ and smoke/) whose config is retargeted at the test image; everything the CLI
    made for it is removed afterwards, and the teardown fails if anything is left."""
    cli = devcontainer_cli()
    base = Path(tempfile.mkdtemp(prefix="torchdev-devcontainer-"))
    workspace = base / "workspace"
    try:
        yield make_devcontainer(cli, request.param, base, docker_client, built_image.references[0])
    finally:
        leftovers = remove_everything(docker_client, workspace)
        shutil.rmtree(base)
    assert not leftovers, f"left behind: {leftovers}"


def make_devcontainer(cli: str, variant: str, base: Path, docker_client, image: str) -> DevContainer:
    base.chmod(0o755)
    workspace, home, tmp = base / "workspace", base / "home", base / "tmp"
    shutil.copytree(ROOT / ".devcontainer", workspace / ".devcontainer")
    shutil.copytree(ROOT / "smoke", workspace / "smoke", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    home.mkdir()
    tmp.mkdir()
    repository, tag = split_reference(image)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TORCHDEV_")},
           "TORCHDEV_REPOSITORY": repository, "TORCHDEV_TAG": tag, "TMPDIR": str(tmp),
           "TORCHDEV_MEMLOCK": engine_memlock(docker_client, image)}
    if os.getuid() == 0:
        for path in (workspace, home, tmp):
            for entry in [path, *path.rglob("*")]:
                os.chown(entry, STAND_IN_UID, STAND_IN_UID, follow_symlinks=False)
        prefix, uid = as_stand_in_user(base), STAND_IN_UID
        env["HOME"] = str(home)
    else:
        prefix, uid = [], os.getuid()
    return DevContainer(cli, str(workspace / ".devcontainer" / variant / "devcontainer.json"), workspace, uid,
                        prefix, env)


def remove_everything(docker_client, workspace: Path) -> list[str]:
    """Remove the CLI's containers for `workspace` (label devcontainer.local_folder), their volumes and the
    vsc-<folder>-<sha256(folder)>-uid image; return whatever is still there afterwards."""
    from docker.errors import NotFound

    label = {"label": f"devcontainer.local_folder={workspace}"}
    uid_images = {"reference": f"vsc-*-{hashlib.sha256(str(workspace).encode()).hexdigest()}*"}
    volumes, images = set(), set()
    for container in docker_client.containers.list(all=True, filters=label):
        volumes |= {mount["Name"] for mount in container.attrs["Mounts"] if mount["Type"] == "volume"}
        if container.attrs["Config"]["Image"].startswith("vsc-"):
            images.add(container.attrs["Config"]["Image"])
        container.remove(force=True)
    for volume in volumes:
        try:
            docker_client.volumes.get(volume).remove()
        except NotFound:
            pass
    images |= {tag for image in docker_client.images.list(filters=uid_images) for tag in image.tags}
    for image in images:
        try:
            docker_client.images.remove(image)
        except NotFound:
            pass
    left = [f"container {c.name}" for c in docker_client.containers.list(all=True, filters=label)]
    left += [f"volume {v}" for v in volumes if docker_client.volumes.list(filters={"name": v})]
    left += [f"image {t}" for i in docker_client.images.list(filters=uid_images) for t in i.tags]
    return left


# The cpu config retargeted at the (cu117) test image shows retargeting; the cu117 config shows "gpu": "optional"
# on an engine without GPUs. Both then run the smoke suite.
@pytest.mark.parametrize("devcontainer", ["cpu", "cu117"], indirect=True)
def test_up_gives_a_non_root_user_owning_the_workspace_and_the_smoke_suite_passes(devcontainer, docker_client,
                                                                                   built_image):
    outcome, log = devcontainer.up()
    assert outcome["remoteUser"] == "torchdev" and outcome["remoteWorkspaceFolder"] == "/workspace"

    # updateRemoteUserUID: the CLI derived vsc-...-uid from the test image; torchdev now has the host user's UID
    created = docker_client.containers.get(outcome["containerId"])
    assert created.attrs["Config"]["Image"].startswith("vsc-") and created.attrs["Config"]["Image"].endswith("-uid")
    assert created.labels["devcontainer.local_folder"] == str(devcontainer.workspace)
    assert not created.attrs["HostConfig"].get("DeviceRequests"), "no GPU runtime here: no --gpus may be added"
    assert "GPU support found" not in log
    assert created.attrs["HostConfig"]["IpcMode"] == "host" and created.attrs["HostConfig"]["Init"] is True
    homes = [m["Name"] for m in created.attrs["Mounts"]
             if m["Type"] == "volume" and m["Destination"] == "/home/torchdev"]
    assert len(homes) == 1 and homes[0].startswith("torchdev-home-"), created.attrs["Mounts"]

    # the postCreate summary, as printed (the log also shows the command that prints it)
    printed = re.findall(r"^\[[^\]]+\] (torchdev env: user .*)$", log, re.MULTILINE)
    assert len(printed) == 1, log[-4000:]
    summary = printed[0]
    assert summary.startswith(SUMMARY.format(uid=devcontainer.uid)), summary
    cuda = docker_client.images.get(built_image.references[0]).labels.get("io.torchdev.cuda") or "none (CPU build)"
    assert "| torch 2.0.1" in summary and f"| CUDA build {cuda} | CUDA available False | GPUs 0" in summary, summary

    identity = devcontainer.exec("sh", "-c", 'id -un; id -u; stat -c %u /workspace; touch /workspace/made-inside; '
                                 'ulimit -s; mkdir -p "$HOME/.vscode-server/extensions" && echo home-writable')
    assert identity.returncode == 0, identity.stderr[-3000:]
    name, uid, owner, stack, home = identity.stdout.split()
    assert name == "torchdev" and int(uid) != 0
    assert int(uid) == int(owner) == devcontainer.uid == devcontainer.workspace.stat().st_uid
    assert (devcontainer.workspace / "made-inside").stat().st_uid == devcontainer.uid
    assert stack == "65536" and home == "home-writable"

    # The command .devcontainer/README.md shows: no --expect-* options, so the image's manifest supplies them.
    smoke = devcontainer.exec("python", "-m", "pytest", "/workspace/smoke", "-p", "no:cacheprovider", "-q", "-rs",
                              "--gpus", "0", timeout=900)
    assert smoke.returncode == 0, smoke.stdout[-5000:] + smoke.stderr[-3000:]
    assert " passed" in smoke.stdout and " failed" not in smoke.stdout
    assert "no expectation given" not in smoke.stdout, smoke.stdout[-3000:]
