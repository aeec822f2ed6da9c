"""A `docker save` archive's layers re-compressed as gzip: same config and files, one digest for one image."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

import zstandard

from torchdev.oci import GZIP_LAYER, INDEX, MANIFEST, ZSTD_LAYER, gzip_layers


def blob(data: bytes) -> tuple[str, bytes]:
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


def saved_archive(path, files: bytes) -> str:
    """A single-manifest OCI archive with one zstd layer holding `files`; returns the config digest."""
    layer = zstandard.ZstdCompressor().compress(files)
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [blob(files)[0]]}}).encode()
    config_descriptor = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob(config)[0],
                         "size": len(config)}
    layers = [{"mediaType": ZSTD_LAYER, "digest": blob(layer)[0], "size": len(layer)}]
    manifest = json.dumps({"schemaVersion": 2, "config": config_descriptor, "layers": layers}).encode()
    index = json.dumps({"manifests": [{"digest": blob(manifest)[0]}]}).encode()
    with tarfile.open(path, "w") as out:
        for name, data in [("index.json", index), *((f"blobs/sha256/{blob(d)[0][7:]}", d)
                                                    for d in (config, layer, manifest))]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    return blob(config)[0]


def read(path, name: str) -> bytes:
    with tarfile.open(path) as archive:
        return archive.extractfile(name).read()


def test_layers_become_gzip_with_the_same_files_and_config_and_the_same_digest_every_time(tmp_path):
    files = b"a layer's tar stream " * 1000
    config_digest = saved_archive(tmp_path / "saved.tar", files)
    first = gzip_layers(tmp_path / "saved.tar", tmp_path / "one.tar", name="registry.test/ml/t:x", scratch=tmp_path)
    second = gzip_layers(tmp_path / "saved.tar", tmp_path / "two.tar", name="registry.test/ml/t:x", scratch=tmp_path)
    assert first == second, "fixed level, no timestamp: one image, one digest"
    index = json.loads(read(tmp_path / "one.tar", "index.json"))
    assert index["manifests"][0]["digest"] == first.digest
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == "registry.test/ml/t:x"
    manifest = json.loads(read(tmp_path / "one.tar", f"blobs/sha256/{first.digest[7:]}"))
    assert manifest["config"]["digest"] == config_digest
    layer = manifest["layers"][0]
    assert layer["mediaType"] == GZIP_LAYER
    assert gzip.decompress(read(tmp_path / "one.tar", f"blobs/sha256/{layer['digest'][7:]}")) == files
    assert first.size == manifest["config"]["size"] + layer["size"] + len(read(tmp_path / "one.tar",
                                                                                 f"blobs/sha256/{first.digest[7:]}"))


def add_blobs(out: tarfile.TarFile, *blobs: bytes) -> None:
    for data in blobs:
        info = tarfile.TarInfo(f"blobs/sha256/{blob(data)[0][7:]}")
        info.size = len(data)
        out.addfile(info, io.BytesIO(data))


def platform_image(files: bytes, architecture: str) -> tuple[bytes, bytes, bytes]:
    """One platform's (config, zstd layer, manifest), as BuildKit exports them."""
    layer = zstandard.ZstdCompressor().compress(files)
    config = json.dumps({"architecture": architecture, "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [blob(files)[0]]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": blob(config)[0], "size": len(config)},
                           "layers": [{"mediaType": ZSTD_LAYER, "digest": blob(layer)[0], "size": len(layer)}]})
    return config, layer, manifest.encode()


AMD64 = {"architecture": "amd64", "os": "linux"}
ARM64 = {"architecture": "arm64", "os": "linux"}


def saved_multi_platform(path, images: dict[str, bytes]) -> dict[str, str]:
    """A multi-platform `docker save`: index.json -> an image index of one manifest per platform plus an attestation
    manifest (platform unknown/unknown); returns each architecture's config digest."""
    built = {arch: platform_image(files, arch) for arch, files in images.items()}
    attestation = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST, "layers": []}).encode()
    entries = [{"mediaType": MANIFEST, "digest": blob(manifest)[0], "size": len(manifest),
                "platform": {"architecture": arch, "os": "linux"}} for arch, (_, _, manifest) in built.items()]
    entries.append({"mediaType": MANIFEST, "digest": blob(attestation)[0], "size": len(attestation),
                    "platform": {"architecture": "unknown", "os": "unknown"},
                    "annotations": {"vnd.docker.reference.type": "attestation-manifest"}})
    image_index = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": entries}).encode()
    index = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": [
        {"mediaType": INDEX, "digest": blob(image_index)[0], "size": len(image_index)}]}).encode()
    with tarfile.open(path, "w") as out:
        info = tarfile.TarInfo("index.json")
        info.size = len(index)
        out.addfile(info, io.BytesIO(index))
        add_blobs(out, image_index, attestation, *(data for parts in built.values() for data in parts))
    return {arch: blob(config)[0] for arch, (config, _, _) in built.items()}


