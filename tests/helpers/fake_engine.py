"""An in-memory engine for unit tests, a torchdev.engine.ContainerEngine like the real Engine.

Images and their names live in a dict; builds and containers follow a script the test sets; `save` and `load` speak
real OCI archives (tests/helpers/oci_archive.py), so what torchdev does with them (torchdev.oci.recompressed_copy) runs as it
does on the real engine. What the real engine does at this interface (tags that move, containers removed after a
failed start or a deadline) is what tests/integration/test_engine.py checks; tests/unit/test_engine.py has the
type checker hold both to ContainerEngine.
"""
from __future__ import annotations

import io
import json
import sys
import tarfile
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator, Mapping, TextIO

from tests.helpers.oci_archive import loaded_image, multi_platform_archive
from torchdev.engine import (BuildRequest, ContainerInfo, ContainerSpec, EngineError, ImageInfo, ImageSizes, RunResult,
                             RunStatus)

RunScript = RunResult | Callable[[ContainerSpec], RunResult]


def config_digest_of(image_id: str) -> str:
    """The config digest the fake engine reports for an image (the real one's differs from the image ID too)."""
    return "sha256:" + image_id[-8:].rjust(64, "c")


def oci_archive(content: str, *, labels: dict[str, str], platforms: tuple[str, ...], name: str = "") -> bytes:
    """An image as an OCI archive: one small layer per platform, a tar of one file holding `content`; the same bytes
    for the same arguments, as a reproducible build or a second `docker save` of one image gives."""
    layers = {platform.split("/")[1]: one_file_tar("etc/fake-image", f"{content} for {platform}".encode())
              for platform in platforms}
    annotations = {"io.containerd.image.name": name} if name else None
    return multi_platform_archive(layers, labels=labels, top_annotations=annotations)[0]


