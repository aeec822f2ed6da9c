"""`invoke smoke`: run the smoke suite inside built images, read-only mounted, and collect its results per check.

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
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from smoke.smoke_contract import (CHECKS, GPUS_OPTION, JUNIT_OPTION, SUMMARY_OPTION, VARIANT_OPTION, CheckResult,
                                  SmokeSummary, SummaryError, expect_option, read_summary)
from torchdev.engine import ContainerEngine, ContainerSpec, Limit, Mount, RunStatus
from torchdev.errors import RUNTIME, USAGE, Problem, TorchdevError, UsageError
from torchdev.options import names
from torchdev.files import write_atomically
from torchdev.gpus import GpuAccess, GpuRequest, start_failure
from torchdev.plan import BuildPlan
from torchdev.platforms import AMD64, Platform
from torchdev.profile import SMOKE, UNLIMITED, sdk_fields, sdk_limits
from torchdev.records import run_name, smoke_summary_path

SUITE_MOUNT = "/opt/torchdev-smoke"
REPORTS_MOUNT = "/reports"
SUITE_TIMEOUT = 900
STOPPED = Problem("{reason}", "", TorchdevError, RUNTIME)
"""A build `./dev smoke --build` tried failed (its cause and the fix are in the build's row)."""
UNKNOWN_CHECK = Problem("unknown check '{check}'", "the suite's checks are {known}", UsageError, USAGE)


class SuiteStatus(enum.Enum):
    RAN = "ran"
    NOT_BUILT = "not built"
    START_FAILED = "could not start"
    TIMED_OUT = "timed out"
    NO_SUMMARY = "wrote no summary"
    BAD_SUMMARY = "wrote a bad summary"


@dataclass(frozen=True)
class SuiteRun:
    """One image's smoke run (cu118, cu118-devel): the suite's checks when it ran, else why it did not (`detail`)."""

    image: str
    status: SuiteStatus
    checks: tuple[CheckResult, ...] = ()
    detail: str = ""


def select_checks(text: str | None) -> tuple[str, ...]:
    """--checks environment,convergence: only those modules of the suite (every one when not given)."""
    chosen = names("--checks", text)
    unknown = [name for name in chosen if name not in CHECKS]
    if unknown:
        raise UNKNOWN_CHECK(check=unknown[0], known=", ".join(CHECKS))
    return chosen


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
    command = ["python", "-m", "pytest", *modules, "-p", "no:cacheprovider", "-rfE", VARIANT_OPTION, name,
               f"{JUNIT_OPTION}={reports}/{name}.xml", f"{SUMMARY_OPTION}={reports}/{name}.json",
               GPUS_OPTION, gpus.suite_option]
    for name, value in expectations.items():
        command += [expect_option(name), value]
    return command


def container_limits(gpus: GpuRequest, *, memlock: int = UNLIMITED) -> tuple[Limit, ...]:
    """The smoke profile's ulimits: locked memory (`memlock` bytes, -1 unlimited) only with GPUs."""
    return sdk_limits(SMOKE, memlock=memlock if gpus.count else None)


def suite_container(*, plan: BuildPlan, gpus: GpuRequest, suite_dir: Path, scratch: Path, memlock: int = UNLIMITED,
                    platform: Platform = AMD64, checks: tuple[str, ...] = ()) -> ContainerSpec:
    """The suite read-only at SUITE_MOUNT, a scratch folder for its reports, started as torchdev.profile.SMOKE
    says (a 1 GiB /dev/shm of its own for DataLoader workers and NCCL, a real PID 1 that reaps the DDP ranks)."""
    mounts = (Mount(str(suite_dir), SUITE_MOUNT), Mount(str(scratch), REPORTS_MOUNT, read_only=False))
    command = suite_arguments(plan, gpus=gpus, reports=REPORTS_MOUNT, platform=platform, checks=checks)
    profile = sdk_fields(SMOKE, memlock=memlock if gpus.count else None, environment=gpus.environment())
    return ContainerSpec(plan.primary_reference, tuple(command), mounts=mounts, gpus=gpus.devices(),
                         platform=str(platform), **profile)


def run_suite(engine: ContainerEngine, *, plan: BuildPlan, image_id: str, gpus: GpuRequest, suite_dir: Path,
              reports_dir: Path, timeout: float = SUITE_TIMEOUT, memlock: int = -1, out: TextIO = sys.stdout,
              platform: Platform = AMD64, checks: tuple[str, ...] = ()) -> SuiteRun:
    """Run the suite in a container of `plan`'s image (`image_id`) as the image's default user, and read the JSON
    summary it wrote.

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
        try:
            summary = _collect_reports(Path(scratch), reports_dir, image=name, image_id=image_id)
        except SummaryError as error:
            return SuiteRun(name, SuiteStatus.BAD_SUMMARY,
                            detail=f"the suite exited {result.exit_code} with a summary ({name}.json) that is not "
                                   f"one: {error} (see the output above)")
    if summary is None:
        return SuiteRun(name, SuiteStatus.NO_SUMMARY,
                        detail=f"the suite exited {result.exit_code} without a summary (did pytest start? see the "
                               "output above)")
    return SuiteRun(name, SuiteStatus.RAN, summary.checks)


def _collect_reports(scratch: Path, reports_dir: Path, *, image: str, image_id: str) -> SmokeSummary | None:
    """Copy the suite's reports out; the JSON summary gains the ID of the image it judged (`invoke push` pushes only
    an image whose last run passed, and must know it was this one). SummaryError when the suite's summary is not
    one: nothing is written then."""
    if (scratch / f"{image}.xml").is_file():
        write_atomically(reports_dir / f"{image}.xml", (scratch / f"{image}.xml").read_bytes())
    written = smoke_summary_path(scratch, image)
    if not written.is_file():
        return None
    summary = replace(read_summary(written), image_id=image_id)
    write_atomically(smoke_summary_path(reports_dir, image), json.dumps(summary.to_dict(), indent=1) + "\n")
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


NOT_BUILT = Problem("image {reference} is not built", "run `./dev build --variant {variant}{flavour}` (or pass "
                    "--build to `./dev smoke`)", TorchdevError, RUNTIME)


def report_paths(plans: list[BuildPlan], reports_dir: Path) -> list[Path]:
    """Every file a smoke run of `plans` writes into `reports_dir`: each run's JSON summary and JUnit XML."""
    runs = [run_name(plan, platform) for plan in plans for platform in plan.platforms]
    return [path for run in runs for path in (smoke_summary_path(reports_dir, run), reports_dir / f"{run}.xml")]


