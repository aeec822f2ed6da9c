"""The container profile: how every torch container torchdev describes is started, declared once.

A torch container needs more than an engine's defaults, and the same everywhere: a 64 MiB stack (deep recursion
in torch.compile and C++ extensions; NVIDIA's own containers ask as much), a real PID 1 that reaps DataLoader
workers and forwards Ctrl-C and SIGTERM to the trainer, more shared memory than Docker's 64 MB /dev/shm
(DataLoader workers and NCCL pass tensors through it), and with GPUs locked memory (pinned host memory for CUDA
copies and NCCL), unlimited unless TORCHDEV_MEMLOCK says how much an engine allows (rootless Docker refuses more).

The places that start such containers differ in three ways, and only there; those are the profile's parameters:

- `shm`: the host's own /dev/shm through its IPC namespace (compose, the dev containers, Slurm's Docker runtime and
  the throughput benchmark: a machine's /dev/shm is sized for the machine), or a private one of a size (the smoke
  suite's 1 GiB, a compose multinode node's 1 GiB: each node a machine of its own; a Kubernetes pod's memory
  emptyDir, 2 GiB unless `./dev k8s --shm-size` says otherwise).
- `user`: root, which docker/run-as-owner.sh drops at once to the owner of the mounted /workspace (compose and
  Slurm's Docker runtime: what the job writes belongs to whoever started it), or the image's own non-root user
  torchdev (the smoke suite, the dev containers, whose CLI gives torchdev the host user's UID, Kubernetes, the
  benchmark).
- `bytecode`: whether Python may write __pycache__ folders; not into a bind-mounted checkout by compose, Slurm,
  the smoke suite or the benchmark. The dev containers (their user owns the checkout) and Kubernetes pods (the code
  is in the image) leave Python's default.

Each target reads its profile here: the Docker SDK's ContainerSpec fields (the smoke suite, the doctor's probe),
`docker run` arguments (the benchmark; Slurm's script carries them), a Compose service fragment, a dev container's
`init`/`runArgs`/`remoteUser`, Kubernetes pod and container fields. The files that cannot import Python (compose
YAML, devcontainer JSONC, the sbatch script) carry exactly the rendering, which tests/unit/test_profile.py holds
them to, naming what differs and what to write instead. A setting added to the profile (no-new-privileges,
dropped capabilities, a sized /dev/shm instead of the host's) is a field of ContainerProfile or a changed
parameter below, and a line in each renderer; those tests then name every committed file that must follow.

Pure: values in, plain values out.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Mapping

from torchdev.engine import Limit
from torchdev.errors import UsageError

GIB = 1 << 30
MIB = 1 << 20
STACK_BYTES = 64 * MIB
UNLIMITED = -1
MEMLOCK_VARIABLE = "TORCHDEV_MEMLOCK"
"""Bytes of locked memory GPU containers ask for where an engine refuses unlimited; read by every target."""
NO_BYTECODE = {"PYTHONDONTWRITEBYTECODE": "1"}
IMAGE_USER_NAME = "torchdev"
"""The image's non-root user (docker/Dockerfile's USER_NAME), the one a container gets without --user."""
SHM_MOUNT = "/dev/shm"
SHM_VOLUME = "dshm"


@dataclass(frozen=True)
class SharedMemory:
    """/dev/shm: the host's (`size` None: its IPC namespace), or a private tmpfs of `size` bytes."""

    size: int | None = None

    @property
    def host(self) -> bool:
        return self.size is None


HOST_SHM = SharedMemory()


@dataclass(frozen=True)
class User:
    """Who the container's first process runs as: the image's own user (`name` None), or `name` with an
    `entrypoint` that drops from it at once."""

    name: str | None = None
    entrypoint: tuple[str, ...] = ()


IMAGE_USER = User()
WORKSPACE_OWNER = User("root", ("/workspace/docker/run-as-owner.sh",))
"""Root, dropped by docker/run-as-owner.sh to the owner of /workspace (the host user who mounted it)."""


@dataclass(frozen=True)
class ContainerProfile:
    """How a torch container starts; the fields with defaults are the same for every target."""

    shm: SharedMemory
    user: User
    bytecode: bool = False
    init: bool = True
    stack: int = STACK_BYTES

    @property
    def environment(self) -> dict[str, str]:
        return {} if self.bytecode else dict(NO_BYTECODE)

    def ulimits(self, memlock: int | str | None = None) -> dict[str, int | str]:
        """name -> value (soft and hard alike): the stack, then locked memory when the container gets GPUs
        (`memlock` not None; -1 or a target's reference to TORCHDEV_MEMLOCK). Raising memlock without GPUs only
        makes engines that may not (rootless Docker, sandboxes) refuse to start the container."""
        return {"stack": self.stack, **({"memlock": memlock} if memlock is not None else {})}


