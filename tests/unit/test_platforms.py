"""linux/arm64 beside linux/amd64: the Platform value, the matrix's platforms, per-platform locks, plans, builds,
smoke runs and the doctor's platform check; then the committed images.yaml and CI overlay as they declare them."""
from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest

from tests.helpers.fake_engine import FakeEngine
from tests.helpers.variants import TEST_SETTINGS, make_plans, make_variant, plan_of
from tests.helpers.matrix_files import committed_matrix, write
from torchdev.checkout import read_plans
from torchdev.doctor import OK, WARN, platform_check
from torchdev.errors import TorchdevError, UsageError
from torchdev.gpus import GpuRequest
from torchdev.lock import (drift, format_header, lock_spec, lock_variants, regenerate_command, require_fitting_locks,
                           unfit_lock)
from torchdev.matrix import Flavour, Matrix, load_matrix
from torchdev.platforms import AMD64, ARM64, Platform, parse_list
from torchdev.presenter import Presentation, present
from torchdev.project import Paths, select_platforms
from torchdev.records import run_name
from torchdev.results import LockReport
from torchdev.smoke import CHECKS, SUITE_MOUNT, image_ids, run_all, select_checks, suite_arguments

ROOT = Path(__file__).resolve().parents[2]
OVERLAY = ROOT / "overlays" / "local-debian.yaml"
CPU = make_variant("cpu", cuda=None, platforms=(AMD64, ARM64))
CU118 = make_variant("cu118")


# The Platform value


@pytest.mark.parametrize("text, expected", [("linux/arm64", ARM64), ("linux/amd64", AMD64),
                                            ("linux/aarch64", ARM64), (" linux/x86_64 ", AMD64)])
def test_docker_names_and_the_engines_uname_names_parse_to_the_same_platform(text, expected):
    assert Platform.parse(text) == expected


@pytest.mark.parametrize("text", ["linux/s390x", "arm64", "windows/amd64", "linux/arm64/v8", ""])
def test_anything_else_is_a_usage_error_listing_the_platforms_torch_has_wheels_for(text):
    with pytest.raises(UsageError) as caught:
        Platform.parse(text)
    assert str(caught.value) == (f"unknown platform '{text}': torch 2.0 has wheels for linux/amd64, linux/arm64")


def test_each_platform_names_itself_for_uname_wheels_and_file_names():
    assert (str(ARM64), ARM64.machine, ARM64.wheel_platform, ARM64.slug) == (
        "linux/arm64", "aarch64", "aarch64-manylinux_2_28", "linux-arm64")
    assert (str(AMD64), AMD64.machine, AMD64.wheel_platform, AMD64.slug) == (
        "linux/amd64", "x86_64", "x86_64-manylinux_2_28", "linux-amd64")


def test_a_list_keeps_its_order_and_names_each_platform_once():
    assert parse_list("linux/arm64, linux/amd64,linux/aarch64") == (ARM64, AMD64)
    with pytest.raises(UsageError, match="^--platform linux/arm64,,linux/amd64: an empty name between commas: write "
                                         "--platform linux/arm64,linux/amd64$"):
        parse_list("linux/arm64,,linux/amd64")
    with pytest.raises(UsageError, match="unknown platform 'linux/riscv64'"):
        parse_list("linux/amd64,linux/riscv64")


# Locks per platform


def test_an_arm64_lock_is_resolved_for_aarch64_and_an_amd64_lock_there_drifts_naming_the_platform():
    matrix = Matrix(image=TEST_SETTINGS, variants=(CPU,), sources=())
    assert lock_spec(matrix=matrix, variant=CPU, platform=ARM64).platform == "aarch64-manylinux_2_28"
    amd64_header = format_header(lock_spec(matrix=matrix, variant=CPU, platform=AMD64))
    changes = drift(expected=lock_spec(matrix=matrix, variant=CPU, platform=ARM64), text=amd64_header + "\n")
    assert changes[0] == "platform x86_64-manylinux_2_28 in the lock, aarch64-manylinux_2_28 in the matrix"


