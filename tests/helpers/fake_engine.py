"""An in-memory engine for unit tests, a torchdev.engine.ContainerEngine like the real Engine.

Images and their names live in a dict; builds and containers follow a script the test sets; `save` and `load` speak
real OCI archives (tests/helpers/oci_archive.py), so what torchdev does with them (torchdev.oci.gzip_copy) runs as it
does on the real engine. What the real engine does at this interface (tags that move, containers removed after a
failed start or a deadline) is what tests/integration/test_engine.py checks; tests/unit/test_fake_engine.py has the
type checker hold both to ContainerEngine.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable, Iterator, Mapping, TextIO

from tests.helpers.oci_archive import loaded_image, multi_platform_archive
from torchdev.engine import BuildRequest, ContainerSpec, EngineError, ImageInfo, ImageSizes, RunResult, RunStatus

RunScript = RunResult | Callable[[ContainerSpec], RunResult]


def oci_archive(content: str, *, labels: dict[str, str], platforms: tuple[str, ...], name: str = "") -> bytes:
    """An image as an OCI archive: one small layer per platform holding `content`; the same bytes for the same
    arguments, as a reproducible build or a second `docker save` of one image gives."""
    layers = {platform.split("/")[1]: f"{content} for {platform}".encode() for platform in platforms}
    annotations = {"io.containerd.image.name": name} if name else None
    return multi_platform_archive(layers, labels=labels, top_annotations=annotations)[0]


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
        self.runs: dict[str, RunScript] = {}
        """What a container of an image does (by image name); by default it exits 0 with no output."""
        self.ran: list[ContainerSpec] = []
        self.compose_calls: list[tuple[str, ...]] = []
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
        """A new image in the engine; or, for an output with a file (the oci exporter), an archive there, the same
        for the same request (a reproducible build), which `load` then brings in."""
        self.requests.append(request)
        outcome = self.builds.pop(0) if self.builds else 0
        if isinstance(outcome, BaseException):
            raise outcome
        lines = [f"#1 fake build of {request.context}"]
        if outcome == 0:
            if request.output.dest:
                content = json.dumps([request.build_args, request.labels, request.platforms])
                saved = oci_archive(content, labels=request.labels, platforms=request.platforms)
                request.output.dest.write_bytes(saved)
                image_id = loaded_image(saved)[0]
            else:
                image_id = self.add_image(labels=request.labels)
                self.platforms[image_id] = request.platforms
                self.names[f"moby-dangling@{image_id}"] = image_id  # as BuildKit's export to the containerd store
            request.metadata_file.write_text(json.dumps({"containerimage.digest": image_id}))
        return outcome, lines

    def compose(self, *args: str, cwd: Path, env: dict[str, str]) -> int:
        self.compose_calls.append(args)
        self.compose_environments.append(dict(env))
        return 0
