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

from torchdev.engine import (BUILDX_FIX, CLI_FIX, ENGINE_FIX, CommandResult, ContainerSpec, Engine, EngineUnreachable,
                             Limit, RunResult, RunStatus, probe)
from torchdev.matrix import Matrix, Variant
from torchdev.plan import LABEL_PREFIX
from torchdev.table import human_size, render_table

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
PROBE_TIMEOUT = 30
DEFAULT_HOST = "unix:///var/run/docker.sock"
WSL_NVIDIA_SMI = "/usr/lib/wsl/lib/nvidia-smi"
SHM_MIN = 1 << 30
DISK_MIN = 20 << 30

MIN_DRIVER = {"11.7": "515.43.04", "11.8": "520.61.05"}
"""CUDA minor -> the oldest Linux driver that supports it natively (NVIDIA's CUDA Toolkit release notes, GA
releases). Drivers from 450.80.02 run CUDA 11.x only under minor-version compatibility, with limits, and the
nvidia/cuda images refuse most of them (`unsatisfied condition: cuda>=11.x`): the doctor asks for the plain minimum."""

CONTEXT_FIX = ("with a docker context (Docker Desktop on Linux, rootless Docker) the SDK needs "
               "`export DOCKER_HOST=$(docker context inspect --format '{{.Endpoints.docker.Host}}')`")
PERMISSION_FIX = ("add yourself to the docker group (`sudo usermod -aG docker $USER`, then log in again) "
                  "or use rootless Docker")
COMPOSE_FIX = ("install Compose v2: docker-compose-plugin from Docker's repository, docker-compose on Debian 13, "
               "docker-compose-v2 on Ubuntu, or Docker Desktop (the Python docker-compose 1.x is not enough)")
TOOLKIT_FIX = ("for GPU variants install the NVIDIA Container Toolkit, run `sudo nvidia-ctk runtime configure "
               "--runtime=docker` and `sudo systemctl restart docker`")
WSL_GPU_FIX = ("in WSL 2 the GPU comes from the NVIDIA driver for Windows: install no NVIDIA driver inside WSL "
               "(or use Docker Desktop's WSL 2 backend)")
DESKTOP_GPU_FIX = ("Docker Desktop gives GPUs only on Windows (WSL 2 backend, NVIDIA driver for Windows, none "
                   "inside WSL) and may list no nvidia runtime: check with `docker run --rm --gpus all ubuntu "
                   "nvidia-smi`")
DRIVER_FIX = ("the NVIDIA driver is installed but does not answer: reboot after a driver or kernel update, "
              "or reinstall the driver (`nvidia-smi` must list the GPUs)")
SHM_FIX = ("compose's `ipc: host` shares this /dev/shm with DataLoader workers and NCCL: enlarge it "
           "(`sudo mount -o remount,size=8G /dev/shm`, and in /etc/fstab) or run with --shm-size=8g instead")
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


def version_tuple(version: str) -> tuple[int, ...]:
    """'515.43.04' -> (515, 43, 4): compare driver versions by number, never as text ('96.43' < '515.43')."""
    return tuple(int(part) for part in version.strip().split("."))


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


def gpu_runtime_check(has_runtime: bool | None, *, desktop: bool, wsl: bool) -> CheckResult:
    """Whether containers can get GPUs; None when the engine did not answer. Absent is a warning: CPU variants
    work without it. The fix depends on where the engine runs: Docker Desktop, an engine inside WSL, or Linux."""
    if has_runtime is None:
        return CheckResult("gpu runtime", SKIP, "needs the engine")
    if has_runtime:
        return CheckResult("gpu runtime", OK, "the engine has the nvidia runtime or CDI GPU devices")
    fix = DESKTOP_GPU_FIX if desktop else f"{TOOLKIT_FIX}; {WSL_GPU_FIX}" if wsl else TOOLKIT_FIX
    return CheckResult("gpu runtime", WARN, "no nvidia runtime or CDI GPU devices in the engine: CPU variants only",
                       fix)


def gpus_check(answer: CommandResult | None) -> tuple[CheckResult, str | None]:
    """The host's GPUs from `nvidia-smi --query-gpu=name,driver_version --format=csv,noheader`, and the
    driver version (None when there is no working driver)."""
    if answer is None:
        return CheckResult("gpus", SKIP, "no nvidia-smi: no NVIDIA driver on this host"), None
    if answer.status != 0:
        return CheckResult("gpus", FAIL, (answer.output.splitlines() or ["nvidia-smi failed"])[0], DRIVER_FIX), None
    rows = [line.rsplit(",", 1) for line in answer.output.splitlines() if "," in line]
    if not rows:
        return CheckResult("gpus", WARN, "nvidia-smi lists no GPUs", DRIVER_FIX), None
    names = Counter(name.strip() for name, _ in rows)
    driver = rows[0][1].strip()
    listed = ", ".join(f"{count} x {name}" for name, count in names.items())
    return CheckResult("gpus", OK, f"{listed}, driver {driver}"), driver


