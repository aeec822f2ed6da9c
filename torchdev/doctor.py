"""`invoke doctor`: diagnose the host before a build or a GPU run fails on it, one line per check.

Every check runs even when an earlier one fails: an engine that does not answer makes the checks that need it
report "skip", and the others still say what they can. Warnings do not fail the doctor; failures do (status 1).
"""
from __future__ import annotations

import os
import platform
import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from torchdev.engine import (BUILDX_FIX, CLI_FIX, ENGINE_FIX, CommandResult, ContainerEngine, ContainerSpec,
                             EngineError, EngineUnreachable, RunResult, RunStatus, cli_plugin, probe)
from torchdev.errors import UsageError
from torchdev.gpuprobe import find_access
from torchdev.records import RecordError, parse_json
from torchdev.gpus import TOOLKIT_FIX as GPU_TOOLKIT_FIX
from torchdev.records import RecordError, parse_json
from torchdev.gpus import GpuAccess, KernelSupport, Route, kernel_support
from smoke.startup_checks import (MIN_DRIVER, PROCESSES_SHM, Gpu, driver_verdict, kernel_verdicts, parse_gpus,
                                  version_tuple)
from torchdev.matrix import Matrix, Variant
from torchdev.plan import LABEL_PREFIX, BuildPlan
from torchdev.platforms import Platform
from torchdev.profile import (DEFAULT_SHM, DEV_CONTAINER, SHM_VARIABLE, SIZED_BY_SETTING, UNLIMITED, docker_size,
                              sdk_limits, sdk_security, shm_bytes)
from torchdev.project import MANIFEST_IN_IMAGE
from torchdev.table import human_size

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
PROBE_TIMEOUT = 30
DEFAULT_HOST = "unix:///var/run/docker.sock"
WSL_NVIDIA_SMI = "/usr/lib/wsl/lib/nvidia-smi"
SHM_MIN = PROCESSES_SHM
"""The /dev/shm several training processes need at least (smoke/startup_checks.py, which containers check too)."""
DISK_MIN = 20 << 30

CONTEXT_FIX = ("with a docker context (Docker Desktop on Linux, rootless Docker) the SDK needs "
               "`export DOCKER_HOST=$(docker context inspect --format '{{.Endpoints.docker.Host}}')`")
PERMISSION_FIX = ("add yourself to the docker group (`sudo usermod -aG docker $USER`, then log in again) "
                  "or use rootless Docker")
COMPOSE_FIX = ("install Compose v2: docker-compose-plugin from Docker's repository, docker-compose on Debian 13, "
               "docker-compose-v2 on Ubuntu, or Docker Desktop (the Python docker-compose 1.x is not enough)")
TOOLKIT_FIX = f"for GPU variants {GPU_TOOLKIT_FIX}"
WSL_GPU_FIX = ("in WSL 2 the GPU comes from the NVIDIA driver for Windows: install no NVIDIA driver inside WSL "
               "(or use Docker Desktop's WSL 2 backend)")
DESKTOP_GPU_FIX = ("Docker Desktop gives GPUs only on Windows (WSL 2 backend, NVIDIA driver for Windows, none "
                   "inside WSL) and may list no nvidia runtime: check with `docker run --rm --gpus all ubuntu "
                   "nvidia-smi`")
DRIVER_FIX = ("the NVIDIA driver is installed but does not answer: reboot after a driver or kernel update, "
              "or reinstall the driver (`nvidia-smi` must list the GPUs)")
SHM_FIX = (f"DataLoader workers and NCCL pass tensors through /dev/shm and die with a bus error when it fills: set "
           f"{SHM_VARIABLE}={docker_size(DEFAULT_SHM)} (the default) or more; compose, the dev containers, Slurm's "
           f"Docker runtime and the benchmark read it")
MEMLOCK_FIX = ("GPU runs ask for unlimited locked memory (pinned memory for CUDA and NCCL), which rootless and "
               "sandboxed engines refuse: for the CUDA dev containers set TORCHDEV_MEMLOCK to what the engine allows "
               "(e.g. TORCHDEV_MEMLOCK=8388608) before `devcontainer up` or starting VS Code (.devcontainer/README.md)")
DISK_FIX = ("a CUDA image takes 5-8 GB, plus build cache: free space (`docker builder prune`, "
            "`docker image prune`) or move the engine's data-root to a larger disk")


