"""Small OCI archives shaped as `docker save` and BuildKit's oci exporter write them: for torchdev.oci's tests, and
for the fake engine, whose save and load speak the same format as the real engine's."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

from torchdev.oci import GZIP_LAYER, INDEX, MANIFEST

CONFIG = "application/vnd.oci.image.config.v1+json"


def blob(data: bytes) -> tuple[str, bytes]:
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


def descriptor(media_type: str, data: bytes, **extra) -> dict:
    return {"mediaType": media_type, "digest": blob(data)[0], "size": len(data), **extra}


def platform_image(files: bytes, architecture: str, *, labels: dict[str, str] | None = None
                   ) -> tuple[bytes, bytes, bytes]:
    """One platform's (config, gzip layer, manifest), as BuildKit exports torchdev's builds (plan.ENGINE_OUTPUT)."""
    layer = gzip.compress(files, compresslevel=1, mtime=0)
    config = json.dumps({"architecture": architecture, "os": "linux", "config": {"Labels": labels or {}},
                         "rootfs": {"type": "layers", "diff_ids": [blob(files)[0]]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST, "config": descriptor(CONFIG, config),
                           "layers": [descriptor(GZIP_LAYER, layer)]}).encode()
    return config, layer, manifest


def archive(top: dict, *blobs: bytes) -> bytes:
    """A tar of index.json naming `top` (a descriptor) and the blobs under blobs/sha256/."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as out:
        index = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": [top]}).encode()
        for name, data in [("index.json", index), *((f"blobs/sha256/{blob(d)[0][7:]}", d) for d in blobs)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def lone_manifest_archive(files: bytes, architecture: str = "amd64") -> tuple[bytes, str]:
    """A one-platform image saved as index.json -> its manifest: (archive, config digest)."""
    config, layer, manifest = platform_image(files, architecture)
    return archive(descriptor(MANIFEST, manifest), config, layer, manifest), blob(config)[0]


def multi_platform_archive(images: dict[str, bytes], *, labels: dict[str, str] | None = None,
                           top_annotations: dict[str, str] | None = None) -> tuple[bytes, dict[str, str]]:
    """A multi-platform `docker save`: index.json -> an image index of one manifest per architecture plus an
    attestation manifest (platform unknown/unknown): (archive, each architecture's config digest). The image index's
    digest is the image's ID on the containerd store."""
    built = {arch: platform_image(files, arch, labels=labels) for arch, files in images.items()}
    attestation = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST, "layers": []}).encode()
    entries = [descriptor(MANIFEST, manifest, platform={"architecture": arch, "os": "linux"})
               for arch, (_, _, manifest) in built.items()]
    entries.append(descriptor(MANIFEST, attestation, platform={"architecture": "unknown", "os": "unknown"},
                              annotations={"vnd.docker.reference.type": "attestation-manifest"}))
    image_index = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": entries}).encode()
    top = descriptor(INDEX, image_index, **({"annotations": top_annotations} if top_annotations else {}))
    saved = archive(top, image_index, attestation, *(data for parts in built.values() for data in parts))
    return saved, {arch: blob(config)[0] for arch, (config, _, _) in built.items()}


def read_member(source: bytes | str, name: str) -> bytes:
    """One member of an archive, given as bytes or a path."""
    with (tarfile.open(fileobj=io.BytesIO(source)) if isinstance(source, bytes) else tarfile.open(source)) as saved:
        member = saved.extractfile(name)
        assert member is not None, name
        return member.read()


def loaded_image(source: bytes | str) -> tuple[str, str, dict[str, str], tuple[str, ...]]:
    """What loading an archive gives the containerd store: (image ID, name or '', labels, platforms). The ID is
    index.json's first descriptor's digest; the name its io.containerd.image.name annotation."""
    top = json.loads(read_member(source, "index.json"))["manifests"][0]
    document = json.loads(read_member(source, f"blobs/sha256/{top['digest'][7:]}"))
    manifests = [(entry.get("platform"), json.loads(read_member(source, f"blobs/sha256/{entry['digest'][7:]}")))
                 for entry in document["manifests"]] if "manifests" in document else [(None, document)]
    images = [(platform, json.loads(read_member(source, f"blobs/sha256/{manifest['config']['digest'][7:]}")))
              for platform, manifest in manifests if "config" in manifest]
    platforms = tuple(f"{config['os']}/{config['architecture']}" for _, config in images)
    labels = (images[0][1].get("config") or {}).get("Labels") or {} if images else {}
    name = (top.get("annotations") or {}).get("io.containerd.image.name", "")
    return top["digest"], name, labels, platforms
