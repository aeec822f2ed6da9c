"""The container profile (torchdev/profile.py): what each target's renderer writes, and the committed files that
cannot import it (compose YAML, devcontainer JSONC, the sbatch script) carrying exactly that rendering."""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from tests.helpers.cli import ROOT
from tests.helpers.profile_files import (bash_array, compose_drift, devcontainer_drift, read_jsonc, sbatch_drift,
                                         without_comments)
from torchdev.errors import UsageError
from torchdev.matrix import load_matrix
from torchdev.profile import (BENCHMARK, COMPOSE, COMPOSE_NODE, DEV_CONTAINER, GIB, HOST_SHM, KUBERNETES,
                              SLURM_DOCKER, SMOKE, UNLIMITED, SharedMemory, compose_service, devcontainer_fields,
                              docker_run_arguments, docker_size, gpu_run_arguments, kubernetes_container,
                              kubernetes_pod, kubernetes_quantity, memlock_limit, sdk_fields, sdk_limits)

OWNER_ENTRYPOINT = "/workspace/docker/run-as-owner.sh"


# --- what every target shares -------------------------------------------------------------------------------------

def test_every_target_gets_an_init_a_64_mib_stack_and_more_than_dockers_64_mb_of_shm():
    for profile in (COMPOSE, COMPOSE_NODE, SLURM_DOCKER, DEV_CONTAINER, SMOKE, BENCHMARK, KUBERNETES):
        assert profile.init and profile.ulimits() == {"stack": 64 << 20}
        assert profile.shm.host or profile.shm.size >= GIB


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

def test_the_smoke_suite_runs_as_the_images_user_with_a_private_gib_of_shm():
    fields = sdk_fields(SMOKE, memlock=UNLIMITED, environment={"NVIDIA_VISIBLE_DEVICES": "void"})
    assert fields["shm_size"] == "1g" and fields["init"] is True and "user" not in fields
    assert fields["environment"] == {"PYTHONDONTWRITEBYTECODE": "1", "NVIDIA_VISIBLE_DEVICES": "void"}
    assert [(limit.name, limit.hard) for limit in fields["limits"]] == [("stack", 64 << 20), ("memlock", -1)]


def test_an_sdk_container_as_the_workspace_owner_starts_through_run_as_owner():
    fields = sdk_fields(replace(COMPOSE, shm=SharedMemory(GIB)))
    assert (fields["user"], fields["entrypoint"]) == ("root", (OWNER_ENTRYPOINT,))
    with pytest.raises(ValueError, match="no IPC mode"):
        sdk_fields(COMPOSE)


def test_docker_run_arguments_for_slurm_and_the_benchmark():
    assert docker_run_arguments(SLURM_DOCKER) == [
        "--init", "--ipc=host", "--ulimit=stack=67108864", "--user=root", "--env=PYTHONDONTWRITEBYTECODE=1",
        f"--entrypoint={OWNER_ENTRYPOINT}"]
    assert docker_run_arguments(BENCHMARK) == ["--init", "--ipc=host", "--ulimit=stack=67108864",
                                               "--env=PYTHONDONTWRITEBYTECODE=1"]
    assert docker_run_arguments(SMOKE)[:2] == ["--init", "--shm-size=1g"]
    assert gpu_run_arguments(UNLIMITED) == ["--ulimit=memlock=-1"]


def test_a_compose_service_shares_the_hosts_ipc_or_has_a_sized_shm_of_its_own():
    assert compose_service(COMPOSE) == {"user": "root", "init": True, "ipc": "host", "ulimits": {"stack": 67108864},
                                        "environment": {"PYTHONDONTWRITEBYTECODE": "1"}}
    assert compose_service(COMPOSE, gpus=True)["ulimits"] == {"stack": 67108864, "memlock": "${TORCHDEV_MEMLOCK:--1}"}
    node = compose_service(COMPOSE_NODE)
    assert (node["ipc"], node["shm_size"]) == ("private", "1g")
    assert "user" not in compose_service(BENCHMARK)


def test_a_dev_container_reads_torchdev_memlock_from_the_host_only_with_gpus():
    assert devcontainer_fields(DEV_CONTAINER, gpus=False) == {
        "init": True, "runArgs": ["--ipc=host", "--ulimit=stack=67108864"], "remoteUser": "torchdev"}
    assert devcontainer_fields(DEV_CONTAINER, gpus=True)["runArgs"][-1] == \
        "--ulimit=memlock=${localEnv:TORCHDEV_MEMLOCK:-1}"
    assert devcontainer_fields(replace(DEV_CONTAINER, bytecode=False), gpus=False)["containerEnv"] == \
        {"PYTHONDONTWRITEBYTECODE": "1"}
    with pytest.raises(ValueError, match="image's user"):
        devcontainer_fields(COMPOSE, gpus=False)


