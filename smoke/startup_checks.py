"""What a torch container needs from the place it runs, one rule each, checked when a container starts and by
`./dev doctor` on the host.

    python3 /workspace/smoke/startup_checks.py [--processes N] [--workers N]

Every start path runs it: docker/run-as-owner.sh (compose, Slurm's Docker runtime), the dev containers'
postStartCommand, and train/preflight.py (Slurm, Kubernetes). It prints one line per problem on stderr, each with its
fix, nothing at all when all is well, and always exits 0: a start is never blocked by it (train/preflight.py blocks on
its own checks, as before). It reads the container's facts (the size of /dev/shm, the locked-memory limit, the GPUs
`nvidia-smi` lists and their driver, and torch's CUDA architectures and CUDA release from the image's manifest) in
about a tenth of a second, and never imports torch.

The rules are pure functions of those facts, and the one implementation of each: torchdev's doctor (on the host),
train/preflight.py and the smoke suite's contract call them. Like smoke_contract.py beside it, this file uses the
standard library only and runs on every Python an image may have; pytest never collects it (no test_ prefix).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass

try:  # torchdev on the host, and the tests (the checkout's root on sys.path)
    from smoke.smoke_contract import IMAGE_MANIFEST, KernelSupport, kernel_support
except ImportError:  # in a container: run as a script, or imported with its folder on sys.path
    from smoke_contract import IMAGE_MANIFEST, KernelSupport, kernel_support

MIB = 1 << 20
GIB = 1 << 30
SHM = "/dev/shm"
PREFIX = "torchdev check: "

# --- /dev/shm ------------------------------------------------------------------------------------------------------

BATCH_BYTES = 64 * 3 * 224 * 224 * 4
"""One batch a DataLoader worker hands over: 64 ImageNet-sized float32 images (36.75 MiB)."""
PREFETCH = 2
"""Batches each worker keeps in flight (DataLoader's prefetch_factor default)."""
WORKER_SHM = PREFETCH * BATCH_BYTES
"""/dev/shm one DataLoader worker keeps busy: 73.5 MiB."""
PROCESSES_SHM = GIB
"""The floor for several training processes on one machine: NCCL's shared-memory transport between them (a few MiB
per pair of ranks and channel) and their workers' batches; Docker's 64 MB fails them midway."""
WORKERS_VARIABLE = "TORCHDEV_WORKERS"
"""DataLoader workers per training process that /dev/shm is sized for (default: the CPUs, at most 8)."""
SHM_FIX = ("give the container a larger /dev/shm: TORCHDEV_SHM_SIZE=8g or more for torchdev's compose services, dev "
           "containers and Slurm script (8g is their default), `docker run --shm-size=8g`, or on Kubernetes an "
           "emptyDir with medium: Memory at /dev/shm (`./dev k8s --shm-size`)")


def shm_needed(*, processes: int, workers: int) -> int:
    """Bytes of /dev/shm that `processes` training processes with `workers` DataLoader workers each keep busy:
    each worker's batches in flight, and at least PROCESSES_SHM when there are several processes."""
    floor = PROCESSES_SHM if processes > 1 else 0
    return max(floor, processes * workers * WORKER_SHM)


def mib(size: int) -> str:
    return f"{size / MIB:.0f} MiB"


def shm_problem(size: int | None, *, processes: int, workers: int) -> str:
    """Why /dev/shm (`size` bytes, None when there is none) is too small for the work, or ''."""
    need = shm_needed(processes=processes, workers=workers)
    if need == 0:
        return ""
    work = (f"{processes} {'process' if processes == 1 else 'processes'}"
            + (f" with {workers} DataLoader {'worker' if workers == 1 else 'workers'} each" if workers else ""))
    if size is None:
        return f"{SHM} does not exist and this container runs {work}, which pass data through it: {SHM_FIX}"
    if size >= need:
        return ""
    floor = ", below 1 GiB," if need == PROCESSES_SHM and size < PROCESSES_SHM else ""
    return (f"{SHM} is {mib(size)}{floor} and this container runs {work}, which need about {mib(need)} there and crash "
            f"with a bus error when it fills: {SHM_FIX}")


def default_workers(environ: dict, cpus: int) -> int:
    """TORCHDEV_WORKERS when set (a count), else the CPUs, at most 8 (what the 8g default is sized for)."""
    value = environ.get(WORKERS_VARIABLE, "").strip()
    return int(value) if value.isdigit() else min(8, max(cpus, 1))


# --- locked memory --------------------------------------------------------------------------------------------------

UNLIMITED = resource.RLIM_INFINITY
MEMLOCK_MIN = GIB
"""Locked memory below which NCCL may fail to register its buffers (InfiniBand, GPUDirect) or pinned host allocations
(DataLoader's pin_memory) fall back to pageable memory: unlimited is what GPU containers ask for."""
MEMLOCK_FIX = ("start the container with unlimited locked memory: `docker run --ulimit memlock=-1`, which "
               "compose.gpu.yaml and the CUDA dev containers ask for unless TORCHDEV_MEMLOCK says less; an engine that "
               "refuses it (rootless Docker) allows at most its own limit (`./dev doctor`, memlock line)")


def memlock_problem(limit: int, *, nccl: bool) -> str:
    """Why the locked-memory limit (`limit` bytes, RLIM_INFINITY for unlimited) is too low when NCCL will run
    (several GPUs or nodes), or ''."""
    if not nccl or limit == UNLIMITED or limit < 0 or limit >= MEMLOCK_MIN:
        return ""
    return (f"locked memory is limited to {mib(limit)} and NCCL will run (several GPUs or nodes): it registers its "
            f"buffers as locked memory and fails or slows down below {mib(MEMLOCK_MIN)}: {MEMLOCK_FIX}")


# --- GPU architectures ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Gpu:
    """One GPU as nvidia-smi lists it; `capability` ("9.0") is empty from drivers that do not report it."""

    name: str
    driver: str
    capability: str = ""


def parse_gpus(output: str) -> list[Gpu]:
    """`nvidia-smi --query-gpu=name,driver_version[,compute_cap] --format=csv,noheader` rows."""
    return [Gpu(*(field.strip() for field in line.split(",")[:3])) for line in output.splitlines() if "," in line]


def capability_tuple(capability: str) -> tuple[int, int]:
    major, minor = (int(part) for part in capability.split("."))
    return major, minor


def kernel_verdicts(capabilities: list[str], architectures: list[str]) -> tuple[list[str], list[str]]:
    """(capabilities torch has no kernel for, capabilities it runs only through PTX compiled at first use), each
    sorted, of the GPUs' `capabilities` ("9.0") against torch's `architectures` (sm_80, compute_86): the smoke
    contract's rule (kernel_support)."""
    verdicts = {capability: kernel_support(capability_tuple(capability), architectures)
                for capability in capabilities if capability}
    missing = sorted(cap for cap, support in verdicts.items() if support is KernelSupport.NONE)
    jit = sorted(cap for cap, support in verdicts.items() if support is KernelSupport.PTX)
    return missing, jit


KERNELS_FIX = "use a variant built for a newer CUDA (cu118 has sm_90 for Hopper), or run on another GPU"


def kernel_problems(gpus: list[Gpu], architectures: list[str] | None) -> list[str]:
    """A line for GPUs this torch has no kernels for, and one for GPUs it runs only by compiling PTX at first use;
    none when the architectures are unknown (not a torchdev image, or a CPU build)."""
    if not architectures:
        return []
    missing, jit = kernel_verdicts([gpu.capability for gpu in gpus], architectures)
    built_for = f"torch here has kernels for {' '.join(architectures)}"
    lines = []
    if missing:
        lines.append(f"GPUs of compute capability {', '.join(missing)}: {built_for}, none of which runs there: "
                     f"{KERNELS_FIX}")
    if jit:
        lines.append(f"GPUs of compute capability {', '.join(jit)} run only PTX compiled at first use ({built_for}): "
                     f"a slow first start, and some kernels are missing: {KERNELS_FIX}")
    return lines


# --- the driver -----------------------------------------------------------------------------------------------------

MIN_DRIVER = {"11.7": "515.43.04", "11.8": "520.61.05"}
"""CUDA minor -> the oldest Linux driver that supports it natively (NVIDIA's CUDA Toolkit release notes, GA
releases). Drivers from 450.80.02 run CUDA 11.x only under minor-version compatibility, with limits, and the
nvidia/cuda images refuse most of them (`unsatisfied condition: cuda>=11.x`): the minimum asked is the plain one."""


def version_tuple(version: str) -> tuple[int, ...]:
    """'515.43.04' -> (515, 43, 4): compare driver versions by number, never as text ('96.43' < '515.43')."""
    return tuple(int(part) for part in version.strip().split("."))


def _driver_condition_holds(condition: str, driver: str) -> bool:
    found = re.fullmatch(r"driver(>=|<=|>|<|=)([\d.]+)", condition)
    if found is None:
        return True  # brand=, arch=: the host's brand is not known here, so it may hold
    have, want = version_tuple(driver), version_tuple(found.group(2))
    return {">=": have >= want, "<=": have <= want, ">": have > want, "<": have < want, "=": have == want}[
        found.group(1)]


def branch_exception(constraint: str, driver: str) -> str:
    """The clause of an image's NVIDIA_REQUIRE_CUDA that accepts `driver` without the CUDA minimum: nvidia/cuda images
    list driver branches that run newer CUDA under forward compatibility (`brand=tesla,driver>=470,driver<471`).
    Space-separated clauses are alternatives, comma-separated conditions all hold (the toolkit's rule)."""
    for clause in constraint.split():
        conditions = clause.split(",")
        if any(c.startswith("driver") for c in conditions) and not any(c.startswith("cuda") for c in conditions) \
                and all(_driver_condition_holds(c, driver) for c in conditions):
            return clause
    return ""


@dataclass(frozen=True)
class DriverVerdict:
    """Whether a driver runs a CUDA release: `enough` (True, False, or None when it cannot be told), the comparison
    in words, and the constraint clause that admits an older driver branch on some GPUs ('' when none does)."""

    enough: bool | None
    detail: str
    exception: str = ""


def driver_verdict(*, cuda: str, driver: str, constraint: str = "") -> DriverVerdict:
    """The driver `driver` against CUDA `cuda`'s minimum, and against the image's NVIDIA_REQUIRE_CUDA (`constraint`)
    when it is below it."""
    minimum = MIN_DRIVER.get(cuda)
    if minimum is None:
        return DriverVerdict(None, f"no minimum driver known for CUDA {cuda} (driver {driver})")
    detail = f"CUDA {cuda} needs >= {minimum}, driver {driver}"
    try:
        enough = version_tuple(driver) >= version_tuple(minimum)
    except ValueError:
        return DriverVerdict(None, f"{detail} (not a version)")
    return DriverVerdict(enough, detail, "" if enough else branch_exception(constraint, driver))


def driver_problem(*, cuda: str | None, driver: str | None, constraint: str = "") -> str:
    """Why the driver cannot run this image's CUDA, or '' (also when either is unknown, or a driver branch the image's
    constraint admits runs it: the toolkit has already let the container start then)."""
    if not cuda or not driver:
        return ""
    verdict = driver_verdict(cuda=cuda, driver=driver, constraint=constraint)
    if verdict.enough is not False or verdict.exception:
        return ""
    return (f"the NVIDIA driver is too old for this image ({verdict.detail}): CUDA calls fail; upgrade the host's "
            f"driver to >= {MIN_DRIVER[cuda]}, or use a variant built for an older CUDA")


# --- the facts of this container, and all the rules over them ------------------------------------------------------

@dataclass(frozen=True)
class Facts:
    """What the rules judge, read from the container (read_facts) or handed in by a test."""

    shm: int | None
    memlock: int
    gpus: tuple[Gpu, ...]
    architectures: tuple[str, ...] | None
    cuda: str | None
    constraint: str
    processes: int
    workers: int
    nodes: int = 1


def problems(facts: Facts, *, skip: tuple[str, ...] = ()) -> list[str]:
    """Every rule over `facts`, one line per problem (none when all is well); `skip` names rules another check has
    already judged: shm, memlock, kernels, driver."""
    rules = {
        "shm": lambda: [shm_problem(facts.shm, processes=facts.processes, workers=facts.workers)],
        "memlock": lambda: [memlock_problem(facts.memlock, nccl=len(facts.gpus) > 1 or (
            facts.nodes > 1 and bool(facts.gpus)))],
        "kernels": lambda: kernel_problems(list(facts.gpus), list(facts.architectures or ())),
        "driver": lambda: [driver_problem(cuda=facts.cuda, driver=facts.gpus[0].driver if facts.gpus else None,
                                          constraint=facts.constraint)],
    }
    return [line for name, rule in rules.items() if name not in skip for line in rule() if line]


def query_gpus(timeout: float = 5) -> list[Gpu]:
    """The GPUs this container sees, from nvidia-smi (which the NVIDIA toolkit mounts in with the driver): none when
    it is not there or fails. Older drivers know no compute_cap field: then asked without it."""
    if shutil.which("nvidia-smi") is None:
        return []
    for fields in ("name,driver_version,compute_cap", "name,driver_version"):
        try:
            done = subprocess.run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"],
                                  capture_output=True, text=True, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return []
        if done.returncode == 0:
            return parse_gpus(done.stdout)
    return []


def image_declares(path: str = IMAGE_MANIFEST) -> tuple[tuple[str, ...] | None, str | None]:
    """(torch's CUDA architectures, the CUDA release) the image's manifest records; None for each it does not."""
    try:
        with open(path, encoding="utf-8") as file:
            manifest = json.load(file)
    except (OSError, ValueError):
        return None, None
    if not isinstance(manifest, dict):
        return None, None
    architectures = manifest.get("torch_cuda_architectures")
    declared = manifest.get("declared") if isinstance(manifest.get("declared"), dict) else {}
    cuda = declared.get("cuda")
    return (tuple(architectures) if isinstance(architectures, list) and all(isinstance(a, str) for a in architectures)
            else None), (cuda if isinstance(cuda, str) and cuda != "none" else None)


def memlock_limit() -> int:
    """The soft locked-memory limit, in bytes (RLIM_INFINITY: unlimited)."""
    return resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]


