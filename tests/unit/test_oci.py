"""A `docker save` archive's layers re-compressed as gzip: same config and files, one digest for one image."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

import zstandard

from torchdev.oci import GZIP_LAYER, ZSTD_LAYER, gzip_layers


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
