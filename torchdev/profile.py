"""The container profile: how every torch container torchdev describes is started, declared once.

A torch container needs more than an engine's defaults, and the same everywhere: a 64 MiB stack (deep recursion
in torch.compile and C++ extensions; NVIDIA's own containers ask as much), a real PID 1 that reaps DataLoader
workers and forwards Ctrl-C and SIGTERM to the trainer, more shared memory than Docker's 64 MB /dev/shm
(DataLoader workers and NCCL pass tensors through it), and with GPUs locked memory (pinned host memory for CUDA
copies and NCCL), unlimited unless TORCHDEV_MEMLOCK says how much an engine allows (rootless Docker refuses more).
And no more privilege than that needs: `no-new-privileges` (no setuid binary or file capability raises a process
above what it started with), every capability dropped but the few the entrypoint and its init use, each named with why
(docs/security.md, "Users and privileges").

The places that start such containers differ in three ways, and only there; those are the profile's parameters:

- `shm`: a /dev/shm of the container's own (a private IPC namespace) of a size: TORCHDEV_SHM_SIZE, 8g unless set,
  where people start containers themselves (compose, the dev containers, Slurm's Docker runtime, the throughput
  benchmark); the smoke suite's 1 GiB, a compose multinode node's 1 GiB; a Kubernetes pod's memory emptyDir, 2 GiB
  unless `./dev k8s --shm-size` says otherwise. Never the host's IPC namespace (`--ipc=host`), which would hand
  every container the host's /dev/shm and System V IPC objects, those of other users' containers included: no
  torchdev container needs it (every rank of a node runs in one container; docs/security.md says when one might).
- `user`: root, which docker/run-as-owner.sh drops at once to the owner of the mounted /workspace, or to the
  image's user torchdev when root owns it (compose and Slurm's Docker runtime: what the job writes belongs to
  whoever started it), keeping the four capabilities that takes; or the image's own non-root user torchdev,
  with no capability at all (the smoke suite, the dev containers, whose CLI gives torchdev the host user's UID,
  Kubernetes, the benchmark).
- `bytecode`: whether Python may write __pycache__ folders; not into a bind-mounted checkout by compose, Slurm,
  the smoke suite or the benchmark. The dev containers (their user owns the checkout) and Kubernetes pods (the code
  is in the image) leave Python's default.

Each target reads its profile here: the Docker SDK's ContainerSpec fields (the smoke suite, the doctor's probe),
`docker run` arguments (the benchmark; Slurm's script carries them), a Compose service fragment, a dev container's
`init`/`runArgs`/`remoteUser`, Kubernetes pod and container fields. The files that cannot import Python (compose
YAML, devcontainer JSONC, the sbatch script) carry exactly the rendering, which tests/unit/test_profile.py holds
them to, naming what differs and what to write instead. A setting added to the profile is a field of
ContainerProfile or a changed parameter below, and a line in each renderer; those tests then name every committed
file that must follow.

Pure: values in, plain values out.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Mapping

from torchdev.engine import Limit
from torchdev.errors import CONFIGURATION, Problem, UsageError

BAD_MEMLOCK = Problem("{variable}={value} is not a number of bytes or -1", "fix it or unset it", UsageError,
                      CONFIGURATION)
BAD_SHM = Problem("{variable}={value} is not a size such as 8g or 512m", "fix it or unset it (default {default})",
                  UsageError, CONFIGURATION)

GIB = 1 << 30
MIB = 1 << 20
STACK_BYTES = 64 * MIB
UNLIMITED = -1
MEMLOCK_VARIABLE = "TORCHDEV_MEMLOCK"
"""Bytes of locked memory GPU containers ask for where an engine refuses unlimited; read by every target."""
NO_BYTECODE = {"PYTHONDONTWRITEBYTECODE": "1"}
IMAGE_USER_NAME = "torchdev"
"""The image's non-root user (docker/Dockerfile's USER_NAME), the one a container gets without --user."""
IMAGE_UID = 1000
IMAGE_GID = 1000
"""Its UID and GID (docker/Dockerfile's USER_UID, USER_GID): what Kubernetes needs as numbers to know the user is
not root, and what run-as-owner.sh falls back to when root owns /workspace."""
SHM_MOUNT = "/dev/shm"
SHM_VOLUME = "dshm"
SHM_VARIABLE = "TORCHDEV_SHM_SIZE"
"""The size of /dev/shm in the containers people start themselves (compose, dev containers, Slurm, the
benchmark), as Docker writes a size: 8g, 16g, 512m."""
DEFAULT_SHM = 8 * GIB
"""8 GiB unless TORCHDEV_SHM_SIZE says otherwise: room for DataLoader workers' batches in flight (8 workers with
prefetch 2 of 64 ImageNet-sized float32 images are about 600 MiB per training process) and NCCL's shared-memory
transport between the GPUs of one machine (a few MiB per pair of ranks and channel), for up to 8 processes. A
tmpfs is a cap, not an allocation: it takes memory only as it fills, charged to the container."""
RUN_AS_VARIABLE = "TORCHDEV_RUN_AS"
"""`root` makes docker/run-as-owner.sh run the command as root; unset, as the owner of /workspace."""
NO_NEW_PRIVILEGES = "no-new-privileges:true"
DROP_ALL = "ALL"


@dataclass(frozen=True)
class SharedMemory:
    """/dev/shm: a tmpfs of the container's own, in an IPC namespace of its own, of `size` bytes; `variable` names
    the host setting that sizes it instead, where people start the container themselves."""

    size: int
    variable: str | None = None


SIZED_BY_SETTING = SharedMemory(DEFAULT_SHM, SHM_VARIABLE)


@dataclass(frozen=True)
class Capability:
    """A Linux capability the container keeps (every other one is dropped), and what needs it."""

    name: str
    why: str


@dataclass(frozen=True)
class User:
    """Who the container's first process runs as: the image's own user (`name` None), or `name` with an
    `entrypoint` that drops from it at once, keeping `capabilities` until then and reading the host's
    `variables` (passed into the container where they are set)."""

    name: str | None = None
    entrypoint: tuple[str, ...] = ()
    capabilities: tuple[Capability, ...] = ()
    variables: tuple[str, ...] = ()


IMAGE_USER = User()
"""The image's user torchdev: no capability at all (a container that starts as a non-root user has none in effect,
and dropping them all also empties its bounding set)."""
OWNER_CAPABILITIES = (
    Capability("SETUID", "setpriv --reuid: become the owner of /workspace (or torchdev)"),
    Capability("SETGID", "setpriv --regid --clear-groups: take that user's group and drop root's"),
    Capability("DAC_READ_SEARCH", "read run-as-owner.sh in a checkout only its owner may enter (umask 027 or 077): "
                                  "without it root is refused like any other user"),
    Capability("KILL", "docker-init, PID 1 and still root, forwards Ctrl-C and SIGTERM to the command, which runs as "
                       "another user after the switch: without it the signal is refused and the trainer never stops "
                       "cleanly"),
)
"""What run-as-owner.sh and the init in front of it need, found by trying (docs/security.md): it makes HOME after the
switch, as the user, so no CHOWN; setpriv to a non-root user clears every capability, so the command itself runs
with none."""
WORKSPACE_OWNER = User("root", ("sh", "/workspace/docker/run-as-owner.sh"), OWNER_CAPABILITIES, (RUN_AS_VARIABLE,))
"""Root, dropped by docker/run-as-owner.sh to the owner of /workspace (the host user who mounted it), or to torchdev
when root owns it; root only with TORCHDEV_RUN_AS=root. Started through `sh`, which needs only to read the script."""


@dataclass(frozen=True)
class ContainerProfile:
    """How a torch container starts; the fields with defaults are the same for every target."""

    shm: SharedMemory
    user: User
    bytecode: bool = False
    init: bool = True
    stack: int = STACK_BYTES
    no_new_privileges: bool = True

    @property
    def environment(self) -> dict[str, str]:
        return {} if self.bytecode else dict(NO_BYTECODE)

    @property
    def security_options(self) -> tuple[str, ...]:
        return (NO_NEW_PRIVILEGES,) if self.no_new_privileges else ()

    @property
    def capabilities(self) -> tuple[str, ...]:
        """The capabilities kept; every other one is dropped."""
        return tuple(capability.name for capability in self.user.capabilities)

    def ulimits(self, memlock: int | str | None = None) -> dict[str, int | str]:
        """name -> value (soft and hard alike): the stack, then locked memory when the container gets GPUs
        (`memlock` not None; -1 or a target's reference to TORCHDEV_MEMLOCK). Raising memlock without GPUs only
        makes engines that may not (rootless Docker, sandboxes) refuse to start the container."""
        return {"stack": self.stack, **({"memlock": memlock} if memlock is not None else {})}


COMPOSE = ContainerProfile(shm=SIZED_BY_SETTING, user=WORKSPACE_OWNER)
"""compose.yaml's services (train, dev, smoke); compose.gpu.yaml adds the GPUs' locked memory."""
COMPOSE_NODE = replace(COMPOSE, shm=SharedMemory(GIB))
"""compose.multinode.yaml's nodes: each a machine of its own, with a /dev/shm of its own."""
SLURM_DOCKER = COMPOSE
"""deploy/slurm/train.sbatch's Docker runtime: as compose.yaml, on each node."""
DEV_CONTAINER = ContainerProfile(shm=SIZED_BY_SETTING, user=IMAGE_USER, bytecode=True)
""".devcontainer/*/devcontainer.json."""
SMOKE = ContainerProfile(shm=SharedMemory(GIB), user=IMAGE_USER)
"""`./dev smoke`: the suite runs as the image's user, in a /dev/shm of known size its shm check measures."""
BENCHMARK = ContainerProfile(shm=SIZED_BY_SETTING, user=IMAGE_USER)
"""benchmarks/train_throughput.py's container side."""
KUBERNETES = ContainerProfile(shm=SharedMemory(2 * GIB), user=IMAGE_USER, bytecode=True)
"""`./dev k8s`: one pod per node; the size is the default of --shm-size."""


def memlock_limit(environ: Mapping[str, str]) -> int:
    """TORCHDEV_MEMLOCK: the locked memory GPU containers ask for, in bytes (-1, the default, is unlimited); the one
    setting the dev containers, compose.gpu.yaml and `./dev smoke` share, for engines that refuse unlimited."""
    value = environ.get(MEMLOCK_VARIABLE) or str(UNLIMITED)
    if not re.fullmatch(r"-1|\d+", value):
        raise BAD_MEMLOCK(variable=MEMLOCK_VARIABLE, value=value)
    return int(value)


DOCKER_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": MIB, "g": GIB}


def shm_bytes(shm: SharedMemory, environ: Mapping[str, str]) -> int:
    """The size of `shm` in bytes: its setting's value when `environ` has one (as Docker reads a size: 8g, 512m,
    16gb, 1073741824), else its own."""
    value = environ.get(shm.variable) if shm.variable else None
    if not value:
        return shm.size
    found = re.fullmatch(r"([1-9][0-9]*)\s*([bkmg]?)b?", value.strip().lower())
    if not found:
        raise BAD_SHM(variable=shm.variable, value=value, default=docker_size(shm.size))
    return int(found.group(1)) * DOCKER_UNITS[found.group(2)]


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


def _shell_size(shm: SharedMemory) -> str:
    """The size as bash and compose read a variable with a default: ${TORCHDEV_SHM_SIZE:-8g}, or the size itself."""
    return f"${{{shm.variable}:-{docker_size(shm.size)}}}" if shm.variable else docker_size(shm.size)


# --- the Docker SDK (torchdev.engine.ContainerSpec) --------------------------------------------------------------

def sdk_limits(profile: ContainerProfile, *, memlock: int | None = None) -> tuple[Limit, ...]:
    return tuple(Limit(name, value, value) for name, value in profile.ulimits(memlock).items())


def sdk_security(profile: ContainerProfile) -> dict:
    """ContainerSpec's privilege fields: no-new-privileges, every capability dropped, the profile's few kept."""
    return {"security_options": profile.security_options, "cap_drop": (DROP_ALL,), "cap_add": profile.capabilities}


def sdk_fields(profile: ContainerProfile, *, memlock: int | None = None, environment: Mapping[str, str] | None = None,
               environ: Mapping[str, str] | None = None) -> dict:
    """Keyword arguments of ContainerSpec; `memlock` (bytes, -1 unlimited) when the container gets GPUs,
    `environment` added to the profile's, and `environ` the host's settings (the shm size, the user's variables)."""
    environ = environ or {}
    passed = {name: environ[name] for name in profile.user.variables if environ.get(name)}
    fields = {"limits": sdk_limits(profile, memlock=memlock),
              "shm_size": docker_size(shm_bytes(profile.shm, environ)), "init": profile.init,
              "environment": {**profile.environment, **passed, **(environment or {})}, **sdk_security(profile)}
    if profile.user.name:
        fields.update(user=profile.user.name, entrypoint=profile.user.entrypoint)
    return fields


# --- the docker CLI (`docker run`) -------------------------------------------------------------------------------

def _ulimit_arguments(profile: ContainerProfile, memlock: int | str | None) -> list[str]:
    return [f"--ulimit={name}={value}" for name, value in profile.ulimits(memlock).items()]


def _privilege_arguments(profile: ContainerProfile) -> list[str]:
    return [*(f"--security-opt={option}" for option in profile.security_options), f"--cap-drop={DROP_ALL}",
            *(f"--cap-add={name}" for name in profile.capabilities)]


def docker_run_arguments(profile: ContainerProfile, environ: Mapping[str, str] | None = None) -> list[str]:
    """`docker run` options for a container without GPUs (gpu_run_arguments adds what GPUs need). With `environ`,
    the host's settings are read from it (the benchmark); without, they are bash's ${NAME:-default} (the sbatch
    script, which bash expands on each node). The user's variables pass as `--env=NAME`, which docker fills from
    its own environment where NAME is set."""
    size = _shell_size(profile.shm) if environ is None else docker_size(shm_bytes(profile.shm, environ))
    arguments = ["--init"] if profile.init else []
    arguments += ["--ipc=private", f"--shm-size={size}", *_ulimit_arguments(profile, None),
                  *_privilege_arguments(profile)]
    if profile.user.name:
        arguments.append(f"--user={profile.user.name}")
    arguments += [f"--env={name}={value}" for name, value in profile.environment.items()]
    arguments += [f"--env={name}" for name in profile.user.variables]
    if profile.user.entrypoint:
        arguments.append(f"--entrypoint={profile.user.entrypoint[0]}")
    return arguments


def docker_run_entry(profile: ContainerProfile) -> list[str]:
    """What goes between the image and the command in `docker run`: the entrypoint's own arguments
    (`--entrypoint` takes one word)."""
    return list(profile.user.entrypoint[1:])


def gpu_run_arguments(memlock: int | str) -> list[str]:
    """What `docker run` adds, beside --gpus, for a container with GPUs."""
    return [f"--ulimit=memlock={memlock}"]


# --- Compose (a service's fields) --------------------------------------------------------------------------------

COMPOSE_KEYS = ("user", "init", "ipc", "shm_size", "ulimits", "privileged", "cap_add", "cap_drop", "security_opt",
                "read_only")
"""The service fields the profile owns: a compose file sets them as compose_service renders them, or not at all."""
COMPOSE_MEMLOCK = f"${{{MEMLOCK_VARIABLE}:-{UNLIMITED}}}"
"""TORCHDEV_MEMLOCK as compose reads a variable with a default: ${TORCHDEV_MEMLOCK:--1}."""


def compose_environment(profile: ContainerProfile) -> dict[str, str | None]:
    """The profile's variables of a service's `environment`: its own values, and the user's variables with no
    value, which compose passes from the host where they are set."""
    return {**profile.environment, **{name: None for name in profile.user.variables}}


def compose_service(profile: ContainerProfile, *, gpus: bool = False) -> dict:
    """The profile's fields of a Compose service (after merges and extends), and the profile's variables of its
    `environment`; the entrypoint starts with profile.user.entrypoint."""
    service: dict = {"user": profile.user.name} if profile.user.name else {}
    service.update(init=profile.init, ipc="private", shm_size=_shell_size(profile.shm),
                   ulimits=profile.ulimits(COMPOSE_MEMLOCK if gpus else None),
                   security_opt=list(profile.security_options), cap_drop=[DROP_ALL])
    if profile.capabilities:
        service["cap_add"] = list(profile.capabilities)
    if compose_environment(profile):
        service["environment"] = compose_environment(profile)
    return service


# --- Dev Containers (devcontainer.json) --------------------------------------------------------------------------

DEVCONTAINER_KEYS = ("init", "runArgs", "remoteUser", "containerUser", "containerEnv", "privileged", "capAdd",
                     "securityOpt")
"""The devcontainer.json fields the profile owns: a config sets them as devcontainer_fields renders them, or not."""
DEVCONTAINER_MEMLOCK = f"${{localEnv:{MEMLOCK_VARIABLE}:{UNLIMITED}}}"
"""TORCHDEV_MEMLOCK as the Dev Containers CLI reads a host variable with a default: ${localEnv:TORCHDEV_MEMLOCK:-1}."""


def devcontainer_fields(profile: ContainerProfile, *, gpus: bool) -> dict:
    """A devcontainer.json's init, runArgs (/dev/shm, ulimits and privileges; GPUs themselves come from
    hostRequirements), remoteUser and, when the profile sets variables, containerEnv."""
    if profile.user.entrypoint:
        raise ValueError("a dev container runs as the image's user: the CLI gives it the host user's UID")
    shm = profile.shm
    size = f"${{localEnv:{shm.variable}:{docker_size(shm.size)}}}" if shm.variable else docker_size(shm.size)
    fields: dict = {"init": profile.init,
                    "runArgs": ["--ipc=private", f"--shm-size={size}",
                                *_ulimit_arguments(profile, DEVCONTAINER_MEMLOCK if gpus else None),
                                *_privilege_arguments(profile)],
                    "remoteUser": IMAGE_USER_NAME}
    if profile.environment:
        fields["containerEnv"] = profile.environment
    return fields


# --- Kubernetes (pod and container fields) -----------------------------------------------------------------------

def kubernetes_security_context(profile: ContainerProfile) -> dict:
    """A container's securityContext (every container of the pod, init containers too): no privilege escalation
    (no_new_privs), every capability dropped. The user and seccomp are the pod's (kubernetes_pod)."""
    capabilities: dict = {"drop": [DROP_ALL], **({"add": list(profile.capabilities)} if profile.capabilities else {})}
    return {"allowPrivilegeEscalation": not profile.no_new_privileges, "capabilities": capabilities}


def kubernetes_container(profile: ContainerProfile) -> dict:
    """A container's fields: /dev/shm mounted from the pod's volume, the profile's variables, its securityContext.
    Kubernetes has no ulimits: a pod gets the node runtime's stack and locked-memory limits."""
    container: dict = {"volumeMounts": [{"name": SHM_VOLUME, "mountPath": SHM_MOUNT}]}
    if profile.environment:
        container["env"] = [{"name": name, "value": value} for name, value in profile.environment.items()]
    container["securityContext"] = kubernetes_security_context(profile)
    return container


def kubernetes_pod(profile: ContainerProfile, containers: list[dict]) -> dict:
    """A pod's fields around its containers. shareProcessNamespace gives the pod a real PID 1 (the pause process)
    that reaps orphans, as `init` does; the pod runs as the image's user by number (Kubernetes can tell that it is
    not root only from a number), under the runtime's default seccomp profile, without the service account's
    token (the trainer never talks to the API server); /dev/shm is a memory emptyDir of the profile's size (the
    runtime's default is 64 MB)."""
    if profile.user.name:
        raise ValueError("a pod runs as the image's user: it has no mounted /workspace to take an owner from")
    pod: dict = {"shareProcessNamespace": True} if profile.init else {}
    pod["automountServiceAccountToken"] = False
    pod["securityContext"] = {"runAsNonRoot": True, "runAsUser": IMAGE_UID, "runAsGroup": IMAGE_GID,
                              "seccompProfile": {"type": "RuntimeDefault"}}
    pod["containers"] = containers
    pod["volumes"] = [{"name": SHM_VOLUME,
                       "emptyDir": {"medium": "Memory", "sizeLimit": kubernetes_quantity(profile.shm.size)}}]
    return pod
