"""The GPU path end to end on a GPU-less engine, through a stand-in NVIDIA Container Toolkit (tests/nvidia_standin/).

Docker itself is real in every step: it registers `--gpus` because the hook is on its PATH, runs the hook as a
prestart hook, runs the `nvidia` runtime wrapper, resolves CDI devices from a spec. The stand-in answers at those
interfaces as the toolkit does (NVIDIA_VISIBLE_DEVICES, NVIDIA_REQUIRE_CUDA with the toolkit's refusal, a
`nvidia-smi` listing two fake GPUs) but brings no libcuda and no /dev/nvidia*: torch inside sees no GPU. So these
tests prove the plumbing (flags, detection, per-variant requests, environment, failures, clean-up); kernels, NCCL
and cuDNN on real GPUs are scripts/gpu-check.sh's, on a host that has them.

The module restarts the engine (same data root) in three modes: hook only; nvidia as the default runtime; CDI only.
It puts the engine back as it found it when it ends.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from smoke.smoke_contract import CheckResult, read_summary
from tests.helpers.cli import ROOT, run_cli
from tests.helpers.nvidia_standin import (CDI_ONLY, DEFAULT_RUNTIME, DRIVER, HOOK_ONLY, PLAIN, NvidiaStandIn,
                                          require_restartable_engine)
from tests.helpers.tracked_container import engine_memlock
from tests.helpers.variants import TEST_REPOSITORY, TEST_VARIANT

MISMATCH = "nvidia-smi lists 2 GPU(s) but torch sees 0"


@pytest.fixture(scope="module")
def standin(docker_client, built_image, tmp_path_factory):
    require_restartable_engine()
    installed = NvidiaStandIn(tmp_path_factory.mktemp("nvidia-standin"))
    try:
        yield installed
    finally:
        installed.switch(PLAIN)


@pytest.fixture(scope="module")
def memlock(docker_client, built_image) -> str:
    """What this engine lets containers lock (this machine's sandboxed dockerd refuses unlimited)."""
    return engine_memlock(docker_client, built_image.image_id)


@pytest.fixture()
def with_cpu(test_overlay, tracked_tags, docker_client, built_image, tmp_path) -> Path:
    """The test overlay plus a `cpu` variant (no CUDA) whose image is the test image under the cpu tag: smoke decides
    GPUs from the variant's declaration, and a real CPU build is not to be had here (PyPI's torch 2.0.1 is CUDA)."""
    data = yaml.safe_load(test_overlay.read_text())
    data["variants"]["cpu"] = {"python": "3.11", "index": "default", "apt_snapshot": None,
                               "lock": "/nonexistent/no-lock.txt"}
    overlay = tmp_path / "with-cpu.yaml"
    overlay.write_text(yaml.safe_dump(data))
    docker_client.images.get(built_image.image_id).tag(tracked_tags.reference(f"{TEST_REPOSITORY}:2.0.1-cpu-py3.11"))
    return overlay


def smoke(overlay: Path, reports: Path, *args: str, memlock: str = "-1") -> subprocess.CompletedProcess:
    return run_cli("smoke", "--overlay", str(overlay), "--reports", str(reports), *args, timeout=1200,
                   env={"TORCHDEV_MEMLOCK": memlock})


def checks(reports: Path, variant: str) -> dict[str, CheckResult]:
    return {check.nodeid.split("::")[-1]: check for check in read_summary(reports / f"{variant}.json").checks}


def containers_now(docker_client) -> set[str]:
    return {container.id for container in docker_client.containers.list(all=True)}


# Hook only: nvidia-container-runtime-hook on dockerd's PATH, no runtime entry, no CDI. docker info says nothing.

def test_the_doctor_finds_the_hook_by_trying_it_and_compares_driver_and_kernels(standin, test_overlay):
    standin.switch(HOOK_ONLY)
    result = run_cli("doctor", "--overlay", str(test_overlay), timeout=300, env=standin.host_environment())
    lines = {line.split("  ")[0]: line for line in result.stdout.splitlines()}
    assert "a container started with --gpus all (nvidia-container-runtime-hook)" in lines["gpu runtime"], result.stdout
    assert "2 x NVIDIA Stand-in H200, driver 550.54.15" in lines["gpus"]
    assert " ok " in lines[f"driver for {TEST_VARIANT}"], result.stdout
    kernels = lines[f"kernels for {TEST_VARIANT}"]
    assert " fail " in kernels and "compute capability 9.0" in kernels and "sm_86" in kernels, result.stdout
    assert result.returncode == 1, "cu117's torch has no kernel for the Hopper-class stand-in GPUs"


def test_smoke_auto_gives_gpus_to_the_cuda_variant_only_and_fails_on_what_torch_cannot_see(
        standin, with_cpu, docker_client, tmp_path, memlock):
    standin.switch(HOOK_ONLY)
    calls = len(standin.hook_calls())
    result = smoke(with_cpu, tmp_path, "--variant", f"cpu,{TEST_VARIANT}", "--gpus", "auto", memlock=memlock)
    assert result.returncode == 1
    injected = [(call["visible"], call["outcome"]) for call in standin.hook_calls()[calls:]]
    assert injected == [("all", "injected 2")] * 2, "auto's probe and the CUDA variant's suite; never the cpu suite"
    cpu, cuda = checks(tmp_path, "cpu"), checks(tmp_path, TEST_VARIANT)
    assert {c.reason for name, c in cpu.items()
            if c.check == "gpu" and name != "test_a_run_that_asked_for_no_gpu_sees_none"} == {"no GPUs requested"}
    assert cpu["test_a_run_that_asked_for_no_gpu_sees_none"].outcome == "passed"
    assert sorted(name for name, c in cpu.items() if c.outcome == "failed") == [
        "test_cuda_build_matches_expectation", "test_the_driver_constraint_is_the_one_declared_for_this_cuda"], \
        "the cpu alias is the CUDA test image: its CUDA build and its driver constraint alone must fail"
    assert cuda["test_nvidia_smi_lists_requested_gpus"].outcome == "passed", "the fake GPUs reached the container"
    unavailable = cuda["test_cuda_is_available"]
    assert unavailable.outcome == "failed" and MISMATCH in unavailable.reason, unavailable
    assert f"torchdev: failed: {TEST_VARIANT}: test_gpu.py::test_cuda_is_available" in result.stderr


def test_a_driver_too_old_for_the_image_is_its_row_with_the_fix_and_leaves_no_container(
        standin, test_overlay, docker_client, tmp_path, memlock):
    standin.switch(HOOK_ONLY)
    before = containers_now(docker_client)
    # 465 is in none of the image's clauses; 510 would start: nvidia/cuda 11.7's brand clauses admit the 510 branch
    standin.configure(driver={**DRIVER, "version": "465.19.01", "cuda": "11.3"})
    try:
        result = smoke(test_overlay, tmp_path, "--variant", TEST_VARIANT, "--gpus", "all", memlock=memlock)
    finally:
        standin.configure(driver=DRIVER)
    assert result.returncode == 1
    assert standin.hook_calls()[-1]["outcome"] == "refused"
    assert (f"torchdev: failed: {TEST_VARIANT}: could not start: the host's NVIDIA driver is too old for this image "
            "(the NVIDIA toolkit refused: unsatisfied condition: cuda>=11.7): upgrade the driver") in result.stderr
    assert "Traceback" not in result.stderr and "could not start" in result.stdout
    assert containers_now(docker_client) == before


# nvidia as the default runtime (`nvidia-ctk runtime configure --set-as-default`): every container meets the hook.

def test_gpus_0_means_none_even_where_the_default_runtime_is_nvidia(standin, test_overlay, docker_client, tmp_path,
                                                                      built_image):
    standin.switch(DEFAULT_RUNTIME)
    calls = len(standin.hook_calls())
    plain = docker_client.containers.run(built_image.image_id, ["sh", "-c", "nvidia-smi -L | wc -l"], remove=True)
    assert plain.decode().strip() == "2", "the image says NVIDIA_VISIBLE_DEVICES=all: without void, GPUs arrive"
    result = smoke(test_overlay, tmp_path, "--variant", TEST_VARIANT, "--gpus", "0")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    suite_call = standin.hook_calls()[calls + 1:]
    assert [(c["visible"], c["outcome"]) for c in suite_call] == [("void", "left alone")]
    assert checks(tmp_path, TEST_VARIANT)["test_a_run_that_asked_for_no_gpu_sees_none"].outcome == "passed"


def test_compose_gpu_file_starts_on_the_toolkit_and_sees_the_gpus(standin, built_image, memlock):
    standin.switch(DEFAULT_RUNTIME)
    env = {**os.environ, "VARIANT": TEST_VARIANT, "TORCHDEV_REPOSITORY": TEST_REPOSITORY, "TORCHDEV_MEMLOCK": memlock}
    result = subprocess.run(["docker", "compose", "--project-name", "torchdev-gpu-standin", "-f", "compose.yaml", "-f",
                             "compose.gpu.yaml", "run", "--rm", "--entrypoint", "nvidia-smi", "train", "-L"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [line.split(":")[0] for line in result.stdout.splitlines() if line.startswith("GPU ")] == ["GPU 0", "GPU 1"]


def test_the_cuda_dev_container_config_finds_the_runtime_and_opens_with_gpus(standin, docker_client, built_image):
    from tests.helpers.devcontainer import devcontainer_cli, make_devcontainer, remove_everything

    standin.switch(DEFAULT_RUNTIME)
    base = Path(tempfile.mkdtemp(prefix="torchdev-devcontainer-"))
    try:
        opened = make_devcontainer(devcontainer_cli(), TEST_VARIANT, base, docker_client, built_image.references[0])
        outcome, log = opened.up()
        created = docker_client.containers.get(outcome["containerId"])
        assert created.attrs["HostConfig"]["DeviceRequests"], "the CLI saw the nvidia runtime and added --gpus all"
        listed = opened.exec("nvidia-smi", "-L")
        assert listed.returncode == 0 and listed.stdout.count("NVIDIA Stand-in H200") == 2, listed.stderr
    finally:
        leftovers = remove_everything(docker_client, base / "workspace")
        subprocess.run(["rm", "-rf", str(base)], check=False)
    assert leftovers == []


# CDI only (`nvidia-ctk cdi generate`, CDI enabled, no runtime, no hook): --gpus has no driver here.

def test_a_cdi_only_engine_is_found_and_smoke_asks_for_cdi_devices(standin, test_overlay, tmp_path, memlock):
    standin.switch(CDI_ONLY)
    doctor = run_cli("doctor", timeout=300)
    runtime = next(line for line in doctor.stdout.splitlines() if line.startswith("gpu runtime"))
    assert " ok " in runtime and "nvidia.com/gpu=0, nvidia.com/gpu=1, nvidia.com/gpu=all" in runtime, doctor.stdout
    calls = len(standin.hook_calls())
    result = smoke(test_overlay, tmp_path, "--variant", TEST_VARIANT, "--gpus", "auto", memlock=memlock)
    assert "(gpus: all via CDI)" in result.stdout
    assert standin.hook_calls()[calls:] == [], "CDI, not the hook, brought the GPUs"
    found = checks(tmp_path, TEST_VARIANT)
    assert found["test_nvidia_smi_lists_requested_gpus"].outcome == "passed"
    assert MISMATCH in found["test_cuda_is_available"].reason
