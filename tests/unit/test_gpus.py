"""How containers get GPUs: detection from every shape `docker info` takes, per-variant requests, and the
NVIDIA toolkit's refusals turned into a cause and a fix."""

import pytest

from tests.helpers.context import make_context, output
from tests.helpers.fake_engine import FakeEngine
from tests.helpers.variants import make_variant
from torchdev.engine import GpuDevices, RunResult, RunStatus
from torchdev import commands
from torchdev.errors import UsageError
from torchdev.gpus import GpuAccess, Route, check_option, detect, parse_option, request_for, start_failure
from torchdev.runner import execute

RUNC = {"Runtimes": {"io.containerd.runc.v2": {}, "runc": {}}}
NO_DRIVER = ('Error response from daemon: could not select device driver "" with capabilities: [[gpu]]')
HOOK_FAILED = ("failed to create task for container: failed to create shim task: OCI runtime create failed: runc "
               "create failed: unable to start container process: error during container init: error running hook "
               "#0: error running hook: exit status 1, stdout: , stderr: Auto-detected mode as 'legacy'\n"
               "nvidia-container-cli: requirement error: unsatisfied condition: cuda>=11.8, please update your driver "
               "to a newer version, or use an earlier cuda container: unknown")
CU118, CPU = make_variant("cu118"), make_variant("cpu", cuda=None)


@pytest.mark.parametrize("info, spec_devices, probe, route, evidence", [
    ({"Runtimes": {"nvidia": {"path": "nvidia-container-runtime"}, "runc": {}}}, (), None, Route.DRIVER,
     "the nvidia runtime is registered"),
    ({**RUNC, "DiscoveredDevices": [{"Source": "cdi", "ID": "nvidia.com/gpu=0"},
                                    {"Source": "cdi", "ID": "nvidia.com/gpu=1"},
                                    {"Source": "cdi", "ID": "vendor.example/fpga=0"}]}, (), None, Route.CDI,
     "CDI devices nvidia.com/gpu=0, nvidia.com/gpu=1"),
    ({**RUNC, "CDISpecDirs": ["/etc/cdi", "/var/run/cdi"]}, ("nvidia.com/gpu=0", "nvidia.com/gpu=all"), None,
     Route.CDI, "CDI devices nvidia.com/gpu=0, nvidia.com/gpu=all"),
    (RUNC, (), RunResult(RunStatus.EXITED, 0, ""), Route.DRIVER, "a container started with --gpus all"),
    ({**RUNC, "OperatingSystem": "Docker Desktop"}, (), RunResult(RunStatus.EXITED, 0, ""), Route.DRIVER,
     "(Docker Desktop)"),
    ({**RUNC, "OperatingSystem": "Docker Desktop"}, (), RunResult(RunStatus.START_FAILED, None, NO_DRIVER),
     Route.NONE, "no nvidia runtime, hook or CDI GPU devices in the engine (Docker Desktop)"),
    (RUNC, (), RunResult(RunStatus.START_FAILED, None, NO_DRIVER), Route.NONE, "no nvidia runtime, hook or CDI"),
    (RUNC, (), None, Route.NONE, "and no image to try --gpus with"),
], ids=["runtime entry", "CDI listed", "CDI specs", "hook only", "Desktop", "Desktop without GPUs", "none",
        "nothing to probe with"])
def test_every_shape_of_docker_info_gives_the_route_and_says_why(info, spec_devices, probe, route, evidence):
    access = detect(info, spec_devices=spec_devices, probe=probe)
    assert access.route is route and evidence in access.evidence and access.problem == ""


def test_cdi_specs_count_only_where_the_engine_reads_them():
    assert detect(RUNC, spec_devices=("nvidia.com/gpu=all",)).route is Route.NONE, "CDI is off in this engine"


def test_a_hook_whose_container_fails_is_a_route_with_its_problem_not_no_gpus():
    access = detect(RUNC, probe=RunResult(RunStatus.START_FAILED, None, HOOK_FAILED))
    assert access.route is Route.DRIVER and "unsatisfied condition: cuda>=11.8" in access.problem


DRIVER = GpuAccess(Route.DRIVER, "the nvidia runtime is registered")
CDI = GpuAccess(Route.CDI, "CDI devices", ("nvidia.com/gpu=0", "nvidia.com/gpu=1"))
NONE = GpuAccess(Route.NONE, "no nvidia runtime")


def test_auto_gives_a_cpu_variant_no_gpus_and_a_cuda_variant_every_gpu_the_engine_offers():
    assert request_for(CPU, parse_option("auto"), DRIVER).count == 0
    assert request_for(CU118, parse_option("auto"), DRIVER).devices() == GpuDevices(count=-1)
    assert request_for(CU118, parse_option("auto"), CDI).devices() == GpuDevices(cdi=("nvidia.com/gpu=all",))
    untested = request_for(CU118, parse_option("auto"), NONE)
    assert untested.count == 0 and untested.chosen_by_auto


def test_an_explicit_request_goes_to_the_engine_even_when_detection_found_nothing():
    assert request_for(CU118, parse_option("all"), NONE).devices() == GpuDevices(count=-1)
    assert request_for(CU118, parse_option("2"), DRIVER).devices() == GpuDevices(count=2)
    assert request_for(CU118, parse_option("1"), CDI).devices() == GpuDevices(cdi=("nvidia.com/gpu=0",))
    assert request_for(CU118, parse_option("2"), GpuAccess(Route.CDI, "specs", ())).devices() == \
        GpuDevices(cdi=("nvidia.com/gpu=0", "nvidia.com/gpu=1"))


