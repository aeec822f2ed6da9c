"""Reading every layer of a saved image (`docker save`), whatever compresses it: what the tests that plant a secret
search (the CA bundle, a login)."""
from __future__ import annotations

import gzip
import hashlib
import tarfile

import zstandard


def scan_layers(image, needles: list[bytes], bundle_digest: str) -> tuple[int, list[str]]:
    """Read every layer of a saved image: (how many layers were read, files holding a needle or the bundle)."""
    layers, hits = 0, []
    with tarfile.open(fileobj=_Stream(image.save(chunk_size=1 << 20)), mode="r|") as archive:
        for entry in archive:
            if not entry.isfile():
                continue
            try:
                with tarfile.open(fileobj=decompressed(archive.extractfile(entry)), mode="r|") as layer:
                    hits += [f"{entry.name}:{member.name}" for member in layer if member.isfile()
                             and _holds(layer.extractfile(member).read(), needles, bundle_digest)]
                layers += 1
            except tarfile.ReadError:
                continue  # a manifest or config: JSON, not a layer (the history is checked on its own)
    return layers, hits


def decompressed(stream):
    """A readable stream of a blob's tar bytes, whether stored as gzip (torchdev's builds), zstd (a push's copy) or plain."""
    head = stream.read(4)
    whole = _Stream(iter([head]), rest=stream)
    if head == b"\x28\xb5\x2f\xfd":
        return zstandard.ZstdDecompressor().stream_reader(whole)
    if head[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=whole)
    return whole


def _holds(content: bytes, needles: list[bytes], bundle_digest: str) -> bool:
    return hashlib.sha256(content).hexdigest() == bundle_digest or any(needle in content for needle in needles)


class _Stream:
    """A file-like view of chunks (the SDK's save iterator), then optionally of another stream."""

    def __init__(self, chunks, rest=None):
        self.chunks, self.buffer, self.rest = iter(chunks), b"", rest

    def _next_chunk(self):
        chunk = next(self.chunks, None)
        if chunk is None and self.rest is not None:
            chunk = self.rest.read(1 << 20) or None
        return chunk

    def read(self, size=-1):
        while size < 0 or len(self.buffer) < size:
            chunk = self._next_chunk()
            if chunk is None:
                break
            self.buffer += chunk
        data, self.buffer = (self.buffer, b"") if size < 0 else (self.buffer[:size], self.buffer[size:])
        return data


def blobs_holding(chunks, needle: bytes) -> tuple[int, list[str]]:
    """Search every blob of a `docker save` stream (`chunks`) for `needle`: each layer decompressed, its whole tar
    (file contents, names, link targets, headers), and the manifests, configs and index as they are; (how many layers
    were read, the blobs holding it)."""
    layers, hits = 0, []
    with tarfile.open(fileobj=_Stream(chunks), mode="r|") as archive:
        for entry in archive:
            if not entry.isfile():
                continue
            stream = archive.extractfile(entry)
            head = stream.read(512)
            compressed = head[:4] == b"\x28\xb5\x2f\xfd" or head[:2] == b"\x1f\x8b"
            layers += compressed or head[257:262] == b"ustar"
            whole = _Stream(iter([head]), rest=stream)
            if _holds_stream(decompressed(whole) if compressed else whole, needle):
                hits.append(entry.name)
    return layers, hits


def _holds_stream(stream, needle: bytes) -> bool:
    """Whether `needle` is in the stream, also across the edges of the chunks it is read in."""
    tail = b""
    while True:
        chunk = stream.read(1 << 20)
        if not chunk:
            return False
        if needle in tail + chunk:
            return True
        tail = (tail + chunk)[-(len(needle) - 1):] if len(needle) > 1 else b""
