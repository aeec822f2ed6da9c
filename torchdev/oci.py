"""How torchdev compresses layers, and an image's layers in another compression, as an OCI archive `docker load` takes.

The engine keeps torchdev's layers gzip-compressed (STORE_COMPRESSION): every engine pulls gzip, so the default push
publishes the very image the smoke suite tested, its ID the pushed digest, with nothing to recompress. A push with
zstd layers (Docker 23+, containerd 1.5+; smaller and faster to pull) goes from a copy made here. Only the layer blobs
and the manifest change: the config, and with it every layer's uncompressed digest (diff_id), stays, so the copy is
the tested image. A fixed level (and gzip's mtime 0) gives the same bytes every time, so the same image always
becomes the same manifest digest and a second push of it is recognisably identical. The engine only saves and loads
archives; `recompressed_copy` does the rest here.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from torchdev.engine import ContainerEngine

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ZSTD_LAYER = "application/vnd.oci.image.layer.v1.tar+zstd"
COMPRESSIONS = ("gzip", "zstd")
STORE_COMPRESSION = "gzip"
"""How the engine's store keeps torchdev's layers (plan.ENGINE_OUTPUT), so how a push sends them without a copy. gzip,
measured against zstd (benchmarks/layer_store.py, docs/benchmarks.md): a cold build's export step takes 35 s with
zstd against 53 s with gzip on 2 cores, but the gzip copy that the default push then needs costs 2-3 minutes on every
push; gzip in the store gives the better build + push total, and the pushed digest is the tested image's own ID."""
GZIP_LEVEL = 1
"""zlib's fastest level: level 6 gzipped a 4.4 GB torch layer at 11 MB/s of output here (over 5 minutes per push);
level 1 is several times faster for a few percent more bytes, and every gzip reader takes either."""
ZSTD_LEVEL = 3
"""zstd's default level: a fraction of gzip's time for a smaller layer."""
LAYER_TYPES = {"gzip": GZIP_LAYER, "zstd": ZSTD_LAYER}
LEVELS = {"gzip": GZIP_LEVEL, "zstd": ZSTD_LEVEL}


@dataclass(frozen=True)
class Recompressed:
    """What a recompression made: the new manifest's digest and the bytes a pull of it downloads."""

    digest: str
    size: int


class _HashingWriter(io.RawIOBase):
    """Writes to a file while hashing and counting, so a blob's digest is known once it is written."""

    def __init__(self, file: BinaryIO) -> None:
        self.file, self.sha256, self.size = file, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.file.write(data)
        self.sha256.update(data)
        self.size += len(data)
        return len(data)


def decompressed(blob: BinaryIO, media_type: str) -> BinaryIO:
    """A layer blob read back uncompressed, by its media type (zstd, gzip, or plain tar)."""
    if media_type.endswith("+zstd"):
        import zstandard
        return zstandard.ZstdDecompressor().stream_reader(blob)
    if media_type.endswith("+gzip") or media_type.endswith(".gzip"):
        return gzip.GzipFile(fileobj=blob)
    return blob


def compressor(out: BinaryIO, compression: str) -> BinaryIO:
    """A stream that writes `compression`'s bytes of what it is given to `out`, the same bytes every time: a fixed
    level, gzip without a time or name in its header, zstd in one frame on one thread. Closing it ends the stream,
    not `out`."""
    if compression == "zstd":
        import zstandard
        return zstandard.ZstdCompressor(level=LEVELS["zstd"]).stream_writer(out, closefd=False)
    return gzip.GzipFile(fileobj=out, mode="wb", compresslevel=LEVELS["gzip"], mtime=0, filename="")


def _compressed_blob(source: BinaryIO, media_type: str, scratch: Path, compression: str) -> tuple[str, int, Path]:
    """One layer recompressed into `scratch`: (digest, size, path)."""
    partial = scratch / "layer.partial"
    with partial.open("wb") as out:
        writer = _HashingWriter(out)
        with compressor(writer, compression) as packed:
            shutil.copyfileobj(decompressed(source, media_type), packed, 1 << 20)
    digest = "sha256:" + writer.sha256.hexdigest()
    final = scratch / digest.split(":")[1]
    partial.rename(final)
    return digest, writer.size, final


def _blob(archive: tarfile.TarFile, digest: str) -> dict:
    return json.load(archive.extractfile("blobs/sha256/" + digest.split(":")[1]))


