"""A `docker save` archive's layers re-compressed (zstd, the copy a push makes of the engine's gzip layers; or gzip):
same config and files, one digest for one image; and the copy made of an engine's image that way."""
from __future__ import annotations

import gzip
import json

import pytest
import zstandard

from tests.helpers.fake_engine import FakeEngine
from tests.helpers.oci_archive import blob, lone_manifest_archive, multi_platform_archive, read_member
from torchdev.oci import COMPRESSIONS, INDEX, LAYER_TYPES, MANIFEST, recompress_layers, recompressed_copy

UNPACK = {"gzip": gzip.decompress, "zstd": lambda data: zstandard.ZstdDecompressor().decompressobj().decompress(data)}


def saved_archive(path, files: bytes) -> str:
    """A single-manifest OCI archive with one layer holding `files`, as the engine stores it; returns the config
    digest."""
    saved, config_digest = lone_manifest_archive(files)
    path.write_bytes(saved)
    return config_digest


def read(path, name: str) -> bytes:
    return read_member(str(path), name)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_layers_are_recompressed_with_the_same_files_and_config_and_the_same_digest_every_time(tmp_path, compression):
    files = b"a layer's tar stream " * 1000
    config_digest = saved_archive(tmp_path / "saved.tar", files)
    first = recompress_layers(tmp_path / "saved.tar", tmp_path / "one.tar", name="registry.test/ml/t:x",
                              scratch=tmp_path, compression=compression)
    second = recompress_layers(tmp_path / "saved.tar", tmp_path / "two.tar", name="registry.test/ml/t:x",
                               scratch=tmp_path, compression=compression)
    assert first == second, "fixed level, no timestamp: one image, one digest"
    index = json.loads(read(tmp_path / "one.tar", "index.json"))
    assert index["manifests"][0]["digest"] == first.digest
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == "registry.test/ml/t:x"
    manifest = json.loads(read(tmp_path / "one.tar", f"blobs/sha256/{first.digest[7:]}"))
    assert manifest["config"]["digest"] == config_digest
    layer = manifest["layers"][0]
    assert layer["mediaType"] == LAYER_TYPES[compression]
    assert UNPACK[compression](read(tmp_path / "one.tar", f"blobs/sha256/{layer['digest'][7:]}")) == files
    assert first.size == manifest["config"]["size"] + layer["size"] + len(read(tmp_path / "one.tar",
                                                                                 f"blobs/sha256/{first.digest[7:]}"))


AMD64 = {"architecture": "amd64", "os": "linux"}
ARM64 = {"architecture": "arm64", "os": "linux"}


def saved_multi_platform(path, images: dict[str, bytes]) -> dict[str, str]:
    """A multi-platform `docker save` (tests.helpers.oci_archive); returns each architecture's config digest."""
    saved, configs = multi_platform_archive(images)
    path.write_bytes(saved)
    return configs


def test_a_multi_platform_image_becomes_an_index_of_zstd_manifests_one_per_platform_without_the_attestation(
        tmp_path):
    files = {"amd64": b"amd64 files " * 1000, "arm64": b"arm64 files, other ones " * 800}
    configs = saved_multi_platform(tmp_path / "saved.tar", files)
    first = recompress_layers(tmp_path / "saved.tar", tmp_path / "one.tar", name="registry.test/ml/t:cpu",
                              scratch=tmp_path, compression="zstd")
    second = recompress_layers(tmp_path / "saved.tar", tmp_path / "two.tar", name="registry.test/ml/t:cpu",
                               scratch=tmp_path, compression="zstd")
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
        assert layer["mediaType"] == LAYER_TYPES["zstd"]
        assert UNPACK["zstd"](read(tmp_path / "one.tar", f"blobs/sha256/{layer['digest'][7:]}")) == files[arch]
        sizes.append(manifest["config"]["size"] + len(body) + layer["size"])
    assert first.size == max(sizes), "what one pull downloads: one platform"


def test_a_single_platform_saved_inside_an_index_gives_the_same_manifest_digest_as_a_lone_manifest(tmp_path):
    files = b"a layer's tar stream " * 1000
    saved_multi_platform(tmp_path / "indexed.tar", {"amd64": files})
    (tmp_path / "lone.tar").write_bytes(lone_manifest_archive(files)[0])
    indexed = recompress_layers(tmp_path / "indexed.tar", tmp_path / "a.tar", name="r.test/t:x", scratch=tmp_path,
                                compression="zstd")
    lone = recompress_layers(tmp_path / "lone.tar", tmp_path / "b.tar", name="r.test/t:x", scratch=tmp_path,
                             compression="zstd")
    assert indexed == lone
    copied = json.loads(read(tmp_path / "a.tar", f"blobs/sha256/{indexed.digest[7:]}"))
    assert copied["mediaType"] == MANIFEST and len(copied["layers"]) == 1, "no index for one platform"
    assert json.loads(read(tmp_path / "a.tar", "index.json"))["manifests"][0]["mediaType"] == MANIFEST


def test_a_zstd_copy_is_saved_recompressed_and_loaded_under_its_name_with_the_same_config_every_time():
    """torchdev.oci.recompressed_copy against the fake engine, whose save and load speak OCI archives as the real
    one's do."""
    engine = FakeEngine()
    source = engine.add_image("torchdev:cpu", labels={"io.torchdev.variant": "cpu"})
    engine.platforms[source] = ("linux/amd64", "linux/arm64")
    copy = recompressed_copy(engine, "torchdev:cpu", name="registry.test/ml/torchdev:cpu", compression="zstd")
    assert engine.image_id("registry.test/ml/torchdev:cpu") == copy.digest != source
    assert engine.image(copy.digest).labels == {"io.torchdev.variant": "cpu"}, "the config is kept"
    assert engine.image_platforms(copy.digest, ("linux/amd64", "linux/arm64")) == ("linux/amd64", "linux/arm64")
    assert recompressed_copy(engine, source, name="registry.test/ml/torchdev:again", compression="zstd") == copy, \
        "one image, one zstd digest"
