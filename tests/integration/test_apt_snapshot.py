"""apt snapshots on the real engine: the build reads the base's archives through the snapshot URLs, the image
keeps the base's own sources and records the snapshot, and an unreachable snapshot fails with the fix.

The snapshot hosts cannot be reached from here, so a stand-in serves the snapshot layout
(/<archive>/<timestamp>/dists/...) by forwarding each request to the archive the base's own sources name.
It records every path apt asks for; those paths are what the test checks.
"""
from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tests.helpers.cli import ROOT, run_cli
from tests.helpers.variants import TEST_REPOSITORY, TEST_VARIANT
from torchdev.matrix import load_matrix

TIMESTAMP = "20250520T000000Z"
REPOSITORY = f"{TEST_REPOSITORY}-snapshot"  # named after the run's, so .ci/run's clean-up knows it as the run's
SHOW_SOURCES = ["sh", "-c", "cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null"]


class SnapshotStandIn(ThreadingHTTPServer):
    """Serves /<archive>/<timestamp>/<path> from upstream[archive]/<path>, remembering what was asked."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], upstream: dict[str, str]) -> None:
        super().__init__(address, _Forward)
        self.upstream = upstream
        self.requests: list[str] = []


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # apt keeps connections open and pipelines its requests

    def do_GET(self) -> None:  # noqa: N802 (the name http.server looks for)
        self.server.requests.append(self.path)
        archive, _, rest = self.path.lstrip("/").partition("/")
        _, _, rest = rest.partition("/")  # the timestamp: the stand-in serves today's archive for any
        status, body = 404, b""
        if archive in self.server.upstream:
            try:
                with urllib.request.urlopen(f"{self.server.upstream[archive]}/{rest}", timeout=60) as response:
                    status, body = response.status, response.read()
            except urllib.error.HTTPError as error:
                status = error.code
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def base_archives(containers, base: str) -> dict[str, str]:
    """archive -> URI, from the base image's own apt sources (so no mirror host is written here)."""
    uris = re.findall(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", containers.run(base, SHOW_SOURCES).output, flags=re.M)
    return {uri.rstrip("/").rsplit("/", 1)[-1]: uri.rstrip("/") for uri in uris}


@pytest.fixture()
def snapshot_overlay(docker_client, containers, test_overlay, tracked_tags, tmp_path):
    """An overlay whose test variant reads the base's archives through the stand-in, and the stand-in."""
    base = load_matrix(ROOT / "images.yaml", overlay=str(test_overlay)).variant(TEST_VARIANT).base
    gateway = docker_client.networks.get("bridge").attrs["IPAM"]["Config"][0]["Gateway"]
    server = SnapshotStandIn((gateway, 0), base_archives(containers, base))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    data = yaml.safe_load(test_overlay.read_text())
    data["image"]["repository"] = tracked_tags.repository(REPOSITORY)
    data["variants"][TEST_VARIANT]["apt_snapshot"] = TIMESTAMP
    data["apt_snapshot_urls"] = {archive: f"http://{gateway}:{server.server_address[1]}/{archive}/{{timestamp}}"
                                 for archive in server.upstream}
    path = tmp_path / "snapshot.yaml"
    path.write_text(yaml.safe_dump(data))
    yield path, server
    server.shutdown()
    server.server_close()


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
