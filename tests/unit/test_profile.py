"""The container profile (torchdev/profile.py): what each target's renderer writes, and the committed files that
cannot import it (compose YAML, devcontainer JSONC, the sbatch script) carrying exactly that rendering."""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from tests.helpers.cli import ROOT
from tests.helpers.profile_files import (bash_array, compose_drift, devcontainer_drift, read_jsonc, sbatch_drift,
                                         without_comments)
from torchdev.errors import UsageError
from torchdev.matrix import load_matrix
from torchdev.profile import (BENCHMARK, COMPOSE, COMPOSE_NODE, DEV_CONTAINER, GIB, IMAGE_GID, IMAGE_UID,
                              IMAGE_USER_NAME, KUBERNETES, SIZED_BY_SETTING, SLURM_DOCKER, SMOKE, UNLIMITED,
                              compose_service, devcontainer_fields, docker_run_arguments,
                              docker_run_entry, docker_size, gpu_run_arguments, kubernetes_container, kubernetes_pod,
                              kubernetes_quantity, memlock_limit, sdk_fields, sdk_limits, shm_bytes)

OWNER_SCRIPT = "/workspace/docker/run-as-owner.sh"
OWNER_ENTRYPOINT = ("sh", OWNER_SCRIPT)
PROFILES = (COMPOSE, COMPOSE_NODE, SLURM_DOCKER, DEV_CONTAINER, SMOKE, BENCHMARK, KUBERNETES)
OWNER_CAPABILITIES = ["SETUID", "SETGID", "DAC_READ_SEARCH", "KILL"]
PRIVILEGES = ["--security-opt=no-new-privileges:true", "--cap-drop=ALL"]


# --- what every target shares -------------------------------------------------------------------------------------

def test_every_target_gets_an_init_a_64_mib_stack_and_at_least_a_gib_of_shm_of_its_own():
    for profile in PROFILES:
        assert profile.init and profile.ulimits() == {"stack": 64 << 20}
        assert profile.shm.size >= GIB


def test_no_target_may_gain_privileges_and_only_run_as_owner_keeps_capabilities_each_with_its_reason():
    for profile in PROFILES:
        assert profile.security_options == ("no-new-privileges:true",)
        assert profile.capabilities == (tuple(OWNER_CAPABILITIES) if profile.user.entrypoint else ())
        assert all(len(capability.why) > 20 for capability in profile.user.capabilities)
    assert COMPOSE.user.name == "root" and DEV_CONTAINER.user.name is None, "the image's user needs no capability"


def test_the_images_user_is_the_one_the_dockerfile_makes():
    text = (ROOT / "docker" / "Dockerfile").read_text()
    assert f"ARG USER_NAME={IMAGE_USER_NAME}\n" in text
    assert f"ARG USER_UID={IMAGE_UID}\n" in text and f"ARG USER_GID={IMAGE_GID}\n" in text


@pytest.mark.parametrize("setting, size", [(None, 8 * GIB), ("", 8 * GIB), ("16g", 16 * GIB), ("512m", 512 << 20),
                                           ("16GB", 16 * GIB), ("1073741824", GIB), ("64k", 64 << 10)])
def test_torchdev_shm_size_is_read_as_docker_reads_a_size(setting, size):
    environ = {} if setting is None else {"TORCHDEV_SHM_SIZE": setting}
    assert shm_bytes(SIZED_BY_SETTING, environ) == size
    assert shm_bytes(SMOKE.shm, {"TORCHDEV_SHM_SIZE": "16g"}) == GIB, "a fixed size reads no setting"


@pytest.mark.parametrize("setting", ["8 gigs", "0", "-1g", "1.5g", "8Gi"])
def test_a_malformed_shm_setting_names_the_fix(setting):
    with pytest.raises(UsageError, match=rf"TORCHDEV_SHM_SIZE={setting} is not a size such as 8g or 512m: fix it or "
                                         r"unset it \(default 8g\)"):
        shm_bytes(SIZED_BY_SETTING, {"TORCHDEV_SHM_SIZE": setting})


