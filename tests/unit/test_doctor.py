"""The pure side of `invoke doctor`: driver versus CUDA, /dev/shm and disk thresholds, the engine's platform, the
report, its status."""
import pytest

from tests.helpers.variants import make_variant
from torchdev.doctor import (DESKTOP_GPU_FIX, FAIL, OK, SKIP, TOOLKIT_FIX, WARN, WSL_GPU_FIX, CheckResult, HostGpu,
                             compose_check, disk_check, driver_check, engine_unreachable, exit_status,
                             gpu_runtime_check, gpus_check, kernels_check, platform_check, plugin_check, shm_check,
                             version_tuple)
from torchdev.engine import CommandResult
from torchdev.gpus import GpuAccess, Route
from torchdev.platforms import AMD64, ARM64
from torchdev.presenter import doctor_report

GiB = 1 << 30
MiB = 1 << 20
CPU = make_variant("cpu", cuda=None, platforms=(AMD64, ARM64))
CU118 = make_variant("cu118")


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


def test_nvidia_smi_answers_become_gpus_with_driver_and_compute_capability():
    three = CommandResult(0, "NVIDIA H200, 550.54.15, 9.0\nNVIDIA H200, 550.54.15, 9.0\n"
                             "NVIDIA GeForce RTX 3090, 550.54.15, 8.6\n")
    result, gpus = gpus_check(three)
    assert result.status == OK and [(g.driver, g.capability) for g in gpus] == [("550.54.15", "9.0")] * 2 + [
        ("550.54.15", "8.6")]
    assert result.detail == "2 x NVIDIA H200, 1 x NVIDIA GeForce RTX 3090, driver 550.54.15"
    old_driver = gpus_check(CommandResult(0, "Tesla T4, 470.199.02\n"))[1]
    assert old_driver == [HostGpu("Tesla T4", "470.199.02", "")], "drivers before 510 report no compute_cap"
    assert gpus_check(None) == (CheckResult("gpus", SKIP, "no nvidia-smi: no NVIDIA driver on this host"), [])
    broken, none = gpus_check(CommandResult(9, "NVIDIA-SMI has failed because it couldn't communicate with the "
                                               "NVIDIA driver. Make sure that the latest NVIDIA driver is installed."))
    assert broken.status == FAIL and none == [] and "reboot" in broken.fix


CU118_REQUIRE = ("cuda>=11.8 brand=tesla,driver>=450,driver<451 brand=tesla,driver>=470,driver<471 "
                 "brand=unknown,driver>=470,driver<471 brand=nvidia,driver>=470,driver<471")


def test_a_driver_branch_the_image_exempts_is_a_warning_not_a_failure():
    """nvidia/cuda:11.8 images accept 470.x drivers on datacenter GPUs (forward compatibility)."""
    exempt = driver_check(variant=cuda_variant("11.8"), driver="470.199.02", constraint=CU118_REQUIRE)
    assert exempt.status == WARN and "brand=tesla,driver>=470,driver<471" in exempt.detail
    assert "cuda-compat" in exempt.fix and "upgrade the NVIDIA driver to >= 520.61.05" in exempt.fix
    assert driver_check(variant=cuda_variant("11.8"), driver="515.65.01", constraint=CU118_REQUIRE).status == FAIL
    assert driver_check(variant=cuda_variant("11.8"), driver="470.199.02", constraint="cuda>=11.8").status == FAIL


