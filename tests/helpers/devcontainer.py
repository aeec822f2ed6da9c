"""The Dev Containers CLI driven for tests: a workspace copy retargeted at a test image, run as a non-root host user
whose UID the image lacks, and the removal of everything the CLI made for it.

updateRemoteUserUID only does something for a non-root host user whose UID the image lacks, so when the tests run as
root (CI) the CLI runs as a made-up user (UID 4242) that exists only in a private mount namespace's /etc/passwd:
the host's accounts are never touched.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.cli import ROOT, unavailable
from tests.helpers.tracked_container import engine_memlock
from torchdev.engine import ImageRef

STAND_IN_UID = 4242          # absent from the image's /etc/passwd, so the CLI must really remap torchdev to it
STAND_IN_NAME = "torchdevdc"


def devcontainer_cli() -> str:
    cli = shutil.which("devcontainer")
    if cli is None:
        unavailable("the Dev Containers CLI is missing: run scripts/install-devcontainer-cli.sh")
    return cli


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


def make_devcontainer(cli: str, variant: str, base: Path, docker_client, image: str) -> DevContainer:
    base.chmod(0o755)
    workspace, home, tmp = base / "workspace", base / "home", base / "tmp"
    shutil.copytree(ROOT / ".devcontainer", workspace / ".devcontainer")
    shutil.copytree(ROOT / "smoke", workspace / "smoke", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    home.mkdir()
    tmp.mkdir()
    ref = ImageRef.parse(image)
    repository, tag = ref.repository, ref.tag
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
