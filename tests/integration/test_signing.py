"""`./dev push --sign` and `./dev verify` with the real cosign against the real loopback registry (Debian's
docker-registry): the pushed digest signed with a throw-away key pair, the SBOM and the provenance attached and
verified; a verify with another key, after the tag was moved to other content, and of an image pushed without
--sign each fail in one line with the cause; the SBOM pulled back lists exactly the image's manifest's packages; the
password and the private key land nowhere.

The image pushed is small (the local base plus a torchdev manifest, tests/helpers/signing.py) under the test
variant's tags in a repository of its own, so `./dev push --sign --force` runs exactly as for the 4.7 GB image (with
--force in place of the smoke gate, which test_push.py covers) in seconds."""
from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.helpers.cli import ROOT, run_cli
from tests.helpers.signing import BASE, attestation, key_pair, manifest, small_image
from tests.helpers.variants import TEST_OVERLAY, TEST_REPOSITORY, TEST_VARIANT
from torchdev.checkout import read_plans
from torchdev.matrix import load_matrix
from torchdev.project import Paths
from torchdev.records import COPY_DIGESTS, read_signature_record
from torchdev.sbom import listed_packages, manifest_packages

PASSWORD = "throw-away-test-password-3f9c"
REPORTS = ROOT / "reports" / "push"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    return {"signer": key_pair(folder, "signer", PASSWORD), "other": key_pair(folder, "other", "another-password")}


@pytest.fixture(scope="module")
def overlay(tmp_path_factory):
    """The CI overlay in a repository of the module's own: the small image takes the test variant's tags there,
    never those of the session's real test image."""
    path = tmp_path_factory.mktemp("overlay") / "overlay.yaml"
    path.write_text(TEST_OVERLAY.read_text() + f"\nimage:\n  repository: {TEST_REPOSITORY}-signing\n")
    return path


@pytest.fixture(scope="module")
def records_kept():
    """reports/push/<variant>.json, .signature.json and the copies' digests as they were before the module, put back
    after it."""
    paths = [REPORTS / f"{TEST_VARIANT}.json", REPORTS / f"{TEST_VARIANT}.signature.json", REPORTS / COPY_DIGESTS]
    saved = {path: path.read_bytes() for path in paths if path.is_file()}
    yield
    for path in paths:
        path.unlink(missing_ok=True)
        if path in saved:
            path.write_bytes(saved[path])


@pytest.fixture()
def small(docker_client, overlay, tmp_path, tracked_tags):
    """The small image under every tag of the test variant's plan; its manifest."""
    content = manifest(docker_client)
    image_id = small_image(docker_client, tmp_path, content)
    matrix = load_matrix(ROOT / "images.yaml", overlay=str(overlay))
    plan = read_plans(Paths.at(ROOT), matrix, [matrix.variant(TEST_VARIANT)])[0]
    tracked_tags.repository(f"{TEST_REPOSITORY}-signing")
    for reference in plan.references:
        docker_client.images.get(image_id).tag(reference)
    return plan, content


def push(overlay, to: str, *extra: str, password: str = PASSWORD):
    return run_cli("push", "--variant", TEST_VARIANT, "--flavour", "runtime", "--overlay", str(overlay), "--to", to,
                   "--force", *extra, timeout=600, env={"COSIGN_PASSWORD": password})


def verify(reference: str, key):
    return run_cli("verify", reference, "--key", str(key), timeout=300)


def one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stdout + result.stderr
    return lines[0]