def test_a_pod_gets_a_real_pid_1_and_shm_as_a_memory_empty_dir():
    container = {"name": "train", **kubernetes_container(KUBERNETES)}
    assert kubernetes_pod(KUBERNETES, [container]) == {
        "shareProcessNamespace": True,
        "containers": [{"name": "train", "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}]}],
        "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}]}
    host = replace(KUBERNETES, shm=HOST_SHM, bytecode=False)
    assert kubernetes_pod(host, [])["hostIPC"] is True and "volumes" not in kubernetes_pod(host, [])
    assert kubernetes_container(host) == {"env": [{"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}]}


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


SBATCH_ARRAYS = {"profile": docker_run_arguments(SLURM_DOCKER), "gpu_profile": gpu_run_arguments(UNLIMITED)}


def test_train_sbatch_carries_the_slurm_docker_profile():
    assert sbatch_drift(ROOT / "deploy" / "slurm" / "train.sbatch", SBATCH_ARRAYS, "SLURM_DOCKER") == ""


def test_the_sbatch_script_runs_docker_with_both_arrays():
    text = (ROOT / "deploy" / "slurm" / "train.sbatch").read_text()
    assert '"${profile[@]}"' in text and text.count('"${gpu_profile[@]}"') == 2


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
    edit(root / "compose.yaml", "  ipc: host ", "  shm_size: 1g\n  ipc: private ")
    message = compose_drift(root / "compose.yaml", COMPOSE, "COMPOSE")
    assert "compose.yaml differs from the container profile (torchdev/profile.py, COMPOSE)" in message
    assert "service train: ipc: the file has 'private', the profile renders 'host'" in message
    assert "service dev: shm_size: the file has '1g', the profile renders none: remove it" in message
    assert "fix: give every service these fields" in message and "\nipc: host\n" in message
    assert "or, if the file is right, change the profile" in message


def test_a_gpu_file_that_forgets_locked_memory_is_named(tmp_path):
    root = copy(tmp_path, "compose.yaml", "compose.gpu.yaml")
    edit(root / "compose.gpu.yaml", "    memlock: ${TORCHDEV_MEMLOCK:--1}", "    memlock: -1")
    message = compose_drift(root / "compose.gpu.yaml", COMPOSE, "COMPOSE", over=root / "compose.yaml", gpus=True)
    assert "compose.gpu.yaml over compose.yaml differs" in message
    assert "'memlock': -1" in message and "'memlock': '${TORCHDEV_MEMLOCK:--1}'" in message


def test_a_node_without_run_as_owner_is_named(tmp_path):
    root = copy(tmp_path, "compose.yaml", "compose.multinode.yaml")
    edit(root / "compose.multinode.yaml", '["/workspace/docker/run-as-owner.sh", "python",', '["python",')
    message = compose_drift(root / "compose.multinode.yaml", COMPOSE_NODE, "COMPOSE_NODE")
    assert f"service node0: entrypoint: ['python', " in message and f"does not start with ['{OWNER_ENTRYPOINT}']" \
        in message


def test_a_drifted_devcontainer_json_names_the_field_and_the_line_to_write(tmp_path):
    path = copy(tmp_path, ".devcontainer/cu118/devcontainer.json") / ".devcontainer" / "cu118" / "devcontainer.json"
    edit(path, '"--ulimit=memlock=${localEnv:TORCHDEV_MEMLOCK:-1}"', '"--ulimit=memlock=-1"')
    message = devcontainer_drift(path, DEV_CONTAINER, "DEV_CONTAINER", gpus=True)
    assert ".devcontainer/cu118/devcontainer.json differs" in message and "runArgs: the file has" in message
    assert ('  "runArgs": ["--ipc=host", "--ulimit=stack=67108864", '
            '"--ulimit=memlock=${localEnv:TORCHDEV_MEMLOCK:-1}"],') in message


def test_a_drifted_sbatch_array_names_the_array_and_the_line_to_write(tmp_path):
    path = copy(tmp_path, "deploy/slurm/train.sbatch") / "deploy" / "slurm" / "train.sbatch"
    edit(path, "--ipc=host --ulimit=stack=67108864", "--ulimit=stack=67108864")
    message = sbatch_drift(path, SBATCH_ARRAYS, "SLURM_DOCKER")
    assert "deploy/slurm/train.sbatch differs" in message and "profile=(--init --ulimit=stack" in message
    assert "local profile=(--init --ipc=host --ulimit=stack=67108864 --user=root" in message


def test_jsonc_comments_go_and_strings_stay():
    text = '// a\n{"a": "x // y", /* b */ "b": ["/*", "\\"//"] // c\n}'
    assert without_comments(text).split() == ['{"a":', '"x', '//', 'y",', '"b":', '["/*",', '"\\"//"]', '}']
    assert read_jsonc(ROOT / ".devcontainer" / "cpu" / "devcontainer.json")["name"] == "torchdev cpu"


def test_a_bash_array_is_read_as_bash_splits_it():
    text = 'x\n      local profile=(--a "b c"\n        --d)  # e\n  gpu_profile=(--f)\n'
    assert (bash_array(text, "profile"), bash_array(text, "gpu_profile"), bash_array(text, "other")) == \
        (["--a", "b c", "--d"], ["--f"], None)