def test_locked_memory_comes_only_with_gpus_and_as_far_as_asked():
    assert [limit.name for limit in sdk_limits(SMOKE)] == ["stack"]
    stack, memlock = sdk_limits(SMOKE, memlock=UNLIMITED)
    assert (memlock.name, memlock.soft, memlock.hard) == ("memlock", -1, -1)
    assert sdk_limits(SMOKE, memlock=8388608)[1].hard == 8388608


@pytest.mark.parametrize("environ, limit", [({}, -1), ({"TORCHDEV_MEMLOCK": "8388608"}, 8388608),
                                            ({"TORCHDEV_MEMLOCK": "-1"}, -1)])
def test_the_memlock_setting_is_bytes_or_unlimited(environ, limit):
    assert memlock_limit(environ) == limit


def test_a_malformed_memlock_setting_names_the_fix():
    with pytest.raises(UsageError, match="TORCHDEV_MEMLOCK=8M is not a number of bytes or -1"):
        memlock_limit({"TORCHDEV_MEMLOCK": "8M"})


@pytest.mark.parametrize("size, docker, kubernetes", [(GIB, "1g", "1Gi"), (2 * GIB, "2g", "2Gi"),
                                                      (512 << 20, "512m", "512Mi"), (2 * 10**9, "1953125k", "2G"),
                                                      (1536 << 20, "1536m", "1536Mi"), (1000, "1000", "1k")])
def test_sizes_are_written_as_each_target_reads_them(size, docker, kubernetes):
    assert (docker_size(size), kubernetes_quantity(size)) == (docker, kubernetes)


# --- the renderers -----------------------------------------------------------------------------------------------

def test_the_smoke_suite_runs_as_the_images_user_with_a_private_gib_of_shm_and_no_privileges():
    fields = sdk_fields(SMOKE, memlock=UNLIMITED, environment={"NVIDIA_VISIBLE_DEVICES": "void"})
    assert fields["shm_size"] == "1g" and fields["init"] is True and "user" not in fields
    assert fields["environment"] == {"PYTHONDONTWRITEBYTECODE": "1", "NVIDIA_VISIBLE_DEVICES": "void"}
    assert [(limit.name, limit.hard) for limit in fields["limits"]] == [("stack", 64 << 20), ("memlock", -1)]
    assert (fields["security_options"], fields["cap_drop"], fields["cap_add"]) == (
        ("no-new-privileges:true",), ("ALL",), ())


def test_an_sdk_container_as_the_workspace_owner_starts_through_run_as_owner_with_its_capabilities():
    fields = sdk_fields(COMPOSE, environ={"TORCHDEV_SHM_SIZE": "16g", "TORCHDEV_RUN_AS": "root"})
    assert (fields["user"], fields["entrypoint"]) == ("root", OWNER_ENTRYPOINT)
    assert fields["cap_add"] == tuple(OWNER_CAPABILITIES) and fields["shm_size"] == "16g"
    assert fields["environment"] == {"PYTHONDONTWRITEBYTECODE": "1", "TORCHDEV_RUN_AS": "root"}
    assert sdk_fields(COMPOSE)["shm_size"] == "8g" and "TORCHDEV_RUN_AS" not in sdk_fields(COMPOSE)["environment"]


def test_docker_run_arguments_for_slurm_and_the_benchmark():
    assert docker_run_arguments(SLURM_DOCKER) == [
        "--init", "--ipc=private", "--shm-size=${TORCHDEV_SHM_SIZE:-8g}", "--ulimit=stack=67108864", *PRIVILEGES,
        "--cap-add=SETUID", "--cap-add=SETGID", "--cap-add=DAC_READ_SEARCH", "--cap-add=KILL", "--user=root",
        "--env=PYTHONDONTWRITEBYTECODE=1", "--env=TORCHDEV_RUN_AS", "--entrypoint=sh"]
    assert docker_run_entry(SLURM_DOCKER) == [OWNER_SCRIPT] and docker_run_entry(BENCHMARK) == []
    assert docker_run_arguments(BENCHMARK, {"TORCHDEV_SHM_SIZE": "16g"}) == [
        "--init", "--ipc=private", "--shm-size=16g", "--ulimit=stack=67108864", *PRIVILEGES,
        "--env=PYTHONDONTWRITEBYTECODE=1"]
    assert docker_run_arguments(BENCHMARK, {})[2] == "--shm-size=8g"
    assert docker_run_arguments(SMOKE)[:3] == ["--init", "--ipc=private", "--shm-size=1g"]
    assert gpu_run_arguments(UNLIMITED) == ["--ulimit=memlock=-1"]


