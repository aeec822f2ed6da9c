"""The stand-in NVIDIA toolkit (tests/nvidia_standin/) behaves like the real one at the interface Docker uses: as a
prestart hook it reads the container state on stdin and the bundle's config.json, leaves `void` alone, refuses an
unsatisfied NVIDIA_REQUIRE_CUDA or an unknown device with the toolkit's own messages, and otherwise injects a
nvidia-smi that lists the visible fake GPUs. (That Docker calls it is tests/integration/test_gpu_standin.py's.)"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.cli import ROOT
from tests.helpers.nvidia_standin import DRIVER, GPUS

SOURCE = ROOT / "tests" / "nvidia_standin"


@pytest.fixture()
def toolkit(tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in ("nvidia-container-runtime-hook", "nvidia-smi"):
        shutil.copy(SOURCE / name, folder / name)
    (folder / "standin.json").write_text(json.dumps({"gpus": GPUS, "driver": DRIVER, "log": str(tmp_path / "log")}))
    return folder


def prestart(toolkit, tmp_path, *env: str) -> tuple[subprocess.CompletedProcess, Path]:
    bundle = tmp_path / "bundle"
    (bundle / "rootfs" / "usr" / "bin").mkdir(parents=True)
    (bundle / "config.json").write_text(json.dumps({"root": {"path": "rootfs"},
                                                    "process": {"env": ["PATH=/usr/bin", *env]}}))
    state = json.dumps({"ociVersion": "1.0.2", "id": "c0ffee", "status": "creating", "bundle": str(bundle)})
    result = subprocess.run([sys.executable, str(toolkit / "nvidia-container-runtime-hook"), "prestart"], input=state,
                            capture_output=True, text=True, timeout=30, check=False)
    return result, bundle / "rootfs"


def smi(rootfs: Path, *args: str) -> str:
    return subprocess.run(["sh", str(rootfs / "usr" / "bin" / "nvidia-smi"), *args], capture_output=True, text=True,
                          env={"NVIDIA_STANDIN_DIR": str(rootfs / "etc" / "nvidia-standin")}, check=True).stdout


def test_void_or_unset_leaves_the_container_alone(toolkit, tmp_path):
    for env in (["NVIDIA_VISIBLE_DEVICES=void"], []):
        result, rootfs = prestart(toolkit, tmp_path, *env)
        assert result.returncode == 0 and not (rootfs / "usr" / "bin" / "nvidia-smi").exists()
        shutil.rmtree(tmp_path / "bundle")


def test_all_injects_a_nvidia_smi_listing_every_fake_gpu_and_the_last_value_wins(toolkit, tmp_path):
    result, rootfs = prestart(toolkit, tmp_path, "NVIDIA_VISIBLE_DEVICES=void", "NVIDIA_VISIBLE_DEVICES=all")
    assert result.returncode == 0, result.stderr
    assert smi(rootfs, "-L").splitlines() == [f"GPU {i}: {g['name']} (UUID: {g['uuid']})" for i, g in enumerate(GPUS)]
    assert smi(rootfs, "--query-gpu=name,driver_version,compute_cap").splitlines()[0] == \
        "NVIDIA Stand-in H200, 550.54.15, 9.0"
    assert "CUDA Version: 12.4" in smi(rootfs)


def test_an_index_list_gives_those_gpus_and_an_unknown_one_is_refused_like_the_toolkit(toolkit, tmp_path):
    result, rootfs = prestart(toolkit, tmp_path, "NVIDIA_VISIBLE_DEVICES=1")
    assert result.returncode == 0 and smi(rootfs, "-L").splitlines() == [f"GPU 0: {GPUS[1]['name']} (UUID: "
                                                                         f"{GPUS[1]['uuid']})"]
    shutil.rmtree(tmp_path / "bundle")
    refused, _ = prestart(toolkit, tmp_path, "NVIDIA_VISIBLE_DEVICES=0,5")
    assert refused.returncode == 1 and "nvidia-container-cli: device error: 5: unknown device" in refused.stderr


@pytest.mark.parametrize("require, allowed", [
    ("cuda>=12.4", True), ("cuda>=12.5", False),
    ("cuda>=12.5 brand=nvidia,driver>=550,driver<551", True),   # space: alternatives; comma: all must hold
    ("cuda>=12.5 brand=tesla,driver>=550,driver<551", False),
])
def test_nvidia_require_cuda_is_checked_as_the_toolkit_does(toolkit, tmp_path, require, allowed):
    result, rootfs = prestart(toolkit, tmp_path, "NVIDIA_VISIBLE_DEVICES=all", f"NVIDIA_REQUIRE_CUDA={require}")
    assert (result.returncode == 0) == allowed, result.stderr
    if not allowed:
        assert result.stderr.strip() == ("nvidia-container-cli: requirement error: unsatisfied condition: cuda>=12.5, "
                                         "please update your driver to a newer version, or use an earlier cuda "
                                         "container")
        assert not (rootfs / "usr" / "bin" / "nvidia-smi").exists()


def test_every_call_is_logged(toolkit, tmp_path):
    prestart(toolkit, tmp_path, "NVIDIA_VISIBLE_DEVICES=all")
    [entry] = [json.loads(line) for line in (tmp_path / "log").read_text().splitlines()]
    assert (entry["id"], entry["visible"], entry["outcome"]) == ("c0ffee", "all", "injected 2")


def test_the_gpu_check_script_says_in_one_line_when_its_python_has_no_torch(tmp_path):
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'torch'\" >&2\nexit 1\n")
    python.chmod(0o755)
    result = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-check.sh"), str(tmp_path / "report.md")],
                            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "PYTHON": str(python)},
                            timeout=60, check=False)
    assert result.returncode == 1 and not (tmp_path / "report.md").exists()
    assert result.stderr.strip() == f"gpu-check: {python} cannot run the check: ModuleNotFoundError: No module named " \
                                    "'torch'"