@dataclass(frozen=True)
class CheckResult:
    """One line of the report; `fix` says what to do when the status is warn or fail."""

    name: str
    status: str
    detail: str
    fix: str = ""


def engine_unreachable(message: str, *, host: str) -> CheckResult:
    """Name the likely cause from the SDK's message: no socket, no permission, or nothing listening."""
    if "PermissionError" in message or "Permission denied" in message:
        return CheckResult("engine", FAIL, f"permission denied on {host}", PERMISSION_FIX)
    if "FileNotFoundError" in message:
        cause = f"no socket at {host}"
    elif "Connection refused" in message:
        cause = f"connection refused at {host}"
    else:
        cause = f"{message.split(':')[0]} ({host})"
    return CheckResult("engine", FAIL, f"no Docker engine answers: {cause}", f"{ENGINE_FIX}; {CONTEXT_FIX}")


def engine_reachable(version: dict, info: dict) -> CheckResult:
    """The engine's version and where it runs (Docker Desktop, a Linux distribution), from the SDK's answers."""
    return CheckResult("engine", OK, f"Docker {version.get('Version', '?')} (API {version.get('ApiVersion', '?')}) "
                                     f"on {info.get('OperatingSystem', '?')}")


def plugin_check(name: str, answer: CommandResult | None, *, fix: str) -> CheckResult:
    """`docker buildx version` and the like: present when the command succeeds."""
    if answer is None:
        return CheckResult(name, FAIL, "the docker command is not on PATH", CLI_FIX)
    first_line = answer.output.splitlines()[0] if answer.output else f"exit status {answer.status}"
    if answer.status != 0:
        return CheckResult(name, FAIL, first_line, fix)
    return CheckResult(name, OK, first_line)


def compose_check(answer: CommandResult | None) -> CheckResult:
    """Compose v2 (the `docker compose` plugin); a v1 answering there is too old for compose.yaml."""
    result = plugin_check("compose", answer, fix=COMPOSE_FIX)
    major = re.search(r"version v?(\d+)\.", result.detail)
    if result.status == OK and major and int(major.group(1)) < 2:
        return CheckResult("compose", FAIL, result.detail, COMPOSE_FIX)
    return result


def platform_check(*, engine_platform: str, host: Platform, variants: tuple[Variant, ...]) -> CheckResult:
    """The engine's own platform and the variants that run natively on it: on an Apple Silicon Mac the CUDA variants
    would run emulated (slowly, without GPUs), and builds pick the host's platform, so a remote engine of another
    architecture needs --platform."""
    try:
        native = Platform.parse(engine_platform)
    except UsageError:
        return CheckResult("platform", WARN, f"the engine runs {engine_platform}, which torch 2.0 has no wheels for",
                           "use an engine on linux/amd64 or linux/arm64")
    runs = [variant.name for variant in variants if native in variant.platforms]
    others = [f"{variant.name} ({', '.join(map(str, variant.platforms))} only)" for variant in variants
              if native not in variant.platforms]
    detail = f"the engine runs {native}: natively {', '.join(runs) or 'no variant'}"
    if native != host:
        return CheckResult("platform", WARN, f"{detail}; but this host is {host}, which builds default to",
                           f"pass --platform {native} to build and smoke for the engine's own platform")
    if others:
        where = "build and run the others on a host of their platform (the CUDA ones: linux/amd64 with GPUs)"
        return CheckResult("platform", WARN, f"{detail}; emulated only: {', '.join(others)}",
                           f"use {', '.join(runs)} here; {where}" if runs else where)
    return CheckResult("platform", OK, detail)


def gpu_runtime_check(access: GpuAccess | None, *, desktop: bool, wsl: bool) -> CheckResult:
    """How containers get GPUs; None when the engine did not answer. None at all is a warning: CPU variants work
    without it. The fix depends on where the engine runs: Docker Desktop, an engine inside WSL, or Linux."""
    if access is None:
        return CheckResult("gpu runtime", SKIP, "needs the engine")
    if access.route is Route.NONE:
        fix = DESKTOP_GPU_FIX if desktop else f"{TOOLKIT_FIX}; {WSL_GPU_FIX}" if wsl else TOOLKIT_FIX
        return CheckResult("gpu runtime", WARN, f"{access.evidence}: CPU variants only", fix)
    if access.problem:
        return CheckResult("gpu runtime", WARN, f"{access.evidence}, but a GPU container did not start",
                           access.problem)
    return CheckResult("gpu runtime", OK, f"GPUs by {access.route.value}: {access.evidence}")