def test_a_signed_push_verifies_with_its_key_and_fails_in_one_line_otherwise(
        registry, keys, small, overlay, docker_client, tracked_tags, records_kept, tmp_path):
    plan, content = small
    repository = tracked_tags.repository(f"{registry}/ml/torchdev")
    result = push(overlay, repository, "--sign", str(keys["signer"][0]))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    digest = re.search(rf"^signed {re.escape(repository)}@(sha256:[0-9a-f]{{64}}) with key sha256:[0-9a-f]{{64}}",
                       result.stdout, re.M).group(1)
    record = read_signature_record(REPORTS / f"{TEST_VARIANT}.signature.json")
    assert (record.repository, record.digest) == (repository, digest)
    assert set(record.tags) == {reference.rsplit(":", 1)[1] for reference in plan.references}

    moving = f"{repository}:{TEST_VARIANT}"
    good = verify(moving, keys["signer"][1])
    assert good.returncode == 0, good.stdout + good.stderr
    commit = plan.labels["org.opencontainers.image.revision"]
    assert f"commit:    {commit}" in good.stdout and digest in good.stdout
    assert re.search(r"^  lock:      \S+ \(sha256 [0-9a-f]{12}\)", good.stdout, re.M), good.stdout
    assert f"signed by: key {record.key_fingerprint}" in good.stdout
    assert verify(f"{repository}@{digest}", keys["signer"][1]).returncode == 0

    line = one_line(verify(moving, keys["other"][1]))
    assert "is signed, but by another key" in line and str(keys["other"][1]) in line

    sbom = attestation(f"{repository}@{digest}", keys["signer"][1], "spdxjson")
    assert listed_packages(sbom) == manifest_packages(content), "exactly the manifest's packages"
    provenance = attestation(f"{repository}@{digest}", keys["signer"][1], "slsaprovenance1")
    assert provenance["buildDefinition"]["externalParameters"]["variant"] == TEST_VARIANT
    shown = run_cli("images", "--sbom", TEST_VARIANT, "--overlay", str(overlay), "--out", str(tmp_path / "sbom.json"))
    assert shown.returncode == 0 and "as pushed" in shown.stdout, shown.stdout + shown.stderr
    assert json.loads((tmp_path / "sbom.json").read_text()) == sbom, "`./dev images --sbom` shows what was attached"
    shown = run_cli("images", "--provenance", TEST_VARIANT, "--overlay", str(overlay))
    assert shown.returncode == 0, shown.stderr
    attached = {**provenance, "runDetails": {k: v for k, v in provenance["runDetails"].items() if k != "metadata"}}
    assert provenance["runDetails"].get("metadata") == {}, "cosign 2.5 adds an empty metadata, nothing else"
    assert json.loads(shown.stdout)["predicate"] == attached, "`./dev images --provenance`: the attached predicate"

    # The tag moved: another image pushed under it, never signed.
    docker_client.images.get(BASE).tag(tracked_tags.reference(moving))
    for event in docker_client.images.push(moving, stream=True, decode=True):
        assert "error" not in event, event
    line = one_line(verify(moving, keys["signer"][1]))
    assert f"was signed as {digest}" in line and "the tag was moved to other content since signing" in line

    secret_free(result, record_text=(REPORTS / f"{TEST_VARIANT}.signature.json").read_text(),
                documents=json.dumps([sbom, provenance]), private_key=keys["signer"][0].read_text())


def test_an_image_pushed_without_sign_is_not_signed_in_one_line(registry, keys, small, overlay, tracked_tags,
                                                                  records_kept):
    repository = tracked_tags.repository(f"{registry}/ml/unsigned")
    result = push(overlay, repository)
    assert result.returncode == 0, result.stderr
    assert not (REPORTS / f"{TEST_VARIANT}.signature.json").exists()
    line = one_line(verify(f"{repository}:{TEST_VARIANT}", keys["signer"][1]))
    assert "is not signed: no signature in the registry" in line


def test_a_wrong_password_stops_the_push_before_anything_is_pushed(registry, keys, small, overlay, tracked_tags,
                                                                   records_kept):
    repository = tracked_tags.repository(f"{registry}/ml/wrong-password")
    result = push(overlay, repository, "--sign", str(keys["signer"][0]), password="not-the-password")
    line = one_line(result)
    assert "cosign cannot open" in line and "COSIGN_PASSWORD" in line and "not-the-password" not in line
    assert "pushing" not in result.stdout


def secret_free(*results: subprocess.CompletedProcess, record_text: str, documents: str, private_key: str) -> None:
    """The password and the private key appear in no output, record or attached document, and nothing under
    reports/ holds either."""
    body = "".join(line for line in private_key.splitlines() if not line.startswith("-----"))
    texts = [record_text, documents, *(r.stdout + r.stderr for r in results),
             *(path.read_text(errors="replace") for path in (ROOT / "reports").rglob("*") if path.is_file())]
    for text in texts:
        assert PASSWORD not in text and body[:40] not in text
