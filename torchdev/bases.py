"""Base images pinned by digest (`invoke pin`) and copied somewhere the user controls (`invoke save-bases`).

Upstream bases disappear: NVIDIA deletes end-of-life CUDA tags. A digest makes a build ask for exactly
the base it was made from; a saved copy keeps that base available after upstream has dropped it.
"""
from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import APIError, ImageNotFound

from torchdev.errors import TorchdevError
from torchdev.matrix import Variant
from torchdev.yamlsource import Origin

DIGEST_RE = re.compile(r"@sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class PinResult:
    variant: str
    base: str
    outcome: str  # pinned | already pinned | failed
    detail: str


def pinned_reference(base: str, digest: str) -> str:
    """`name:tag` plus its digest: the tag stays for people, the digest decides what is pulled."""
    return f"{DIGEST_RE.sub('', base)}@{digest}"


def resolve_digest(client: docker.DockerClient, base: str) -> str:
    """The registry's manifest digest for `base`, or a TorchdevError saying why it cannot be had."""
    try:
        return client.images.get_registry_data(base).id
    except APIError as error:
        reason = str(error.explanation or error).split(": ")[-1]
        raise TorchdevError(f"cannot resolve {base} in its registry ({reason}): run `./dev pin` where that "
                            "registry is reachable, or pin a mirror's copy") from None


def rewrite_base_line(*, origin: Origin, old: str, new: str) -> None:
    """Replace `old` by `new` on the line the base was written at, keeping comments; atomically."""
    path = Path(origin.file)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    line = lines[origin.line - 1]
    if old not in line:
        raise TorchdevError(f"{origin}: expected the base {old} on this line; edit it by hand to {new}")
    lines[origin.line - 1] = line.replace(old, new, 1)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, encoding="utf-8") as handle:
        handle.write("".join(lines))
    os.chmod(handle.name, path.stat().st_mode & 0o777)
    os.replace(handle.name, path)


def pin_variant(client: docker.DockerClient, *, variant: Variant, origin: Origin) -> PinResult:
    """Resolve one variant's base to its digest and write it where the base was declared."""
    if DIGEST_RE.search(variant.base):
        return PinResult(variant.name, variant.base, "already pinned", str(origin))
    try:
        digest = resolve_digest(client, variant.base)
    except TorchdevError as error:
        return PinResult(variant.name, variant.base, "failed", str(error))
    rewrite_base_line(origin=origin, old=variant.base, new=pinned_reference(variant.base, digest))
    return PinResult(variant.name, variant.base, "pinned", f"{digest} written to {origin}")


def local_base(client: docker.DockerClient, base: str):
    """The base as the engine holds it, pulling it (by digest) when it is not there yet."""
    try:
        return client.images.get(base)
    except ImageNotFound:
        pass
    try:
        return client.images.pull(base)
    except APIError as error:
        raise TorchdevError(f"cannot pull {base} ({str(error.explanation or error).split(': ')[-1]}): it may be "
                            "gone upstream; point the overlay at a mirror that still has it") from None


def mirror_reference(base: str, registry: str) -> str:
    """Where a base goes in the user's registry: registry/prefix + its repository path, tag and digest kept."""
    name = DIGEST_RE.sub("", base)
    path = name.split("/", 1)[1] if "/" in name and re.search(r"[.:]|^localhost$", name.split("/", 1)[0]) else name
    return f"{registry.rstrip('/')}/{path}"


def push_base(client: docker.DockerClient, *, base: str, registry: str) -> str:
    """Copy a pinned base into `registry`; returns the reference (with digest) an overlay should use."""
    image = local_base(client, base)
    target = mirror_reference(base, registry)
    repository, tag = target.rsplit(":", 1) if ":" in target.rsplit("/", 1)[-1] else (target, "latest")
    image.tag(repository, tag)
    try:
        for event in client.images.push(repository, tag=tag, stream=True, decode=True):
            if "error" in event:
                raise TorchdevError(f"pushing {repository}:{tag} failed: {event['error']}")
    finally:
        client.images.remove(f"{repository}:{tag}", noprune=True)
    return pinned_reference(f"{repository}:{tag}", resolve_digest(client, f"{repository}:{tag}"))


def save_archives(client: docker.DockerClient, *, bases: list[str], folder: Path) -> list[Path]:
    """Each base as a `docker load`-able archive in `folder`, named after it, written atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for base in bases:
        image, name = local_base(client, base), DIGEST_RE.sub("", base)
        archive = folder / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name) + ".tar")
        with tempfile.NamedTemporaryFile("wb", dir=folder, delete=False) as handle:
            for chunk in image.save(named=name if name in image.tags else False):  # the name survives a load
                handle.write(chunk)
        os.replace(handle.name, archive)
        written.append(archive)
    return written
