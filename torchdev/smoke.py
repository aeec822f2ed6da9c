"""`invoke smoke`: run the smoke suite inside built images, read-only mounted, and summarise per check.

The suite lives in smoke/ and is never baked into an image: the same files judge every variant, and a
fix to a check needs no rebuild. Expectations (versions, CUDA, cuDNN, Python) come from images.yaml.
An image whose container cannot start, or outlives its deadline, is that image's row of the table;
the others still run. Each variant gets the GPUs its own request says (torchdev.gpus): a CPU variant
none under --gpus auto.
"""
from __future__ import annotations

import enum
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from torchdev.engine import ContainerSpec, Engine, Limit, Mount, RunStatus
from torchdev.errors import TorchdevError, UsageError
from torchdev.files import write_atomically
from torchdev.gpus import GpuAccess, GpuRequest, start_failure
from torchdev.plan import BuildPlan
from torchdev.platforms import AMD64, Platform
from torchdev.table import render_table

CHECKS = ("environment", "flavour", "gpu", "convergence", "ddp", "shm")
SUITE_MOUNT = "/opt/torchdev-smoke"
REPORTS_MOUNT = "/reports"
SUITE_TIMEOUT = 900


class SuiteStatus(enum.Enum):
    RAN = "ran"
    NOT_BUILT = "not built"
    START_FAILED = "could not start"
    TIMED_OUT = "timed out"
    NO_SUMMARY = "wrote no summary"


@dataclass(frozen=True)
class SuiteRun:
    """One image's smoke run (cu118, cu118-devel): the suite's checks when it ran, else why it did not (`detail`)."""

    image: str
    status: SuiteStatus
    checks: tuple[dict, ...] = ()
    detail: str = ""


def select_checks(text: str | None) -> tuple[str, ...]:
    """--checks environment,convergence: only those modules of the suite (every one when not given)."""
    chosen = tuple(name.strip() for name in (text or "").split(",") if name.strip())
    unknown = [name for name in chosen if name not in CHECKS]
    if unknown:
        raise UsageError(f"unknown check '{unknown[0]}': the suite's checks are {', '.join(CHECKS)}")
    return chosen


def run_name(plan: BuildPlan, platform: Platform) -> str:
    """One smoke run's name in tables and report files: the image's, plus the platform unless it is linux/amd64
    (cpu.linux-arm64): the platforms of one multi-platform image are judged, and reported, one by one."""
    return plan.name if platform == AMD64 else f"{plan.name}.{platform.slug}"


def suite_arguments(plan: BuildPlan, *, gpus: GpuRequest, reports: str, platform: Platform = AMD64,
                    checks: tuple[str, ...] = ()) -> list[str]:
    """The pytest command line that hands the image's declared contents to the suite (only `checks`' modules when
    given: under emulation the DDP and GPU checks cost minutes and prove nothing about the platform)."""
    variant, args = plan.variant, plan.build_args
    expectations = {"torch": variant.torch, "torchvision": variant.torchvision, "torchaudio": variant.torchaudio,
                    "cuda": variant.cuda or "none", "python": variant.python, "flavour": plan.flavour.name,
                    "require-cuda": args["REQUIRE_CUDA"] or "none",
                    "cuda-toolchain": args.get("CUDA_RELEASE") or "none", "platform": str(platform),
                    "left-out": (args["RUNTIME_LEAVES_OUT"] if plan.flavour.is_runtime else "") or "none"}
    if variant.cudnn is not None:
        expectations["cudnn-major"] = str(variant.cudnn)
    name = run_name(plan, platform)
    modules = [f"{SUITE_MOUNT}/test_{check}.py" for check in checks] or [SUITE_MOUNT]
    command = ["python", "-m", "pytest", *modules, "-p", "no:cacheprovider", "-rfE", "--variant", name,
               f"--junitxml={reports}/{name}.xml", f"--summary-json={reports}/{name}.json",
               "--gpus", gpus.suite_option]
    for name, value in expectations.items():
        command += [f"--expect-{name}", value]
    return command


