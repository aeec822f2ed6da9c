"""Base images pinned by digest (`invoke pin`) and copied somewhere the user controls (`invoke save-bases`).

Upstream bases disappear: NVIDIA deletes end-of-life CUDA tags. A digest makes a build ask for exactly
the base it was made from; a saved copy keeps that base available after upstream has dropped it.
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from pathlib import Path

from torchdev.engine import ContainerEngine, EngineError, ImageInfo, ImageRef
from torchdev.errors import RUNTIME, Problem, TorchdevError
from torchdev.files import write_atomically
from torchdev.matrix import Variant
from torchdev.yamlsource import Origin


UNRESOLVABLE = Problem("cannot resolve {base} in its registry ({error})", "run `./dev pin` where that registry is "
                       "reachable, or pin a mirror's copy", TorchdevError, RUNTIME)
LINE_MOVED = Problem("{origin}: expected the base {old} on this line", "edit it by hand to {new}", TorchdevError,
                     RUNTIME)
UNPULLABLE = Problem("cannot pull {base} ({error})", "it may be gone upstream; point the overlay at a mirror that "
                     "still has it", TorchdevError, RUNTIME)
MIRROR_PUSH_FAILED = Problem("pushing {target} failed: {error}", "check the registry's address and your login "
                             "(`docker login`)", TorchdevError, RUNTIME)


class PinOutcome(enum.Enum):
    PINNED = "pinned"
    ALREADY_PINNED = "already pinned"
    FAILED = "failed"


@dataclass(frozen=True)
class PinResult:
    variant: str
    base: str
    outcome: PinOutcome
    detail: str


def is_pinned(base: str) -> bool:
    return ImageRef.parse(base).digest is not None


def pinned_reference(base: str, digest: str) -> str:
    """`name:tag` plus its digest: the tag stays for people, the digest decides what is pulled."""
    return f"{ImageRef.parse(base).without_digest()}@{digest}"


def resolve_digest(engine: ContainerEngine, base: str) -> str:
    """The registry's manifest digest for `base`, or a TorchdevError saying why it cannot be had."""
    try:
        return engine.registry_digest(base)
    except EngineError as error:
        raise UNRESOLVABLE(base=base, error=error) from None


def rewrite_base_line(*, origin: Origin, old: str, new: str) -> None:
    """Replace `old` by `new` on the line the base was written at, keeping comments; atomically."""
    path = Path(origin.file)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    line = lines[origin.line - 1]
    if old not in line:
        raise LINE_MOVED(origin=origin, old=old, new=new)
    lines[origin.line - 1] = line.replace(old, new, 1)
    write_atomically(path, "".join(lines))


def pin_variant(engine: ContainerEngine, *, variant: Variant, origin: Origin) -> PinResult:
    """Resolve one variant's base to its digest and write it where the base was declared."""
    if is_pinned(variant.base):
        return PinResult(variant.name, variant.base, PinOutcome.ALREADY_PINNED, str(origin))
    try:
        digest = resolve_digest(engine, variant.base)
    except TorchdevError as error:
        return PinResult(variant.name, variant.base, PinOutcome.FAILED, str(error))
    rewrite_base_line(origin=origin, old=variant.base, new=pinned_reference(variant.base, digest))
    return PinResult(variant.name, variant.base, PinOutcome.PINNED, f"{digest} written to {origin}")


def local_base(engine: ContainerEngine, base: str) -> ImageInfo:
    """The base as the engine holds it, pulling it (by digest) when it is not there yet."""
    found = engine.image(base)
    if found:
        return found
    try:
        return engine.pull(base)
    except EngineError as error:
        raise UNPULLABLE(base=base, error=error) from None


def mirror_reference(base: str, registry: str) -> str:
    """Where a base goes in the user's registry: registry/prefix + its repository path, tag kept, digest dropped."""
    ref = ImageRef.parse(base)
    return str(ImageRef(f"{registry.rstrip('/')}/{ref.path}", ref.tag or "latest"))


def push_base(engine: ContainerEngine, *, base: str, registry: str) -> str:
    """Copy a pinned base into `registry`; returns the reference (with digest) an overlay should use."""
    image = local_base(engine, base)
    target = mirror_reference(base, registry)
    engine.tag(image.id, target)
    try:
        engine.push(target)
    except EngineError as error:
        raise MIRROR_PUSH_FAILED(target=target, error=error) from None
    finally:
        engine.untag(target)
    return pinned_reference(target, resolve_digest(engine, target))


def archive_path(folder: Path, base: str) -> Path:
    """Where `./dev save-bases --to-archive FOLDER` writes one base: named after it, without its digest."""
    return folder / (re.sub(r"[^A-Za-z0-9_.-]+", "_", str(ImageRef.parse(base).without_digest())) + ".tar")


def save_archives(engine: ContainerEngine, *, bases: list[str], folder: Path) -> list[Path]:
    """Each base as a `docker load`-able archive in `folder`, named after it, written atomically."""
    written = []
    for base in bases:
        image, name = local_base(engine, base), str(ImageRef.parse(base).without_digest())
        archive = archive_path(folder, base)
        write_atomically(archive, engine.save(name if name in image.tags else image.id, named=name in image.tags))
        written.append(archive)
    return written