def test_a_compose_service_has_a_sized_shm_of_its_own_and_only_the_capabilities_its_user_needs():
    assert compose_service(COMPOSE) == {
        "user": "root", "init": True, "ipc": "private", "shm_size": "${TORCHDEV_SHM_SIZE:-8g}",
        "ulimits": {"stack": 67108864}, "security_opt": ["no-new-privileges:true"], "cap_drop": ["ALL"],
        "cap_add": OWNER_CAPABILITIES, "environment": {"PYTHONDONTWRITEBYTECODE": "1", "TORCHDEV_RUN_AS": None}}
    assert compose_service(COMPOSE, gpus=True)["ulimits"] == {"stack": 67108864, "memlock": "${TORCHDEV_MEMLOCK:--1}"}
    node = compose_service(COMPOSE_NODE)
    assert (node["ipc"], node["shm_size"]) == ("private", "1g")
    benchmark = compose_service(BENCHMARK)
    assert "user" not in benchmark and "cap_add" not in benchmark and benchmark["cap_drop"] == ["ALL"]


def test_a_dev_container_reads_torchdev_shm_size_and_memlock_from_the_host_and_keeps_no_capability():
    assert devcontainer_fields(DEV_CONTAINER, gpus=False) == {
        "init": True, "runArgs": ["--ipc=private", "--shm-size=${localEnv:TORCHDEV_SHM_SIZE:8g}",
                                  "--ulimit=stack=67108864", *PRIVILEGES], "remoteUser": "torchdev"}
    assert devcontainer_fields(DEV_CONTAINER, gpus=True)["runArgs"][3:] == [
        "--ulimit=memlock=${localEnv:TORCHDEV_MEMLOCK:-1}", *PRIVILEGES]
    assert devcontainer_fields(replace(DEV_CONTAINER, bytecode=False), gpus=False)["containerEnv"] == \
        {"PYTHONDONTWRITEBYTECODE": "1"}
    with pytest.raises(ValueError, match="image's user"):
        devcontainer_fields(COMPOSE, gpus=False)


def test_a_pod_gets_a_real_pid_1_shm_as_a_memory_empty_dir_and_runs_as_the_images_user_without_privileges():
    container = {"name": "train", **kubernetes_container(KUBERNETES)}
    locked = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    assert kubernetes_pod(KUBERNETES, [container]) == {
        "shareProcessNamespace": True, "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "train", "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
                        "securityContext": locked}],
        "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}]}
    assert kubernetes_container(replace(KUBERNETES, bytecode=False))["env"] == [
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}]
    with pytest.raises(ValueError, match="image's user"):
        kubernetes_pod(COMPOSE, [])


# --- the committed files carry exactly the rendering --------------------------------------------------------------

def test_compose_yaml_carries_the_compose_profile():
    assert compose_drift(ROOT / "compose.yaml", COMPOSE, "COMPOSE") == ""


def test_compose_gpu_yaml_over_compose_yaml_carries_the_profile_with_gpus():
    assert compose_drift(ROOT / "compose.gpu.yaml", COMPOSE, "COMPOSE", over=ROOT / "compose.yaml", gpus=True) == ""


def test_compose_multinode_yaml_carries_the_node_profile():
    assert compose_drift(ROOT / "compose.multinode.yaml", COMPOSE_NODE, "COMPOSE_NODE") == ""


def cuda_variants() -> set[str]:
    return {variant.name for variant in load_matrix(ROOT / "images.yaml").variants if variant.cuda}


@pytest.mark.parametrize("variant", ["cpu", "cu117", "cu118"])
def test_each_devcontainer_json_carries_the_dev_container_profile(variant):
    path = ROOT / ".devcontainer" / variant / "devcontainer.json"
    assert devcontainer_drift(path, DEV_CONTAINER, "DEV_CONTAINER", gpus=variant in cuda_variants()) == ""


