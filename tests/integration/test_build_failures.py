"""Bad input and failed builds: one line naming the cause and the fix, non-zero exit, no tag moved."""
from __future__ import annotations


import pytest
import yaml

from tests.helpers.cli import run_cli
from tests.helpers.tags import tag_targets
from tests.helpers.variants import TEST_REPOSITORY, TEST_VARIANT, overlay_changing


@pytest.mark.parametrize("fields, cause", [
    ({"python": "3.10", "lock": "/nonexistent/no-lock.txt"},  # unlocked: a Python 3.10 lock stops it before
     "torchdev: the base's python3 is 3.11 but the variant declares python 3.10"),
    ({"cuda": "11.8"}, "torchdev: torch 2.0.1+cu117 reports CUDA 11.7, the variant declares 11.8"),
], ids=["python", "cuda"])
def test_a_failed_build_names_its_cause_and_moves_no_tag(docker_client, built_image, test_overlay, tmp_path, fields,
                                                        cause):
    before = tag_targets(docker_client, TEST_REPOSITORY)
    assert built_image.references[0] in before  # the listing sees the tags, so "unchanged" means something
    overlay = overlay_changing(tmp_path, test_overlay, **fields)
    unlocked = ["--unlocked"] if "lock" in fields else []  # a variant without a lock is refused unless asked for
    result = run_cli("build", "--variant", TEST_VARIANT, "--overlay", str(overlay), *unlocked, timeout=900)
    assert result.returncode == 1
    assert cause in result.stderr, result.stderr
    assert f"{TEST_VARIANT} failed" in result.stderr and "full log:" in result.stderr
    assert "failed" in result.stdout.splitlines()[-1]  # the summary table's row
    assert tag_targets(docker_client, TEST_REPOSITORY) == before


def test_a_pip_failure_is_summed_up_by_pips_own_error_not_the_shell_command(docker_client, built_image, test_overlay,
                                                                             tmp_path):
    data = yaml.safe_load(overlay_changing(tmp_path, test_overlay, lock="/nonexistent/no-lock.txt").read_text())
    data["packages"] = ["no-such-package-torchdev==1.0"]
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump(data))
    result = run_cli("build", "--variant", TEST_VARIANT, "--overlay", str(overlay), "--unlocked", timeout=900)
    assert result.returncode == 1
    assert f"torchdev: {TEST_VARIANT} failed: ERROR: No matching distribution found for no-such-package-torchdev==1.0" \
        in result.stderr, result.stderr
    assert "/bin/bash -o pipefail" not in result.stderr


def test_a_dry_run_prints_the_plan_and_builds_nothing(docker_client, built_image, test_overlay):
    before = tag_targets(docker_client, TEST_REPOSITORY)
    result = run_cli("build", "--variant", TEST_VARIANT, "--overlay", str(test_overlay), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "nothing is built in a dry run" in result.stdout
    assert "docker buildx build" in result.stdout and "--secret id=ca_bundle" in result.stdout
    assert tag_targets(docker_client, TEST_REPOSITORY) == before


def test_no_engine_is_one_line_with_the_fix():
    result = run_cli("build", "--variant", "cpu", "--unlocked", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("torchdev: no Docker engine answers") and "start Docker" in result.stderr


def test_a_malformed_overlay_stops_before_docker_with_exit_2(tmp_path):
    overlay = tmp_path / "bad.yaml"
    overlay.write_text("variants:\n  cu118:\n    torch: 2.2.0\n")
    result = run_cli("build", "--variant", "cu118", "--overlay", str(overlay),
                     env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.returncode == 2
    assert result.stderr.strip() == (f"torchdev: {overlay}:3: variant 'cu118': key 'torch': '2.2.0' is not a "
                                     "PyTorch 2.0 release (torchdev images are PyTorch 2.0): use one of 2.0.0, 2.0.1")


def test_an_unknown_variant_exits_2_naming_the_known_ones():
    result = run_cli("build", "--variant", "cu121", "--dry-run")
    assert result.returncode == 2
    assert "unknown variant 'cu121'" in result.stderr and "cpu, cu117, cu118" in result.stderr


def test_a_base_that_is_gone_names_the_mirror_fix(docker_client, test_overlay, tmp_path):
    overlay = overlay_changing(tmp_path, test_overlay, base="localhost:1/gone/cuda:11.7.1-cudnn8-runtime-ubuntu22.04")
    result = run_cli("build", "--variant", TEST_VARIANT, "--overlay", str(overlay), timeout=300)
    assert result.returncode == 1
    assert "the base image localhost:1/gone/cuda:11.7.1-cudnn8-runtime-ubuntu22.04 cannot be found or reached" in \
        result.stderr
    assert "point the variant's base at a mirror in an overlay" in result.stderr


def test_a_variant_without_a_lock_is_refused_before_the_engine_is_asked_unless_unlocked(tmp_path, test_overlay):
    overlay = overlay_changing(tmp_path, test_overlay, lock=str(tmp_path / "no-lock.txt"))
    result = run_cli("build", "--variant", TEST_VARIANT, "--overlay", str(overlay),
                     env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"torchdev: variant '{TEST_VARIANT}' has no lock for linux/amd64 "
                                    f"({tmp_path / 'no-lock.txt'}), so nothing pip installs")
    assert f"run `./dev lock --variant {TEST_VARIANT} --overlay {overlay}`" in result.stderr
    assert "or pass --unlocked to build it unpinned" in result.stderr
