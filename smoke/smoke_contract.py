"""The smoke suite's interface, defined once: what the runner passes to the suite and what the suite hands back.

Both sides read this file. The suite imports it as a sibling module (`import smoke_contract`: pytest puts this
directory on sys.path, in an image at /opt/torchdev-smoke and natively in scripts/gpu-check.sh); torchdev, on the
host, imports it from the checkout (`from smoke.smoke_contract import ...`; smoke/ is a namespace package there, which
a module named `smoke` anywhere on sys.path hides: the scripts in benchmarks/, beside benchmarks/smoke.py, import it
as the suite does). So it uses the standard library only and runs on every Python an image may have (3.10 and up),
and pytest never collects it (no test_ prefix).

It holds the names of the expectations and checks, the options the runner passes, the --gpus grammar, the rule for
which GPU runs which kernels, and the JSON summary as typed records with a writer and a validating reader.
"""
from __future__ import annotations

import enum
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

IMAGE_MANIFEST = "/usr/share/torchdev/manifest.json"
"""Where a torchdev image's build records what images.yaml declared for it (docker/Dockerfile writes it)."""

EXPECTATIONS = ("torch", "torchvision", "torchaudio", "cuda", "cudnn-major", "python", "flavour", "require-cuda",
                "cuda-toolchain", "platform", "left-out")
"""What the runner tells the suite to expect, one --expect-NAME option each; an image's manifest declares each
under the same name, which the suite falls back to when the option is not given."""
DECLARED = EXPECTATIONS + ("variant",)
"""The manifest's `declared` keys: every expectation, and the variant's name (for the report header)."""

CHECKS = ("environment", "flavour", "gpu", "convergence", "ddp", "shm")
"""The suite's checks, in the order the runner's table shows them: each is a module smoke/test_<check>.py."""

VARIANT_OPTION = "--variant"
GPUS_OPTION = "--gpus"
SUMMARY_OPTION = "--summary-json"
JUNIT_OPTION = "--junitxml"


def expect_option(name: str) -> str:
    """The option that passes expectation `name` (cudnn-major -> --expect-cudnn-major)."""
    return f"--expect-{name}"


def option_dest(option: str) -> str:
    """Where pytest keeps an option's value (--expect-cudnn-major -> expect_cudnn_major): config.getoption's name."""
    return option.lstrip("-").replace("-", "_")


# --- --gpus: auto | all | none | N, on both sides ----------------------------------------------------------------

GPUS_AUTO = None
"""--gpus auto: the run decides (the runner: every GPU the engine offers a CUDA variant; the suite: what CUDA sees)."""
GPUS_ALL = -1
"""--gpus all: every GPU (the suite: every visible one, at least one)."""


class GpusError(ValueError):
    """A --gpus value outside the grammar; str() is the one-line message."""


def parse_gpus(text: str) -> int | None:
    """--gpus auto|all|none|N as a count: None for auto, -1 for all, 0 for none, else N."""
    if text == "auto":
        return GPUS_AUTO
    if text == "all":
        return GPUS_ALL
    if text == "none":
        return 0
    if not re.fullmatch(r"[0-9]+", text):
        raise GpusError(f"{GPUS_OPTION} must be auto, all, none or a count, not '{text}'")
    return int(text)


def format_gpus(count: int | None) -> str:
    """The --gpus value that parses back to `count`."""
    return "auto" if count is GPUS_AUTO else "all" if count < 0 else str(count)


# --- which GPU runs which kernels -------------------------------------------------------------------------------

class KernelSupport(enum.Enum):
    NATIVE = "machine code"
    PTX = "PTX compiled at first use"
    NONE = "none"


def kernel_support(capability: tuple[int, int], architectures: Iterable[str]) -> KernelSupport:
    """How a GPU of compute `capability` (9, 0) runs kernels built for `architectures` (sm_80, compute_86, ...):
    machine code runs on the same major with an equal or higher minor; PTX is compiled for any equal or higher
    capability. torch.cuda.get_arch_list() and the manifest's torch_cuda_architectures both spell them so."""
    support = KernelSupport.NONE
    for arch in architectures:
        found = re.fullmatch(r"(sm|compute)_(\d+)(\d)[a-z]?", arch)
        if found is None:
            continue
        kind, built_for = found.group(1), (int(found.group(2)), int(found.group(3)))
        if kind == "sm" and built_for[0] == capability[0] and built_for[1] <= capability[1]:
            return KernelSupport.NATIVE
        if kind == "compute" and built_for <= tuple(capability):
            support = KernelSupport.PTX
    return support


# --- the JSON summary -------------------------------------------------------------------------------------------

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"
OUTCOMES = (PASSED, FAILED, SKIPPED)


def check_of(nodeid: str) -> str:
    """The check a test belongs to: its file's stem without test_ (test_gpu.py::test_x -> gpu)."""
    stem = Path(nodeid.split("::")[0]).stem
    return stem[len("test_"):] if stem.startswith("test_") else stem


