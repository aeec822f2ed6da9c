"""`./dev push` against a real registry (Debian's docker-registry on loopback): every tag by one digest, gzip layers
as the engine stores them, so the digest is the very image the smoke suite passed, and a pull by it names that image;
a zstd copy with the same config (same diff_ids); an identical re-push is a no-op; an immutable tag is never
overwritten; a login, an unreachable registry: one line, no report."""
from __future__ import annotations

import json
import re
import urllib.request

import pytest

from tests.helpers.cli import ROOT, run_cli
from tests.helpers.registry import free_port, serve_registry
from tests.helpers.variants import TEST_VARIANT
from torchdev.records import read_push_record

REPORTS = ROOT / "reports" / "push"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def smoked(built_image, test_overlay):
    """A passing smoke run of the test image, recorded where `push` looks (reports/smoke) with the image's ID."""
    result = run_cli("smoke", "--variant", TEST_VARIANT, "--overlay", str(test_overlay), timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    return built_image


def push(test_overlay, to: str, *extra: str):
    return run_cli("push", "--variant", TEST_VARIANT, "--flavour", "runtime", "--overlay", str(test_overlay),
                   "--to", to, *extra, timeout=1200)


def remote_manifest(registry: str, path: str, reference: str) -> dict:
    request = urllib.request.Request(f"http://{registry}/v2/{path}/manifests/{reference}",
                                     headers={"Accept": OCI_MANIFEST})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def test_every_tag_goes_out_by_one_digest_which_is_the_tested_images_own_id(registry, smoked, test_overlay,
                                                                            docker_client, tracked_tags):
    repository = tracked_tags.repository(f"{registry}/ml/torchdev")
    result = push(test_overlay, repository)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    printed = re.findall(rf"^{re.escape(repository)}:(\S+)@(sha256:[0-9a-f]{{64}})$", result.stdout, re.M)
    digests = {digest for _, digest in printed}
    assert len(printed) == len(smoked.references) and len(digests) == 1, result.stdout
    digest = digests.pop()
    assert digest == smoked.image_id, "gzip goes as stored: the pushed digest is the tested image's own ID"
    assert docker_client.images.get_registry_data(f"{repository}:{printed[0][0]}").id == digest
    report = read_push_record(REPORTS / f"{TEST_VARIANT}.json")
    assert (report.digest, report.compression) == (digest, "gzip") and report.size > 1 << 30
    assert report.references == tuple(f"{repository}:{tag}@{digest}" for tag, _ in printed)

    manifest = remote_manifest(registry, "ml/torchdev", digest)
    assert {layer["mediaType"] for layer in manifest["layers"]} == {"application/vnd.oci.image.layer.v1.tar+gzip"}
    # Pulled back by digest, the registry's image is the tested one: a pull into this engine finds every layer and
    # names the same image ID (so no smoke run of it is needed; cold_node.py measures a pull into an empty store).
    pulled = docker_client.images.pull(f"{repository}@{digest}")
    assert pulled.id == smoked.image_id
    docker_client.images.remove(f"{repository}@{digest}")  # only the name the pull added: no force
    assert docker_client.images.get(smoked.image_id).tags, "the tested image and its tags stay"

    again = push(test_overlay, repository)
    assert again.returncode == 0, again.stderr
    assert "already there" in again.stdout and digest in again.stdout


def test_an_immutable_tag_the_registry_has_for_other_content_is_refused_naming_both(
        registry, smoked, test_overlay, docker_client, tracked_tags):
    repository = tracked_tags.repository(f"{registry}/ml/conflict")
    immutable = re.search(r":(\S+-[0-9a-f]{8})$", smoked.references[-1]).group(1)
    other = f"{repository}:{immutable}"
    docker_client.images.get("torchdev-base:bookworm").tag(other)
    for event in docker_client.images.push(other, stream=True, decode=True):
        assert "error" not in event, event
    other_digest = docker_client.images.get_registry_data(other).id
    result = push(test_overlay, repository)
    assert result.returncode == 1
    assert f"the immutable tag {other} already names {other_digest}" in result.stderr
    assert smoked.image_id in result.stderr, "gzip pushes the image as stored: its ID is the digest"
    assert docker_client.images.get_registry_data(other).id == other_digest, "never overwritten"
    assert not (REPORTS / f"{TEST_VARIANT}.json").exists()


def test_zstd_pushes_a_copy_of_the_tested_image_and_keeps_none_of_it(registry, smoked, test_overlay, tracked_tags,
                                                                     docker_client):
    repository = tracked_tags.repository(f"{registry}/ml/zstd")
    result = push(test_overlay, repository, "--compression", "zstd")
    assert result.returncode == 0, result.stderr
    report = read_push_record(REPORTS / f"{TEST_VARIANT}.json")
    assert report.compression == "zstd" and report.digest != smoked.image_id
    manifest = remote_manifest(registry, "ml/zstd", report.digest)
    assert {layer["mediaType"] for layer in manifest["layers"]} == {"application/vnd.oci.image.layer.v1.tar+zstd"}
    with urllib.request.urlopen(f"http://{registry}/v2/ml/zstd/blobs/{manifest['config']['digest']}",
                                timeout=30) as response:
        config = json.load(response)
    assert config["rootfs"]["diff_ids"] == docker_client.images.get(smoked.image_id).attrs["RootFS"]["Layers"], \
        "the same files as the tested image"
    assert not [image for image in docker_client.images.list() if image.id == report.digest], "the copy is gone"


def test_a_registry_that_wants_a_login_and_one_that_is_down_each_fail_in_one_line(smoked, test_overlay,
                                                                                  tmp_path, tracked_tags):
    with serve_registry(tmp_path, login=("alice", "secret")) as locked:
        result = push(test_overlay, tracked_tags.repository(f"{locked}/ml/torchdev"))
    assert result.returncode == 1
    assert f"{locked} wants a login: run `docker login {locked}`" in result.stderr
    down = f"127.0.0.1:{free_port()}"
    result = push(test_overlay, tracked_tags.repository(f"{down}/ml/torchdev"))
    assert result.returncode == 1
    assert f"cannot reach the registry {down}: is it running" in result.stderr
    assert "Traceback" not in result.stderr and not (REPORTS / f"{TEST_VARIANT}.json").exists()