def test_a_multi_platform_image_becomes_an_index_of_gzip_manifests_one_per_platform_without_the_attestation(
        tmp_path):
    files = {"amd64": b"amd64 files " * 1000, "arm64": b"arm64 files, other ones " * 800}
    configs = saved_multi_platform(tmp_path / "saved.tar", files)
    first = gzip_layers(tmp_path / "saved.tar", tmp_path / "one.tar", name="registry.test/ml/t:cpu", scratch=tmp_path)
    second = gzip_layers(tmp_path / "saved.tar", tmp_path / "two.tar", name="registry.test/ml/t:cpu", scratch=tmp_path)
    assert first == second, "one multi-platform image, one index digest"
    outer = json.loads(read(tmp_path / "one.tar", "index.json"))["manifests"]
    assert [(d["mediaType"], d["digest"]) for d in outer] == [(INDEX, first.digest)]
    assert outer[0]["annotations"]["io.containerd.image.name"] == "registry.test/ml/t:cpu"
    top = json.loads(read(tmp_path / "one.tar", f"blobs/sha256/{first.digest[7:]}"))
    assert top["mediaType"] == INDEX
    assert [(d["mediaType"], d["platform"]) for d in top["manifests"]] == [(MANIFEST, AMD64), (MANIFEST, ARM64)]
    sizes = []
    for descriptor in top["manifests"]:
        body = read(tmp_path / "one.tar", f"blobs/sha256/{descriptor['digest'][7:]}")
        assert (blob(body)[0], len(body)) == (descriptor["digest"], descriptor["size"])
        manifest = json.loads(body)
        arch = descriptor["platform"]["architecture"]
        assert manifest["config"]["digest"] == configs[arch], "the config, and with it the diff_ids, is kept"
        assert json.loads(read(tmp_path / "one.tar", f"blobs/sha256/{configs[arch][7:]}"))["architecture"] == arch
        layer, = manifest["layers"]
        assert layer["mediaType"] == GZIP_LAYER
        assert gzip.decompress(read(tmp_path / "one.tar", f"blobs/sha256/{layer['digest'][7:]}")) == files[arch]
        sizes.append(manifest["config"]["size"] + len(body) + layer["size"])
    assert first.size == max(sizes), "what one pull downloads: one platform"


def test_a_single_platform_saved_inside_an_index_gives_the_same_manifest_digest_as_a_lone_manifest(tmp_path):
    files = b"a layer's tar stream " * 1000
    saved_multi_platform(tmp_path / "indexed.tar", {"amd64": files})
    config, layer, manifest = platform_image(files, "amd64")
    index = json.dumps({"manifests": [{"mediaType": MANIFEST, "digest": blob(manifest)[0]}]}).encode()
    with tarfile.open(tmp_path / "lone.tar", "w") as out:
        info = tarfile.TarInfo("index.json")
        info.size = len(index)
        out.addfile(info, io.BytesIO(index))
        add_blobs(out, config, layer, manifest)
    indexed = gzip_layers(tmp_path / "indexed.tar", tmp_path / "a.tar", name="r.test/t:x", scratch=tmp_path)
    lone = gzip_layers(tmp_path / "lone.tar", tmp_path / "b.tar", name="r.test/t:x", scratch=tmp_path)
    assert indexed == lone
    gzipped = json.loads(read(tmp_path / "a.tar", f"blobs/sha256/{indexed.digest[7:]}"))
    assert gzipped["mediaType"] == MANIFEST and len(gzipped["layers"]) == 1, "no index for one platform"
    assert json.loads(read(tmp_path / "a.tar", "index.json"))["manifests"][0]["mediaType"] == MANIFEST
