"""The Docker engine behind one narrow interface: the only module of torchdev that imports the Docker SDK.

Every other module takes a `ContainerEngine` (the interface, written down below) and sees plain values (image IDs,
`ImageInfo`, `RunResult`), never the SDK's objects or errors, so the paths that matter when things go wrong (a tag
refused half-way, a container that does not start, one that hangs) can be exercised in seconds through
tests/helpers/fake_engine.py, which keeps the same promises in memory; the type checker holds both to the interface
(tests/unit/test_engine.py). Builds go through `docker buildx build` (the SDK cannot drive BuildKit,
docker/docker-py#2230) and compose through `docker compose`; both are invoked here too, and this module alone spells
their command lines: a build is asked for as a `BuildRequest`, and `buildx_command` renders it.
"""
from __future__ import annotations

import enum
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Mapping, Protocol, TextIO

import docker
from docker.auth import split_repo_name
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import DeviceRequest, Ulimit
from docker.utils import parse_repository_tag
from requests.exceptions import ConnectionError as RequestsConnectionError, ReadTimeout

from torchdev import processes
from torchdev.errors import RUNTIME, Problem, TorchdevError
from torchdev.grammar import without_userinfo

ENGINE_FIX = ("start Docker (Linux: `sudo systemctl start docker`; macOS/Windows: start Docker Desktop) or point "
              "DOCKER_HOST at a running engine; no engine installed: docs.docker.com/engine/install")
BUILDX_FIX = ("install the buildx plugin: docker-buildx-plugin from Docker's repository, docker-buildx on "
              "Debian/Ubuntu, or Docker Desktop")
CLI_FIX = "install the Docker CLI (docs.docker.com/engine/install) or Docker Desktop"
REMOVE_TIMEOUT = 60
OWNER_LABEL = "io.torchdev.owner"
"""Every container torchdev starts carries it, valued host/PID of the command (owner()): what an interrupted command
removes, and nothing else."""
STOP_TIMEOUT = 10
"""Seconds a container's command gets between SIGTERM and SIGKILL when torchdev stops it (`docker stop`'s default):
the trainer saves its checkpoint on SIGTERM."""
NO_DOCKER_CLI = Problem("the docker command is not on PATH", CLI_FIX, TorchdevError, RUNTIME)
NO_BUILDX = Problem("docker buildx is missing", BUILDX_FIX, TorchdevError, RUNTIME)
NO_ENGINE = Problem("no Docker engine answers ({cause})", ENGINE_FIX, TorchdevError, RUNTIME)
ENGINE_REFUSED = Problem("{explanation}", "", TorchdevError, RUNTIME)
"""The engine's own explanation of a refusal (EngineError): most commands turn it into their own line with a fix
(push, pin, save-bases); where one reaches the user as it is, it is the engine's words."""


class EngineError(TorchdevError):
    """The engine refused an operation; the message is the engine's own explanation."""


class EngineUnreachable(TorchdevError):
    """No engine answers; `cause` is the SDK's reason (no socket, permission denied, refused)."""

    def __init__(self, cause: str) -> None:
        super().__init__(NO_ENGINE.line(cause=cause.split(':')[0]))
        self.cause = cause


@dataclass(frozen=True)
class ImageRef:
    """An image reference split once, as the engine splits it: `registry:5000/ns/name:tag@sha256:...`.

    A port is not a tag: `registry:5000/name` has no tag, which a plain `rsplit(":")` gets wrong."""

    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        name, _, digest = text.partition("@")
        repository, tag = parse_repository_tag(name)
        return cls(repository, tag, digest or None)

    def __str__(self) -> str:
        return self.repository + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    @property
    def path(self) -> str:
        """The repository without its registry: `registry:5000/ml/torchdev` -> `ml/torchdev`."""
        return split_repo_name(self.repository)[1]

    def without_digest(self) -> ImageRef:
        return ImageRef(self.repository, self.tag)


