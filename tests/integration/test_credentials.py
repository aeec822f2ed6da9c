"""Logins for real: a private pip index and a private apt archive, each behind basic auth on the docker bridge's
gateway (where a build's RUN steps reach this host), the test variant locked and built through them, and a canary
password planted in both logins and searched for everywhere it could land.

The index (tests/helpers/auth_index.py) forwards PyPI's pages, so the files still come from files.pythonhosted.org with
their locked hashes, and serves a tiny canary wheel of its own: the image holding it proves the build read the index
with the login. The archive is the apt-snapshot stand-in (tests/helpers/snapshot_standin.py) behind the same login.
Without a login each build step fails in one line naming the route to give it. One full build (runtime flavour); the
two failing ones stop at their first step's request.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers.auth_index import AuthIndex, canary_wheel
from tests.helpers.cli import ROOT, run_cli
from tests.helpers.saved_image import blobs_holding
from tests.helpers.snapshot_standin import SnapshotStandIn, base_archives, bridge_gateway
from tests.helpers.variants import TEST_REPOSITORY, TEST_VARIANT
from torchdev.matrix import load_matrix

REPOSITORY = f"{TEST_REPOSITORY}-secrets"  # named after the run's, so .ci/run's clean-up knows it as the run's
PROJECT = "torchdev-canary"
TIMESTAMP = "20250520T000000Z"
USER = "canary-user"


@pytest.fixture(scope="module")
def password() -> str:
    return f"canary-{secrets.token_hex(12)}"


@pytest.fixture()
def private(docker_client, containers, test_overlay, tracked_tags, tmp_path, password):
    """The index and the archive behind the login, an overlay that builds the test variant through them into a
    repository of its own with a lock of its own, and the two login files (pip's netrc, apt's auth.conf)."""
    gateway = bridge_gateway(docker_client)
    base = load_matrix(ROOT / "images.yaml", overlay=str(test_overlay)).variant(TEST_VARIANT).base
    index = AuthIndex((gateway, 0), user=USER, password=password, project=PROJECT,
                      wheel=canary_wheel(PROJECT, "0.1", "sung through the login")).start()
    archive = SnapshotStandIn((gateway, 0), base_archives(containers, base), login=(USER, password)).start()
    data = yaml.safe_load(test_overlay.read_text())
    data["image"]["repository"] = tracked_tags.repository(REPOSITORY)
    data["pip_index"] = index.url
    data["packages"] = [*yaml.safe_load((ROOT / "images.yaml").read_text())["packages"], f"{PROJECT}==0.1"]
    data["variants"][TEST_VARIANT].update(lock=str(tmp_path / "cu117.lock.txt"), apt_snapshot=TIMESTAMP)
    data["apt_snapshot_urls"] = {name: f"{archive.url}/{name}/{{timestamp}}" for name in archive.upstream}
    overlay = tmp_path / "private.yaml"
    overlay.write_text(yaml.safe_dump(data))
    (tmp_path / "netrc").write_text(f"machine {gateway} login {USER} password {password}\n")
    (tmp_path / "apt-auth.conf").write_text(f"machine {archive.url} login {USER} password {password}\n")
    (tmp_path / "home").mkdir()
    yield overlay, index, archive
    index.stop()
    archive.stop()


def dev(*args: str, tmp_path: Path, netrc: bool, apt: bool, timeout: float = 1800) -> subprocess.CompletedProcess:
    """./dev with the logins given through their routes or not; HOME is empty, so no ~/.netrc of this host counts."""
    env = {"HOME": str(tmp_path / "home"), "NETRC": str(tmp_path / "netrc") if netrc else "",
           "TORCHDEV_APT_AUTH_CONF": str(tmp_path / "apt-auth.conf") if apt else ""}
    return run_cli(*args, timeout=timeout, env=env)


def test_a_private_index_and_archive_are_reached_through_the_routes_and_the_password_lands_nowhere(
        docker_client, containers, private, tmp_path, password):
    overlay, index, archive = private
    said: list[subprocess.CompletedProcess] = []

    locked = dev("lock", "--variant", TEST_VARIANT, "--overlay", str(overlay), tmp_path=tmp_path, netrc=False,
                 apt=False, timeout=600)
    said.append(locked)
    assert locked.returncode == 1 and locked.stderr.count("\n") == 1, locked.stderr
    assert f"pip_index {index.url} asks for a login and none was given: give it through ~/.netrc" in locked.stderr
    lock = tmp_path / "cu117.lock.txt"
    assert not lock.exists()

    locked = dev("lock", "--variant", TEST_VARIANT, "--overlay", str(overlay), tmp_path=tmp_path, netrc=True,
                 apt=False, timeout=600)
    said.append(locked)
    assert locked.returncode == 0, locked.stderr
    assert f"\n{PROJECT}==0.1 \\\n    --hash=sha256:{index.wheel.sha256}" in lock.read_text()
    assert index.asked(PROJECT, authorized=True), "uv read the canary's page with the login"

    started = time.monotonic()
    no_apt_login = dev("build", "--variant", TEST_VARIANT, "--overlay", str(overlay), tmp_path=tmp_path, netrc=True,
                       apt=False, timeout=900)
    said.append(no_apt_login)
    assert no_apt_login.returncode == 1
    assert ("torchdev: cu117 failed: torchdev: an apt archive asks for a login (HTTP 401/403, see above) and the build "
            "was given none: name an apt auth.conf file with TORCHDEV_APT_AUTH_CONF") in no_apt_login.stderr, \
        no_apt_login.stderr
    assert archive.refused and not archive.requests

    no_pip_login = dev("build", "--variant", TEST_VARIANT, "--overlay", str(overlay), tmp_path=tmp_path, netrc=False,
                       apt=True, timeout=900)
    said.append(no_pip_login)
    assert no_pip_login.returncode == 1
    assert (f"torchdev: cu117 failed: torchdev: the index {index.url} asks for a login (HTTP 401) and the build was "
            f"given none for {index.server_address[0]}: give it through ~/.netrc") in no_pip_login.stderr, \
        no_pip_login.stderr
    assert archive.requests, "apt read the archive with the login"
    failed_builds = time.monotonic() - started

    started = time.monotonic()
    built = dev("build", "--variant", TEST_VARIANT, "--overlay", str(overlay), tmp_path=tmp_path, netrc=True,
                apt=True)
    said.append(built)
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr
    print(f"\nbuild through the private index and archive: {time.monotonic() - started:.0f} s "
          f"(the two refused builds before it: {failed_builds:.0f} s)")
    image = docker_client.images.get(f"{REPOSITORY}:{TEST_VARIANT}")
    assert containers.run(image.id, ["python", "-c", "import torchdev_canary; print(torchdev_canary.VALUE)"]
                          ).output.strip() == "sung through the login"
    assert index.asked("/files/torchdev_canary", authorized=True), "pip fetched the canary with the login"

    said.append(dev("build", "--variant", TEST_VARIANT, "--overlay", str(overlay), "--dry-run", tmp_path=tmp_path,
                    netrc=True, apt=True, timeout=300))
    assert f"netrc <- the login for {index.server_address[0]} from $NETRC" in said[-1].stdout
    assert f"apt_auth <- {tmp_path / 'apt-auth.conf'} (from $TORCHDEV_APT_AUTH_CONF)" in said[-1].stdout
    said.append(dev("matrix", "--overlay", str(overlay), tmp_path=tmp_path, netrc=True, apt=True, timeout=300))
    said.append(dev("images", "--manifest", TEST_VARIANT, "--overlay", str(overlay), tmp_path=tmp_path, netrc=True,
                    apt=True, timeout=300))

    needle = password.encode()
    history = subprocess.run(["docker", "history", "--no-trunc", image.id], capture_output=True, check=True).stdout
    inspected = subprocess.run(["docker", "image", "inspect", image.id], capture_output=True, check=True).stdout
    assert needle not in history and needle not in inspected
    assert USER.encode() not in history, "not even the user name is a build argument"
    layers, hits = blobs_holding(image.save(chunk_size=1 << 20), needle)
    assert layers >= len(set(image.attrs["RootFS"]["Layers"])), "some layers could not be read, so were not checked"
    assert hits == []
    manifest = json.loads(containers.run(image.id, ["cat", "/usr/share/torchdev/manifest.json"]).output)
    assert manifest["unlocked"] is False and manifest["lock_sha256"]
    written = [lock, *ROOT.glob("locks/*"), *ROOT.glob("overlays/**/*.txt"),
               *(path for path in (ROOT / "reports").rglob("*") if path.is_file())]
    assert [str(path) for path in written if needle in path.read_bytes()] == []
    assert (ROOT / "reports" / "build" / f"{TEST_VARIANT}.log") in written  # the build log was searched
    assert [result.args for result in said if password in result.stdout + result.stderr] == []
