"""Command line, shared fixtures and the JSON summary of the torchdev smoke suite.

The suite is mounted read-only into every image and runs there as a non-root user, so nothing here
writes next to the tests: the summary goes where --summary-json says, temporary files go to tmp_path.
Its interface with the runner (option and check names, the --gpus grammar, the summary's records) is
smoke_contract.py, which torchdev reads too.
"""
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

# Test modules (and smoke_contract) are imported after this line; keep their bytecode out of the (possibly
# read-only) tree even when the caller forgot PYTHONDONTWRITEBYTECODE=1.
sys.dont_write_bytecode = True

from smoke_contract import (  # noqa: E402
    EXPECTATIONS, FAILED, GPUS_ALL, GPUS_AUTO, GPUS_OPTION, IMAGE_MANIFEST, PASSED, SKIPPED, SUMMARY_OPTION,
    VARIANT_OPTION, CheckResult, GpusError, SmokeSummary, check_of, expect_option, option_dest, parse_gpus,
    write_summary)

DDP_TIMEOUT_DEFAULT_S = 120.0
REASON_MAX_CHARS = 1500


def pytest_addoption(parser):
    """Declare the interface that `invoke smoke` calls; smoke/README.md documents it."""
    group = parser.getgroup("torchdev smoke")
    group.addoption(VARIANT_OPTION, default=None, help="image variant name, recorded in the summary")
    for name in EXPECTATIONS:
        group.addoption(expect_option(name), default=None, metavar="VALUE",
                        help=f"expected {name}; its check is skipped when not given")
    group.addoption(GPUS_OPTION, default="auto",
                    help="GPUs requested: a count, 'none' (= 0), 'all' (every visible GPU, at least one) or "
                         "'auto' (= visible CUDA devices, 0 without CUDA)")
    group.addoption(SUMMARY_OPTION, default=None, metavar="PATH",
                    help="write a per-check JSON summary to PATH when the session ends")
    group.addoption("--ddp-timeout", default=DDP_TIMEOUT_DEFAULT_S, type=float, metavar="SECONDS",
                    help="hard limit for one DDP world to finish (default %(default)s)")


def pytest_configure(config):
    """Reject malformed options before any test runs, and attach the summary writer when asked."""
    try:
        parse_gpus(config.getoption(option_dest(GPUS_OPTION)))
    except GpusError as error:
        raise pytest.UsageError(str(error)) from None
    cudnn_major = config.getoption(option_dest(expect_option("cudnn-major")))
    if cudnn_major is not None and not cudnn_major.isdigit():
        raise pytest.UsageError(f"--expect-cudnn-major must be an integer, not {cudnn_major!r}")
    summary_path = config.getoption(option_dest(SUMMARY_OPTION))
    if summary_path:
        config.pluginmanager.register(SummaryWriter(summary_path, config.getoption(option_dest(VARIANT_OPTION))),
                                      "torchdev-summary")


def declared_by_image():
    """What images.yaml declared for this image, as its build recorded it in the manifest ({} outside torchdev
    images): run inside an image without options (a dev container), the suite checks against that."""
    try:
        return json.loads(Path(IMAGE_MANIFEST).read_text()).get("declared", {})
    except (OSError, ValueError):
        return {}


@pytest.fixture
def expected(request):
    """Look up an --expect-NAME value, else the image's own declaration; the check is skipped when neither has one."""
    def lookup(name):
        value = request.config.getoption(option_dest(expect_option(name))) or declared_by_image().get(name)
        if value is None:
            pytest.skip(f"no expectation given ({expect_option(name)}) and no torchdev manifest declaring it")
        return value
    return lookup


@pytest.fixture
def left_out(request):
    """Packages this image's flavour leaves to another by design (--expect-left-out, else its manifest; none outside
    torchdev images): runtime leaves triton to devel, as triton needs a C compiler and Python.h at first use."""
    option = option_dest(expect_option("left-out"))
    value = request.config.getoption(option) or declared_by_image().get("left-out") or ""
    return tuple(name for name in value.replace(",", " ").split() if name != "none")


@pytest.fixture
def flavour(request):
    """The image's flavour (runtime, devel): --expect-flavour, else its manifest; None outside torchdev images."""
    return request.config.getoption(option_dest(expect_option("flavour"))) or declared_by_image().get("flavour")


@pytest.fixture(scope="session")
def requested_gpus(pytestconfig):
    """The number of GPUs this run must see: --gpus N ('none' is 0); 'auto' whatever CUDA reports; 'all' the same
    but at least one, since a container given every GPU that sees none is broken, not GPU-less."""
    count = parse_gpus(pytestconfig.getoption(option_dest(GPUS_OPTION)))
    if count is not GPUS_AUTO and count != GPUS_ALL:
        return count
    import torch
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return max(visible, 1) if count == GPUS_ALL else visible


@pytest.fixture(scope="session")
def gpus_requested(requested_gpus, pytestconfig):
    """Skip GPU checks on runs that asked for no GPU (CPU images, hosts without one)."""
    if requested_gpus == 0:
        resolved_by_auto = parse_gpus(pytestconfig.getoption(option_dest(GPUS_OPTION))) is GPUS_AUTO
        pytest.skip("no GPUs requested" + (" (--gpus auto: torch sees no CUDA device)" if resolved_by_auto else ""))
    return requested_gpus


@pytest.fixture(scope="session")
def cuda_devices(gpus_requested):
    """The requested CUDA devices; fail with a diagnostic when fewer are visible than requested."""
    import torch
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if visible < gpus_requested:
        pytest.fail(f"requested {gpus_requested} GPU(s) but torch sees {visible}: {describe_gpu_setup()}",
                    pytrace=False)
    return [torch.device("cuda", index) for index in range(gpus_requested)]