@dataclass(frozen=True)
class ImageInfo:
    """What torchdev reads of an image: its ID, names, labels, size, creation time and environment."""

    id: str
    tags: tuple[str, ...]
    labels: dict[str, str]
    size: int
    created: str
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageSizes:
    """An image's size two ways, because one number misleads: what its files take on disk, unpacked, and what a pull
    downloads, its compressed layers as the engine keeps them (gzip for torchdev's builds). None: the store cannot
    say (the classic store keeps no compressed layers; a registry reports them after a push)."""

    on_disk: int | None
    download: int | None


@dataclass(frozen=True)
class Mount:
    """A host folder bound into a container."""

    source: str
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class Limit:
    """A ulimit; -1 is unlimited."""

    name: str
    soft: int
    hard: int


@dataclass(frozen=True)
class GpuDevices:
    """GPUs for a container: `count` through the NVIDIA driver (what `--gpus` asks; -1 all), or CDI device names
    (`nvidia.com/gpu=all`), which the engine resolves from its CDI specs."""

    count: int = 0
    cdi: tuple[str, ...] = ()


@dataclass(frozen=True)
class ContainerSpec:
    """One container to run to completion."""

    image: str
    command: tuple[str, ...]
    mounts: tuple[Mount, ...] = ()
    environment: dict[str, str] = field(default_factory=dict)
    gpus: GpuDevices = GpuDevices()
    limits: tuple[Limit, ...] = ()
    shm_size: str | None = None
    init: bool = False
    user: str | None = None
    entrypoint: tuple[str, ...] | None = None
    platform: str | None = None
    """Which platform of a multi-platform image to run (linux/arm64 runs emulated on an amd64 engine)."""
    security_options: tuple[str, ...] = ()
    """`--security-opt` values: no-new-privileges:true keeps setuid binaries and file capabilities from raising
    a process above what it started with."""
    cap_drop: tuple[str, ...] = ()
    """Capabilities taken from the engine's default set (ALL: every one)."""
    cap_add: tuple[str, ...] = ()
    """Capabilities given back after cap_drop (SETUID, ...)."""
    volumes_from: tuple[str, ...] = ()
    """Containers (running or stopped) whose volumes this one mounts where they do: a container's home volume, read
    by another."""
    network_disabled: bool = False
    """No network at all (only loopback)."""


@dataclass(frozen=True)
class ContainerInfo:
    """What torchdev reads of a container: its ID and name, the image it runs (its ID), its labels (the image's among
    them), whether it is running, and the user it runs as ('' for the image's own)."""

    id: str
    name: str
    image_id: str
    labels: dict[str, str]
    running: bool
    user: str = ""


class RunStatus(enum.Enum):
    EXITED = "exited"
    START_FAILED = "could not start"
    TIMED_OUT = "timed out"


@dataclass(frozen=True)
class RunResult:
    """How a container ended. `output` is its stdout and stderr, or the engine's reason it could not start."""

    status: RunStatus
    exit_code: int | None
    output: str


@dataclass(frozen=True)
class BuildOutput:
    """Where a build puts the image (buildx's `--output`): an exporter `type` (docker: into the engine; oci: an
    archive file), the file it writes when it writes one, and the exporter's own settings, in their order."""

    type: str
    settings: tuple[tuple[str, str], ...] = ()
    dest: Path | None = None

    def to(self, dest: Path) -> BuildOutput:
        """This output, written to the file `dest`."""
        return replace(self, dest=dest)

    def __str__(self) -> str:
        """The exporter as `--output` takes it: `type=oci,dest=/a.tar,compression=uncompressed`."""
        pairs = (("type", self.type), *((("dest", str(self.dest)),) if self.dest else ()), *self.settings)
        return ",".join(f"{key}={value}" for key, value in pairs)


