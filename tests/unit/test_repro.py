"""What verify-repro reports when two builds differ, from saved images made here: the file and the field that
differs (an mtime a step forgot to clamp shows both times), a layer compressed differently, and the RUN steps a
build really ran (a build that borrowed another's results proves nothing)."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

from dataclasses import replace

import pytest
import zstandard

from tests.helpers.context import make_context
from tests.helpers.fake_engine import FakeEngine, config_digest_of
from torchdev import commands
from torchdev.errors import TorchdevError
from torchdev.oci import GZIP_LAYER, ZSTD_LAYER
from torchdev.presenter import Presentation, present
from torchdev.repro import describe_differences, executed_steps, read_saved
from torchdev.results import ReproReport


def layer_tar(files: dict[str, tuple[bytes, int]]) -> bytes:
    """An uncompressed layer: path -> (content, mtime)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, (content, mtime) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(content), mtime
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def saved(path, layers: list[bytes], *, level: int = 3, media_type: str = ZSTD_LAYER) -> str:
    """A `docker save`-like OCI archive of one image with these layers (zstd at `level`, gzip, or plain by
    `media_type`); its manifest digest."""
    compress = {ZSTD_LAYER: zstandard.ZstdCompressor(level=level).compress,
                GZIP_LAYER: lambda data: gzip.compress(data, mtime=0)}.get(media_type, lambda data: data)
    blobs = [compress(layer) for layer in layers]
    config = json.dumps({"created": "2026-11-29T00:00:00Z",
                         "rootfs": {"type": "layers", "diff_ids": [digest(layer) for layer in layers]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "config": {"digest": digest(config), "size": len(config)},
                           "layers": [{"mediaType": media_type, "digest": digest(b), "size": len(b)}
                                      for b in blobs]}).encode()
    index = json.dumps({"manifests": [{"digest": digest(manifest)}]}).encode()
    with tarfile.open(path, "w") as out:
        for name, data in [("index.json", index), *((f"blobs/sha256/{digest(d)[7:]}", d)
                                                    for d in (config, manifest, *blobs))]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    return digest(manifest)


BASE = layer_tar({"etc/os-release": (b"debian", 946684800)})


def test_a_file_whose_only_difference_is_its_mtime_is_named_with_both_times(tmp_path):
    first = saved(tmp_path / "a.tar", [BASE, layer_tar({"opt/venv/x.py": (b"same", 946684800)})])
    second = saved(tmp_path / "b.tar", [BASE, layer_tar({"opt/venv/x.py": (b"same", 1796286350)})])
    assert read_saved(tmp_path / "a.tar").manifest_digest == first != second
    report = describe_differences(tmp_path / "a.tar", tmp_path / "b.tar")
    assert f"image IDs differ: {first} vs {second}" in report
    assert "image config differs in: rootfs" in report
    assert "layer 1:" not in report, "the same first layer is not listed"
    assert "layer 2:" in report and "1 path(s) differ" in report
    row = next(line for line in report.splitlines() if line.startswith("opt/venv/x.py"))
    assert "mtime 2000-01-01T00:00:00Z" in row and "mtime 2026-12-03T" in row
    assert row.count(hashlib.sha256(b"same").hexdigest()[:12]) == 2


def test_content_differences_show_size_and_hash_and_files_only_one_side_has(tmp_path):
    saved(tmp_path / "a.tar", [layer_tar({"etc/payload.txt": (b"same length A", 0), "etc/gone": (b"x", 0)})])
    saved(tmp_path / "b.tar", [layer_tar({"etc/payload.txt": (b"same length B", 0)})])
    report = describe_differences(tmp_path / "a.tar", tmp_path / "b.tar")
    assert "2 path(s) differ" in report
    assert any(line.startswith("etc/gone") and line.rstrip().endswith("absent") for line in report.splitlines())
    payload = next(line for line in report.splitlines() if line.startswith("etc/payload.txt"))
    assert payload.count("13 B ") == 2 and "mtime" not in payload


def test_the_same_files_compressed_differently_blame_the_compressor_not_a_file(tmp_path):
    saved(tmp_path / "a.tar", [BASE], level=3)
    saved(tmp_path / "b.tar", [BASE], level=9)
    report = describe_differences(tmp_path / "a.tar", tmp_path / "b.tar")
    assert "layer 1: the same files, compressed differently" in report and "path(s) differ" not in report


def test_gzip_and_uncompressed_layers_are_read_too(tmp_path):
    for media_type in (GZIP_LAYER, "application/vnd.oci.image.layer.v1.tar"):
        saved(tmp_path / "a.tar", [layer_tar({"a": (b"1", 0)})], media_type=media_type)
        saved(tmp_path / "b.tar", [layer_tar({"a": (b"2", 0)})], media_type=media_type)
        assert "layer 1:" in describe_differences(tmp_path / "a.tar", tmp_path / "b.tar"), media_type


def test_the_run_steps_a_build_ran_are_read_from_its_log_and_cached_ones_are_not():
    log = ["#5 [runtime 1/7] FROM docker.io/library/base", "#5 CACHED",
           "#8 [runtime 2/7] RUN --mount=type=cache,target=/var/cache/apt apt-install python3", "#8 0.52 hello",
           "#9 [runtime 3/7] RUN pip install -r lock", "#8 DONE 10.9s", "#9 CACHED",
           "#10 [stage-0 4/7] RUN python verify.py", "#10 DONE 3.1s"]
    assert executed_steps(log) == ("RUN --mount=type=cache,target=/var/cache/apt apt-install python3",
                                   "RUN python verify.py")
    assert executed_steps(["#14 exporting to image", "#14 DONE 0.3s"]) == ()


# --- ./dev verify-repro through the fake engine: what it decides, what it leaves, what it says --------------------

def verify(engine: FakeEngine, tmp_path) -> tuple[ReproReport, Presentation]:
    ctx = make_context(engine=engine, reports=tmp_path / "reports")
    report = commands.verify_repro(ctx, variant="cpu", overlay=None, unlocked=True)
    return report, present(report)


def test_two_builds_that_agree_are_reproducible_and_leave_no_image_and_no_tag_behind(buildx, tmp_path):
    engine = FakeEngine()
    engine.reproducible = True
    report, shown = verify(engine, tmp_path)
    first, second = report.builds
    assert report.compared and report.reproducible and first == second and first.steps == ("RUN fake-step",)
    assert [request.no_cache for request in engine.requests] == [True, True]
    assert shown.status == 0 and f"cpu is reproducible: {first.image_id} (config {config_digest_of(first.image_id)})" \
        in "\n".join(shown.out)
    assert f"no image is tagged {report.immutable_tag} yet: `./dev build --variant cpu` makes this one" in shown.out
    assert engine.names == {} and engine.labels == {}, "the verification's image is removed: no tag names it"


def test_the_immutable_tag_is_said_to_name_this_very_image_or_another_which_keeps_its_tags(buildx, tmp_path):
    engine = FakeEngine()
    engine.reproducible = True
    report, _ = verify(engine, tmp_path)
    image_id = report.builds[0].image_id
    engine.labels[image_id] = {}
    engine.names[report.immutable_tag] = image_id  # as `./dev build` leaves it
    again, shown = verify(engine, tmp_path)
    assert again.builds[0].image_id == image_id and f"{report.immutable_tag} names this very image" in shown.out
    assert engine.names == {report.immutable_tag: image_id}, "a tagged image stays, without the build's own name"
    other = engine.add_image(report.immutable_tag)
    note = present(replace(again, tagged=other)).out[-1]
    assert note.startswith(f"{report.immutable_tag} names another image, {other[:19]}") and "not pinned" in note


def test_two_builds_that_differ_are_compared_down_to_the_layer_and_both_are_removed(buildx, tmp_path):
    engine = FakeEngine()
    report, shown = verify(engine, tmp_path)
    first, second = report.builds
    assert first.image_id != second.image_id and report.compared and not report.reproducible
    assert report.differences.startswith("image IDs differ: ") and "layer 1:" in report.differences
    assert shown.status == 1 and shown.err == ("torchdev: cpu is not reproducible: two builds from the same inputs "
                                               "gave two image IDs",)
    assert report.differences in "\n".join(shown.out)
    assert engine.labels == {} and engine.names == {}


def test_a_second_build_that_ran_fewer_steps_compared_nothing_and_says_so(buildx, tmp_path):
    engine = FakeEngine()
    engine.reproducible = True
    engine.steps_run = [("RUN a", "RUN b"), ("RUN a",)]
    report, shown = verify(engine, tmp_path)
    assert not report.compared and report.differences == "" and report.immutable_tag == ""
    assert shown.status == 1 and shown.err[0].startswith("torchdev: build 2 ran 1 of build 1's 2 RUN steps")


def test_the_result_is_checked_against_a_recorded_image_id_or_config_digest(buildx, tmp_path):
    engine = FakeEngine()
    engine.reproducible = True
    image_id = verify(engine, tmp_path)[0].builds[0].image_id
    recorded = {"other": "sha256:" + "d" * 64, "image ID": image_id, "config digest": config_digest_of(image_id)}
    shown = {}
    for name, digest in recorded.items():
        overlay = tmp_path / "overlay.yaml"
        overlay.write_text(f"variants:\n  cpu:\n    digest: '{digest}'\n")
        ctx = make_context(engine=engine, reports=tmp_path / "reports")
        shown[name] = present(commands.verify_repro(ctx, variant="cpu", overlay=str(overlay), unlocked=True))
    assert shown["image ID"].status == shown["config digest"].status == 0
    assert shown["other"].status == 1 and shown["other"].err == (
        f"torchdev: cpu builds reproducibly as {image_id} (config {config_digest_of(image_id)}), images.yaml expects "
        f"{recorded['other']}: run `./dev verify-repro --variant cpu` to see what differs",)


def test_a_failed_second_build_removes_the_first(buildx, tmp_path):
    engine = FakeEngine()
    engine.builds = [0, 1]
    with pytest.raises(TorchdevError, match=r"build 2 of cpu failed: .*: see its log, .*cpu\.repro2\.log"):
        verify(engine, tmp_path)
    assert engine.labels == {} and engine.names == {}
