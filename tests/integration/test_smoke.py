"""`invoke smoke` on the real engine: it passes on a good image, and it can fail, naming why."""
from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import yaml

from tests.helpers.cli import run_cli
from tests.helpers.variants import TEST_REPOSITORY, TEST_VARIANT


def test_the_suite_passes_in_the_test_image_and_reports_per_check(built_image, test_overlay, tmp_path):
    reports = tmp_path / "reports"
    result = run_cli("smoke", "--variant", TEST_VARIANT, "--overlay", str(test_overlay), "--reports", str(reports),
                     timeout=900)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr
    summary = json.loads((reports / f"{TEST_VARIANT}.json").read_text())
    assert summary["failed"] == 0 and summary["passed"] >= 20
    outcomes = {(c["check"], c["outcome"]) for c in summary["checks"]}
    assert {("environment", "passed"), ("convergence", "passed"), ("ddp", "passed"), ("shm", "passed")} <= outcomes
    gpu_reasons = {c["reason"] for c in summary["checks"] if c["check"] == "gpu"}
    assert gpu_reasons == {"no GPUs requested"}, "no GPU engine here: GPU checks must skip with their reason"
    assert ElementTree.parse(reports / f"{TEST_VARIANT}.xml").getroot().iter("testcase")
    for report in reports.iterdir():
        assert report.stat().st_uid == os.getuid(), f"{report} is not owned by the host user"
    table = result.stdout[result.stdout.rindex("variant  environment"):]
    assert table.splitlines()[2].startswith(TEST_VARIANT)


def test_wrong_declared_contents_make_smoke_fail_naming_the_mismatch(built_image, test_overlay, tracked_tags,
                                                                     tmp_path):
    """An image built from a variant that declares cuDNN 9 (the wheel carries 8): the build cannot see it,
    the smoke suite must."""
    data = yaml.safe_load(test_overlay.read_text())
    data["image"]["repository"] = tracked_tags.repository(f"{TEST_REPOSITORY}-wrongcudnn")
    data["variants"]["wrongcudnn"] = {**_declared(TEST_VARIANT), **data["variants"][TEST_VARIANT], "cudnn": 9}
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump(data))
    built = run_cli("build", "--variant", "wrongcudnn", "--overlay", str(overlay), timeout=900)
    assert built.returncode == 0, built.stderr
    result = run_cli("smoke", "--variant", "wrongcudnn", "--overlay", str(overlay), "--reports",
                     str(tmp_path / "reports"), timeout=900)
    assert result.returncode == 1
    assert "torchdev: failed: wrongcudnn: test_environment.py::" in result.stderr
    assert "major 8, expected 9" in result.stderr, result.stderr


def _declared(variant: str) -> dict:
    return yaml.safe_load((Path(__file__).resolve().parents[2] / "images.yaml").read_text())["variants"][variant]


def test_asking_for_gpus_on_an_engine_without_the_nvidia_runtime_stops_before_any_container(
        docker_client, built_image, test_overlay):
    before = len(docker_client.containers.list(all=True))
    result = run_cli("smoke", "--variant", TEST_VARIANT, "--overlay", str(test_overlay), "--gpus", "all")
    assert result.returncode == 1
    assert "NVIDIA Container Toolkit" in result.stderr and "nvidia-ctk runtime configure" in result.stderr
    assert result.stderr.count("\n") == 1
    assert len(docker_client.containers.list(all=True)) == before


def test_a_missing_image_names_the_build_command(docker_client, test_overlay):
    result = run_cli("smoke", "--variant", "cpu", "--overlay", str(test_overlay), "--gpus", "none")
    assert result.returncode == 1
    assert f"image {TEST_REPOSITORY}:2.0.1-cpu-py3.10 is not built: run `./dev build --variant cpu`" in result.stderr