@dataclass(frozen=True)
class BuildRequest:
    """One BuildKit build as data, which the engine turns into the command it runs (`buildx_command`), as repo2docker's
    ContainerEngine.build takes its arguments. It names no tags: tags move only once a build has succeeded, all of
    them or none (torchdev.build)."""

    context: Path
    dockerfile: Path
    target: str
    platforms: tuple[str, ...]
    """linux/amd64, linux/arm64: one image holding each."""
    output: BuildOutput
    metadata_file: Path
    """Where buildx writes what it made (the image's digests)."""
    build_args: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, Path] = field(default_factory=dict)
    """Secret id -> the host file it is read from; mounted during RUN only, never stored in the image."""
    contexts: dict[str, Path] = field(default_factory=dict)
    """Named build contexts: name -> host folder (`COPY --from=lock`)."""
    no_cache: bool = False
    """Rebuild every layer (the pip and apt download caches stay)."""
    provenance: bool = False
    """Attach a provenance attestation, which makes even a one-platform image an index with a digest of its own."""


def buildx_command(request: BuildRequest) -> list[str]:
    """The `docker buildx build` command line for `request`: what `Engine.build` runs and `--dry-run` prints."""
    command = ["docker", "buildx", "build", f"--output={request.output}",
               f"--provenance={str(request.provenance).lower()}", "--progress=plain",
               "--platform", ",".join(request.platforms), "--file", str(request.dockerfile),
               "--target", request.target, "--metadata-file", str(request.metadata_file)]
    for name, folder in request.contexts.items():
        command += ["--build-context", f"{name}={folder}"]
    if request.no_cache:
        command.append("--no-cache")
    for key, value in request.build_args.items():
        command += ["--build-arg", f"{key}={value}"]
    for key, value in request.labels.items():
        command += ["--label", f"{key}={value}"]
    for secret_id, source in request.secrets.items():
        command += ["--secret", f"id={secret_id},src={source}"]
    return command + [str(request.context)]


@dataclass(frozen=True)
class CommandResult:
    """What a docker CLI command answered: its exit status and its output, stdout then stderr."""

    status: int
    output: str


def probe(command: list[str], *, timeout: float = 30) -> CommandResult | None:
    """Run a command that only reports (`docker buildx version`, `nvidia-smi`); None when it is not installed."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        return None
    except subprocess.TimeoutExpired:
        return CommandResult(124, f"`{' '.join(command)}` did not answer within {timeout:.0f} s")
    return CommandResult(done.returncode, (done.stdout + done.stderr).strip())


def cli_plugin(name: str) -> CommandResult | None:
    """How the docker CLI answers `docker NAME version` (buildx, compose): status 0 when the plugin is there; None when
    the docker command is not. It asks the CLI alone, so it answers when no engine does."""
    if shutil.which("docker") is None:
        return None
    return probe(["docker", name, "version"])


def require_buildx() -> None:
    """Builds need BuildKit through the buildx plugin; say how to get it before a build starts."""
    answer = cli_plugin("buildx")
    if answer is None:
        raise NO_DOCKER_CLI()
    if answer.status != 0:
        raise NO_BUILDX()


class ContainerEngine(Protocol):
    """What torchdev asks of a container engine: every feature takes one of these, never the SDK or a concrete class.
    `Engine` is the Docker engine behind it; tests/helpers/fake_engine.py's FakeEngine keeps the same promises in
    memory, and the type checker holds both to this list (tests/unit/test_engine.py)."""

    def close(self) -> None: ...

    # What the engine is and can do.
    def info(self) -> dict: ...
    def version(self) -> dict: ...
    def is_local(self) -> bool: ...

    # Images.
    def image(self, reference: str) -> ImageInfo | None: ...
    def image_id(self, reference: str) -> str | None: ...
    def image_sizes(self, reference: str) -> ImageSizes: ...
    def images(self, *, label: str) -> list[ImageInfo]: ...
    def image_platforms(self, reference: str, candidates: tuple[str, ...]) -> tuple[str, ...]: ...
    def tag(self, image_id: str, reference: str) -> None: ...
    def untag(self, reference: str, *, force: bool = False) -> None: ...
    def forget_build_name(self, image_id: str) -> None: ...
    def remove_image(self, reference: str) -> None: ...
    def load(self, archive: Path) -> None: ...
    def save(self, reference: str, *, named: bool) -> Iterator[bytes]: ...

    # Registries.
    def registry_digest(self, reference: str) -> str: ...
    def remote_digest(self, reference: str) -> str | None: ...
    def pull(self, reference: str) -> ImageInfo: ...
    def push(self, reference: str) -> None: ...

    # Containers, builds and compose.
    def container(self, reference: str) -> ContainerInfo | None: ...
    def containers(self, *, label: str) -> list[ContainerInfo]: ...
    def run(self, spec: ContainerSpec, *, timeout: float, echo: TextIO | None = None) -> RunResult: ...
    def output(self, image: str, *command: str, user: str | None = None, timeout: float = 300) -> str: ...
    def build(self, request: BuildRequest, *, log_path: Path, out: TextIO = sys.stdout) -> tuple[int, list[str]]: ...
    def compose_run(self, service: str, *args: str, cwd: Path, env: dict[str, str], files: tuple[str, ...] = (),
                    options: tuple[str, ...] = ()) -> int: ...
    def remove_own_containers(self) -> list[str]: ...


def owner() -> str:
    """This command's value of OWNER_LABEL: the host and the process, so that commands sharing an engine never take
    each other's containers."""
    return f"{socket.gethostname()}/{os.getpid()}"


