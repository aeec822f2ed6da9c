"""torchdev/smoke.py, the host side of `./dev smoke`: the suite's command line and checks, container limits, the
summary table, and runs through the fake engine (a variant whose container does not start, hangs, or writes no
summary is its own row of the table, and the other variants still run), once per platform."""
import io
from pathlib import Path

import pytest

from smoke.smoke_contract import PASSED, write_summary
from tests.helpers.fake_engine import FakeEngine
from tests.helpers.summaries import check, summary
from tests.helpers.variants import make_plans, make_variant, plan_of
from torchdev.engine import RunResult, RunStatus
from torchdev.errors import TorchdevError, UsageError
from torchdev.gpus import GpuAccess, GpuRequest, Route
from torchdev.matrix import CudaRelease, Flavour
from torchdev.platforms import AMD64, ARM64
from torchdev.presenter import smoke_failures, smoke_table
from torchdev.smoke import (CHECKS, REPORTS_MOUNT, SUITE_MOUNT, SuiteStatus, container_limits, image_ids, run_all,
                            select_checks, suite_arguments, untested_gpus)

CU118 = make_variant("cu118")
CPU = make_variant("cpu", cuda=None, platforms=(AMD64, ARM64))
DEVEL = Flavour("devel", apt_packages=("g++",), cuda_toolchain="https://nvidia.example/redist",
                cuda_components=("cuda_nvcc",))
RELEASE = CudaRelease("11.8", "11.8.0", "cuda>=11.8 brand=tesla,driver>=470,driver<471")
START_ERROR = ("failed to create task for container: failed to create shim task: OCI runtime create failed: "
               "runc create failed: unable to start container process: error during container init: error running "
               "hook #0: error running hook: exit status 1, stdout: , stderr: Auto-detected mode as 'legacy'\n"
               "nvidia-container-cli: requirement error: unsatisfied condition: cuda>=11.8, please update your "
               "driver to a newer version, or use an earlier cuda container: unknown")
ROOT = Path(__file__).resolve().parents[2]


def expectations(plan):
    command = suite_arguments(plan, gpus=GpuRequest(0), reports="/r")
    return {option[len("--expect-"):]: value for option, value in zip(command, command[1:])
            if option.startswith("--expect-")}


def test_the_suite_receives_the_variants_declared_contents():
    plan, = make_plans(CU118)
    command = suite_arguments(plan, gpus=GpuRequest(2, Route.DRIVER), reports="/reports")
    pairs = dict(zip(command, command[1:]))
    assert pairs["--expect-cuda"] == "11.8" and pairs["--expect-cudnn-major"] == "8"
    assert pairs["--expect-python"] == "3.10" and pairs["--gpus"] == "2"
    assert "--junitxml=/reports/cu118.xml" in command and "--summary-json=/reports/cu118.json" in command


def test_a_cpu_variant_expects_no_cuda_and_no_cudnn():
    command = suite_arguments(make_plans(CPU)[0], gpus=GpuRequest(0), reports="/r")
    assert command[command.index("--expect-cuda") + 1] == "none"
    assert "--expect-cudnn-major" not in command


def test_a_devel_image_expects_its_flavour_its_nvcc_and_the_driver_constraint_of_its_cuda():
    runtime, devel = make_plans(CU118, flavours=(Flavour("runtime"), DEVEL), releases=(RELEASE,))
    assert (expectations(runtime)["flavour"], expectations(runtime)["cuda-toolchain"]) == ("runtime", "none")
    assert expectations(runtime)["require-cuda"] == RELEASE.nvidia_require_cuda
    assert expectations(devel)["flavour"] == "devel" and expectations(devel)["cuda-toolchain"] == "11.8.0"
    assert "--junitxml=/r/cu118-devel.xml" in suite_arguments(devel, gpus=GpuRequest(0), reports="/r")