COMPOSE = ContainerProfile(shm=HOST_SHM, user=WORKSPACE_OWNER)
"""compose.yaml's services (train, dev, smoke); compose.gpu.yaml adds the GPUs' locked memory."""
COMPOSE_NODE = replace(COMPOSE, shm=SharedMemory(GIB))
"""compose.multinode.yaml's nodes: each a machine of its own, so a /dev/shm of its own."""
SLURM_DOCKER = COMPOSE
"""deploy/slurm/train.sbatch's Docker runtime: as compose.yaml, on each node."""
DEV_CONTAINER = ContainerProfile(shm=HOST_SHM, user=IMAGE_USER, bytecode=True)
""".devcontainer/*/devcontainer.json."""
SMOKE = ContainerProfile(shm=SharedMemory(GIB), user=IMAGE_USER)
"""`./dev smoke`: the suite runs as the image's user, in a /dev/shm of known size its shm check measures."""
BENCHMARK = ContainerProfile(shm=HOST_SHM, user=IMAGE_USER)
"""benchmarks/train_throughput.py's container side."""
KUBERNETES = ContainerProfile(shm=SharedMemory(2 * GIB), user=IMAGE_USER, bytecode=True)
"""`./dev k8s`: one pod per node; the size is the default of --shm-size."""


def memlock_limit(environ: Mapping[str, str]) -> int:
    """TORCHDEV_MEMLOCK: the locked memory GPU containers ask for, in bytes (-1, the default, is unlimited); the one
    setting the dev containers, compose.gpu.yaml and `./dev smoke` share, for engines that refuse unlimited."""
    value = environ.get(MEMLOCK_VARIABLE) or str(UNLIMITED)
    if not re.fullmatch(r"-1|\d+", value):
        raise UsageError(f"{MEMLOCK_VARIABLE}={value} is not a number of bytes or -1: fix it or unset it")
    return int(value)


def docker_size(size: int) -> str:
    """Bytes as Docker writes a size (--shm-size, compose's shm_size, the SDK): 1g, 512m, 4096."""
    for unit, suffix in ((GIB, "g"), (MIB, "m"), (1 << 10, "k")):
        if size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


def kubernetes_quantity(size: int) -> str:
    """Bytes as a Kubernetes quantity: 2Gi, 2G, 512Mi, ..., or plain bytes."""
    for unit, suffix in ((1 << 40, "Ti"), (10**12, "T"), (GIB, "Gi"), (10**9, "G"), (MIB, "Mi"), (10**6, "M"),
                         (1 << 10, "Ki"), (10**3, "k")):
        if size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


# --- the Docker SDK (torchdev.engine.ContainerSpec) --------------------------------------------------------------

def sdk_limits(profile: ContainerProfile, *, memlock: int | None = None) -> tuple[Limit, ...]:
    return tuple(Limit(name, value, value) for name, value in profile.ulimits(memlock).items())


def sdk_fields(profile: ContainerProfile, *, memlock: int | None = None,
               environment: Mapping[str, str] | None = None) -> dict:
    """Keyword arguments of ContainerSpec; `memlock` (bytes, -1 unlimited) when the container gets GPUs, and
    `environment` added to the profile's."""
    if profile.shm.host:
        raise ValueError("ContainerSpec has no IPC mode: give an SDK container a private /dev/shm of a size")
    fields = {"limits": sdk_limits(profile, memlock=memlock), "shm_size": docker_size(profile.shm.size),
              "init": profile.init, "environment": {**profile.environment, **(environment or {})}}
    if profile.user.name:
        fields.update(user=profile.user.name, entrypoint=profile.user.entrypoint)
    return fields


# --- the docker CLI (`docker run`) -------------------------------------------------------------------------------

def _shm_argument(shm: SharedMemory) -> str:
    return "--ipc=host" if shm.host else f"--shm-size={docker_size(shm.size)}"


def _ulimit_arguments(profile: ContainerProfile, memlock: int | str | None) -> list[str]:
    return [f"--ulimit={name}={value}" for name, value in profile.ulimits(memlock).items()]


def docker_run_arguments(profile: ContainerProfile) -> list[str]:
    """`docker run` options for a container without GPUs (gpu_run_arguments adds what GPUs need)."""
    arguments = ["--init"] if profile.init else []
    arguments += [_shm_argument(profile.shm), *_ulimit_arguments(profile, None)]
    if profile.user.name:
        arguments.append(f"--user={profile.user.name}")
    arguments += [f"--env={name}={value}" for name, value in profile.environment.items()]
    if profile.user.entrypoint:
        arguments.append(f"--entrypoint={' '.join(profile.user.entrypoint)}")
    return arguments