HostGpu = Gpu
"""One GPU as nvidia-smi lists it (smoke/startup_checks.py's Gpu, which containers read the same way)."""


def gpus_check(answer: CommandResult | None) -> tuple[CheckResult, list[HostGpu]]:
    """The host's GPUs from nvidia-smi; none when there is no working driver."""
    if answer is None:
        return CheckResult("gpus", SKIP, "no nvidia-smi: no NVIDIA driver on this host"), []
    if answer.status != 0:
        return CheckResult("gpus", FAIL, (answer.output.splitlines() or ["nvidia-smi failed"])[0], DRIVER_FIX), []
    gpus = parse_gpus(answer.output)
    if not gpus:
        return CheckResult("gpus", WARN, "nvidia-smi lists no GPUs", DRIVER_FIX), []
    names = Counter(gpu.name for gpu in gpus)
    listed = ", ".join(f"{count} x {name}" for name, count in names.items())
    return CheckResult("gpus", OK, f"{listed}, driver {gpus[0].driver}"), gpus


def driver_check(*, variant: Variant, driver: str | None, constraint: str = "") -> CheckResult:
    """Whether the host's driver runs the variant's CUDA. Below the plain minimum, the image's NVIDIA_REQUIRE_CUDA
    (`constraint`, when built) may still accept the driver's branch on some GPUs: a warning, not a failure."""
    name = f"driver for {variant.name}"
    if driver is None:
        return CheckResult(name, SKIP, f"CUDA {variant.cuda}: no NVIDIA driver")
    verdict = driver_verdict(cuda=variant.cuda or "", driver=driver, constraint=constraint)
    if verdict.enough is None:
        fix = ("check the driver with `nvidia-smi`" if variant.cuda in MIN_DRIVER else
               "compare with NVIDIA's table: docs.nvidia.com/cuda/cuda-toolkit-release-notes")
        return CheckResult(name, WARN, verdict.detail, fix)
    if verdict.enough:
        return CheckResult(name, OK, verdict.detail)
    upgrade = f"upgrade the NVIDIA driver to >= {MIN_DRIVER[variant.cuda]}"
    if verdict.exception:
        return CheckResult(name, WARN, f"{verdict.detail}; the image accepts this driver branch on some GPUs "
                                       f"({verdict.exception})",
                           f"that holds for the named GPU brands with CUDA forward compatibility (the cuda-compat "
                           f"package, datacenter GPUs); elsewhere {upgrade}")
    return CheckResult(name, FAIL, verdict.detail, f"{upgrade}; until then containers stop with "
                                                   f"`unsatisfied condition: cuda>={variant.cuda}`")


def kernels_check(*, variant: Variant, gpus: list[HostGpu], architectures: list[str] | None,
                  runs_elsewhere: list[str]) -> CheckResult:
    """Whether torch in the variant's image has kernels for each GPU's architecture (`architectures` from the image's
    manifest; None when not built); `runs_elsewhere`: the variants whose torch does, for the fix."""
    name = f"kernels for {variant.name}"
    with_capability = [gpu for gpu in gpus if gpu.capability]
    if not with_capability:
        return CheckResult(name, SKIP, "no GPU that reports its compute capability")
    if architectures is None:
        return CheckResult(name, SKIP, f"not built yet: `./dev build --variant {variant.name}`, then compare")
    missing, jit = kernel_verdicts([gpu.capability for gpu in with_capability], architectures)
    built_for = f"torch in {variant.name} has {' '.join(architectures)}"
    instead = (f"use {', '.join(runs_elsewhere)}" if runs_elsewhere else
               "use a variant built for a newer CUDA (cu118 has sm_90 for Hopper)")
    if missing:
        return CheckResult(name, FAIL, f"GPUs of compute capability {', '.join(missing)}: {built_for}, none runs "
                                       "there", instead)
    if jit:
        return CheckResult(name, WARN, f"GPUs of compute capability {', '.join(jit)} run only PTX compiled at first "
                                       f"use ({built_for}): slow start, some kernels missing", instead)
    shown = sorted({gpu.capability for gpu in with_capability})
    return CheckResult(name, OK, f"compute capability {', '.join(shown)}: {built_for}")