def shm_size(path: str = SHM) -> int | None:
    try:
        stats = os.statvfs(path)
    except OSError:
        return None
    return stats.f_blocks * stats.f_frsize


def read_facts(*, processes: int | None = None, workers: int | None = None, nodes: int = 1,
               environ: dict | None = None) -> Facts:
    """This container's facts. `processes` defaults to one per visible GPU (at least one), `workers` to
    TORCHDEV_WORKERS or the CPUs (at most 8)."""
    environ = dict(os.environ) if environ is None else environ
    gpus = tuple(query_gpus())
    architectures, cuda = image_declares()
    return Facts(shm=shm_size(), memlock=memlock_limit(), gpus=gpus,
                 architectures=architectures, cuda=cuda, constraint=environ.get("NVIDIA_REQUIRE_CUDA", ""),
                 processes=processes if processes is not None else max(len(gpus), 1),
                 workers=workers if workers is not None else default_workers(environ, os.cpu_count() or 1),
                 nodes=nodes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, help="training processes in this container (default: one per GPU)")
    parser.add_argument("--workers", type=int, help=f"DataLoader workers per process (default: ${WORKERS_VARIABLE}, "
                                                    "else the CPUs, at most 8)")
    options = parser.parse_args(argv)
    try:
        found = problems(read_facts(processes=options.processes, workers=options.workers))
    except Exception as error:  # noqa: BLE001 - a check that breaks must not stop a container from starting
        found = [f"the startup checks failed ({type(error).__name__}: {error}); the container starts anyway"]
    for line in found:
        print(PREFIX + line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
