"""The host side of `invoke smoke`: GPU requests, the suite's command line and the summary table."""
import pytest

from tests.helpers.variants import make_variant
from torchdev.errors import TorchdevError, UsageError
from torchdev.smoke import SuiteRun, SuiteStatus, failures, parse_gpus, suite_arguments, summary_table

CU118 = make_variant("cu118")
CPU = make_variant("cpu", cuda=None)


@pytest.mark.parametrize("value, has_gpus, count", [
    ("auto", True, -1), ("auto", False, 0), ("none", True, 0), ("0", False, 0), ("all", True, -1), ("2", True, 2)])
def test_gpu_requests(value, has_gpus, count):
    assert parse_gpus(value, engine_has_gpus=has_gpus).count == count


@pytest.mark.parametrize("value", ["all", "1"])
def test_asking_for_gpus_without_the_nvidia_runtime_names_the_toolkit(value):
    with pytest.raises(TorchdevError, match="NVIDIA Container Toolkit.*nvidia-ctk runtime configure"):
        parse_gpus(value, engine_has_gpus=False)


def test_a_malformed_gpu_request_is_a_usage_error():
    with pytest.raises(UsageError, match="--gpus must be auto, all, none or a count, not 'two'"):
        parse_gpus("two", engine_has_gpus=True)


def test_the_suite_receives_the_variants_declared_contents():
    command = suite_arguments(CU118, gpus=parse_gpus("2", engine_has_gpus=True), reports="/reports")
    pairs = dict(zip(command, command[1:]))
    assert pairs["--expect-cuda"] == "11.8" and pairs["--expect-cudnn-major"] == "8"
    assert pairs["--expect-python"] == "3.10" and pairs["--gpus"] == "2"
    assert "--junitxml=/reports/cu118.xml" in command and "--summary-json=/reports/cu118.json" in command


def test_a_cpu_variant_expects_no_cuda_and_no_cudnn():
    command = suite_arguments(CPU, gpus=parse_gpus("none", engine_has_gpus=False), reports="/r")
    assert command[command.index("--expect-cuda") + 1] == "none"
    assert "--expect-cudnn-major" not in command


def ran(variant, *checks):
    return SuiteRun(variant, SuiteStatus.RAN, tuple({"check": c, "nodeid": f"test_{c}.py::t{i}", "outcome": o,
                                                     "reason": r} for i, (c, o, r) in enumerate(checks)))


def test_the_table_shows_each_check_per_variant_and_failures_name_the_test():
    runs = [ran("cu117", ("environment", "passed", ""), ("environment", "failed", "expected CUDA 11.8, got 11.7\nmore"),
                ("gpu", "skipped", "no GPUs requested"), ("ddp", "passed", ""), ("ddp", "skipped", "x")),
            SuiteRun("cu118", SuiteStatus.NOT_BUILT, detail="image torchdev:cu118 is not built")]
    header, _, cu117, cu118 = summary_table(runs).splitlines()
    assert header.split() == ["variant", "environment", "gpu", "convergence", "ddp", "shm"]
    assert "FAILED 1/2" in cu117 and "skipped: no GPUs requested" in cu117 and "passed 1 (+1 skipped)" in cu117
    assert cu118.split()[:3] == ["cu118", "not", "built"]
    assert failures(runs) == ["cu117: test_environment.py::t1: expected CUDA 11.8, got 11.7",
                              "cu118: not built: image torchdev:cu118 is not built"]


def test_locked_memory_is_unlimited_only_when_gpus_are_given():
    from torchdev.smoke import container_limits

    assert [u.name for u in container_limits(parse_gpus("none", engine_has_gpus=False))] == ["stack"]
    assert [u.name for u in container_limits(parse_gpus("all", engine_has_gpus=True))] == ["stack", "memlock"]
