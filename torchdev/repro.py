"""Comparing two builds of one variant: the same image ID, or which layers and files differ, and how.

`invoke verify-repro` builds twice with no layer cache into the engine and compares the image IDs. When they differ it
saves both images (`docker save`: an OCI archive whose layers are compressed as the engine stores them, gzip for
torchdev's builds) and hands the archives here. A mismatch is reported down to the file and to the field that differs
(content, size, mode, owner, modification time), so the cause of non-determinism is one look away: a step that left a
file with the build's time is named with both times.
"""
from __future__ import annotations

import hashlib
import json
import re
import tarfile
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from torchdev.engine import ContainerEngine
from torchdev.files import write_atomically
from torchdev.oci import decompressed
from torchdev.table import render_table


@dataclass(frozen=True)
class FileEntry:
    """One entry of a layer as its tar header and content record it: everything that decides the layer's digest."""

    size: int
    sha256: str  # of the content; for links, of the link target; "" for directories
    mode: int = 0o644
    owner: str = "0:0"
    mtime: int = 0
    kind: str = "file"

    def describe(self, shown: tuple[str, ...]) -> str:
        """Size and content hash always, then the `shown` metadata fields (those that differ from the other side)."""
        text = f"{self.size} B {self.sha256[:12]}".rstrip()
        extras = {"mode": lambda: f"mode {self.mode:o}", "owner": lambda: f"owner {self.owner}",
                  "mtime": lambda: "mtime " + datetime.fromtimestamp(self.mtime, timezone.utc).strftime(
                      "%Y-%m-%dT%H:%M:%SZ"), "kind": lambda: self.kind}
        return " ".join([text, *(extras[name]() for name in shown if name in extras)])


@dataclass(frozen=True)
class UncachedBuild:
    """What one of verify-repro's builds made: the image ID, its config digest, and the RUN steps it ran."""

    image_id: str
    config_digest: str
    steps: tuple[str, ...]


@dataclass(frozen=True)
class SavedImage:
    """The parts of a saved image that decide its ID: manifest digest, config, and each layer's descriptor."""

    manifest_digest: str
    config: dict
    layers: tuple[dict, ...]


def _blob(archive: tarfile.TarFile, digest: str) -> BinaryIO:
    algorithm, hex_digest = digest.split(":", 1)
    return archive.extractfile(f"blobs/{algorithm}/{hex_digest}")


def save(engine: ContainerEngine, image_id: str, folder: Path) -> Path:
    """`docker save` of one image into `folder`: an OCI archive with the layers as the engine stores them."""
    path = folder / f"{image_id.split(':')[-1]}.tar"
    write_atomically(path, engine.save(image_id, named=False))
    return path


def read_saved(path: Path) -> SavedImage:
    """Manifest digest, config and layers of the one image in an OCI archive (`docker save`, or an OCI export); for a
    multi-platform image, its first platform's."""
    with tarfile.open(path) as archive:
        digest = json.load(archive.extractfile("index.json"))["manifests"][0]["digest"]
        document = json.load(_blob(archive, digest))
        if "manifests" in document:
            digest = document["manifests"][0]["digest"]
            document = json.load(_blob(archive, digest))
        config = json.load(_blob(archive, document["config"]["digest"]))
        return SavedImage(digest, config, tuple(document["layers"]))


def _kind(member: tarfile.TarInfo) -> str:
    return ("dir" if member.isdir() else "symlink" if member.issym() else "hardlink" if member.islnk()
            else "file" if member.isfile() else "special")


def layer_files(path: Path, layer: dict) -> dict[str, FileEntry]:
    """Every entry of one layer of the archive at `path` (compressed or not): path -> what its tar header says."""
    entries = {}
    with tarfile.open(path) as archive, tarfile.open(
            fileobj=decompressed(_blob(archive, layer["digest"]), layer["mediaType"]), mode="r|") as tar:
        for member in tar:
            if member.isfile():
                digest = hashlib.sha256(tar.extractfile(member).read()).hexdigest()
            elif member.issym() or member.islnk():
                digest = hashlib.sha256(member.linkname.encode()).hexdigest()
            else:
                digest = ""
            entries[member.name] = FileEntry(member.size, digest, member.mode, f"{member.uid}:{member.gid}",
                                             int(member.mtime), _kind(member))
    return entries


def changed_files(first: dict[str, FileEntry], second: dict[str, FileEntry]) -> list[tuple[str, str, str]]:
    """(path, first, second) for every path whose entry differs, or that only one side has; each side shows size and
    content hash, plus the metadata fields that differ."""
    rows = []
    for path in sorted(set(first) | set(second)):
        a, b = first.get(path), second.get(path)
        if a == b:
            continue
        differing = tuple(f.name for f in fields(FileEntry) if a and b and getattr(a, f.name) != getattr(b, f.name))
        rows.append((path, a.describe(differing) if a else "absent", b.describe(differing) if b else "absent"))
    return rows


def describe_differences(first_path: Path, second_path: Path, *, limit: int = 25) -> str:
    """A report of what makes two saved images differ: config keys, then layer by layer, file by file. A layer whose
    files are the same (same uncompressed digest) but whose compressed bytes differ is named as such."""
    first, second = read_saved(first_path), read_saved(second_path)
    lines = [f"image IDs differ: {first.manifest_digest} vs {second.manifest_digest}"]
    config_keys = sorted(key for key in set(first.config) | set(second.config)
                         if first.config.get(key) != second.config.get(key))
    if config_keys:
        lines.append(f"image config differs in: {', '.join(config_keys)}")
    if len(first.layers) != len(second.layers):
        lines.append(f"layer count differs: {len(first.layers)} vs {len(second.layers)}")
    diff_ids = first.config["rootfs"]["diff_ids"], second.config["rootfs"]["diff_ids"]
    for number, (a, b) in enumerate(zip(first.layers, second.layers), start=1):
        if a["digest"] == b["digest"]:
            continue
        if number <= min(map(len, diff_ids)) and diff_ids[0][number - 1] == diff_ids[1][number - 1]:
            lines.append(f"\nlayer {number}: the same files, compressed differently ({a['digest'][:19]} vs "
                         f"{b['digest'][:19]}): the compressor is not deterministic")
            continue
        rows = changed_files(layer_files(first_path, a), layer_files(second_path, b))
        lines.append(f"\nlayer {number}: {a['digest'][:19]} vs {b['digest'][:19]}: {len(rows)} path(s) differ")
        lines.append(render_table(["path", "build 1", "build 2"], rows[:limit]))
        if len(rows) > limit:
            lines.append(f"... and {len(rows) - limit} more")
    return "\n".join(lines)


def executed_steps(log_lines: list[str]) -> tuple[str, ...]:
    """The RUN steps a build ran (not taken from the cache), from its plain progress log, sorted: a build that ran
    fewer than an uncached build of the same plan got results from elsewhere (BuildKit shares a step with another
    build of the same step on the engine, even under --no-cache), so comparing it would prove nothing."""
    names: dict[str, str] = {}
    done: set[str] = set()
    for line in log_lines:
        named = re.match(r"^#(\d+) \[[^\]]+\] (RUN .*)$", line)
        if named:
            names[named.group(1)] = named.group(2)
        finished = re.match(r"^#(\d+) DONE ", line)
        if finished:
            done.add(finished.group(1))
    return tuple(sorted(names[vertex] for vertex in done if vertex in names))
