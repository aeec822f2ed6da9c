"""`invoke doctor` for real: on this machine's engine, and against an engine that is not there."""
from __future__ import annotations

from torchdev.doctor import TOOLKIT_FIX
from torchdev.matrix import load_matrix

from tests.helpers.cli import ROOT, run_cli

CUDA_VARIANTS = [v.name for v in load_matrix(ROOT / "images.yaml", overlay=None).variants if v.cuda]
CHECKS = ["engine", "buildx", "compose", "platform", "gpu runtime", "gpus",
          *(f"{check} for {name}" for name in CUDA_VARIANTS for check in ("driver", "kernels")), "/dev/shm", "memlock",
          "disk"]


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
    status, detail = checks["platform"]
    assert (status, detail.strip()) == ("ok", "the engine runs linux/amd64: natively cpu, cu117, cu118")
    status, detail = checks["gpu runtime"]
    if status == "ok":  # an engine with GPUs: the route and how it was found
        assert detail.startswith(("GPUs by --gpus: ", "GPUs by CDI: ")), detail
    else:
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
    assert checks["gpu runtime"] == ("skip", "needs the engine") == checks["memlock"] == checks["platform"]
    assert checks["disk"][1].split(";")[0].endswith("free under /"), "no engine: free space is measured under /"


def test_the_memlock_line_says_what_the_engine_really_allows(docker_client, built_image):
    """This machine's sandboxed dockerd refuses unlimited locked memory; a rootful dockerd on a host allows it."""
    from tests.helpers.tracked_container import engine_memlock

    status, detail = parse_report(run_cli("doctor", timeout=300).stdout)["memlock"]
    if engine_memlock(docker_client, built_image.image_id) == "-1":
        assert status == "ok" and "may lock unlimited memory" in detail
    else:
        assert status == "warn" and "error setting rlimit type 8" in detail and "TORCHDEV_MEMLOCK=" in detail