def missing_image_fields(plan: BuildPlan) -> dict[str, str]:
    return {"reference": plan.primary_reference, "variant": plan.variant.name,
            "flavour": "" if plan.flavour.is_runtime else f" --flavour {plan.flavour.name}"}


def missing_image(plan: BuildPlan) -> str:
    return NOT_BUILT.line(**missing_image_fields(plan))


def image_ids(engine: ContainerEngine, plans: list[BuildPlan]) -> dict[str, str | None]:
    """Each plan's image ID by the plan's name, None when it is not built: asked once for a whole smoke run."""
    return {plan.name: engine.image_id(plan.primary_reference) for plan in plans}


def run_all(engine: ContainerEngine, plans: list[BuildPlan], *, images: dict[str, str | None],
            gpus: dict[str, GpuRequest], suite_dir: Path, reports_dir: Path, stop_at_missing: bool,
            not_built: dict[str, str], memlock: int = -1, checks: tuple[str, ...] = (),
            out: TextIO = sys.stdout) -> list[SuiteRun]:
    """The suite in each plan's image (`images`: image_ids'), on each of its platforms, one after another. A missing
    image is that image's row (`not_built` says why when a build was tried and failed), or, with stop_at_missing, an
    error naming the build command."""
    runs = []
    for plan in plans:
        name, reference, image_id = plan.name, plan.primary_reference, images[plan.name]
        if image_id is None:
            reason = not_built.get(name) or missing_image(plan)
            if stop_at_missing:
                raise NOT_BUILT(**missing_image_fields(plan)) if name not in not_built else STOPPED(reason=reason)
            runs.append(SuiteRun(name, SuiteStatus.NOT_BUILT, detail=reason))
            continue
        request = gpus[name]
        for platform in plan.platforms:
            print(f"==> smoke {run_name(plan, platform)} in {reference} on {platform} (gpus: {request.suite_option}"
                  f"{f' via {request.route.value}' if request.count else ''})", file=out, flush=True)
            runs.append(run_suite(engine, plan=plan, image_id=image_id, gpus=request, suite_dir=suite_dir,
                                  reports_dir=reports_dir, memlock=memlock, out=out, platform=platform,
                                  checks=checks))
    return runs


def gpu_probe_image(plans: list[BuildPlan], images: dict[str, str | None]) -> str | None:
    """A built CUDA image to ask the engine with whether --gpus works (gpuprobe.find_access), None when none is."""
    return next((plan.primary_reference for plan in plans if plan.variant.cuda and images[plan.name]), None)


def untested_gpus(runs: list[SuiteRun], *, plans: list[BuildPlan], gpus: dict[str, GpuRequest],
                  access: GpuAccess) -> list[str]:
    """A note per CUDA variant that --gpus auto ran without GPUs: skipped GPU checks must not read as a pass."""
    cuda = {plan.name for plan in plans if plan.variant.cuda}
    return [f"{run.image}: no GPU was tested: --gpus auto found {access.evidence}; give containers GPUs "
            "(docs/troubleshooting.md), or pass --gpus all to let the engine answer"
            for run in runs if run.status is SuiteStatus.RAN and run.image in cuda
            and gpus[run.image].chosen_by_auto and gpus[run.image].count == 0]
