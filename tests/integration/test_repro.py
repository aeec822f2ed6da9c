"""Reproducible builds on the real engine: every build of the same inputs gives the same image ID (two uncached
builds, and the session's ordinary build), another input another one, and a difference is reported to the file."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers.cli import run_cli
from tests.helpers.tags import tag_targets
from tests.helpers.variants import TEST_REPOSITORY, TEST_VARIANT, overlay_changing
from torchdev.plan import ENGINE_OUTPUT
from torchdev.repro import describe_differences, executed_steps, read_saved


@pytest.fixture(scope="module")
def verified(built_image, test_overlay) -> tuple[str, str, str]:
    """`invoke verify-repro` on the test variant after the session's ordinary build: (image ID, config digest,
    output)."""
    result = run_cli("verify-repro", "--variant", TEST_VARIANT, "--overlay", str(test_overlay), timeout=2400)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr
    found = re.search(r"is reproducible: (sha256:[0-9a-f]{64}) \(config (sha256:[0-9a-f]{64})\)", result.stdout)
    return found.group(1), found.group(2), result.stdout


def test_two_builds_without_cache_give_the_image_an_ordinary_build_gave(verified, built_image):
    """Both uncached builds ran every RUN step and agree, with each other and with the session's ordinary (cached or
    not) build, which the immutable tag names: so `./dev build --no-cache` after a build takes every tag."""
    image_id, _, output = verified
    assert image_id == built_image.image_id
    named = re.search(r"^(\S+) names this very image$", output, flags=re.M)
    assert named and named.group(1) in built_image.references, output[-2000:]
    runs = re.findall(r"^([12]) +sha256:\S+ +sha256:\S+ +(\d+)$", output, flags=re.M)
    assert [build for build, _ in runs] == ["1", "2"] and runs[0][1] == runs[1][1] != "0"


def test_another_source_date_epoch_reuses_every_layer_but_gives_another_image_which_a_recorded_digest_rejects(
        docker_client, built_image, verified, test_overlay, tmp_path):
    """SOURCE_DATE_EPOCH dates the config, not the files (they carry one fixed time), so the build runs no step: every
    layer comes from the cache. The recorded digest may be the image ID or the config digest; another image fails
    and moves no tag."""
    image_id, config, _ = verified
    for recorded in (image_id, config):
        overlay = overlay_changing(tmp_path, test_overlay, digest=recorded)
        before = tag_targets(docker_client, TEST_REPOSITORY)
        assert built_image.references[0] in before
        result = run_cli("build", "--variant", TEST_VARIANT, "--overlay", str(overlay),
                         env={"SOURCE_DATE_EPOCH": "1000000000"}, timeout=1800)
        assert result.returncode == 1, result.stdout[-3000:]
        found = re.search(r"the build gave (sha256:[0-9a-f]{64}) \(config (sha256:[0-9a-f]{64})\), images.yaml "
                          r"expects (sha256:[0-9a-f]{64})", result.stderr)
        assert found, result.stderr
        assert found.group(3) == recorded and image_id != found.group(1) and config != found.group(2)
        assert executed_steps(result.stdout.splitlines()) == (), "every layer from the cache"
        assert tag_targets(docker_client, TEST_REPOSITORY) == before
        assert docker_client.images.list(filters={"reference": f"moby-dangling@{found.group(1)}"}) == []


def engine_build(context: Path, name: str, content: str, mtime: int) -> None:
    """A one-file image into the engine as torchdev builds. COPY keeps the file's mtime, which the test sets; without
    --no-cache BuildKit would reuse a layer whose file has the same content, whatever its mtime."""
    (context / "Dockerfile").write_text("FROM scratch\nCOPY payload.txt /etc/payload.txt\n")
    (context / "payload.txt").write_text(content)
    os.utime(context / "payload.txt", (mtime, mtime))
    subprocess.run(["docker", "buildx", "build", "--no-cache", "--provenance=false", "--build-arg",
                    "SOURCE_DATE_EPOCH=0", f"--output={ENGINE_OUTPUT},name={name}", str(context)], check=True,
                   capture_output=True, timeout=300)


def saved(name: str, path: Path) -> Path:
    subprocess.run(["docker", "save", "-o", str(path), name], check=True, timeout=300)
    return path


def test_a_mismatch_is_reported_down_to_the_file_and_the_field(tracked_tags, tmp_path):
    """What verify-repro prints when image IDs differ, from `docker save` of real gzip images: a content change shows
    size and hash; a file that differs only by its mtime (a step that was not clamped) shows both times. (COPY gives
    the /etc it creates the build's time, so that row may differ too: why the Dockerfile has no COPY.)"""
    repository = tracked_tags.repository(f"{TEST_REPOSITORY}-mismatch")
    for name, content, mtime in (("a", "same length A", 946684800), ("b", "same length B", 946684800),
                                 ("c", "same length A", 1796286350)):
        (tmp_path / name).mkdir()
        engine_build(tmp_path / name, f"{repository}:{name}", content, mtime)
        saved(f"{repository}:{name}", tmp_path / f"{name}.tar")
    digests = {name: read_saved(tmp_path / f"{name}.tar").manifest_digest for name in "abc"}
    assert len(set(digests.values())) == 3
    content = describe_differences(tmp_path / "a.tar", tmp_path / "b.tar")
    assert "layer 1:" in content and "path(s) differ" in content
    assert re.search(r"etc/payload\.txt\s+13 B [0-9a-f]{12}\s+13 B [0-9a-f]{12}", content), content
    timestamps = describe_differences(tmp_path / "a.tar", tmp_path / "c.tar")
    assert re.search(r"etc/payload\.txt\s+13 B ([0-9a-f]{12}) mtime 2000-01-01T00:00:00Z\s+13 B \1 mtime "
                     r"2026-12-03T\d\d:\d\d:\d\dZ", timestamps), timestamps