def one_file_tar(path: str, content: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(path)
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


class FakeEngine:
    """Images, names and labels in memory; `builds` and `runs` script what buildx and containers do."""

    def __init__(self, *, info: dict | None = None) -> None:
        self.names: dict[str, str] = {}
        self.labels: dict[str, dict[str, str]] = {}
        self.refused_tags: set[str] = set()
        self.builds: list[int | BaseException] = []
        """What each next build does: 0 makes a new image, another number fails with it, an exception is raised."""
        self.requests: list[BuildRequest] = []
        """Every build asked for, in order."""
        self.steps_run: list[tuple[str, ...]] = []
        """The RUN steps each next successful build's log says it ran; by default one, `RUN fake-step` (fewer: a build
        that took a step's result from a concurrent build of it, as BuildKit does even under --no-cache)."""
        self.runs: dict[str, RunScript] = {}
        """What a container of an image does (by image name); by default it exits 0 with no output."""
        self.ran: list[ContainerSpec] = []
        self.made: dict[str, ContainerInfo] = {}
        """Containers that exist (running or stopped), by ID; `container` also finds them by name."""
        self.compose_calls: list[tuple[str, ...]] = []
        self.swept = 0
        """How often the runner's sweep after an interrupt asked for this command's containers to be removed."""
        self.compose_environments: list[dict[str, str]] = []
        """The environment each `docker compose` call ran with (what the compose files interpolate)."""
        self.local = True
        """Whether the engine runs on this host (its info's CDISpecDirs are then this host's folders)."""
        self.registry: dict[str, str] = {}
        """What the registry holds: reference -> manifest digest (pushes add to it)."""
        self.registry_refusal = ""
        """When set, every registry call fails with this message (as the engine words it)."""
        self.pushes_before_interrupt: int | None = None
        """After this many pushes, the next raises KeyboardInterrupt (Ctrl-C half-way)."""
        self.platforms: dict[str, tuple[str, ...]] = {}
        """image ID -> the platforms it holds (a build records its --platform); linux/amd64 when not set."""
        self.reproducible = False
        """When True, a build gives the image ID of any earlier build of the same request (as the real engine does
        for the same inputs); by default every build makes a new image, as a non-reproducible build would."""
        self._built: dict[str, str] = {}
        self._info = info or {"Runtimes": {"runc": {}}}
        self._images = 0

    def add_image(self, *names: str, labels: dict[str, str] | None = None) -> str:
        """A new image with these names; its ID."""
        self._images += 1
        image_id = f"sha256:{self._images:064x}"
        self.labels[image_id] = dict(labels or {})
        for name in names:
            self.names[name] = image_id
        return image_id

    @classmethod
    def connect(cls, *, timeout: float = 600, environ: Mapping[str, str] | None = None) -> FakeEngine:
        return cls()

    def close(self) -> None:
        pass

    def info(self) -> dict:
        return self._info

    def version(self) -> dict:
        return {"Version": "26.1.5-fake", "ApiVersion": "1.45"}

    def is_local(self) -> bool:
        return self.local

    def image(self, reference: str) -> ImageInfo | None:
        image_id = self.names.get(reference) or (reference if reference in self.labels else None)
        if image_id is None:
            return None
        tags = tuple(name for name, target in self.names.items() if target == image_id and "@" not in name)
        return ImageInfo(id=image_id, tags=tags, labels=self.labels[image_id], size=1 << 30, created="2026-11-29")

    def image_id(self, reference: str) -> str | None:
        found = self.image(reference)
        return found.id if found else None

    def image_sizes(self, reference: str) -> ImageSizes:
        return ImageSizes(on_disk=3 << 30, download=1 << 30)

    def images(self, *, label: str) -> list[ImageInfo]:
        found = [self.image(image_id) for image_id, labels in self.labels.items() if label in labels]
        return [image for image in found if image is not None]

    def tag(self, image_id: str, reference: str) -> None:
        if reference in self.refused_tags:
            raise EngineError(f"refusing to tag {reference} (scripted)")
        if image_id not in self.labels:
            raise EngineError(f"No such image: {image_id}")
        self.names[reference] = image_id

    def untag(self, reference: str, *, force: bool = False) -> None:
        image_id = self.names.pop(reference, None)
        if image_id is None:
            raise EngineError(f"No such image: {reference}")
        self._drop_if_nameless(image_id)

    def forget_build_name(self, image_id: str) -> None:
        if self.names.pop(f"moby-dangling@{image_id}", None):
            self._drop_if_nameless(image_id)

    def _drop_if_nameless(self, image_id: str) -> None:
        """As the containerd image store does: an image goes with its last name."""
        if image_id not in self.names.values():
            self.labels.pop(image_id, None)

    def remove_image(self, reference: str) -> None:
        image_id = self.image_id(reference)
        if image_id is None:
            return
        self.names = {name: target for name, target in self.names.items() if target != image_id}
        self.labels.pop(image_id, None)

    def load(self, archive: Path) -> None:
        """As the containerd store loads an OCI archive: the image's ID is its top manifest's digest, its name the
        io.containerd.image.name annotation."""
        image_id, name, labels, platforms = loaded_image(str(archive))
        self.labels[image_id] = dict(labels)
        self.platforms[image_id] = platforms
        if name:
            self.names[name] = image_id

    def save(self, reference: str, *, named: bool) -> Iterator[bytes]:
        """A `docker save` of the image: one small layer per platform, the same bytes for the same image."""
        image_id = self.image_id(reference)
        if image_id is None:
            raise EngineError(f"No such image: {reference}")
        return iter([oci_archive(f"files of {image_id}", labels=self.labels[image_id], name=reference if named else "",
                                 platforms=self.platforms.get(image_id, ("linux/amd64",)))])

    def registry_digest(self, reference: str) -> str:
        raise EngineError("no registry in the fake engine")

    def pull(self, reference: str) -> ImageInfo:
        raise EngineError("no registry in the fake engine")

    def push(self, reference: str) -> None:
        if self.registry_refusal:
            raise EngineError(self.registry_refusal)
        if self.pushes_before_interrupt is not None:
            if self.pushes_before_interrupt == 0:
                raise KeyboardInterrupt
            self.pushes_before_interrupt -= 1
        self.registry[reference] = self.names[reference]

    def remote_digest(self, reference: str) -> str | None:
        if self.registry_refusal:
            raise EngineError(self.registry_refusal)
        return self.registry.get(reference)

    def image_platforms(self, reference: str, candidates: tuple[str, ...]) -> tuple[str, ...]:
        image_id = self.image_id(reference)
        if image_id is None:
            return ()
        held = self.platforms.get(image_id, ("linux/amd64",))
        return tuple(platform for platform in candidates if platform in held)

    def add_container(self, name: str, image_id: str, *, running: bool = True, labels: dict[str, str] | None = None,
                      user: str = "") -> ContainerInfo:
        """A container of `image_id` (its labels with `labels` over them), as the engine would list it."""
        container = ContainerInfo(id=f"{len(self.made) + 1:064x}", name=name, image_id=image_id,
                                  labels={**self.labels.get(image_id, {}), **(labels or {})}, running=running,
                                  user=user)
        self.made[container.id] = container
        return container

    def container(self, reference: str) -> ContainerInfo | None:
        return next((c for c in self.made.values() if reference in (c.id, c.name) or
                     (len(reference) >= 12 and c.id.startswith(reference))), None)

    def containers(self, *, label: str) -> list[ContainerInfo]:
        key, equals, value = label.partition("=")
        return [c for c in self.made.values() if key in c.labels and (not equals or c.labels[key] == value)]

    def run(self, spec: ContainerSpec, *, timeout: float, echo: TextIO | None = None) -> RunResult:
        self.ran.append(spec)
        script = self.runs.get(spec.image, RunResult(RunStatus.EXITED, 0, ""))
        return script(spec) if callable(script) else script

    def output(self, image: str, *command: str, user: str | None = None, timeout: float = 300) -> str:
        result = self.run(ContainerSpec(image, command, user=user, entrypoint=()), timeout=timeout)
        if result.status is not RunStatus.EXITED or result.exit_code != 0:
            raise EngineError(f"`{' '.join(command)}` in {image} {result.status.value}")
        return result.output

    def build(self, request: BuildRequest, *, log_path: Path, out: TextIO = sys.stdout) -> tuple[int, list[str]]:
        """A new image in the engine (with `reproducible`, the earlier one of the same content), named as BuildKit's
        export names it, and buildx's metadata: the image ID and its config digest (config_digest_of)."""
        self.requests.append(request)
        outcome = self.builds.pop(0) if self.builds else 0
        if isinstance(outcome, BaseException):
            raise outcome
        lines = [f"#1 fake build of {request.context}"]
        if outcome == 0:
            image_id = self._image_of(request)
            self.platforms[image_id] = request.platforms
            self.names[f"moby-dangling@{image_id}"] = image_id  # as BuildKit's export to the containerd store
            request.metadata_file.write_text(json.dumps({
                "containerimage.digest": image_id, "containerimage.config.digest": config_digest_of(image_id)}))
            steps = self.steps_run.pop(0) if self.steps_run else ("RUN fake-step",)
            for number, step in enumerate(steps, start=2):
                lines += [f"#{number} [{request.target} {number - 1}/{len(steps)}] {step}", f"#{number} DONE 0.1s"]
        return outcome, lines

    @staticmethod
    def _content_key(request: BuildRequest) -> str:
        """What decides a build's content: its request less the per-build files (metadata, the staged lock folder)
        and --no-cache."""
        return repr(replace(request, metadata_file=Path(), contexts={}, no_cache=False))

    def _image_of(self, request: BuildRequest) -> str:
        """A new image; with `reproducible`, the one any earlier build of the same content made (back in the engine
        if it was removed since), as the real engine gives the same inputs the same image ID."""
        key = self._content_key(request)
        if self.reproducible and key in self._built:
            self.labels.setdefault(self._built[key], dict(request.labels))
        else:
            self._built[key] = self.add_image(labels=request.labels)
        return self._built[key]

    def compose_run(self, service: str, *args: str, cwd: Path, env: dict[str, str], files: tuple[str, ...] = (),
                    options: tuple[str, ...] = ()) -> int:
        self.compose_calls.append((*(part for file in files for part in ("-f", file)), "run", "--rm", *options,
                                   service, *args))
        self.compose_environments.append(dict(env))
        return 0

    def remove_own_containers(self) -> list[str]:
        """Nothing is left in the fake: its runs end within the call."""
        self.swept += 1
        return []
