"""Pinning bases by digest and saving copies, against a real registry (Debian's docker-registry) on loopback."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers.cli import run_cli
from tests.helpers.variants import TEST_VARIANT

LOCAL_BASE = "torchdev-base:bookworm"


@pytest.fixture()
def pushed_base(docker_client, registry, tracked_tags):
    """The local Debian base, pushed to the registry as an ordinary tagged image. The names that pulls by digest
    give the local base (registry/torchdev-base@sha256:...), and the mirror's, go when the test ends."""
    tracked_tags.repository(f"{registry}/mirror/torchdev-base")
    reference = f"{tracked_tags.repository(f'{registry}/torchdev-base')}:bookworm"
    docker_client.images.get(LOCAL_BASE).tag(reference)
    for event in docker_client.images.push(reference, stream=True, decode=True):
        assert "error" not in event, event
    docker_client.images.remove(reference, noprune=True)
    return reference


def overlay_with_base(tmp_path: Path, base: str) -> Path:
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(f"variants:\n  {TEST_VARIANT}:\n    base: {base}   # a comment that must survive\n"
                       "    python: \"3.11\"\n    index: default\n")
    return overlay


def test_pin_writes_the_registry_digest_where_the_base_is_declared(docker_client, pushed_base, tmp_path):
    overlay = overlay_with_base(tmp_path, pushed_base)
    result = run_cli("pin", "--variant", TEST_VARIANT, "--overlay", str(overlay))
    assert result.returncode == 0, result.stderr
    digest = docker_client.images.get_registry_data(pushed_base).id
    assert f"    base: {pushed_base}@{digest}   # a comment that must survive\n" in overlay.read_text()
    again = run_cli("pin", "--variant", TEST_VARIANT, "--overlay", str(overlay))
    assert again.returncode == 0 and "already pinned" in again.stdout


def test_pin_says_clearly_when_no_registry_answers(tmp_path):
    overlay = overlay_with_base(tmp_path, "localhost:1/gone/cuda:11.7.1")
    before = overlay.read_text()
    result = run_cli("pin", "--variant", TEST_VARIANT, "--overlay", str(overlay))
    assert result.returncode == 1
    assert "cannot resolve localhost:1/gone/cuda:11.7.1 in its registry" in result.stderr
    assert overlay.read_text() == before


def test_save_bases_copies_a_pinned_base_to_a_registry_and_to_an_archive(docker_client, registry, pushed_base,
                                                                         tmp_path):
    digest = docker_client.images.get_registry_data(pushed_base).id
    overlay = overlay_with_base(tmp_path, f"{pushed_base}@{digest}")
    result = run_cli("save-bases", "--variant", TEST_VARIANT, "--overlay", str(overlay),
                     "--to-registry", f"{registry}/mirror")
    assert result.returncode == 0, result.stderr
    copy = f"{registry}/mirror/torchdev-base:bookworm"
    assert docker_client.images.get_registry_data(copy).id == digest
    assert f"{copy}@{digest}" in result.stdout
    archives = tmp_path / "archives"
    result = run_cli("save-bases", "--variant", TEST_VARIANT, "--overlay", str(overlay), "--to-archive", str(archives))
    assert result.returncode == 0, result.stderr
    [archive] = archives.iterdir()
    listing = subprocess.run(["tar", "-tf", str(archive)], capture_output=True, text=True, check=True).stdout
    assert "manifest.json" in listing or "index.json" in listing


def test_save_bases_refuses_unpinned_bases(tmp_path):
    overlay = overlay_with_base(tmp_path, LOCAL_BASE)
    result = run_cli("save-bases", "--variant", TEST_VARIANT, "--overlay", str(overlay), "--to-archive",
                     str(tmp_path / "a"))
    assert result.returncode == 1
    assert f"the base of {TEST_VARIANT} is not pinned by digest: run `./dev pin` first" in result.stderr