def _explanation(error: APIError) -> str:
    return str(error.explanation or error)


class Engine:
    """A Docker engine that answered, a `ContainerEngine`. Construct it with `Engine.connect()`."""

    def __init__(self, client: docker.DockerClient) -> None:
        self._client = client

    @classmethod
    def connect(cls, *, timeout: float = 600, environ: Mapping[str, str] | None = None) -> Engine:
        """An engine that answers a ping, or EngineUnreachable naming the fix; DOCKER_HOST and the other DOCKER_*
        variables are read from `environ` (this process's by default)."""
        try:
            client = docker.from_env(timeout=timeout, environment=None if environ is None else dict(environ))
            client.ping()
        except DockerException as error:
            raise EngineUnreachable(str(error)) from None
        return cls(client)

    def close(self) -> None:
        self._client.close()

    # What the engine is and can do.

    def info(self) -> dict:
        return self._client.info()

    def version(self) -> dict:
        return self._client.version()

    def is_local(self) -> bool:
        """Whether the engine runs on this host (a local socket), so the paths its info names (CDISpecDirs,
        DockerRootDir) are this host's."""
        return self._client.api.base_url.startswith(("http+docker://localhost", "http+docker://localunixsocket"))

    # Images.

    def image(self, reference: str) -> ImageInfo | None:
        """The image `reference` (a name, tag or ID) names, or None when the engine has none."""
        try:
            return _image_info(self._client.images.get(reference))
        except ImageNotFound:
            return None

    def image_id(self, reference: str) -> str | None:
        found = self.image(reference)
        return found.id if found else None

    def image_sizes(self, reference: str) -> ImageSizes:
        """On the containerd image store (Engine 26, API 1.45, measured) an image's inspect Size is its compressed
        content, and its listing Size that plus its unpacked snapshots: `docker image ls` shows the sum, 7.1 GB for a
        5.06 GB image. The classic store's Size is the unpacked layers alone."""
        image = self._client.images.get(reference)
        content = image.attrs.get("Size") or 0
        if not self._containerd_store():
            return ImageSizes(on_disk=content, download=None)
        listed = [entry for entry in self._client.api.images() if entry["Id"] == image.id]
        total = listed[0].get("Size", 0) if listed else 0
        return ImageSizes(on_disk=total - content if total > content else None, download=content)

    def _containerd_store(self) -> bool:
        status = dict(pair for pair in self.info().get("DriverStatus") or [] if len(pair) == 2)
        return status.get("driver-type") == "io.containerd.snapshotter.v1"

    def images(self, *, label: str) -> list[ImageInfo]:
        """Every image carrying `label` (any value)."""
        return [_image_info(image) for image in self._client.images.list(filters={"label": label})]

    def tag(self, image_id: str, reference: str) -> None:
        """Point `reference` at `image_id`, moving it when it pointed elsewhere."""
        ref = ImageRef.parse(reference)
        try:
            self._client.api.tag(image_id, ref.repository, ref.tag or "latest", force=True)
        except APIError as error:
            raise EngineError(_explanation(error)) from None

    def untag(self, reference: str, *, force: bool = False) -> None:
        """Remove one name; the image stays while other names or containers use it. `force`: also when a container
        runs the image (the containerd store refuses to drop even one of several names then)."""
        try:
            self._client.api.remove_image(reference, force=force, noprune=True)
        except APIError as error:
            raise EngineError(_explanation(error)) from None

    def forget_build_name(self, image_id: str) -> None:
        """Drop the `moby-dangling@<digest>` name the containerd image store gives every BuildKit export, which a
        build whose image was already tagged (a full cache hit) leaves beside the real tags."""
        try:
            self._client.api.remove_image(f"moby-dangling@{image_id}", noprune=True)
        except APIError:
            pass  # the classic store, or tagging already dropped it

    def remove_image(self, reference: str) -> None:
        try:
            self._client.images.remove(reference, force=True)
        except ImageNotFound:
            pass
        except APIError as error:
            raise EngineError(_explanation(error)) from None

    def load(self, archive: Path) -> None:
        with archive.open("rb") as data:
            self._client.images.load(data)

    def save(self, reference: str, *, named: bool) -> Iterator[bytes]:
        """A `docker load`-able archive of the image, in chunks; `named` keeps `reference` as its name."""
        return self._client.images.get(reference).save(named=reference if named else False)

    def registry_digest(self, reference: str) -> str:
        """The manifest digest the registry serves for `reference`."""
        try:
            return self._client.images.get_registry_data(reference).id
        except APIError as error:
            raise EngineError(_explanation(error).split(": ")[-1]) from None

    def remote_digest(self, reference: str) -> str | None:
        """The registry's manifest digest for `reference`, None when the registry has no such tag (or repository);
        EngineError when it cannot be asked (unreachable, login needed, TLS)."""
        try:
            return self._client.images.get_registry_data(reference).id
        except NotFound:
            return None
        except APIError as error:
            raise EngineError(_explanation(error)) from None

    def image_platforms(self, reference: str, candidates: tuple[str, ...]) -> tuple[str, ...]:
        """Which of `candidates` (linux/arm64, ...) the local image holds. Engine 26 lists one platform per image, so
        each is tried by creating, never starting, a container of it: a missing platform is "no such image"."""
        held = []
        for platform in candidates:
            try:
                container = self._client.containers.create(reference, ["true"], platform=platform,
                                                           labels={OWNER_LABEL: owner()})
            except (ImageNotFound, APIError):
                continue
            try:
                held.append(platform)
            finally:
                container.remove(force=True)
        return tuple(held)

    def pull(self, reference: str) -> ImageInfo:
        try:
            return _image_info(self._client.images.pull(reference))
        except APIError as error:
            raise EngineError(_explanation(error).split(": ")[-1]) from None

    def push(self, reference: str) -> None:
        ref = ImageRef.parse(reference)
        for event in self._client.images.push(ref.repository, tag=ref.tag, stream=True, decode=True):
            if "error" in event:
                raise EngineError(event["error"])

    # Containers.

    def container(self, reference: str) -> ContainerInfo | None:
        """The container `reference` (a name or ID, running or stopped) names, or None."""
        try:
            return _container_info(self._client.containers.get(reference))
        except NotFound:
            return None
        except APIError as error:
            raise EngineError(_explanation(error)) from None

    def containers(self, *, label: str) -> list[ContainerInfo]:
        """Every container, running or stopped, carrying `label` (`key` or `key=value`)."""
        return [_container_info(found) for found in self._client.containers.list(all=True, filters={"label": label})]

    def run(self, spec: ContainerSpec, *, timeout: float, echo: TextIO | None = None) -> RunResult:
        """Run a container to its end, echoing its output; kill it past `timeout` seconds. The container is
        removed whatever happens: a failed start, a timeout, an interrupt."""
        try:
            container = self._client.containers.create(spec.image, list(spec.command), **_create_options(spec))
        except (ImageNotFound, APIError) as error:
            return RunResult(RunStatus.START_FAILED, None, _explanation(error))
        try:
            return _run_created(container, timeout=timeout, echo=echo)
        finally:
            try:
                container.remove(force=True)
            except NotFound:
                pass

    def output(self, image: str, *command: str, user: str | None = None, timeout: float = 300) -> str:
        """What a short command prints in a fresh container of `image`, or EngineError when it fails."""
        result = self.run(ContainerSpec(image, command, user=user, entrypoint=()), timeout=timeout)
        if result.status is not RunStatus.EXITED or result.exit_code != 0:
            raise EngineError(f"`{' '.join(command)}` in {image} {result.status.value} "
                              f"(exit {result.exit_code}): {result.output.strip()[-500:]}")
        return result.output

    # Commands of the docker CLI: BuildKit builds and Compose.

    def build(self, request: BuildRequest, *, log_path: Path, out: TextIO = sys.stdout) -> tuple[int, list[str]]:
        """Run the build `request` asks for, echoing its progress to `out` and keeping a full log at `log_path`
        (every URL without a login): (exit status, log lines). buildx runs in a session of its own, so an interrupt
        reaches it only from here: as SIGINT, which makes it cancel the build as Ctrl-C in a terminal does, then
        waited for."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        lines: list[str] = []
        with log_path.open("w", encoding="utf-8") as log, subprocess.Popen(
                buildx_command(request), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                text=True, errors="replace", start_new_session=True) as process:
            assert process.stdout is not None
            try:
                for line in map(without_userinfo, process.stdout):
                    out.write(line)
                    log.write(line)
                    lines.append(line.rstrip("\n"))
                return process.wait(), lines
            except KeyboardInterrupt:
                processes.stop(process, signal.SIGINT, group=True)
                raise

    def compose_run(self, service: str, *args: str, cwd: Path, env: dict[str, str], files: tuple[str, ...] = (),
                    options: tuple[str, ...] = ()) -> int:
        """`docker compose [-f FILE ...] run --rm OPTIONS SERVICE ARGS` in the foreground, attached to this terminal,
        its container named for this command and labelled as its own (`files`: compose's own default when empty).
        An interrupt (Ctrl-C reaches compose from the terminal too; SIGTERM only this process) is passed on to
        compose, and whatever way it ends, the container is stopped (its command gets STOP_TIMEOUT seconds) and
        removed if compose left it."""
        name = f"torchdev-{service}-{os.getpid()}-{os.urandom(3).hex()}"
        command = ["docker", "compose", *(part for file in files for part in ("-f", file)), "run", "--rm",
                   "--name", name, "--label", f"{OWNER_LABEL}={owner()}", *options, service, *args]
        try:
            with subprocess.Popen(command, cwd=cwd, env=env) as process:
                return processes.wait(process, group=False)
        finally:
            self._remove_container(name)

    def _remove_container(self, name: str) -> bool:
        """Stop (STOP_TIMEOUT seconds' grace) and remove the container `name`; whether there was one."""
        try:
            container = self._client.containers.get(name)
        except NotFound:
            return False
        try:
            container.stop(timeout=STOP_TIMEOUT)
        except (NotFound, APIError):
            pass
        try:
            container.remove(force=True)
        except NotFound:
            pass
        except APIError as error:
            if error.status_code != 409:  # 409: compose's own --rm is removing it already, which is what we want
                raise
        return True

    def remove_own_containers(self) -> list[str]:
        """Remove every container this command started that is still there (OWNER_LABEL): the runner's last sweep
        after an interrupt, for one caught between its creation and the `finally` that removes it. Their names."""
        found = self._client.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={owner()}"})
        return [container.name for container in found if self._remove_container(container.name)]


def _image_info(image) -> ImageInfo:
    config = image.attrs.get("Config") or {}
    env = dict(item.split("=", 1) for item in config.get("Env") or [] if "=" in item)
    return ImageInfo(id=image.id, tags=tuple(image.tags), labels=dict(image.labels or {}),
                     size=image.attrs.get("Size") or 0, created=(image.attrs.get("Created") or "")[:19], env=env)


def _container_info(container) -> ContainerInfo:
    config = container.attrs.get("Config") or {}
    return ContainerInfo(id=container.id, name=container.name, image_id=container.attrs.get("Image", ""),
                         labels=dict(config.get("Labels") or {}),
                         running=(container.attrs.get("State") or {}).get("Running", False),
                         user=config.get("User") or "")


def _create_options(spec: ContainerSpec) -> dict:
    options = {
        "volumes": {m.source: {"bind": m.target, "mode": "ro" if m.read_only else "rw"} for m in spec.mounts},
        "environment": dict(spec.environment), "init": spec.init, "labels": {OWNER_LABEL: owner()},
        "ulimits": [Ulimit(name=limit.name, soft=limit.soft, hard=limit.hard) for limit in spec.limits],
        "device_requests": _device_requests(spec.gpus),
    }
    privileges = {"security_opt": list(spec.security_options), "cap_drop": list(spec.cap_drop),
                  "cap_add": list(spec.cap_add)}
    options.update({key: value for key, value in privileges.items() if value})
    optional = {"shm_size": spec.shm_size, "user": spec.user, "platform": spec.platform,
                "entrypoint": list(spec.entrypoint) if spec.entrypoint is not None else None,
                "volumes_from": list(spec.volumes_from) or None, "network_disabled": spec.network_disabled or None}
    return {**options, **{key: value for key, value in optional.items() if value is not None}}


def _device_requests(gpus: GpuDevices) -> list[DeviceRequest]:
    if gpus.cdi:
        return [DeviceRequest(driver="cdi", device_ids=list(gpus.cdi))]
    return [DeviceRequest(count=gpus.count, capabilities=[["gpu"]])] if gpus.count else []


def _run_created(container, *, timeout: float, echo: TextIO | None) -> RunResult:
    """Start, follow the output in a thread, and wait with a deadline in this one: a container that prints nothing
    for hours still ends at its deadline, because the wait, not the log stream, is what times out."""
    try:
        container.start()
    except APIError as error:
        return RunResult(RunStatus.START_FAILED, None, _explanation(error))
    follower = threading.Thread(target=_echo_logs, args=(container, echo), daemon=True)
    follower.start()
    try:
        status = container.wait(timeout=timeout)["StatusCode"]
    except (ReadTimeout, RequestsConnectionError):
        container.kill()
        follower.join(REMOVE_TIMEOUT)
        return RunResult(RunStatus.TIMED_OUT, None, container.logs().decode(errors="replace"))
    follower.join(REMOVE_TIMEOUT)
    return RunResult(RunStatus.EXITED, status, container.logs().decode(errors="replace"))


def _echo_logs(container, echo: TextIO | None) -> None:
    """Best effort: the complete output is read once more when the container has ended."""
    if echo is None:
        return
    try:
        for chunk in container.logs(stream=True, follow=True):
            echo.write(chunk.decode(errors="replace"))
            echo.flush()
    except (DockerException, ReadTimeout, RequestsConnectionError):
        pass
