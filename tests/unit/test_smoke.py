"""torchdev/smoke.py, the host side of `./dev smoke`: the suite's command line and checks, container limits, the
summary table, and runs through the fake engine (a variant whose container does not start, hangs, or writes no
summary is its own row of the table, and the other variants still run), once per platform."""
from tests.helpers.summaries import check
from tests.helpers.variants import make_plans, make_variant
from torchdev.gpus import GpuRequest, Route
from torchdev.matrix import CudaRelease, Flavour
from torchdev.platforms import AMD64, ARM64
from torchdev.presenter import smoke_failures, smoke_table
from torchdev.smoke import SuiteRun, SuiteStatus, container_limits, suite_arguments

CU118 = make_variant("cu118")
CPU = make_variant("cpu", cuda=None, platforms=(AMD64, ARM64))
DEVEL = Flavour("devel", apt_packages=("g++",), cuda_toolchain="https://nvidia.example/redist",
                cuda_components=("cuda_nvcc",))
RELEASE = CudaRelease("11.8", "11.8.0", "cuda>=11.8 brand=tesla,driver>=470,driver<471")


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


def ran(variant, *checks):
    return SuiteRun(variant, SuiteStatus.RAN, tuple(check(c, o, r, index=i) for i, (c, o, r) in enumerate(checks)))


def test_the_table_shows_each_check_per_variant_and_failures_name_the_test():
    runs = [ran("cu117", ("environment", "passed", ""), ("environment", "failed", "expected CUDA 11.8, got 11.7\nmore"),
                ("gpu", "skipped", "no GPUs requested"), ("ddp", "passed", ""), ("ddp", "skipped", "x")),
            SuiteRun("cu118", SuiteStatus.NOT_BUILT, detail="image torchdev:cu118 is not built")]
    header, _, cu117, cu118 = smoke_table(runs).splitlines()
    assert header.split() == ["image", "environment", "flavour", "gpu", "convergence", "ddp", "shm"]
    assert "FAILED 1/2" in cu117 and "skipped: no GPUs requested" in cu117 and "passed 1 (+1 skipped)" in cu117
    assert cu118.split()[:3] == ["cu118", "not", "built"]
    assert smoke_failures(runs) == ["cu117: test_environment.py::t1: expected CUDA 11.8, got 11.7",
                              "cu118: not built: image torchdev:cu118 is not built"]


def test_locked_memory_is_raised_only_when_gpus_are_given_and_as_far_as_asked():
    assert [u.name for u in container_limits(GpuRequest(0))] == ["stack"]
    stack, memlock = container_limits(GpuRequest(-1, Route.DRIVER))
    assert (memlock.name, memlock.soft, memlock.hard) == ("memlock", -1, -1)
    assert container_limits(GpuRequest(1, Route.CDI), memlock=8388608)[1].hard == 8388608