def locked(path: Path, matrix: Matrix, variant, platform) -> None:
    path.write_text(format_header(lock_spec(matrix=matrix, variant=variant, platform=platform)) + "\n" + "".join(
        f"{name}=={version} --hash=sha256:{'a' * 64}\n" for name, version in
        (("torch", "2.0.1"), ("torchvision", "0.15.2"), ("torchaudio", "2.0.2"))))


def test_an_amd64_lock_copied_to_the_arm64_name_does_not_fit_and_the_fix_names_the_platform(tmp_path):
    variant = replace(CPU, lock=str(tmp_path / "cpu.txt"))
    matrix = Matrix(image=TEST_SETTINGS, variants=(variant,), sources=(ROOT / "images.yaml",))
    locked(tmp_path / "cpu.txt", matrix, variant, AMD64)
    locked(tmp_path / "cpu.linux-arm64.txt", matrix, variant, AMD64)
    assert unfit_lock(matrix=matrix, variant=variant, platform=AMD64) == ""
    problem = unfit_lock(matrix=matrix, variant=variant, platform=ARM64)
    assert problem == (f"the lock {tmp_path / 'cpu.linux-arm64.txt'} does not fit variant 'cpu' on linux/arm64 "
                       "(platform x86_64-manylinux_2_28 in the lock, aarch64-manylinux_2_28 in the matrix): run "
                       "`./dev lock --variant cpu --platform linux/arm64`")


def test_lock_check_judges_each_platform_of_each_variant(tmp_path):
    variant = replace(CPU, lock=str(tmp_path / "cpu.txt"))
    matrix = Matrix(image=TEST_SETTINGS, variants=(variant,), sources=(ROOT / "images.yaml",))
    locked(tmp_path / "cpu.txt", matrix, variant, AMD64)
    out = io.StringIO()
    problems = lock_variants(matrix, [variant], check=True, out=out)
    assert f"cpu on linux/amd64: {tmp_path / 'cpu.txt'} matches the matrix" in out.getvalue()
    assert present(LockReport(tuple(problems))) == Presentation(err=(
        f"torchdev: lock drift: variant 'cpu' on linux/arm64 ({tmp_path / 'cpu.linux-arm64.txt'}): no lock "
        "file: run `./dev lock --variant cpu --platform linux/arm64`",), status=1)
    assert lock_variants(matrix, [variant], check=True, platforms=lambda v: (AMD64,), out=io.StringIO()) == []
    locked(tmp_path / "cpu.linux-arm64.txt", matrix, variant, ARM64)
    assert lock_variants(matrix, [variant], check=True, out=io.StringIO()) == []


def test_a_variant_with_one_platform_regenerates_without_platform():
    matrix = Matrix(image=TEST_SETTINGS, variants=(CU118,), sources=())
    assert regenerate_command(matrix=matrix, variant=CU118) == "./dev lock --variant cu118"
    arm = replace(CPU, platforms=(ARM64,))
    assert regenerate_command(matrix=matrix, variant=arm, platform=ARM64) == "./dev lock --variant cpu"


# Smoke runs per platform


def test_a_smoke_run_is_named_after_the_image_plus_any_platform_but_amd64():
    runtime, devel = make_plans(CPU, flavours=(Flavour("runtime"), Flavour("devel")))
    assert run_name(runtime, AMD64) == "cpu" and run_name(runtime, ARM64) == "cpu.linux-arm64"
    assert run_name(devel, ARM64) == "cpu-devel.linux-arm64"


def test_checks_are_chosen_by_name_and_an_unknown_one_is_a_usage_error():
    assert select_checks(None) == ()
    assert select_checks(" environment,convergence ") == ("environment", "convergence")
    for empty in ("", " ", "environment,"):
        with pytest.raises(UsageError, match="^--checks "):
            select_checks(empty)
    with pytest.raises(UsageError) as caught:
        select_checks("environment,gpus")
    assert str(caught.value) == ("unknown check 'gpus': the suite's checks are environment, flavour, gpu, "
                                 "convergence, ddp, shm")


def test_each_check_is_a_module_of_the_suite():
    assert sorted(f"test_{check}.py" for check in CHECKS) == sorted(p.name for p in (ROOT / "smoke").glob("test_*.py"))