def memlock_check(result: RunResult | None, *, rootless: bool) -> CheckResult:
    """Whether a container may lock unlimited memory, as GPU runs ask; found by trying it. None: nothing to try
    it with (no torchdev image yet)."""
    if result is None:
        return CheckResult("memlock", SKIP, "no torchdev image to try a container with: build one first")
    if result.status is RunStatus.EXITED:
        return CheckResult("memlock", OK, "containers may lock unlimited memory (CUDA pinned memory, NCCL)")
    cause = (result.output.strip().splitlines() or ["the container did not start"])[0]
    engine_kind = "rootless Docker" if rootless else "this engine"
    detail = (f"{engine_kind} cannot lift the locked-memory limit (error setting rlimit type 8)" if "rlimit" in cause
              else f"a container with unlimited locked memory did not start: {cause}")
    return CheckResult("memlock", WARN, detail, MEMLOCK_FIX)


def shm_check(environ: Mapping[str, str]) -> CheckResult:
    """The /dev/shm the containers people start get (torchdev.profile): a tmpfs of their own, TORCHDEV_SHM_SIZE
    (8g unless set), in place of Docker's 64 MiB; never the host's, whose size therefore no longer matters."""
    try:
        size = shm_bytes(SIZED_BY_SETTING, environ)
    except UsageError as error:
        cause, _, fix = str(error).partition(": ")
        return CheckResult("/dev/shm", FAIL, cause, fix)
    setting = environ.get(SHM_VARIABLE)
    source = f"{SHM_VARIABLE}={setting}" if setting else f"the default; {SHM_VARIABLE} sets it"
    detail = f"containers get a /dev/shm of their own of {human_size(size)} ({source}; Docker's default is 64 MiB)"
    if size < SHM_MIN:
        return CheckResult("/dev/shm", WARN, detail, SHM_FIX)
    return CheckResult("/dev/shm", OK, detail)


def disk_check(*, free: int, path: str) -> CheckResult:
    """Room for the images: each CUDA variant is 5-8 GB, and the build cache comes on top."""
    detail = f"{human_size(free)} free under {path}"
    if free < DISK_MIN:
        return CheckResult("disk", WARN, detail, DISK_FIX)
    return CheckResult("disk", OK, detail)


def exit_status(results: list[CheckResult]) -> int:
    """1 when any check failed; warnings and skips leave the host usable."""
    return 1 if any(result.status == FAIL for result in results) else 0


def _nvidia_smi() -> CommandResult | None:
    """WSL puts nvidia-smi (from the Windows driver) in /usr/lib/wsl/lib, often off PATH. Drivers before 510 know
    no compute_cap field: they are asked again without it."""
    program = shutil.which("nvidia-smi") or (WSL_NVIDIA_SMI if os.access(WSL_NVIDIA_SMI, os.X_OK) else None)
    if program is None:
        return None
    answer = probe([program, "--query-gpu=name,driver_version,compute_cap", "--format=csv,noheader"],
                   timeout=PROBE_TIMEOUT)
    if answer and answer.status != 0 and "compute_cap" in answer.output:
        answer = probe([program, "--query-gpu=name,driver_version", "--format=csv,noheader"], timeout=PROBE_TIMEOUT)
    return answer


def diagnose(matrix: Matrix, plans: list[BuildPlan], *, connect: Callable[[float], ContainerEngine],
             native: Platform, environ: Mapping[str, str],
             cli: Callable[[str], CommandResult | None] = cli_plugin,
             nvidia_smi: Callable[[], CommandResult | None] = _nvidia_smi) -> list[CheckResult]:
    """Every check for this host and the matrix's CUDA variants (`plans`: theirs, runtime flavour). The engine is
    `connect(PROBE_TIMEOUT)`'s; `cli` answers for the docker CLI's plugins and `nvidia_smi` for the driver."""
    engine, info, engine_result = _connect(connect, host=environ.get("DOCKER_HOST") or DEFAULT_HOST)
    try:
        gpus_result, gpus = gpus_check(nvidia_smi())
        images = _torchdev_images(engine)
        access = find_access(engine, probe_image=images[0] if images else None) if engine else None
        return [engine_result,
                plugin_check("buildx", cli("buildx"), fix=BUILDX_FIX),
                compose_check(cli("compose")),
                platform_check(engine_platform=f"{info.get('OSType', 'linux')}/{info.get('Architecture', '?')}",
                               host=native, variants=matrix.variants) if engine
                else CheckResult("platform", SKIP, "needs the engine"),
                gpu_runtime_check(access, desktop=info.get("OperatingSystem") == "Docker Desktop",
                                  wsl="microsoft" in platform.release().lower()),
                gpus_result,
                *_variant_checks(engine, matrix, plans, gpus),
                shm_check(environ),
                _memlock(engine, info, images),
                _disk(info.get("DockerRootDir"))]
    finally:
        if engine is not None:
            engine.close()


