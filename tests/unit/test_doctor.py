"""The pure side of `invoke doctor`: driver versus CUDA, /dev/shm and disk thresholds, the report, its status."""
import pytest

from torchdev.doctor import (DESKTOP_GPU_FIX, FAIL, OK, SKIP, TOOLKIT_FIX, WARN, WSL_GPU_FIX, CheckResult,
                             compose_check, disk_check, driver_check, engine_unreachable, exit_status,
                             gpu_runtime_check, gpus_check, plugin_check, report, shm_check, version_tuple)
from torchdev.engine import CommandResult
from tests.helpers.variants import make_variant

GiB = 1 << 30
MiB = 1 << 20


def cuda_variant(cuda: str):
    return make_variant(f"cu{cuda.replace('.', '')}", cuda=cuda)


@pytest.mark.parametrize("older, newer", [("470.1", "515.43.04"), ("96.43.23", "515.43.04"),
                                          ("515.43.04", "515.65.01"), ("520.61", "520.61.05"),
                                          ("999.9", "1000.1")])
def test_driver_versions_compare_by_number_not_by_text(older, newer):
    assert version_tuple(older) < version_tuple(newer)


@pytest.mark.parametrize("cuda, driver, status", [
    ("11.7", "515.43.04", OK), ("11.7", "535.104.05", OK), ("11.7", "470.1", FAIL), ("11.7", "510.47.03", FAIL),
    ("11.8", "520.61.05", OK), ("11.8", "550.54.15", OK), ("11.8", "515.65.01", FAIL), ("11.8", "520.56.06", FAIL)])
def test_the_driver_must_reach_the_plain_minimum_of_each_cuda(cuda, driver, status):
    assert driver_check(variant=cuda_variant(cuda), driver=driver).status == status


def test_a_driver_too_old_names_the_minimum_and_the_error_it_causes():
    result = driver_check(variant=cuda_variant("11.8"), driver="515.65.01")
    assert result.name == "driver for cu118"
    assert result.detail == "CUDA 11.8 needs >= 520.61.05, driver 515.65.01"
    assert "upgrade the NVIDIA driver to >= 520.61.05" in result.fix
    assert "unsatisfied condition: cuda>=11.8" in result.fix


def test_an_unknown_cuda_is_a_warning_and_no_driver_is_a_skip():
    unknown = driver_check(variant=cuda_variant("12.1"), driver="535.104.05")
    assert unknown.status == WARN and "no minimum driver known for CUDA 12.1" in unknown.detail
    assert driver_check(variant=cuda_variant("11.8"), driver=None).status == SKIP


def test_nvidia_smi_answers_become_gpus_and_the_driver():
    two = CommandResult(0, "NVIDIA H200, 550.54.15\nNVIDIA H200, 550.54.15\nNVIDIA GeForce RTX 3090, 550.54.15\n")
    result, driver = gpus_check(two)
    assert (result.status, driver) == (OK, "550.54.15")
    assert result.detail == "2 x NVIDIA H200, 1 x NVIDIA GeForce RTX 3090, driver 550.54.15"
    assert gpus_check(None) == (CheckResult("gpus", SKIP, "no nvidia-smi: no NVIDIA driver on this host"), None)
    broken, none = gpus_check(CommandResult(9, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA "
                                       "driver. Make sure that the latest NVIDIA driver is installed and running."))
    assert broken.status == FAIL and none is None and "reboot" in broken.fix


@pytest.mark.parametrize("size, status", [(64 * MiB, WARN), (GiB - 1, WARN), (GiB, OK), (24 * GiB, OK)])
def test_shm_under_one_gib_is_a_warning_naming_both_fixes(size, status):
    result = shm_check(size)
    assert result.status == status and "64 MiB" in result.detail
    assert ("--shm-size" in result.fix and "ipc: host" in result.fix) == (status == WARN)


def test_no_dev_shm_is_a_skip():
    assert shm_check(None).status == SKIP


@pytest.mark.parametrize("free, status", [(5 * GiB, WARN), (20 * GiB - 1, WARN), (20 * GiB, OK)])
def test_disk_under_20_gib_is_a_warning(free, status):
    assert disk_check(free=free, path="/var/lib/docker").status == status


def test_no_gpu_runtime_is_a_warning_whose_fix_fits_the_engine():
    assert gpu_runtime_check(True, desktop=False, wsl=False).status == OK
    assert gpu_runtime_check(None, desktop=False, wsl=False).status == SKIP
    linux = gpu_runtime_check(False, desktop=False, wsl=False)
    assert linux.status == WARN and linux.fix == TOOLKIT_FIX and "nvidia-ctk runtime configure" in linux.fix
    assert gpu_runtime_check(False, desktop=False, wsl=True).fix == f"{TOOLKIT_FIX}; {WSL_GPU_FIX}"
    assert gpu_runtime_check(False, desktop=True, wsl=True).fix == DESKTOP_GPU_FIX


def test_the_engine_failure_names_the_cause_from_the_sdk_message():
    missing = engine_unreachable("Error while fetching server API version: ('Connection aborted.', "
                                 "FileNotFoundError(2, 'No such file or directory'))", host="unix:///nonexistent")
    assert missing.status == FAIL and missing.detail == "no Docker engine answers: no socket at unix:///nonexistent"
    assert "systemctl start docker" in missing.fix and "docker context inspect" in missing.fix
    denied = engine_unreachable("Error while fetching server API version: ('Connection aborted.', "
                                "PermissionError(13, 'Permission denied'))", host="unix:///var/run/docker.sock")
    assert "permission denied" in denied.detail and "usermod -aG docker" in denied.fix


def test_plugins_and_compose_v2():
    assert plugin_check("buildx", CommandResult(0, "github.com/docker/buildx v0.13.1 abc"), fix="x").status == OK
    assert plugin_check("buildx", CommandResult(1, "docker: 'buildx' is not a docker command."), fix="x").status == FAIL
    assert plugin_check("buildx", None, fix="x").detail == "the docker command is not on PATH"
    assert compose_check(CommandResult(0, "Docker Compose version v2.29.1")).status == OK
    assert compose_check(CommandResult(0, "Docker Compose version 2.26.1-4")).status == OK
    assert compose_check(CommandResult(0, "docker-compose version 1.29.2, build unknown")).status == FAIL


def test_the_report_has_one_line_per_check_with_fixes_only_where_something_is_wrong():
    results = [CheckResult("engine", OK, "Docker 26.1.5", "never shown"), CheckResult("gpus", SKIP, "no nvidia-smi"),
               CheckResult("/dev/shm", WARN, "64.00 MiB", "enlarge it")]
    lines = report(results).splitlines()
    assert lines[0].split() == ["check", "status", "detail"] and len(lines) == 2 + len(results)
    assert lines[2].split() == ["engine", "ok", "Docker", "26.1.5"]
    assert lines[4].endswith("64.00 MiB; fix: enlarge it")
    assert exit_status(results) == 0, "warnings and skips do not fail the doctor"
    assert exit_status(results + [CheckResult("engine", FAIL, "no Docker engine answers", "start it")]) == 1
