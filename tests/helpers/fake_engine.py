"""An in-memory engine for unit tests, honouring torchdev.engine.Engine's interface.

Images and their names live in a dict; builds and containers follow a script the test sets. What the real
engine does at this interface (tags that move, containers removed after a failed start or a deadline) is what
tests/integration/test_engine.py checks; tests/unit/test_fake_engine.py keeps the two signatures the same.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable, Iterator, TextIO

from torchdev.engine import ContainerSpec, EngineError, ImageInfo, ImageSizes, RunResult, RunStatus
from torchdev.oci import Recompressed

RunScript = RunResult | Callable[[ContainerSpec], RunResult]


class FakeEngine:
    """Images, names and labels in memory; `builds` and `runs` script what buildx and containers do."""

    def __init__(self, *, info: dict | None = None) -> None:
        self.names: dict[str, str] = {}
        self.labels: dict[str, dict[str, str]] = {}
        self.refused_tags: set[str] = set()
        self.builds: list[int | BaseException] = []
        """What each next build does: 0 makes a new image, another number fails with it, an exception is raised."""
        self.runs: dict[str, RunScript] = {}
        """What a container of an image does (by image name); by default it exits 0 with no output."""
        self.ran: list[ContainerSpec] = []
        self.compose_calls: list[tuple[str, ...]] = []
        self.spec_devices: tuple[str, ...] = ()
        """CDI devices in the spec folders (the real engine reads them from this host)."""
        self.registry: dict[str, str] = {}
        """What the registry holds: reference -> manifest digest (pushes add to it)."""
        self.registry_refusal = ""
        """When set, every registry call fails with this message (as the engine words it)."""
        self.pushes_before_interrupt: int | None = None
        """After this many pushes, the next raises KeyboardInterrupt (Ctrl-C half-way)."""
        self.platforms: dict[str, tuple[str, ...]] = {}
        """image ID -> the platforms it holds (a build records its --platform); linux/amd64 when not set."""
        self.reproducible = False
        """When True, a build gives the image ID of any earlier build of the same command (as the real engine does
        for the same inputs); by default every build makes a new image, as a non-reproducible build would."""
        self._built: dict[tuple[str, ...], str] = {}
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
    def connect(cls, *, timeout: float = 600) -> FakeEngine:
        return cls()

    def close(self) -> None:
        pass

    def info(self) -> dict:
        return self._info

    def version(self) -> dict:
        return {"Version": "26.1.5-fake", "ApiVersion": "1.45"}

    def cdi_spec_devices(self, kind: str, *, folders: list[str]) -> tuple[str, ...]:
        return tuple(device for device in self.spec_devices if device.startswith(f"{kind}=")) if folders else ()

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
        return [self.image(image_id) for image_id, labels in self.labels.items() if label in labels]

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
        self.names = {name: target for name, target in self.names.items() if target != image_id}
        self.labels.pop(image_id, None)

    def load(self, archive: Path) -> None:
        self.add_image()

    def save(self, reference: str, *, named: bool) -> Iterator[bytes]:
        return iter([f"archive of {reference}".encode()])

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
        held = self.platforms.get(self.image_id(reference) or "", ("linux/amd64",))
        return tuple(platform for platform in candidates if platform in held)

    def gzip_copy(self, reference: str, *, name: str) -> Recompressed:
        """A new image (its ID stands for the gzip manifest's digest), the same for the same source every time."""
        source = self.image_id(reference)
        copy = "sha256:" + "9" * 8 + source[-56:]
        self.labels[copy] = dict(self.labels[source])
        self.platforms[copy] = self.platforms.get(source, ("linux/amd64",))
        self.names[name] = copy
        return Recompressed(copy, 2 << 30)

    def run(self, spec: ContainerSpec, *, timeout: float, echo: TextIO | None = None) -> RunResult:
        self.ran.append(spec)
        script = self.runs.get(spec.image, RunResult(RunStatus.EXITED, 0, ""))
        return script(spec) if callable(script) else script

    def output(self, image: str, *command: str, user: str | None = None, timeout: float = 300) -> str:
        result = self.run(ContainerSpec(image, command, user=user, entrypoint=()), timeout=timeout)
        if result.status is not RunStatus.EXITED or result.exit_code != 0:
            raise EngineError(f"`{' '.join(command)}` in {image} {result.status.value}")
        return result.output

    def build(self, command: list[str], *, log_path: Path, out: TextIO = sys.stdout) -> tuple[int, list[str]]:
        outcome = self.builds.pop(0) if self.builds else 0
        if isinstance(outcome, BaseException):
            raise outcome
        lines = [f"#1 fake build of {command[-1]}"]
        if outcome == 0:
            labels = dict(command[i + 1].split("=", 1) for i, word in enumerate(command) if word == "--label")
            image_id = self._reproduced(command) or self.add_image(labels=labels)
            self._built[self._content_key(command)] = image_id
            self.platforms[image_id] = tuple(command[command.index("--platform") + 1].split(","))
            self.names[f"moby-dangling@{image_id}"] = image_id  # as BuildKit's export to the containerd store
            metadata = Path(command[command.index("--metadata-file") + 1])
            metadata.write_text(json.dumps({"containerimage.digest": image_id,
                                            "containerimage.config.digest": "sha256:" + image_id[-8:].rjust(64, "c")}))
        return outcome, lines

    @staticmethod
    def _content_key(command: list[str]) -> tuple[str, ...]:
        """What decides a build's content: its command less the per-build paths and --no-cache."""
        per_build = {"--metadata-file", "--build-context"}
        return tuple(word for i, word in enumerate(command)
                     if word not in per_build and word != "--no-cache" and (i == 0 or command[i - 1] not in per_build))

    def _reproduced(self, command: list[str]) -> str | None:
        """With `reproducible`, the ID an earlier build of the same content made, while that image is still there."""
        known = self._built.get(self._content_key(command)) if self.reproducible else None
        return known if known and self.image(known) else None

    def compose(self, *args: str, cwd: Path, env: dict[str, str]) -> int:
        self.compose_calls.append(args)
        return 0
