"""The VS Code dev container configs (.devcontainer/*/devcontainer.json), driven by the real Dev Containers CLI.

`devcontainer up` on a copy of the configs and the smoke suite, retargeted at the session's test image through the
TORCHDEV_REPOSITORY/TORCHDEV_TAG variables the configs read; then the smoke suite through `devcontainer exec`.
updateRemoteUserUID only does something for a non-root host user whose UID the image lacks, so when the tests run as
root (CI) the CLI runs as a made-up user (UID 4242) that exists only in a private mount namespace's /etc/passwd:
the host's accounts are never touched. Everything the CLI creates (containers, the home volume, the vsc-...-uid
image, its temporary files) is removed afterwards, and the teardown checks that nothing is left.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.helpers.cli import ROOT, run_cli
from tests.helpers.devcontainer import devcontainer_cli, make_devcontainer, remove_everything
from tests.helpers.variants import TEST_REPOSITORY
from tests.helpers.wheels import download_wheel, make_wheel

VARIANTS = ("cpu", "cu117", "cu118")
SUMMARY = "torchdev env: user torchdev uid {uid} | python "


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
    assert default["image"] == f"torchdev:{variant}-devel", "dev containers use the devel flavour"
    assert default["remoteUser"] == "torchdev" and default["updateRemoteUserUID"] is True
    assert default["workspaceFolder"] == "/workspace"
    assert default["workspaceMount"] == f"source={ROOT},target=/workspace,type=bind"
    assert default["customizations"]["vscode"]["extensions"] == ["ms-python.python", "ms-toolsai.jupyter"]
    assert "features" not in default, "features download from registries; the configs must need no pull"
    assert default["runArgs"][:2] == ["--ipc=private", "--shm-size=8g"]
    assert default["runArgs"][-2:] == ["--security-opt=no-new-privileges:true", "--cap-drop=ALL"]
    assert ("--ulimit=memlock=-1" in default["runArgs"]) == (variant != "cpu"), "locked memory only with CUDA"
    assert default.get("hostRequirements", {}).get("gpu") == (None if variant == "cpu" else "optional")
    assert any(m.startswith("source=torchdev-home-${devcontainerId},target=/home/torchdev,") for m in default["mounts"])

    moved = read(TORCHDEV_REPOSITORY="registry.example.com:5000/ml/torchdev", TORCHDEV_TAG="2.0.1-x-py3.10",
                 TORCHDEV_MEMLOCK="8388608", TORCHDEV_SHM_SIZE="16g")
    assert moved["image"] == "registry.example.com:5000/ml/torchdev:2.0.1-x-py3.10"
    assert "--shm-size=16g" in moved["runArgs"]
    assert ("--ulimit=memlock=8388608" in moved["runArgs"]) == (variant != "cpu")


@pytest.fixture()
def devcontainer(request, docker_client, built_devel_image):
    """A workspace copy (.devcontainer/ and smoke/) whose config is retargeted at the test image; everything the CLI
    made for it is removed afterwards, and the teardown fails if anything is left."""
    cli = devcontainer_cli()
    base = Path(tempfile.mkdtemp(prefix="torchdev-devcontainer-"))
    workspace = base / "workspace"
    try:
        yield make_devcontainer(cli, request.param, base, docker_client, built_devel_image.references[0])
    finally:
        leftovers = remove_everything(docker_client, workspace)
        shutil.rmtree(base)
    assert not leftovers, f"left behind: {leftovers}"


# The cpu config retargeted at the (cu117) test image's devel flavour shows retargeting; the cu117 config shows
# "gpu": "optional" on an engine without GPUs. Both then run the smoke suite, whose flavour checks build a C++
# extension there (the devel flavour's promise) from what the image's manifest declares.
@pytest.mark.parametrize("devcontainer", ["cpu", "cu117"], indirect=True)
def test_up_gives_a_non_root_user_owning_the_workspace_and_the_smoke_suite_passes(devcontainer, docker_client,
                                                                                   built_devel_image):
    outcome, log = devcontainer.up()
    assert outcome["remoteUser"] == "torchdev" and outcome["remoteWorkspaceFolder"] == "/workspace"

    # updateRemoteUserUID: the CLI derived vsc-...-uid from the test image; torchdev now has the host user's UID
    created = docker_client.containers.get(outcome["containerId"])
    assert created.attrs["Config"]["Image"].startswith("vsc-") and created.attrs["Config"]["Image"].endswith("-uid")
    assert created.labels["devcontainer.local_folder"] == str(devcontainer.workspace)
    assert not created.attrs["HostConfig"].get("DeviceRequests"), "no GPU runtime here: no --gpus may be added"
    assert "GPU support found" not in log
    host = created.attrs["HostConfig"]
    assert host["IpcMode"] == "private" and host["ShmSize"] == 8 << 30 and host["Init"] is True
    assert host["SecurityOpt"] == ["no-new-privileges:true"] and host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    homes = [m["Name"] for m in created.attrs["Mounts"]
             if m["Type"] == "volume" and m["Destination"] == "/home/torchdev"]
    assert len(homes) == 1 and homes[0].startswith("torchdev-home-"), created.attrs["Mounts"]

    # the postCreate summary, as printed (the log also shows the command that prints it)
    printed = re.findall(r"^\[[^\]]+\] (torchdev env: user .*)$", log, re.MULTILINE)
    assert len(printed) == 1, log[-4000:]
    summary = printed[0]
    assert summary.startswith(SUMMARY.format(uid=devcontainer.uid)), summary
    labels = docker_client.images.get(built_devel_image.references[0]).labels
    cuda = labels.get("io.torchdev.cuda") or "none (CPU build)"
    assert "| torch 2.0.1" in summary and f"| CUDA build {cuda} | CUDA available False | GPUs 0" in summary, summary

    identity = devcontainer.exec("sh", "-c", 'id -un; id -u; stat -c %u /workspace; touch /workspace/made-inside; '
                                 'ulimit -s; mkdir -p "$HOME/.vscode-server/extensions" && echo home-writable; '
                                 "awk '/^(CapBnd|NoNewPrivs):/ {print $2}' /proc/self/status")
    assert identity.returncode == 0, identity.stderr[-3000:]
    name, uid, owner, stack, home, bounding, no_new_privileges = identity.stdout.split()
    assert (bounding, no_new_privileges) == ("0000000000000000", "1"), "no capability can be had, none gained"
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


def capture_overlay(folder: Path, test_overlay: Path, repository: str) -> Path:
    """The session's overlay with a repository of the test's own (the rebuilt images do not move the session's
    tags) and cu117's lock copied out of the checkout, so that the lock of the added packages is written beside the
    copy, never into overlays/. The same lock bytes: torch's layer comes from the build cache."""
    lock = folder / "cu117.lock.txt"
    shutil.copy(ROOT / "overlays" / "local-debian" / "cu117.lock.txt", lock)
    data = yaml.safe_load(test_overlay.read_text())
    data["variants"]["cu117"]["lock"] = str(lock)
    data["image"]["repository"] = repository
    path = folder / "overlay.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize("devcontainer", ["cu117"], indirect=True)