@dataclass(frozen=True)
class CheckResult:
    """One test's row: its check, pytest's node ID, the outcome of all its phases together, the skip reason or
    failure message ('' when it passed), and the seconds all phases took."""

    check: str
    nodeid: str
    outcome: str
    reason: str
    duration: float

    def to_dict(self) -> dict:
        return {"check": self.check, "nodeid": self.nodeid, "outcome": self.outcome, "reason": self.reason,
                "duration": self.duration}


@dataclass(frozen=True)
class SmokeSummary:
    """One run of the suite: what ran (variant, torch, Python) and each test's row. The counts per outcome are
    derived from the rows (the file carries them too, for readers without this module). `image_id` is added by the
    runner on the host: the image the run judged (None in the file the suite itself writes)."""

    variant: str | None
    torch: str | None
    python: str
    checks: tuple[CheckResult, ...]
    image_id: str | None = None

    def count(self, outcome: str) -> int:
        return sum(check.outcome == outcome for check in self.checks)

    @property
    def passed(self) -> int:
        return self.count(PASSED)

    @property
    def failed(self) -> int:
        return self.count(FAILED)

    @property
    def skipped(self) -> int:
        return self.count(SKIPPED)

    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(check for check in self.checks if check.outcome == FAILED)

    def to_dict(self) -> dict:
        """The file's JSON document (smoke/README.md, "Summary JSON")."""
        document = {"variant": self.variant, "torch": self.torch, "python": self.python,
                    **{outcome: self.count(outcome) for outcome in OUTCOMES},
                    "checks": [check.to_dict() for check in self.checks]}
        return document if self.image_id is None else {**document, "image_id": self.image_id}


def write_summary(path: str | os.PathLike, summary: SmokeSummary) -> None:
    """Write the summary atomically (a temporary file beside it, then a rename), so a reader never sees half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(summary.to_dict(), indent=2))
    os.replace(partial, path)


class SummaryError(ValueError):
    """A summary file that is not what the suite writes: str() says what is wrong, without the file's name (the
    reader of the file knows it, and the command that writes it again)."""


def read_summary(path: str | os.PathLike) -> SmokeSummary:
    """The summary in `path`, checked field by field; SummaryError when it is anything else. A missing file is
    the caller's to tell (OSError)."""
    try:
        text = Path(path).read_text()
    except UnicodeDecodeError:
        raise SummaryError("it is not text") from None
    return parse_summary(text)


def parse_summary(text: str) -> SmokeSummary:
    """A summary from its JSON text; SummaryError naming the first problem: empty, truncated or not JSON, not an
    object, a field missing or of the wrong type, an unknown outcome, counts that disagree with the rows."""
    if not text.strip():
        raise SummaryError("it is empty")
    try:
        document = json.loads(text)
    except ValueError as error:
        raise SummaryError(f"it is not JSON, or cut short ({error})") from None
    fields = _fields(document, "the summary", {"variant": (str, None), "torch": (str, None), "python": (str,),
                                               "checks": (list,), **{outcome: (int,) for outcome in OUTCOMES}})
    image_id = document.get("image_id")
    if image_id is not None and not isinstance(image_id, str):
        raise SummaryError(f"'image_id' is {_kind(type(image_id))}, not a string")
    summary = SmokeSummary(fields["variant"], fields["torch"], fields["python"],
                           tuple(_check(row, index) for index, row in enumerate(fields["checks"], 1)), image_id)
    for outcome in OUTCOMES:
        if fields[outcome] != summary.count(outcome):
            raise SummaryError(f"it counts {fields[outcome]} {outcome} but lists {summary.count(outcome)}")
    return summary


def _check(row: object, index: int) -> CheckResult:
    fields = _fields(row, f"check {index}", {"check": (str,), "nodeid": (str,), "outcome": (str,),
                                             "reason": (str,), "duration": (int, float)})
    if fields["outcome"] not in OUTCOMES:
        raise SummaryError(f"check {index} ({fields['nodeid']}) has outcome '{fields['outcome']}', not one of "
                           f"{', '.join(OUTCOMES)}")
    return CheckResult(**fields)


def _fields(document: object, what: str, types: dict[str, tuple]) -> dict:
    """The named fields of a JSON object, each of one of its types (None for null; a boolean is no number)."""
    if not isinstance(document, dict):
        raise SummaryError(f"{what} is {_kind(type(document))}, not a JSON object")
    for name, allowed in types.items():
        if name not in document:
            raise SummaryError(f"{what} has no '{name}'")
        value = document[name]
        if not any(value is None if kind is None else isinstance(value, kind) and not isinstance(value, bool)
                   for kind in allowed):
            expected = " or ".join(dict.fromkeys(_kind(kind) for kind in allowed))
            raise SummaryError(f"{what}'s '{name}' is {_kind(type(value))}, not {expected}")
    return {name: document[name] for name in types}


def _kind(kind: type | None) -> str:
    """A JSON type in words."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", None: "null", type(None): "null"}
    return names[kind] if kind in names else kind.__name__