def gpu_run_arguments(memlock: int | str) -> list[str]:
    """What `docker run` adds, beside --gpus, for a container with GPUs."""
    return [f"--ulimit=memlock={memlock}"]


# --- Compose (a service's fields) --------------------------------------------------------------------------------

COMPOSE_KEYS = ("user", "init", "ipc", "shm_size", "ulimits", "privileged", "cap_add", "cap_drop", "security_opt",
                "read_only")
"""The service fields the profile owns: a compose file sets them as compose_service renders them, or not at all."""
COMPOSE_MEMLOCK = f"${{{MEMLOCK_VARIABLE}:-{UNLIMITED}}}"
"""TORCHDEV_MEMLOCK as compose reads a variable with a default: ${TORCHDEV_MEMLOCK:--1}."""


def compose_service(profile: ContainerProfile, *, gpus: bool = False) -> dict:
    """The profile's fields of a Compose service (after merges and extends), and the profile's variables of its
    `environment`; the entrypoint starts with profile.user.entrypoint."""
    service: dict = {"user": profile.user.name} if profile.user.name else {}
    service["init"] = profile.init
    if profile.shm.host:
        service["ipc"] = "host"
    else:
        service.update(ipc="private", shm_size=docker_size(profile.shm.size))
    service["ulimits"] = profile.ulimits(COMPOSE_MEMLOCK if gpus else None)
    if profile.environment:
        service["environment"] = profile.environment
    return service


# --- Dev Containers (devcontainer.json) --------------------------------------------------------------------------

DEVCONTAINER_KEYS = ("init", "runArgs", "remoteUser", "containerUser", "containerEnv", "privileged", "capAdd",
                     "securityOpt")
"""The devcontainer.json fields the profile owns: a config sets them as devcontainer_fields renders them, or not."""
DEVCONTAINER_MEMLOCK = f"${{localEnv:{MEMLOCK_VARIABLE}:{UNLIMITED}}}"
"""TORCHDEV_MEMLOCK as the Dev Containers CLI reads a host variable with a default: ${localEnv:TORCHDEV_MEMLOCK:-1}."""


def devcontainer_fields(profile: ContainerProfile, *, gpus: bool) -> dict:
    """A devcontainer.json's init, runArgs (/dev/shm and ulimits; GPUs themselves come from hostRequirements),
    remoteUser and, when the profile sets variables, containerEnv."""
    if profile.user.entrypoint:
        raise ValueError("a dev container runs as the image's user: the CLI gives it the host user's UID")
    fields: dict = {"init": profile.init,
                    "runArgs": [_shm_argument(profile.shm),
                                *_ulimit_arguments(profile, DEVCONTAINER_MEMLOCK if gpus else None)],
                    "remoteUser": IMAGE_USER_NAME}
    if profile.environment:
        fields["containerEnv"] = profile.environment
    return fields


# --- Kubernetes (pod and container fields) -----------------------------------------------------------------------

def kubernetes_container(profile: ContainerProfile) -> dict:
    """A container's fields: /dev/shm mounted from the pod's volume, and the profile's variables. Kubernetes has no
    ulimits: a pod gets the node runtime's stack and locked-memory limits."""
    container: dict = {} if profile.shm.host else {"volumeMounts": [{"name": SHM_VOLUME, "mountPath": SHM_MOUNT}]}
    if profile.environment:
        container["env"] = [{"name": name, "value": value} for name, value in profile.environment.items()]
    return container


def kubernetes_pod(profile: ContainerProfile, containers: list[dict]) -> dict:
    """A pod's fields around its containers. shareProcessNamespace gives the pod a real PID 1 (the pause process)
    that reaps orphans, as `init` does; /dev/shm is a memory emptyDir of the profile's size (the runtime's
    default is 64 MB), or the node's own with hostIPC."""
    if profile.user.entrypoint:
        raise ValueError("a pod runs as the image's user: it has no mounted /workspace to take an owner from")
    pod: dict = {"shareProcessNamespace": True} if profile.init else {}
    if profile.shm.host:
        pod["hostIPC"] = True
    pod["containers"] = containers
    if not profile.shm.host:
        pod["volumes"] = [{"name": SHM_VOLUME,
                           "emptyDir": {"medium": "Memory", "sizeLimit": kubernetes_quantity(profile.shm.size)}}]
    return pod
