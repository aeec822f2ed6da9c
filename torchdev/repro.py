"""Comparing two OCI archives of one variant: same digest, or which layers and files differ.

`invoke verify-repro` builds twice with no layer cache and hands both archives here. A mismatch is
reported down to the file (path, size, content hash), so the cause of non-determinism is one look away.
"""
from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

from torchdev.table import render_table


@dataclass(frozen=True)
class FileEntry:
    size: int
    sha256: str  # of the content; for links, of the link target; "" for directories


@dataclass(frozen=True)
class OciImage:
    """The parts of an OCI archive that decide its digest."""

    manifest_digest: str
    config: dict
    layers: tuple[str, ...]


def _blob(archive: tarfile.TarFile, digest: str) -> bytes:
    algorithm, hex_digest = digest.split(":", 1)
    return archive.extractfile(f"blobs/{algorithm}/{hex_digest}").read()


def read_oci(path: Path) -> OciImage:
    """Manifest digest, config and layer digests of a single-image OCI archive."""
    with tarfile.open(path) as archive:
        index = json.loads(archive.extractfile("index.json").read())
        manifest_digest = index["manifests"][0]["digest"]
        manifest = json.loads(_blob(archive, manifest_digest))
        config = json.loads(_blob(archive, manifest["config"]["digest"]))
        return OciImage(manifest_digest, config, tuple(layer["digest"] for layer in manifest["layers"]))


def layer_files(path: Path, layer_digest: str) -> dict[str, FileEntry]:
    """Every entry of one (uncompressed) layer: path -> size and content hash."""
    entries = {}
    with tarfile.open(path) as archive:
        algorithm, hex_digest = layer_digest.split(":", 1)
        with tarfile.open(fileobj=archive.extractfile(f"blobs/{algorithm}/{hex_digest}"), mode="r|*") as layer:
            for member in layer:
                if member.isfile():
                    digest = hashlib.sha256(layer.extractfile(member).read()).hexdigest()
                elif member.issym() or member.islnk():
                    digest = hashlib.sha256(member.linkname.encode()).hexdigest()
                else:
                    digest = ""
                entries[member.name] = FileEntry(member.size, digest)
    return entries


def changed_files(first: dict[str, FileEntry], second: dict[str, FileEntry]) -> list[tuple[str, str, str]]:
    """(path, first, second) for every path whose size or content differs, or that only one side has."""
    def show(entry: FileEntry | None) -> str:
        return "absent" if entry is None else f"{entry.size} B {entry.sha256[:12]}"

    return [(path, show(first.get(path)), show(second.get(path)))
            for path in sorted(set(first) | set(second)) if first.get(path) != second.get(path)]


def describe_differences(first_path: Path, second_path: Path, *, limit: int = 25) -> str:
    """A report of what makes two builds' digests differ: config keys, then layer by layer, file by file."""
    first, second = read_oci(first_path), read_oci(second_path)
    lines = [f"digests differ: {first.manifest_digest} vs {second.manifest_digest}"]
    config_keys = sorted(k for k in set(first.config) | set(second.config) if first.config.get(k) != second.config.get(k))
    if config_keys:
        lines.append(f"image config differs in: {', '.join(config_keys)}")
    if len(first.layers) != len(second.layers):
        lines.append(f"layer count differs: {len(first.layers)} vs {len(second.layers)}")
    for number, (a, b) in enumerate(zip(first.layers, second.layers), start=1):
        if a == b:
            continue
        rows = changed_files(layer_files(first_path, a), layer_files(second_path, b))
        lines.append(f"\nlayer {number}: {a[:19]} vs {b[:19]}: {len(rows)} path(s) differ")
        lines.append(render_table(["path", "build 1", "build 2"], rows[:limit]))
        if len(rows) > limit:
            lines.append(f"... and {len(rows) - limit} more")
    return "\n".join(lines)
