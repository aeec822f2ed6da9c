"""`invoke smoke` on the real engine: it passes on a good image, and it can fail, naming why."""
from __future__ import annotations

import os
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import yaml

from smoke.smoke_contract import read_summary
from tests.helpers.cli import run_cli
from tests.helpers.variants import TEST_REPOSITORY, TEST_VARIANT


def test_the_suite_passes_in_the_test_image_and_reports_per_check(built_image, test_overlay, tmp_path):
    reports = tmp_path / "reports"
    result = run_cli("smoke", "--variant", TEST_VARIANT, "--overlay", str(test_overlay), "--reports", str(reports),
                     timeout=900)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr
    summary = read_summary(reports / f"{TEST_VARIANT}.json")
    assert summary.failed == 0 and summary.passed >= 20 and summary.variant == TEST_VARIANT and summary.image_id
    outcomes = {(c.check, c.outcome) for c in summary.checks}
    assert {("environment", "passed"), ("convergence", "passed"), ("ddp", "passed"), ("shm", "passed")} <= outcomes
    gpu = {c.nodeid.split("::")[-1]: c for c in summary.checks if c.check == "gpu"}
    assert gpu.pop("test_a_run_that_asked_for_no_gpu_sees_none").outcome == "passed"
    assert {c.reason for c in gpu.values()} == {"no GPUs requested"}, "no GPUs here: GPU checks skip, saying why"
    assert f"note: {TEST_VARIANT}: no GPU was tested: --gpus auto found no nvidia runtime, hook or CDI GPU devices" \
        in result.stdout, "a CUDA variant tested without GPUs is said in words"
    assert ElementTree.parse(reports / f"{TEST_VARIANT}.xml").getroot().iter("testcase")
    for report in reports.iterdir():
        assert report.stat().st_uid == os.getuid(), f"{report} is not owned by the host user"
    table = result.stdout[result.stdout.rindex("image  environment"):]
    assert table.splitlines()[2].startswith(TEST_VARIANT)


def test_declared_contents_torch_2_0_cannot_have_are_refused_before_a_build(test_overlay, tmp_path):
    """A variant that declares cuDNN 9 (torch 2.0's wheels bring 8) once built and then failed the smoke suite's
    cuDNN check; now it never gets that far: the matrix refuses it when it is loaded, naming the line and the fix,
    before any engine is asked (the suite's own check stays for images built elsewhere)."""
    data = yaml.safe_load(test_overlay.read_text())
    data["variants"]["wrongcudnn"] = {**_declared(TEST_VARIANT), **data["variants"][TEST_VARIANT], "cudnn": 9}
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump(data))
    result = run_cli("build", "--variant", "wrongcudnn", "--overlay", str(overlay),
                     env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and f"torchdev: {overlay}:" in result.stderr, result.stderr
    assert ("variant 'wrongcudnn': key 'cudnn': expected the cuDNN major version torch 2.0's CUDA wheels bring, got 9: "
            "write cudnn: 8") in result.stderr, result.stderr


def _declared(variant: str) -> dict:
    return yaml.safe_load((Path(__file__).resolve().parents[2] / "images.yaml").read_text())["variants"][variant]


def test_gpus_asked_of_an_engine_without_them_are_its_answer_in_the_table_and_leave_no_container(
        docker_client, built_image, test_overlay):
    """An explicit --gpus is not refused on detection's word: the engine answers, and its refusal is the row."""
    before = len(docker_client.containers.list(all=True))
    result = run_cli("smoke", "--variant", TEST_VARIANT, "--overlay", str(test_overlay), "--gpus", "all")
    assert result.returncode == 1
    assert (f"torchdev: failed: {TEST_VARIANT}: could not start: the engine cannot give containers GPUs: no nvidia "
            "runtime, hook or CDI devices: install the NVIDIA Container Toolkit") in result.stderr, result.stderr
    assert "could not start" in result.stdout.splitlines()[-3]  # the table's row
    assert "Traceback" not in result.stderr
    assert len(docker_client.containers.list(all=True)) == before


def test_gpus_for_a_cpu_variant_are_a_usage_error_naming_it(test_overlay):
    result = run_cli("smoke", "--variant", f"cpu,{TEST_VARIANT}", "--overlay", str(test_overlay), "--gpus", "1",
                     env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.returncode == 2
    assert result.stderr.startswith("torchdev: --gpus 1 asks GPUs for cpu, which has no CUDA")


def test_a_missing_image_names_the_build_command(docker_client, test_overlay):
    result = run_cli("smoke", "--variant", "cpu", "--overlay", str(test_overlay), "--gpus", "none")
    assert result.returncode == 1
    assert f"image {TEST_REPOSITORY}:2.0.1-cpu-py3.11 is not built: run `./dev build --variant cpu`" in result.stderr