def test_packages_the_user_adds_persist_cannot_replace_the_images_and_flow_back_into_it(
        devcontainer, docker_client, built_devel_image, test_overlay, tracked_tags, tmp_path):
    """The flow of .devcontainer/README.md: `pip install` as the remote user lands in the home volume, behind the
    image's torch; a constraint refuses torch 2.1.0 and a package that needs numpy 2; the package survives the
    container's removal; git works on a /workspace another UID owns; `./dev capture --write` makes an image that has
    it, rebuilding only the images' last layer, and the smoke suite passes in it."""
    wheels = devcontainer.workspace / "wheels"
    download_wheel(wheels, "einops==0.8.1")
    make_wheel(wheels, "torch", "2.1.0")        # what an index offers: a candidate for pip to refuse
    make_wheel(wheels, "numpy", "2.0.0")
    make_wheel(wheels, "needs-numpy2", "1.0", requires=("numpy>=2",))
    for path in [wheels, *wheels.iterdir()]:
        os.chown(path, devcontainer.uid, devcontainer.uid)
    outcome, _ = devcontainer.up()
    pip = ("python", "-m", "pip", "install", "--no-index", "--find-links", "/workspace/wheels")

    added = devcontainer.exec(*pip, "einops==0.8.1")
    assert added.returncode == 0, added.stdout[-3000:] + added.stderr[-3000:]
    assert "Defaulting to user installation because normal site-packages is not writeable" in added.stdout
    where = devcontainer.exec("python", "-c", "import einops, torch; print(einops.__file__); print(torch.__file__)")
    assert where.returncode == 0, where.stderr[-2000:]
    einops_file, torch_file = where.stdout.split()
    assert einops_file.startswith("/home/torchdev/.local/lib/python3.11/site-packages/einops/")
    assert torch_file.startswith("/opt/venv/lib/python3.11/site-packages/torch/")

    for requirement, locked in (("torch==2.1.0", "torch==2.0.1"), ("needs-numpy2==1.0", "numpy==1.26.4")):
        refused = devcontainer.exec(*pip, requirement)
        said = [line for line in (refused.stdout + refused.stderr).splitlines() if line.strip()]
        assert refused.returncode != 0 and any(locked in line for line in said), said
        assert len(said) <= 12, f"a few lines, not {len(said)}:\n" + "\n".join(said)
    kept = devcontainer.exec("python", "-c", "import importlib.metadata as m, torch, numpy; "
                             "print(m.version('torch'), numpy.__version__, torch.__file__)")
    assert kept.stdout.split() == ["2.0.1", "1.26.4", torch_file], kept.stdout + kept.stderr

    # git on a /workspace that belongs to another UID than the container user's (Docker Desktop's case)
    host_git = ["git", "-c", "safe.directory=*", "-C", str(devcontainer.workspace)]
    subprocess.run([*host_git, "init", "-q"], check=True, timeout=60)
    subprocess.run([*host_git, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "--allow-empty",
                    "-m", "first"], check=True, timeout=60)
    for path in [devcontainer.workspace, *(devcontainer.workspace / ".git").rglob("*"),
                 devcontainer.workspace / ".git"]:
        os.chown(path, devcontainer.uid + 1, devcontainer.uid + 1, follow_symlinks=False)
    for command in (("git", "status", "--short"), ("git", "log", "--oneline")):
        result = devcontainer.exec("git", "-C", "/workspace", *command[1:])
        assert result.returncode == 0, result.stderr
    assert devcontainer.exec("git", "-C", "/workspace", "log", "--format=%s").stdout.strip() == "first"

    # the container goes (a rebuild), the home volume stays: the package is there in the next one
    docker_client.containers.get(outcome["containerId"]).remove(force=True)
    again, _ = devcontainer.up()
    assert again["containerId"] != outcome["containerId"]
    still = devcontainer.exec("python", "-c", "import einops; print(einops.__version__)")
    assert still.stdout.strip() == "0.8.1", still.stdout + still.stderr

    # into the image: declared, locked apart, rebuilt, smoke passing
    repository = tracked_tags.repository(f"{TEST_REPOSITORY}-capture")
    overlay = capture_overlay(tmp_path, test_overlay, repository)
    listed = run_cli("capture", "--container", again["containerId"][:12])
    assert listed.returncode == 0 and "einops" in listed.stdout and "0.8.1" in listed.stdout, listed.stderr
    taken = run_cli("capture", "--container", again["containerId"][:12], "--write", "--overlay", str(overlay))
    assert taken.returncode == 0, taken.stdout[-4000:] + taken.stderr[-2000:]
    assert yaml.safe_load(overlay.read_text())["variants"]["cu117"]["added_packages"] == ["einops==0.8.1"]
    assert (tmp_path / "cu117.lock.added.txt").read_text().count("\neinops==0.8.1 \\\n") == 1
    rebuilt = docker_client.images.get(f"{repository}:cu117-devel")
    old_layers = docker_client.images.get(built_devel_image.image_id).attrs["RootFS"]["Layers"]
    new_layers = rebuilt.attrs["RootFS"]["Layers"]
    assert new_layers[:-1] == old_layers[:-1] and new_layers[-1] != old_layers[-1], "only the last layer is new"
    inside = docker_client.containers.run(rebuilt.id, ["python", "-c", "import einops; print(einops.__file__)"],
                                          remove=True, environment={"HOME": "/tmp"}).decode()
    assert inside.strip().startswith("/opt/venv/lib/python3.11/site-packages/einops/")
    smoke = run_cli("smoke", "--variant", "cu117", "--flavour", "devel", "--overlay", str(overlay), "--gpus", "none",
                    "--reports", str(tmp_path / "smoke"))
    assert smoke.returncode == 0, smoke.stdout[-4000:] + smoke.stderr[-2000:]

    # a fresh start, the one command .devcontainer/README.md gives: the additions go, the image's packages stay
    fresh = devcontainer.exec("sh", "-c", 'rm -rf "$(python -m site --user-site)" ~/.local/bin')
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    gone = devcontainer.exec("python", "-c", "import torch, numpy\ntry:\n import einops\nexcept ImportError:\n "
                                             "print('no einops', torch.__file__)")
    assert gone.stdout.strip() == f"no einops {torch_file}", gone.stdout + gone.stderr