def container_limits(gpus: GpuRequest, *, memlock: int = -1) -> tuple[Limit, ...]:
    """A 64 MiB stack, and locked memory (`memlock` bytes, -1 unlimited) only with GPUs: pinned memory matters to
    CUDA and NCCL, and raising the limit fails on engines that may not (rootless Docker, some sandboxes)."""
    stack = Limit("stack", 64 << 20, 64 << 20)
    return (stack, Limit("memlock", memlock, memlock)) if gpus.count else (stack,)


def suite_container(*, plan: BuildPlan, gpus: GpuRequest, suite_dir: Path, scratch: Path, memlock: int = -1,
                    platform: Platform = AMD64, checks: tuple[str, ...] = ()) -> ContainerSpec:
    """The suite read-only at SUITE_MOUNT, a scratch folder for its reports, 1 GiB of /dev/shm for DataLoader
    workers and NCCL, and a real PID 1 that reaps the DDP ranks."""
    mounts = (Mount(str(suite_dir), SUITE_MOUNT), Mount(str(scratch), REPORTS_MOUNT, read_only=False))
    command = suite_arguments(plan, gpus=gpus, reports=REPORTS_MOUNT, platform=platform, checks=checks)
    return ContainerSpec(plan.primary_reference, tuple(command), mounts=mounts,
                         environment={"PYTHONDONTWRITEBYTECODE": "1", **gpus.environment()}, gpus=gpus.devices(),
                         limits=container_limits(gpus, memlock=memlock), shm_size="1g", init=True,
                         platform=str(platform))


def run_suite(engine: Engine, *, plan: BuildPlan, gpus: GpuRequest, suite_dir: Path, reports_dir: Path,
              timeout: float = SUITE_TIMEOUT, memlock: int = -1, out: TextIO = sys.stdout,
              platform: Platform = AMD64, checks: tuple[str, ...] = ()) -> SuiteRun:
    """Run the suite in a container as the image's default user, and read the JSON summary it wrote.

    The container writes into a scratch folder it may write to; the files are then copied into reports_dir
    by this process, so they belong to the host user, whoever the image's user is.
    """
    with tempfile.TemporaryDirectory(prefix="torchdev-smoke-") as scratch:
        os.chmod(scratch, 0o1777)
        spec = suite_container(plan=plan, gpus=gpus, suite_dir=suite_dir, scratch=Path(scratch), memlock=memlock,
                               platform=platform, checks=checks)
        name = run_name(plan, platform)
        result = engine.run(spec, timeout=timeout, echo=out)
        if result.status is RunStatus.START_FAILED:
            detail = platform_failure(plan, platform, result.output) or start_failure(result.output)
            return SuiteRun(name, SuiteStatus.START_FAILED, detail=detail)
        if result.status is RunStatus.TIMED_OUT:
            return SuiteRun(name, SuiteStatus.TIMED_OUT, detail=f"timed out after {timeout:.0f} s and was "
                                                                "killed (see the output above)")
        summary = _collect_reports(Path(scratch), reports_dir, image=name,
                                   image_id=engine.image_id(plan.primary_reference) or "")
    if summary is None:
        return SuiteRun(name, SuiteStatus.NO_SUMMARY,
                        detail=f"the suite exited {result.exit_code} without a summary (did pytest start? see the "
                               "output above)")
    return SuiteRun(name, SuiteStatus.RAN, tuple(summary["checks"]))