def _torchdev_images(engine: ContainerEngine | None) -> list[str]:
    """A name of each torchdev image the engine holds, for trying containers with."""
    return [image.tags[0] for image in engine.images(label=f"{LABEL_PREFIX}.variant") if image.tags] if engine else []


def _variant_checks(engine: ContainerEngine | None, matrix: Matrix, plans: list[BuildPlan],
                    gpus: list[HostGpu]) -> list[CheckResult]:
    """Per CUDA variant: the driver against the image's own constraint, and torch's kernels against the GPUs,
    both read from the built image (its environment and manifest) when there is one."""
    built = {}
    for plan in plans:
        image = engine.image(plan.primary_reference) if engine else None
        built[plan.variant.name] = (image, _architectures(engine, plan.primary_reference) if image and gpus else None)
    fits = [name for name, (_, arches) in built.items() if arches and all(
        kernel_support(gpu.capability, arches) is KernelSupport.NATIVE for gpu in gpus if gpu.capability)]
    checks = []
    for variant in (v for v in matrix.variants if v.cuda):
        image, architectures = built[variant.name]
        checks.append(driver_check(variant=variant, driver=gpus[0].driver if gpus else None,
                                   constraint=image.env.get("NVIDIA_REQUIRE_CUDA", "") if image else ""))
        checks.append(kernels_check(variant=variant, gpus=gpus, architectures=architectures,
                                    runs_elsewhere=[name for name in fits if name != variant.name]))
    return checks


def _architectures(engine: ContainerEngine, reference: str) -> list[str] | None:
    """torch's CUDA architectures as the image's manifest records them (None for images built before it did)."""
    try:
        text = engine.output(reference, "cat", MANIFEST_IN_IMAGE)
        found = parse_json(f"{reference}:{MANIFEST_IN_IMAGE}", text)
    except (EngineError, RecordError):
        return None
    architectures = found.get("torch_cuda_architectures") if isinstance(found, dict) else None
    return architectures if isinstance(architectures, list) and all(isinstance(a, str) for a in architectures) \
        else None


def _connect(connect: Callable[[float], ContainerEngine], *,
             host: str) -> tuple[ContainerEngine | None, dict, CheckResult]:
    """An engine and its info, or no engine, no info and the reason (`host`: DOCKER_HOST, for the reason)."""
    try:
        engine = connect(PROBE_TIMEOUT)
        info = engine.info()
        return engine, info, engine_reachable(engine.version(), info)
    except EngineUnreachable as error:
        return None, {}, engine_unreachable(error.cause, host=host)


def _memlock(engine: ContainerEngine | None, info: dict, images: list[str]) -> CheckResult:
    """Start one container of a torchdev image with the ulimits of a GPU container (torchdev.profile), locked memory
    unlimited, as the CUDA dev containers and compose.gpu.yaml ask by default."""
    if engine is None:
        return CheckResult("memlock", SKIP, "needs the engine")
    rootless = any("rootless" in option for option in info.get("SecurityOptions") or [])
    if not images:
        return memlock_check(None, rootless=rootless)
    spec = ContainerSpec(images[0], ("true",), limits=sdk_limits(DEV_CONTAINER, memlock=UNLIMITED), entrypoint=(),
                         **sdk_security(DEV_CONTAINER))
    return memlock_check(engine.run(spec, timeout=PROBE_TIMEOUT), rootless=rootless)




def _disk(root: str | None) -> CheckResult:
    """Free space where the engine keeps images when that folder is on this host, else under /."""
    path = root if root and Path(root).is_dir() else "/"
    return disk_check(free=shutil.disk_usage(path).free, path=path)