def _platform_manifests(archive: tarfile.TarFile) -> list[tuple[dict | None, dict]]:
    """(platform, manifest) of each image a `docker save` OCI archive holds: one, or one per platform of a
    multi-platform image (platform None for a lone manifest); attestations (platform unknown/unknown) left out."""
    descriptor = json.load(archive.extractfile("index.json"))["manifests"][0]
    document = _blob(archive, descriptor["digest"])
    if "layers" in document:
        return [(None, document)]
    return [(entry.get("platform"), _blob(archive, entry["digest"])) for entry in document["manifests"]
            if entry.get("platform", {}).get("os") != "unknown"]


def _add(out: tarfile.TarFile, name: str, data: bytes | None = None, path: Path | None = None) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data) if data is not None else path.stat().st_size
    with (io.BytesIO(data) if data is not None else path.open("rb")) as content:
        out.addfile(info, content)


def _recompressed_manifest(archive: tarfile.TarFile, out: tarfile.TarFile, manifest: dict, scratch: Path,
                           compression: str) -> tuple[bytes, int]:
    """One image's config and recompressed layers into `out`: (its new manifest, the bytes a pull of it downloads)."""
    config = manifest["config"]
    _add(out, "blobs/sha256/" + config["digest"].split(":")[1],
         archive.extractfile("blobs/sha256/" + config["digest"].split(":")[1]).read())
    layers = []
    for layer in manifest["layers"]:
        blob = archive.extractfile("blobs/sha256/" + layer["digest"].split(":")[1])
        digest, size, path = _compressed_blob(blob, layer["mediaType"], scratch, compression)
        _add(out, "blobs/sha256/" + digest.split(":")[1], path=path)
        path.unlink()
        layers.append({"mediaType": LAYER_TYPES[compression], "digest": digest, "size": size})
    document = {"schemaVersion": 2, "mediaType": MANIFEST, "config": config, "layers": layers}
    if manifest.get("annotations"):
        document["annotations"] = manifest["annotations"]
    body = json.dumps(document, separators=(",", ":")).encode()
    _add(out, "blobs/sha256/" + hashlib.sha256(body).hexdigest(), body)
    return body, config["size"] + len(body) + sum(layer["size"] for layer in layers)


def _descriptor(media_type: str, body: bytes, **extra) -> dict:
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(body).hexdigest(), "size": len(body), **extra}


def recompress_layers(saved: Path, target: Path, *, name: str, scratch: Path, compression: str) -> Recompressed:
    """Write to `target` an OCI archive of the image in `saved` (a `docker save`) with `compression`'s layers, named
    `name`: one manifest, or for a multi-platform image an index of one per platform. The size is what one pull
    downloads (the largest platform's)."""
    with tarfile.open(saved) as archive, tarfile.open(target, "w") as out:
        _add(out, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        images = [(platform, *_recompressed_manifest(archive, out, manifest, scratch, compression))
                  for platform, manifest in _platform_manifests(archive)]
        if len(images) == 1:
            top, media_type, size = images[0][1], MANIFEST, images[0][2]
        else:
            manifests = [_descriptor(MANIFEST, body, platform=platform) for platform, body, _ in images]
            top = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests},
                             separators=(",", ":")).encode()
            _add(out, "blobs/sha256/" + hashlib.sha256(top).hexdigest(), top)
            media_type, size = INDEX, max(size for _, _, size in images)
        annotations = {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1]}
        index = {"schemaVersion": 2, "mediaType": INDEX,
                 "manifests": [_descriptor(media_type, top, annotations=annotations)]}
        _add(out, "index.json", json.dumps(index).encode())
    return Recompressed("sha256:" + hashlib.sha256(top).hexdigest(), size)


def recompressed_copy(engine: ContainerEngine, reference: str, *, name: str, compression: str) -> Recompressed:
    """Load into `engine` a copy of the image named `name` whose layers are `compression`'s: same config, same files;
    its manifest digest is the image's ID on the containerd store, and what a push of it publishes."""
    with tempfile.TemporaryDirectory(prefix=f"torchdev-{compression}-") as scratch:
        saved, converted = Path(scratch) / "saved.tar", Path(scratch) / f"{compression}.tar"
        with saved.open("wb") as out:
            for chunk in engine.save(reference, named=False):
                out.write(chunk)
        result = recompress_layers(saved, converted, name=name, scratch=Path(scratch), compression=compression)
        saved.unlink()
        engine.load(converted)
    return result