@pytest.fixture(scope="session")
def listed_gpus():
    """What `nvidia-smi -L` lists now, as a callable: the driver's view, beside torch's."""
    return nvidia_smi_gpus


@pytest.fixture(scope="session")
def gpu_diagnostic():
    """The diagnostic as a callable, so checks only pay for it (and CUDA init) when they fail."""
    return describe_gpu_setup


def describe_gpu_setup():
    """Everything that decides GPU visibility in a container, on one line, to tell which link broke; first the
    mismatch itself when the driver lists GPUs that torch cannot see."""
    import torch
    listed = len(nvidia_smi_gpus())
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    mismatch = ([f"nvidia-smi lists {listed} GPU(s) but torch sees {visible}: the driver's libcuda or the "
                 "/dev/nvidia* device nodes did not reach the container"] if listed > visible else [])
    facts = [*mismatch,
        f"NVIDIA_VISIBLE_DEVICES={os.environ.get('NVIDIA_VISIBLE_DEVICES', '<unset>')}",
        f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}",
        "device nodes: " + (" ".join(sorted(glob.glob("/dev/nvidia*"))) or "no /dev/nvidia* present"),
        "driver: " + nvidia_smi_report(),
        f"torch {torch.__version__} (torch.version.cuda={torch.version.cuda})",
    ]
    if torch.version.cuda is not None:
        facts.append("CUDA init: " + cuda_init_error())
    return "; ".join(facts)


def nvidia_smi_report():
    """`nvidia-smi -L` output, or why there is none (the container toolkit injects it with the driver)."""
    if shutil.which("nvidia-smi") is None:
        return "nvidia-smi not found on PATH (no driver injected: is the container run with --gpus?)"
    try:
        result = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "nvidia-smi -L did not answer within 30 s"
    output = (result.stdout + result.stderr).strip().replace("\n", " | ")
    return f"nvidia-smi -L exit {result.returncode}: {output or '<no output>'}"


def nvidia_smi_gpus():
    """The whole GPUs `nvidia-smi -L` lists (MIG instances, indented below them, not counted); [] without it."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        result = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return []
    return [line for line in result.stdout.splitlines() if line.startswith("GPU ")] if result.returncode == 0 else []


def cuda_init_error():
    """The error CUDA itself gives on initialisation: device_count() alone just says 0."""
    import torch
    try:
        torch.cuda.init()
    except Exception as error:  # any error here is the diagnosis we are after
        return f"{type(error).__name__}: {error}"
    return "ok"


def pytest_report_header(config):
    """Say what is under test at the top of every run, so a log alone identifies the image."""
    given = [name for name in EXPECTATIONS if config.getoption(option_dest(expect_option(name))) is not None]
    source = "options" if given else "the image's manifest" if declared_by_image() else "none given"
    variant = config.getoption(option_dest(VARIANT_OPTION)) or declared_by_image().get("variant")
    return (f"torchdev smoke: variant={variant} torch={installed_torch_version()} python={platform.python_version()} "
            f"gpus={config.getoption(option_dest(GPUS_OPTION))} expectations={source}")


class SummaryWriter:
    """Collects one outcome per test and writes the JSON summary that `invoke smoke` aggregates."""

    def __init__(self, path, variant):
        self.path = Path(path)
        self.variant = variant
        self.checks = {}

    def pytest_runtest_logreport(self, report):
        """Fold the setup/call/teardown reports of one test into a single outcome."""
        entry = self.checks.get(report.nodeid) or new_entry(report.nodeid)
        entry = replace(entry, duration=round(entry.duration + report.duration, 3))
        if report.failed:
            entry = replace(entry, outcome=FAILED, reason=short_reason(report))
        elif report.skipped:
            entry = replace(entry, outcome=SKIPPED, reason=short_reason(report))
        elif report.when == "call":
            entry = replace(entry, outcome=PASSED, reason="")
        self.checks[report.nodeid] = entry

    def pytest_collectreport(self, report):
        """A module that cannot even be imported is a failed check, not a missing one."""
        if report.failed:
            self.checks[report.nodeid] = replace(new_entry(report.nodeid), reason=short_reason(report))

    def pytest_sessionfinish(self, session):
        """Write the summary atomically, so a reader never sees half a file."""
        write_summary(self.path, SmokeSummary(variant=self.variant, torch=installed_torch_version(),
                                              python=platform.python_version(), checks=tuple(self.checks.values())))


def new_entry(nodeid):
    """A summary row that stays failed unless a phase says otherwise: a test cut short did not pass."""
    return CheckResult(check=check_of(nodeid), nodeid=nodeid, outcome=FAILED, reason="did not run to completion",
                       duration=0.0)


def short_reason(report):
    """The skip reason, or the failure message without pytest's traceback, trimmed for a report."""
    longrepr = report.longrepr
    if report.skipped and isinstance(longrepr, tuple):
        reason = longrepr[2]
        reason = reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason
    else:
        crash = getattr(longrepr, "reprcrash", None)
        reason = crash.message if crash is not None else collection_error_reason(str(longrepr))
        reason = reason.split("\nassert ", 1)[0]  # drop pytest's introspection after the message
    return reason if len(reason) <= REASON_MAX_CHARS else reason[:REASON_MAX_CHARS] + " [...]"


def collection_error_reason(text):
    """A module's import error: pytest's headline plus the exception line, without the traceback."""
    lines = text.strip().splitlines()
    exception_lines = [line[1:].strip() for line in lines if line.startswith("E ")]
    return " ".join(lines[:1] + exception_lines[-1:])


def installed_torch_version():
    """torch's version for the summary header, or None when torch itself does not import."""
    try:
        import torch
    except Exception:  # a broken torch is reported by the checks; the summary must still be written
        return None
    return str(torch.__version__)