def test_runtime_expects_what_it_leaves_to_devel_to_be_absent_and_devel_expects_everything():
    devel_flavour = Flavour("devel", lock_packages=("triton", "cmake", "lit"))
    runtime, devel = make_plans(CU118, flavours=(Flavour("runtime"), devel_flavour))
    assert expectations(runtime)["left-out"] == "triton cmake lit"
    assert expectations(devel)["left-out"] == "none"


def test_a_cuda_version_without_a_release_entry_requires_the_bare_version_and_cpu_nothing():
    assert expectations(make_plans(CU118)[0])["require-cuda"] == "cuda>=11.8"
    assert expectations(make_plans(CPU)[0])["require-cuda"] == "none"


def test_locked_memory_is_raised_only_when_gpus_are_given_and_as_far_as_asked():
    assert [u.name for u in container_limits(GpuRequest(0))] == ["stack"]
    stack, memlock = container_limits(GpuRequest(-1, Route.DRIVER))
    assert (memlock.name, memlock.soft, memlock.hard) == ("memlock", -1, -1)
    assert container_limits(GpuRequest(1, Route.CDI), memlock=8388608)[1].hard == 8388608


def suite_passes(spec):
    """What the suite does in a good image: it writes its JSON summary into the reports mount and exits 0."""
    reports = next(Path(m.source) for m in spec.mounts if m.target == REPORTS_MOUNT)
    variant = spec.command[spec.command.index("--variant") + 1]
    write_summary(reports / f"{variant}.json", summary(check("environment", PASSED), variant=variant))
    return RunResult(RunStatus.EXITED, 0, "1 passed")


@pytest.fixture()
def engine():
    return FakeEngine()


@pytest.fixture()
def plans(engine):
    plans = make_plans(make_variant("cu118"), make_variant("cpu", cuda=None))
    for plan in plans:
        engine.add_image(plan.primary_reference)
        engine.runs[plan.primary_reference] = suite_passes
    return plans


def run(engine, plans, tmp_path, gpus=None, **options):
    gpus = gpus or {plan.variant.name: GpuRequest(0) for plan in plans}
    return run_all(engine, plans, images=image_ids(engine, plans), gpus=gpus, suite_dir=tmp_path / "suite",
                   reports_dir=tmp_path / "reports", **{"stop_at_missing": False, "not_built": {}, **options})


def test_a_container_that_cannot_start_is_its_variants_row_and_the_others_still_run(engine, plans, tmp_path):
    engine.runs[plans[0].primary_reference] = RunResult(RunStatus.START_FAILED, None, START_ERROR)
    runs = run(engine, plans, tmp_path)
    assert [(r.image, r.status) for r in runs] == [("cu118", SuiteStatus.START_FAILED), ("cpu", SuiteStatus.RAN)]
    assert runs[0].detail.startswith("the host's NVIDIA driver is too old for this image (the NVIDIA toolkit "
                                     "refused: unsatisfied condition: cuda>=11.8): upgrade the driver")
    table = smoke_table(runs).splitlines()
    assert table[2].split()[:4] == ["cu118", "could", "not", "start"] and table[3].startswith("cpu  ")
    assert smoke_failures(runs)[0].startswith("cu118: could not start: ")
    assert len(engine.ran) == 2


def test_a_container_past_its_deadline_is_reported_as_timed_out(engine, plans, tmp_path):
    engine.runs[plans[1].primary_reference] = RunResult(RunStatus.TIMED_OUT, None, "collected 30 items\n")
    runs = run(engine, plans, tmp_path)
    assert [r.status for r in runs] == [SuiteStatus.RAN, SuiteStatus.TIMED_OUT]
    assert runs[1].detail.startswith("timed out after 900 s and was killed")
    assert smoke_failures(runs) == [f"cpu: timed out: {runs[1].detail}"]


def test_a_suite_that_writes_no_summary_says_so_with_its_exit_status(engine, plans, tmp_path):
    engine.runs[plans[0].primary_reference] = RunResult(RunStatus.EXITED, 4, "ERROR: usage: ...")
    runs = run(engine, plans, tmp_path)
    assert runs[0].status is SuiteStatus.NO_SUMMARY and "exited 4 without a summary" in runs[0].detail