SBATCH_ARRAYS = {"profile": docker_run_arguments(SLURM_DOCKER), "entry": docker_run_entry(SLURM_DOCKER),
                 "gpu_profile": gpu_run_arguments(UNLIMITED)}


def test_train_sbatch_carries_the_slurm_docker_profile():
    assert sbatch_drift(ROOT / "deploy" / "slurm" / "train.sbatch", SBATCH_ARRAYS, "SLURM_DOCKER") == ""


def test_the_sbatch_script_runs_docker_with_the_arrays():
    text = (ROOT / "deploy" / "slurm" / "train.sbatch").read_text()
    assert '"${profile[@]}"' in text and text.count('"${gpu_profile[@]}"') == 2
    assert 'run+=("$TORCHDEV_IMAGE" "${entry[@]}" "${cmd[@]}")' in text


# --- and a drifted file is named, with what differs and what to write -----------------------------------------------

def copy(tmp_path: Path, *names: str) -> Path:
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_a_drifted_compose_file_names_the_field_and_the_fix(tmp_path):
    root = copy(tmp_path, "compose.yaml")
    edit(root / "compose.yaml", "  ipc: private ", "  ipc: host ")
    edit(root / "compose.yaml", "  cap_drop: [ALL]\n", "")
    message = compose_drift(root / "compose.yaml", COMPOSE, "COMPOSE")
    assert "compose.yaml differs from the container profile (torchdev/profile.py, COMPOSE)" in message
    assert "service train: ipc: the file has 'host', the profile renders 'private'" in message
    assert "service dev: cap_drop: missing; the profile renders ['ALL']" in message
    assert "fix: give every service these fields" in message and "\nipc: private\n" in message
    assert "or, if the file is right, change the profile" in message


def test_a_gpu_file_that_forgets_locked_memory_is_named(tmp_path):
    root = copy(tmp_path, "compose.yaml", "compose.gpu.yaml")
    edit(root / "compose.gpu.yaml", "    memlock: ${TORCHDEV_MEMLOCK:--1}", "    memlock: -1")
    message = compose_drift(root / "compose.gpu.yaml", COMPOSE, "COMPOSE", over=root / "compose.yaml", gpus=True)
    assert "compose.gpu.yaml over compose.yaml differs" in message
    assert "'memlock': -1" in message and "'memlock': '${TORCHDEV_MEMLOCK:--1}'" in message


def test_a_node_without_run_as_owner_is_named(tmp_path):
    root = copy(tmp_path, "compose.yaml", "compose.multinode.yaml")
    edit(root / "compose.multinode.yaml", '["sh", "/workspace/docker/run-as-owner.sh", "python",', '["python",')
    message = compose_drift(root / "compose.multinode.yaml", COMPOSE_NODE, "COMPOSE_NODE")
    assert "service node0: entrypoint: ['python', " in message and \
        f"does not start with ['sh', '{OWNER_SCRIPT}']" in message


@pytest.mark.parametrize("variant", ["cpu", "cu117", "cu118"])
def test_each_dev_container_runs_the_startup_checks_each_time_it_starts(variant):
    """The same checks as compose's entrypoint and the preflight, from the mounted checkout, without bytecode."""
    config = read_jsonc(ROOT / ".devcontainer" / variant / "devcontainer.json")
    assert config["postStartCommand"] == ["python", "-B", "/workspace/smoke/startup_checks.py"]
    assert (ROOT / "smoke" / "startup_checks.py").is_file()


def test_a_drifted_devcontainer_json_names_the_field_and_the_line_to_write(tmp_path):
    path = copy(tmp_path, ".devcontainer/cu118/devcontainer.json") / ".devcontainer" / "cu118" / "devcontainer.json"
    edit(path, '"--ulimit=memlock=${localEnv:TORCHDEV_MEMLOCK:-1}"', '"--ulimit=memlock=-1"')
    message = devcontainer_drift(path, DEV_CONTAINER, "DEV_CONTAINER", gpus=True)
    assert ".devcontainer/cu118/devcontainer.json differs" in message and "runArgs: the file has" in message
    assert ('  "runArgs": ["--ipc=private", "--shm-size=${localEnv:TORCHDEV_SHM_SIZE:8g}", "--ulimit=stack=67108864", '
            '"--ulimit=memlock=${localEnv:TORCHDEV_MEMLOCK:-1}", "--security-opt=no-new-privileges:true", '
            '"--cap-drop=ALL"],') in message