def driver_check(*, variant: Variant, driver: str | None) -> CheckResult:
    """Whether the host's driver runs the variant's CUDA; a CUDA without a known minimum is a warning."""
    name = f"driver for {variant.name}"
    if driver is None:
        return CheckResult(name, SKIP, f"CUDA {variant.cuda}: no NVIDIA driver")
    minimum = MIN_DRIVER.get(variant.cuda)
    if minimum is None:
        return CheckResult(name, WARN, f"no minimum driver known for CUDA {variant.cuda} (driver {driver})",
                           "compare with NVIDIA's table: docs.nvidia.com/cuda/cuda-toolkit-release-notes")
    detail = f"CUDA {variant.cuda} needs >= {minimum}, driver {driver}"
    try:
        enough = version_tuple(driver) >= version_tuple(minimum)
    except ValueError:
        return CheckResult(name, WARN, f"{detail} (not a version)", "check the driver with `nvidia-smi`")
    if enough:
        return CheckResult(name, OK, detail)
    return CheckResult(name, FAIL, detail, f"upgrade the NVIDIA driver to >= {minimum}; until then containers stop "
                                           f"with `unsatisfied condition: cuda>={variant.cuda}`")


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


def shm_check(size: int | None) -> CheckResult:
    """The host's /dev/shm, which `ipc: host` (compose.yaml) gives containers; without it Docker gives 64 MiB."""
    if size is None:
        return CheckResult("/dev/shm", SKIP, "no /dev/shm on this host (the engine's VM has its own)")
    detail = f"{human_size(size)} (a plain `docker run` gets 64 MiB unless --ipc=host or --shm-size)"
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


def report(results: list[CheckResult]) -> str:
    """One line per check; a warning or a failure carries its fix on the same line."""
    rows = [(r.name, r.status, f"{r.detail.rstrip('.')}; fix: {r.fix}" if r.status in (WARN, FAIL) else r.detail)
            for r in results]
    return render_table(["check", "status", "detail"], rows)


def run_doctor(*, matrix: Matrix) -> int:
    """Print the report for this host and the matrix's CUDA variants; return the exit status."""
    results = diagnose(matrix)
    print(report(results))
    return exit_status(results)


def diagnose(matrix: Matrix) -> list[CheckResult]:
    engine, info, engine_result = _connect()
    try:
        gpus, driver = gpus_check(_nvidia_smi())
        return [engine_result,
                plugin_check("buildx", probe(["docker", "buildx", "version"]), fix=BUILDX_FIX),
                compose_check(probe(["docker", "compose", "version"])),
                gpu_runtime_check(None if engine is None else engine.has_gpu_runtime(),
                                  desktop=info.get("OperatingSystem") == "Docker Desktop",
                                  wsl="microsoft" in platform.release().lower()),
                gpus,
                *(driver_check(variant=v, driver=driver) for v in matrix.variants if v.cuda),
                shm_check(_shm_size()),
                _memlock(engine, info),
                _disk(info.get("DockerRootDir"))]
    finally:
        if engine is not None:
            engine.close()


def _connect() -> tuple[Engine | None, dict, CheckResult]:
    """An engine and its info, or no engine, no info and the reason."""
    host = os.environ.get("DOCKER_HOST") or DEFAULT_HOST
    try:
        engine = Engine.connect(timeout=PROBE_TIMEOUT)
        info = engine.info()
        return engine, info, engine_reachable(engine.version(), info)
    except EngineUnreachable as error:
        return None, {}, engine_unreachable(error.cause, host=host)


def _memlock(engine: Engine | None, info: dict) -> CheckResult:
    """Start one container of a torchdev image with unlimited locked memory, as the CUDA dev containers do."""
    if engine is None:
        return CheckResult("memlock", SKIP, "needs the engine")
    images = [image for image in engine.images(label=f"{LABEL_PREFIX}.variant") if image.tags]
    rootless = any("rootless" in option for option in info.get("SecurityOptions") or [])
    if not images:
        return memlock_check(None, rootless=rootless)
    spec = ContainerSpec(images[0].tags[0], ("true",), limits=(Limit("memlock", -1, -1),), entrypoint=())
    return memlock_check(engine.run(spec, timeout=PROBE_TIMEOUT), rootless=rootless)


def _nvidia_smi() -> CommandResult | None:
    """WSL puts nvidia-smi (from the Windows driver) in /usr/lib/wsl/lib, often off PATH."""
    program = shutil.which("nvidia-smi") or (WSL_NVIDIA_SMI if os.access(WSL_NVIDIA_SMI, os.X_OK) else None)
    return probe([program, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                  timeout=PROBE_TIMEOUT) if program else None


def _shm_size() -> int | None:
    if not Path("/dev/shm").is_dir():
        return None
    stats = os.statvfs("/dev/shm")
    return stats.f_blocks * stats.f_frsize


def _disk(root: str | None) -> CheckResult:
    """Free space where the engine keeps images when that folder is on this host, else under /."""
    path = root if root and Path(root).is_dir() else "/"
    return disk_check(free=shutil.disk_usage(path).free, path=path)