def test_a_suite_whose_summary_is_not_one_is_its_variants_row_and_the_others_still_run(engine, plans, tmp_path):
    def cut_short(spec):
        suite_passes(spec)
        written = next(Path(m.source) for m in spec.mounts if m.target == REPORTS_MOUNT) / "cu118.json"
        written.write_text(written.read_text()[:30])
        return RunResult(RunStatus.EXITED, 0, "1 passed")
    engine.runs[plans[0].primary_reference] = cut_short
    runs = run(engine, plans, tmp_path)
    assert [r.status for r in runs] == [SuiteStatus.BAD_SUMMARY, SuiteStatus.RAN]
    assert runs[0].detail.startswith("the suite exited 0 with a summary (cu118.json) that is not one: it is not JSON")
    assert smoke_table(runs).splitlines()[2].split()[:5] == ["cu118", "wrote", "a", "bad", "summary"]
    assert not (tmp_path / "reports" / "cu118.json").exists() and (tmp_path / "reports" / "cpu.json").is_file()


def test_a_missing_image_is_a_row_under_all_and_an_error_naming_the_build_command_otherwise(engine, tmp_path):
    plans = make_plans(make_variant("cu118"))
    runs = run(engine, plans, tmp_path)
    assert runs[0].status is SuiteStatus.NOT_BUILT and "./dev build --variant cu118" in runs[0].detail
    with pytest.raises(TorchdevError, match=r"image torchdev:2.0.1-cu118-py3.10 is not built: run `./dev build"):
        run(engine, plans, tmp_path, stop_at_missing=True)
    assert engine.ran == []


def test_the_suite_runs_read_only_with_its_reports_folder_shm_and_a_real_pid_1(engine, plans, tmp_path):
    run(engine, plans[:1], tmp_path)
    [spec] = engine.ran
    assert [(m.target, m.read_only) for m in spec.mounts] == [("/opt/torchdev-smoke", True), (REPORTS_MOUNT, False)]
    assert spec.shm_size == "1g" and spec.init and spec.gpus.count == 0 and not spec.gpus.cdi
    assert spec.environment["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert [limit.name for limit in spec.limits] == ["stack"]
    assert (tmp_path / "reports" / "cu118.json").is_file()


def test_each_variant_gets_its_own_gpus_and_locked_memory_only_with_them(engine, plans, tmp_path):
    gpus = {"cu118": GpuRequest(-1, Route.CDI, chosen_by_auto=True), "cpu": GpuRequest(0, chosen_by_auto=True)}
    run(engine, plans, tmp_path, gpus=gpus, memlock=8388608)
    cu118, cpu = engine.ran
    assert cu118.gpus.cdi == ("nvidia.com/gpu=all",) and "NVIDIA_VISIBLE_DEVICES" not in cu118.environment
    assert ("memlock", 8388608) in [(limit.name, limit.hard) for limit in cu118.limits]
    assert cpu.gpus.count == 0 and not cpu.gpus.cdi and "--gpus" in cpu.command
    assert cpu.command[cpu.command.index("--gpus") + 1] == "0"


def test_a_cuda_variant_that_auto_ran_without_gpus_is_said_in_words(engine, plans, tmp_path):
    gpus = {"cu118": GpuRequest(0, chosen_by_auto=True), "cpu": GpuRequest(0, chosen_by_auto=True)}
    runs = run(engine, plans, tmp_path, gpus=gpus)
    access = GpuAccess(Route.NONE, "no nvidia runtime, hook or CDI GPU devices in the engine")
    [note] = untested_gpus(runs, plans=plans, gpus=gpus, access=access)
    assert note.startswith("cu118: no GPU was tested: --gpus auto found no nvidia runtime, hook or CDI GPU devices")
    assert untested_gpus(runs, plans=plans, gpus={**gpus, "cu118": GpuRequest(0)}, access=access) == [], \
        "--gpus none asked for no GPUs: nothing to say"


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