def test_kernels_for_each_gpu_are_compared_with_the_architectures_torch_was_built_for():
    cu117 = ["sm_37", "sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86"]
    h200 = [HostGpu("NVIDIA H200", "550.54.15", "9.0")]
    hopper = kernels_check(variant=cuda_variant("11.7"), gpus=h200, architectures=cu117, runs_elsewhere=["cu118"])
    assert hopper.status == FAIL and "compute capability 9.0" in hopper.detail and hopper.fix == "use cu118"
    ptx = kernels_check(variant=cuda_variant("11.7"), gpus=h200, architectures=cu117 + ["compute_86"],
                        runs_elsewhere=[])
    assert ptx.status == WARN and "PTX" in ptx.detail and "sm_90" in ptx.fix
    ampere = kernels_check(variant=cuda_variant("11.7"), gpus=[HostGpu("A10", "550.54.15", "8.6")],
                           architectures=cu117, runs_elsewhere=[])
    assert ampere.status == OK
    assert kernels_check(variant=cuda_variant("11.7"), gpus=h200, architectures=None, runs_elsewhere=[]).status == SKIP
    assert kernels_check(variant=cuda_variant("11.7"), gpus=[], architectures=cu117, runs_elsewhere=[]).status == SKIP


@pytest.mark.parametrize("setting, status, size", [(None, OK, "8.00 GiB"), ("16g", OK, "16.00 GiB"),
                                                   ("1024m", OK, "1.00 GiB"), ("512m", WARN, "512.00 MiB"),
                                                   ("67108864", WARN, "64.00 MiB")])
def test_the_shm_line_is_what_containers_get_from_torchdev_shm_size_and_warns_under_one_gib(setting, status, size):
    result = shm_check({"TORCHDEV_SHM_SIZE": setting} if setting else {})
    assert result.status == status and f"a /dev/shm of their own of {size}" in result.detail
    assert ("TORCHDEV_SHM_SIZE=8g (the default) or more" in result.fix) == (status == WARN)
    assert "ipc" not in result.detail + result.fix, "no container shares the host's IPC namespace any more"


def test_a_malformed_shm_setting_fails_the_line_naming_the_fix():
    result = shm_check({"TORCHDEV_SHM_SIZE": "8 gigs"})
    assert (result.status, result.detail) == (FAIL, "TORCHDEV_SHM_SIZE=8 gigs is not a size such as 8g or 512m")
    assert result.fix == "fix it or unset it (default 8g)"


@pytest.mark.parametrize("free, status", [(5 * GiB, WARN), (20 * GiB - 1, WARN), (20 * GiB, OK)])
def test_disk_under_20_gib_is_a_warning(free, status):
    assert disk_check(free=free, path="/var/lib/docker").status == status


def test_no_gpu_runtime_is_a_warning_whose_fix_fits_the_engine():
    found = gpu_runtime_check(GpuAccess(Route.CDI, "CDI devices nvidia.com/gpu=0"), desktop=False, wsl=False)
    assert (found.status, found.detail) == (OK, "GPUs by CDI: CDI devices nvidia.com/gpu=0")
    assert gpu_runtime_check(None, desktop=False, wsl=False).status == SKIP
    none = GpuAccess(Route.NONE, "no nvidia runtime, hook or CDI GPU devices in the engine")
    linux = gpu_runtime_check(none, desktop=False, wsl=False)
    assert linux.status == WARN and linux.fix == TOOLKIT_FIX and "nvidia-ctk runtime configure" in linux.fix
    assert linux.detail == "no nvidia runtime, hook or CDI GPU devices in the engine: CPU variants only"
    assert gpu_runtime_check(none, desktop=False, wsl=True).fix == f"{TOOLKIT_FIX}; {WSL_GPU_FIX}"
    assert gpu_runtime_check(none, desktop=True, wsl=True).fix == DESKTOP_GPU_FIX
    broken = gpu_runtime_check(GpuAccess(Route.DRIVER, "a container started", problem="no driver: fix it"),
                               desktop=False, wsl=False)
    assert broken.status == WARN and broken.fix == "no driver: fix it"


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
    lines = doctor_report(results).splitlines()
    assert lines[0].split() == ["check", "status", "detail"] and len(lines) == 2 + len(results)
    assert lines[2].split() == ["engine", "ok", "Docker", "26.1.5"]
    assert lines[4].endswith("64.00 MiB; fix: enlarge it")
    assert exit_status(results) == 0, "warnings and skips do not fail the doctor"
    assert exit_status(results + [CheckResult("engine", FAIL, "no Docker engine answers", "start it")]) == 1