def _collect_reports(scratch: Path, reports_dir: Path, *, image: str, image_id: str) -> dict | None:
    """Copy the suite's reports out; the JSON summary gains the ID of the image it judged (`invoke push` pushes only
    an image whose last run passed, and must know it was this one)."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    if (scratch / f"{image}.xml").is_file():
        shutil.copyfile(scratch / f"{image}.xml", reports_dir / f"{image}.xml")
    if not (scratch / f"{image}.json").is_file():
        return None
    summary = {**json.loads((scratch / f"{image}.json").read_text()), "image_id": image_id}
    write_atomically(reports_dir / f"{image}.json", json.dumps(summary, indent=1) + "\n")
    return summary


def platform_failure(plan: BuildPlan, platform: Platform, output: str) -> str:
    """Why a container of `platform` could not start, when the platform is the reason ('' otherwise): the image
    holds no such platform, or this host cannot run its binaries."""
    if re.search(r"exec format error", output, re.I):
        return (f"{platform} binaries do not run on this host: scripts/emulation.sh enable (qemu via binfmt_misc; "
                "Docker Desktop has it built in)")
    if re.search(r"no such image|does not match the specified platform|no match for platform", output, re.I):
        return (f"{plan.primary_reference} holds no {platform} image: run `./dev build --variant {plan.variant.name} "
                f"--platform {platform}`")
    return ""


def missing_image(plan: BuildPlan) -> str:
    flavour = "" if plan.flavour.is_runtime else f" --flavour {plan.flavour.name}"
    return (f"image {plan.primary_reference} is not built: run `./dev build --variant {plan.variant.name}{flavour}` "
            "(or pass --build to `./dev smoke`)")


def run_all(engine: Engine, plans: list[BuildPlan], *, gpus: dict[str, GpuRequest], suite_dir: Path,
            reports_dir: Path, stop_at_missing: bool, not_built: dict[str, str], memlock: int = -1,
            checks: tuple[str, ...] = (), out: TextIO = sys.stdout) -> list[SuiteRun]:
    """The suite in each plan's image, on each of its platforms, one after another. A missing image is that image's
    row (`not_built` says why when a build was tried and failed), or, with stop_at_missing, an error naming the
    build command."""
    runs = []
    for plan in plans:
        name, reference = plan.name, plan.primary_reference
        if engine.image_id(reference) is None:
            reason = not_built.get(name) or missing_image(plan)
            if stop_at_missing:
                raise TorchdevError(reason)
            runs.append(SuiteRun(name, SuiteStatus.NOT_BUILT, detail=reason))
            continue
        request = gpus[name]
        for platform in plan.platforms:
            print(f"==> smoke {run_name(plan, platform)} in {reference} on {platform} (gpus: {request.suite_option}"
                  f"{f' via {request.route.value}' if request.count else ''})", file=out, flush=True)
            runs.append(run_suite(engine, plan=plan, gpus=request, suite_dir=suite_dir, reports_dir=reports_dir,
                                  memlock=memlock, out=out, platform=platform, checks=checks))
    return runs


def check_cell(checks: tuple[dict, ...], check: str) -> str:
    """One table cell: failed beats passed beats skipped; a skip shows its reason."""
    rows = [c for c in checks if c["check"] == check]
    if not rows:
        return "-"
    failed = [c for c in rows if c["outcome"] == "failed"]
    passed = [c for c in rows if c["outcome"] == "passed"]
    if failed:
        return f"FAILED {len(failed)}/{len(rows)}"
    if passed:
        skipped = len(rows) - len(passed)
        return f"passed {len(passed)}" + (f" (+{skipped} skipped)" if skipped else "")
    return f"skipped: {rows[0]['reason'][:40]}"


def summary_table(runs: list[SuiteRun]) -> str:
    """Image x check; an image that did not run says why in its first cell."""
    rows = []
    for run in runs:
        if run.status is SuiteStatus.RAN:
            rows.append((run.image, *(check_cell(run.checks, check) for check in CHECKS)))
        else:
            rows.append((run.image, run.status.value, *(["-"] * (len(CHECKS) - 1))))
    return render_table(["image", *CHECKS], rows)


def untested_gpus(runs: list[SuiteRun], *, plans: list[BuildPlan], gpus: dict[str, GpuRequest],
                  access: GpuAccess) -> list[str]:
    """A note per CUDA variant that --gpus auto ran without GPUs: skipped GPU checks must not read as a pass."""
    cuda = {plan.name for plan in plans if plan.variant.cuda}
    return [f"{run.image}: no GPU was tested: --gpus auto found {access.evidence}; give containers GPUs "
            "(docs/troubleshooting.md), or pass --gpus all to let the engine answer"
            for run in runs if run.status is SuiteStatus.RAN and run.image in cuda
            and gpus[run.image].chosen_by_auto and gpus[run.image].count == 0]


def failures(runs: list[SuiteRun]) -> list[str]:
    """One line per failed check or variant that did not run: variant, test or status, and the reason."""
    lines = []
    for run in runs:
        if run.status is not SuiteStatus.RAN:
            lines.append(f"{run.image}: {run.status.value}: {run.detail}")
            continue
        lines += [f"{run.image}: {c['nodeid']}: {c['reason'].splitlines()[0] if c['reason'] else 'failed'}"
                  for c in run.checks if c["outcome"] == "failed"]
    return lines
