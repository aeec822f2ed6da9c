"""`invoke doctor` for real: on this machine's engine, and against an engine that is not there."""
from __future__ import annotations

from torchdev import engine
from torchdev.commands import MATRIX_FILE
from torchdev.doctor import TOOLKIT_FIX
from torchdev.matrix import load_matrix

from tests.conftest import run_cli

CUDA_VARIANTS = [v.name for v in load_matrix(MATRIX_FILE, overlay=None).variants if v.cuda]
CHECKS = ["engine", "buildx", "compose", "gpu runtime", "gpus", *(f"driver for {name}" for name in CUDA_VARIANTS),
          "/dev/shm", "disk"]


def parse_report(stdout: str) -> dict[str, tuple[str, str]]:
    """check name -> (status, detail), read by the header's column positions (names have spaces)."""
    header, _, *lines = stdout.splitlines()
    status_at, detail_at = header.index("status"), header.index("detail")
    return {line[:status_at].strip(): (line[status_at:detail_at].strip(), line[detail_at:]) for line in lines}


def test_the_doctor_passes_here_and_says_what_gpus_would_need(docker_client):
    result = run_cli("doctor", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = parse_report(result.stdout)
    assert list(checks) == CHECKS
    status, detail = checks["engine"]
    assert status == "ok" and docker_client.version()["Version"] in detail
    assert checks["buildx"][0] == "ok" and checks["compose"][0] == "ok"
    if engine.has_nvidia_runtime(docker_client):
        assert checks["gpu runtime"][0] == "ok"
    else:
        status, detail = checks["gpu runtime"]
        assert status == "warn" and "no nvidia runtime" in detail and f"fix: {TOOLKIT_FIX}" in detail
    assert all(status != "fail" for status, _ in checks.values())


def test_an_engine_that_is_not_there_fails_the_doctor_and_the_other_checks_still_run():
    result = run_cli("doctor", timeout=300, env={"DOCKER_HOST": "unix:///nonexistent"})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    checks = parse_report(result.stdout)
    assert list(checks) == CHECKS
    status, detail = checks["engine"]
    assert status == "fail" and "no socket at unix:///nonexistent" in detail
    assert "fix: start Docker" in detail and "DOCKER_HOST" in detail
    assert checks["gpu runtime"] == ("skip", "needs the engine")
    assert checks["disk"][1].split(";")[0].endswith("free under /"), "no engine: free space is measured under /"