def test_memlock_is_found_by_trying_and_a_refusal_names_the_setting():
    from torchdev.doctor import memlock_check
    from torchdev.engine import RunResult, RunStatus

    assert memlock_check(RunResult(RunStatus.EXITED, 0, ""), rootless=False).status == OK
    refused = memlock_check(RunResult(RunStatus.START_FAILED, None, "failed to create task for container: ... error "
                                      "setting rlimit type 8: operation not permitted: unknown"), rootless=True)
    assert refused.status == WARN and refused.detail.startswith("rootless Docker cannot lift the locked-memory limit")
    assert "TORCHDEV_MEMLOCK=8388608" in refused.fix
    assert memlock_check(None, rootless=False).status == SKIP


def test_with_no_engine_every_check_still_answers_and_the_plugins_are_asked_of_the_docker_cli():
    from tests.helpers.cli import ROOT
    from torchdev import doctor
    from torchdev.checkout import read_plans
    from torchdev.engine import EngineUnreachable
    from torchdev.matrix import load_matrix
    from torchdev.platforms import AMD64
    from torchdev.project import Paths

    def unreachable(timeout):
        raise EngineUnreachable("Error while fetching server API version: ('Connection aborted.', "
                                "FileNotFoundError(2, 'No such file or directory'))")

    answers = {"buildx": CommandResult(0, "github.com/docker/buildx v0.13.1 abc"),
               "compose": CommandResult(0, "Docker Compose version v2.29.1")}
    matrix = load_matrix(ROOT / "images.yaml")
    plans = read_plans(Paths.at(ROOT), matrix, [variant for variant in matrix.variants if variant.cuda])
    results = {result.name: result for result in doctor.diagnose(
        matrix, plans, connect=unreachable, native=AMD64, environ={"DOCKER_HOST": "unix:///nowhere.sock"},
        cli=answers.get, nvidia_smi=lambda: None)}
    assert (results["engine"].status, results["buildx"].status, results["compose"].status) == (FAIL, OK, OK)
    assert results["compose"].detail == "Docker Compose version v2.29.1"
    assert [name for name, result in results.items() if result.detail == "needs the engine"] == \
        ["platform", "gpu runtime", "memlock"]
    assert results["engine"].detail == "no Docker engine answers: no socket at unix:///nowhere.sock"


def test_an_engine_of_the_hosts_platform_where_every_variant_is_native_is_ok():
    result = platform_check(engine_platform="linux/x86_64", host=AMD64, variants=(CPU, CU118))
    assert (result.status, result.detail) == (OK, "the engine runs linux/amd64: natively cpu, cu118")


def test_an_arm64_engine_warns_that_the_cuda_variants_are_amd64_only():
    result = platform_check(engine_platform="linux/aarch64", host=ARM64,
                            variants=(CPU, CU118, make_variant("cu117", cuda="11.7")))
    assert result.status == WARN
    assert result.detail == ("the engine runs linux/arm64: natively cpu; emulated only: cu118 (linux/amd64 only), "
                             "cu117 (linux/amd64 only)")
    assert result.fix.startswith("use cpu here; build and run the others on a host of their platform")


def test_an_engine_of_another_platform_than_the_host_is_told_to_pass_platform():
    result = platform_check(engine_platform="linux/arm64", host=AMD64, variants=(CPU, CU118))
    assert result.status == WARN and "but this host is linux/amd64, which builds default to" in result.detail
    assert result.fix == "pass --platform linux/arm64 to build and smoke for the engine's own platform"


def test_an_engine_torch_has_no_wheels_for_is_a_warning():
    result = platform_check(engine_platform="linux/s390x", host=AMD64, variants=(CPU,))
    assert result.status == WARN and "which torch 2.0 has no wheels for" in result.detail