def test_no_gpus_means_void_so_a_default_nvidia_runtime_adds_none_either():
    none = request_for(CU118, parse_option("0"), DRIVER)
    assert none.devices() == GpuDevices() and none.environment() == {"NVIDIA_VISIBLE_DEVICES": "void"}
    assert request_for(CU118, parse_option("all"), DRIVER).environment() == {}


@pytest.mark.parametrize("value", ["all", "2"])
def test_asking_gpus_for_a_cpu_variant_by_name_or_count_is_a_usage_error_naming_it(value):
    with pytest.raises(UsageError, match=rf"--gpus {value} asks GPUs for cpu, which has no CUDA: use --gpus auto"):
        check_option(parse_option(value), [CU118, CPU])
    check_option(parse_option("auto"), [CU118, CPU]), check_option(parse_option("none"), [CPU])
    check_option(parse_option(value), [CU118])


def test_a_malformed_gpu_request_is_a_usage_error():
    with pytest.raises(UsageError, match="--gpus must be auto, all, none or a count, not 'two'"):
        parse_option("two")


@pytest.mark.parametrize("output, cause, fix", [
    (HOOK_FAILED, "the host's NVIDIA driver is too old for this image (the NVIDIA toolkit refused: unsatisfied "
                  "condition: cuda>=11.8)", "upgrade the driver (`./dev doctor` names the minimum per variant)"),
    (NO_DRIVER, "the engine cannot give containers GPUs", "nvidia-ctk runtime configure"),
    ("... stderr: nvidia-container-cli: device error: 3: unknown device: unknown", "GPU 3 does not exist on this host",
     "as many GPUs as `nvidia-smi -L` lists"),
    ("could not select device driver \"cdi\" ...: unresolvable CDI devices nvidia.com/gpu=2",
     "the engine has no CDI device nvidia.com/gpu=2", "nvidia-ctk cdi generate"),
    ("... error setting rlimit type 8: operation not permitted: unknown", "may not raise the locked-memory limit",
     "TORCHDEV_MEMLOCK=8388608"),
    ("... nvidia-container-cli: initialization error: load library failed: libnvidia-ml.so.1: cannot open shared "
     "object file", "found no working driver on the host (load library failed)", "check `nvidia-smi` on the host"),
])
def test_the_toolkits_refusals_become_a_cause_and_a_fix_in_one_line(output, cause, fix):
    line = start_failure(output)
    assert cause in line and fix in line and "\n" not in line


def test_an_unknown_refusal_keeps_the_engines_last_line():
    assert start_failure("first\nexec: \"nope\": executable file not found in $PATH: unknown") == \
        "exec: \"nope\": executable file not found in $PATH"


# --- ./dev up --gpus: the same grammar, through compose.gpu.yaml -----------------------------------------------------

def up(engine: FakeEngine, variant: str, gpus: str = "auto") -> tuple[int, str, str]:
    ctx = make_context(engine=engine, environ={"TORCHDEV_OVERLAY": ""})
    status = execute(ctx, commands.up, variant=variant, overlay=None, gpus=gpus, unlocked=True)
    return (status, *output(ctx))


@pytest.mark.parametrize("variant, gpus, info, arguments, settings", [
    ("cpu", "auto", RUNC, ("run", "--rm", "train"), {}),
    ("cu118", "auto", {"Runtimes": {"nvidia": {}}}, ("-f", "compose.yaml", "-f", "compose.gpu.yaml", "run", "--rm",
                                                     "train"), {"GPUS": "all"}),
    ("cu118", "2", RUNC, ("-f", "compose.yaml", "-f", "compose.gpu.yaml", "run", "--rm", "train"), {"GPUS": "2"}),
    ("cu118", "none", {"Runtimes": {"nvidia": {}}}, ("run", "--rm", "-e", "NVIDIA_VISIBLE_DEVICES=void", "train"), {}),
])
def test_up_trains_with_the_gpus_asked_for_through_compose_gpu_yaml(variant, gpus, info, arguments, settings):
    engine = FakeEngine(info=info)
    status, _, err = up(engine, variant, gpus)
    assert (status, err) == (0, "")
    assert engine.compose_calls == [arguments]
    assert {name: engine.compose_environments[0].get(name) for name in ("VARIANT", *settings)} == {
        "VARIANT": variant, **settings}


def test_up_auto_without_a_gpu_route_trains_on_cpu_and_says_so():
    engine = FakeEngine()
    engine.runs = {reference: RunResult(RunStatus.START_FAILED, None, NO_DRIVER) for reference in (
        "torchdev:2.0.1-cu118-py3.10",)}
    status, out, _ = up(engine, "cu118")
    assert status == 0 and engine.compose_calls == [("run", "--rm", "-e", "NVIDIA_VISIBLE_DEVICES=void", "train")]
    assert "note: training cu118 without GPUs: --gpus auto found no nvidia runtime" in out


@pytest.mark.parametrize("variant, gpus, line", [
    ("cpu", "1", "torchdev: --gpus 1 asks GPUs for cpu, which has no CUDA"),
    ("cu118", "many", "torchdev: --gpus must be auto, all, none or a count, not 'many'"),
])
def test_up_refuses_gpus_it_cannot_give_before_it_builds(variant, gpus, line):
    engine = FakeEngine()
    status, _, err = up(engine, variant, gpus)
    assert status == 2 and err.startswith(line) and err.count("\n") == 1, err
    assert engine.requests == [] and engine.compose_calls == []