def test_a_drifted_sbatch_array_names_the_array_and_the_line_to_write(tmp_path):
    path = copy(tmp_path, "deploy/slurm/train.sbatch") / "deploy" / "slurm" / "train.sbatch"
    edit(path, "--cap-add=DAC_READ_SEARCH ", "")
    message = sbatch_drift(path, SBATCH_ARRAYS, "SLURM_DOCKER")
    assert "deploy/slurm/train.sbatch differs" in message and "--cap-add=SETGID --cap-add=KILL --user=root" in message
    assert ('local profile=(--init --ipc=private "--shm-size=${TORCHDEV_SHM_SIZE:-8g}" --ulimit=stack=67108864 '
            '--security-opt=no-new-privileges:true --cap-drop=ALL --cap-add=SETUID --cap-add=SETGID '
            '--cap-add=DAC_READ_SEARCH --cap-add=KILL --user=root') in message
    assert "entry=" not in message.split("fix:")[0], "only the array that differs is named"


def test_jsonc_comments_go_and_strings_stay():
    text = '// a\n{"a": "x // y", /* b */ "b": ["/*", "\\"//"] // c\n}'
    assert without_comments(text).split() == ['{"a":', '"x', '//', 'y",', '"b":', '["/*",', '"\\"//"]', '}']
    assert read_jsonc(ROOT / ".devcontainer" / "cpu" / "devcontainer.json")["name"] == "torchdev cpu"


def test_a_bash_array_is_read_as_bash_splits_it():
    text = 'x\n      local profile=(--a "b c"\n        --d)  # e\n  gpu_profile=(--f)\n'
    assert (bash_array(text, "profile"), bash_array(text, "gpu_profile"), bash_array(text, "other")) == \
        (["--a", "b c", "--d"], ["--f"], None)


FAKE_DOCKER = """#!/bin/sh
case "$1 $2" in
  "image inspect") exit "$FAKE_INSPECT" ;;
  "pull "*) exit "$FAKE_PULL" ;;
esac
exit 3
"""


def local_env(text: str, environ: dict[str, str]) -> str:
    """${localEnv:NAME:default} as the Dev Containers CLI substitutes it."""
    return re.sub(r"\$\{localEnv:(\w+):([^}]*)\}", lambda found: environ.get(found[1], found[2]), text)


@pytest.mark.parametrize("variant", ["cpu", "cu117", "cu118"])
@pytest.mark.parametrize("inspect, pull, status", [(0, 1, 0), (1, 0, 0), (1, 1, 1)],
                         ids=["built", "pulled from a registry", "neither"])
def test_a_dev_container_whose_image_is_missing_says_how_to_build_it(tmp_path, variant, inspect, pull, status):
    """initializeCommand, run by /bin/sh -c here (cmd /c on Windows: so it holds nothing cmd reads otherwise)."""
    command = read_jsonc(ROOT / ".devcontainer" / variant / "devcontainer.json")["initializeCommand"]
    assert not re.search(r"[<>^%;`'$]|(?<!&)&(?!&)", local_env(command, {})), command
    (tmp_path / "docker").write_text(FAKE_DOCKER)
    (tmp_path / "docker").chmod(0o755)
    result = subprocess.run(["/bin/sh", "-c", local_env(command, {})], capture_output=True, text=True, timeout=30,
                            env={"PATH": f"{tmp_path}:/usr/bin:/bin", "FAKE_INSPECT": str(inspect),
                                 "FAKE_PULL": str(pull)})
    assert result.returncode == status, result
    line = (f"torchdev: the image torchdev:{variant}-devel is not built here and no registry has it: build it with "
            f"./dev build --variant {variant} --flavour devel, or set TORCHDEV_REPOSITORY and TORCHDEV_TAG to an "
            "image you pushed")
    assert result.stdout == (f"{line}\n" if status else "")
