"""Reproducible builds on the real engine: the same inputs give the same digest, another input another one."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers.cli import run_cli
from tests.helpers.tags import tag_targets
from tests.helpers.variants import TEST_REPOSITORY, TEST_VARIANT, overlay_changing
from torchdev.plan import OCI_OUTPUT
from torchdev.repro import describe_differences, read_oci


@pytest.fixture(scope="module")
def reproducible_digest(built_image, test_overlay) -> str:
    """`invoke verify-repro` on the test variant: two builds without layer cache must agree."""
    result = run_cli("verify-repro", "--variant", TEST_VARIANT, "--overlay", str(test_overlay), timeout=2400)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr
    return re.search(r"is reproducible: (sha256:[0-9a-f]{64})", result.stdout).group(1)


def test_two_builds_without_cache_give_one_digest(reproducible_digest):
    assert reproducible_digest.startswith("sha256:")


def test_another_source_date_epoch_gives_another_digest_which_a_recorded_digest_rejects(
        docker_client, built_image, reproducible_digest, test_overlay, tmp_path):
    overlay = overlay_changing(tmp_path, test_overlay, digest=reproducible_digest)
    before = tag_targets(docker_client, TEST_REPOSITORY)
    assert built_image.references[0] in before
    result = run_cli("build", "--variant", TEST_VARIANT, "--overlay", str(overlay), "--reproducible",
                     env={"SOURCE_DATE_EPOCH": "1000000000"}, timeout=1800)
    assert result.returncode == 1, result.stdout[-3000:]
    found = re.search(r"reproducible build gave (sha256:[0-9a-f]{64}), images.yaml expects (sha256:[0-9a-f]{64})",
                      result.stderr)
    assert found, result.stderr
    assert found.group(2) == reproducible_digest != found.group(1)
    assert tag_targets(docker_client, TEST_REPOSITORY) == before


def oci_build(context: Path, archive: Path, content: str) -> None:
    (context / "Dockerfile").write_text("FROM scratch\nCOPY payload.txt /etc/payload.txt\n")
    (context / "payload.txt").write_text(content)
    subprocess.run(["docker", "buildx", "build", "--provenance=false", "--build-arg", "SOURCE_DATE_EPOCH=0",
                    f"--output={OCI_OUTPUT.to(archive)}", str(context)], check=True, capture_output=True,
                   timeout=300)


def test_a_mismatch_is_reported_down_to_the_file(docker_client, tmp_path):
    """The report verify-repro prints when digests differ names the layer and the file, with sizes."""
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    oci_build(tmp_path / "a", tmp_path / "a.tar", "same length A")
    oci_build(tmp_path / "b", tmp_path / "b.tar", "same length B")
    assert read_oci(tmp_path / "a.tar").manifest_digest != read_oci(tmp_path / "b.tar").manifest_digest
    report = describe_differences(tmp_path / "a.tar", tmp_path / "b.tar")
    assert "layer 1:" in report and "1 path(s) differ" in report
    assert re.search(r"etc/payload\.txt\s+13 B [0-9a-f]{12}\s+13 B [0-9a-f]{12}", report), report