def test_the_suite_expects_the_platform_writes_its_own_reports_and_runs_only_the_chosen_modules():
    plan, = make_plans(CPU)
    command = suite_arguments(plan, gpus=GpuRequest(0), reports="/r", platform=ARM64,
                              checks=("environment", "convergence"))
    assert command[3:5] == [f"{SUITE_MOUNT}/test_environment.py", f"{SUITE_MOUNT}/test_convergence.py"]
    assert SUITE_MOUNT not in command
    pairs = dict(zip(command, command[1:]))
    assert pairs["--expect-platform"] == "linux/arm64" and pairs["--variant"] == "cpu.linux-arm64"
    assert "--junitxml=/r/cpu.linux-arm64.xml" in command and "--summary-json=/r/cpu.linux-arm64.json" in command
    default = suite_arguments(plan, gpus=GpuRequest(0), reports="/r")
    assert default[3] == SUITE_MOUNT and dict(zip(default, default[1:]))["--expect-platform"] == "linux/amd64"


def test_run_all_runs_the_suite_once_per_platform_of_the_plan_in_a_container_of_that_platform(tmp_path):
    plan = plan_of(CPU, platforms=(AMD64, ARM64))
    engine = FakeEngine()
    engine.add_image(*plan.references)
    runs = run_all(engine, [plan], images=image_ids(engine, [plan]), gpus={"cpu": GpuRequest(0)}, suite_dir=tmp_path,
                   reports_dir=tmp_path / "r", stop_at_missing=False, not_built={}, checks=("environment",),
                   out=io.StringIO())
    assert [run.image for run in runs] == ["cpu", "cpu.linux-arm64"]
    assert [spec.platform for spec in engine.ran] == ["linux/amd64", "linux/arm64"]
    assert all(spec.command[3] == f"{SUITE_MOUNT}/test_environment.py" for spec in engine.ran)


# The doctor


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


# The committed matrix and the CI overlay


def test_the_ci_overlays_cpu_is_arm64_only_with_an_arm64_lock_that_fits():
    matrix = committed_matrix(OVERLAY)
    cpu = matrix.variant("cpu")
    assert cpu.platforms == (ARM64,) and matrix.variant("cu117").platforms == (AMD64,)
    path = matrix.lock_file(cpu, ARM64)
    assert path == ROOT / "overlays" / "local-debian" / "cpu.lock.linux-arm64.txt" and path.is_file()
    text = path.read_text()
    assert drift(expected=lock_spec(matrix=matrix, variant=cpu, platform=ARM64), text=text) == []
    assert unfit_lock(matrix=matrix, variant=cpu, platform=ARM64) == ""
    assert text.splitlines()[1] == f"# Regenerate: {regenerate_command(matrix=matrix, variant=cpu, platform=ARM64)}"
    assert select_platforms(cpu, platform=None, native=AMD64) == (ARM64,), "an amd64 host builds it emulated"


def test_a_build_refuses_an_arm64_lock_that_does_not_fit_naming_the_platform(tmp_path):
    """An overlay that takes the CI overlay's arm64 lock for images.yaml's cpu (Python 3.10, the CPU index)."""
    if (ROOT / "images.local.yaml").exists():
        pytest.skip("images.local.yaml is present and would be merged in")
    overlay = write(tmp_path, "variants:\n  cpu:\n    lock: overlays/local-debian/cpu.lock.txt\n"
                              "    platforms: [linux/arm64]\n", name="arm.yaml")
    matrix = load_matrix(ROOT / "images.yaml", overlay=str(overlay))
    plans = read_plans(Paths.at(ROOT), matrix, [matrix.variant("cpu")])
    with pytest.raises(TorchdevError) as caught:
        require_fitting_locks(matrix, plans)
    message = str(caught.value)
    assert message.startswith("the lock overlays/local-debian/cpu.lock.linux-arm64.txt does not fit variant 'cpu' "
                              "on linux/arm64 (")
    assert "python 3.11 in the lock, 3.10 in the matrix" in message and "\n" not in message
    assert message.endswith(f": run `./dev lock --variant cpu --overlay {overlay}`")
