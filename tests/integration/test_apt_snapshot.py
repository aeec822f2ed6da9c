"""apt snapshots on the real engine: the build reads the base's archives through the snapshot URLs, the image
keeps the base's own sources and records the snapshot, and an unreachable snapshot fails with the fix.

The snapshot hosts cannot be reached from here, so a stand-in (tests/helpers/snapshot_standin.py) serves the snapshot
layout (/<archive>/<timestamp>/dists/...) by forwarding each request to the archive the base's own sources name.
It records every path apt asks for; those paths are what the test checks. tests/integration/test_credentials.py puts
the same stand-in behind a login.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.helpers.cli import ROOT, run_cli
from tests.helpers.snapshot_standin import SHOW_SOURCES, SnapshotStandIn, base_archives, bridge_gateway
from tests.helpers.variants import TEST_REPOSITORY, TEST_VARIANT
from torchdev.matrix import load_matrix

TIMESTAMP = "20250520T000000Z"
REPOSITORY = f"{TEST_REPOSITORY}-snapshot"  # named after the run's, so .ci/run's clean-up knows it as the run's


@pytest.fixture()
def snapshot_overlay(docker_client, containers, test_overlay, tracked_tags, tmp_path):
    """An overlay whose test variant reads the base's archives through the stand-in, and the stand-in."""
    base = load_matrix(ROOT / "images.yaml", overlay=str(test_overlay)).variant(TEST_VARIANT).base
    gateway = bridge_gateway(docker_client)
    server = SnapshotStandIn((gateway, 0), base_archives(containers, base)).start()
    data = yaml.safe_load(test_overlay.read_text())
    data["image"]["repository"] = tracked_tags.repository(REPOSITORY)
    data["variants"][TEST_VARIANT]["apt_snapshot"] = TIMESTAMP
    data["apt_snapshot_urls"] = {archive: f"http://{gateway}:{server.server_address[1]}/{archive}/{{timestamp}}"
                                 for archive in server.upstream}
    path = tmp_path / "snapshot.yaml"
    path.write_text(yaml.safe_dump(data))
    yield path, server
    server.stop()


def test_a_build_reads_apt_through_the_snapshot_and_the_image_keeps_its_own_sources(
        docker_client, containers, snapshot_overlay):
    overlay, server = snapshot_overlay
    result = run_cli("build", "--variant", TEST_VARIANT, "--overlay", str(overlay), timeout=1800)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    assert re.search(r"apt-snapshot: \d+ apt source\(s\) read from snapshots", result.stdout)
    for archive in server.upstream:
        asked = [path for path in server.requests if path.startswith(f"/{archive}/{TIMESTAMP}/dists/")]
        assert any(path.endswith("InRelease") for path in asked), (archive, server.requests)
    image = docker_client.images.list(name=REPOSITORY)[0]
    assert image.labels["io.torchdev.apt-snapshot"] == TIMESTAMP
    base = load_matrix(ROOT / "images.yaml", overlay=str(overlay)).variant(TEST_VARIANT).base
    assert containers.run(image.id, SHOW_SOURCES).output == containers.run(base, SHOW_SOURCES).output
    manifest = json.loads(containers.run(image.id, ["cat", "/usr/share/torchdev/manifest.json"]).output)
    assert {archive: url for archive, url in manifest["apt_snapshot"].items() if archive in server.upstream} == {
        archive: url.replace("{timestamp}", TIMESTAMP)
        for archive, url in yaml.safe_load(overlay.read_text())["apt_snapshot_urls"].items()}


def test_an_unreachable_snapshot_fails_in_one_line_with_the_fix_and_tags_nothing(docker_client, snapshot_overlay):
    overlay, server = snapshot_overlay
    data = yaml.safe_load(overlay.read_text())
    data["apt_snapshot_urls"] = {archive: re.sub(r":\d+/", ":9/", url) for archive, url in
                                 data["apt_snapshot_urls"].items()}  # port 9 (discard): nothing listens
    Path(overlay).write_text(yaml.safe_dump(data))
    result = run_cli("build", "--variant", TEST_VARIANT, "--overlay", str(overlay), timeout=900)
    assert result.returncode == 1
    assert "torchdev: apt cannot read the snapshot archives" in result.stderr, result.stderr
    assert "set the variant's apt_snapshot: null in an overlay" in result.stderr
    assert docker_client.images.list(name=REPOSITORY) == []
    assert server.requests == []
