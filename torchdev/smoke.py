"""`invoke smoke`: run the smoke suite inside built images, read-only mounted, and summarise per check.

The suite lives in smoke/ and is never baked into an image: the same files judge every variant, and a
fix to a check needs no rebuild. Expectations (versions, CUDA, cuDNN, Python) come from images.yaml.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.types import DeviceRequest, Ulimit
from requests.exceptions import ConnectionError as RequestsConnectionError, ReadTimeout

from torchdev.build import image_id_or_none
from torchdev.errors import TorchdevError, UsageError
from torchdev.matrix import Variant
from torchdev.table import render_table

CHECKS = ("environment", "gpu", "convergence", "ddp", "shm")
SUITE_MOUNT = "/opt/torchdev-smoke"
REPORTS_MOUNT = "/reports"
TOOLKIT_FIX = ("GPUs were requested but this Docker engine has no NVIDIA runtime or CDI GPU devices: install the "
               "NVIDIA Container Toolkit, run `sudo nvidia-ctk runtime configure --runtime=docker` and restart "
               "Docker; `docker info | grep -i runtimes` should list nvidia (or run with --gpus none)")


@dataclass(frozen=True)
class GpuRequest:
    """What the user asked for: no GPU, every GPU, or a count."""

    count: int  # 0: none, -1: all

    @property
    def suite_option(self) -> str:
        return "all" if self.count < 0 else str(self.count)

    def device_requests(self) -> list[DeviceRequest]:
        return [DeviceRequest(count=self.count, capabilities=[["gpu"]])] if self.count else []


def parse_gpus(value: str, *, engine_has_gpus: bool) -> GpuRequest:
    """--gpus auto|all|none|N; 'auto' takes every GPU when the engine can give them, else none."""
    if value == "auto":
        return GpuRequest(-1 if engine_has_gpus else 0)
    if value in ("none", "0"):
        return GpuRequest(0)
    if value != "all" and not value.isdigit():
        raise UsageError(f"--gpus must be auto, all, none or a count, not '{value}'")
    if not engine_has_gpus:
        raise TorchdevError(TOOLKIT_FIX)
    return GpuRequest(-1 if value == "all" else int(value))


def suite_arguments(variant: Variant, *, gpus: GpuRequest, reports: str) -> list[str]:
    """The pytest command line that hands the variant's declared contents to the suite."""
    expectations = {"torch": variant.torch, "torchvision": variant.torchvision, "torchaudio": variant.torchaudio,
                    "cuda": variant.cuda or "none", "python": variant.python}
    if variant.cudnn is not None:
        expectations["cudnn-major"] = str(variant.cudnn)
    command = ["python", "-m", "pytest", SUITE_MOUNT, "-p", "no:cacheprovider", "-rfE", "--variant", variant.name,
               f"--junitxml={reports}/{variant.name}.xml", f"--summary-json={reports}/{variant.name}.json",
               "--gpus", gpus.suite_option]
    for name, value in expectations.items():
        command += [f"--expect-{name}", value]
    return command


def container_ulimits(gpus: GpuRequest) -> list[Ulimit]:
    """A 64 MiB stack, and unlimited locked memory only with GPUs: pinned memory matters to CUDA and NCCL,
    and raising the limit fails on engines that may not (rootless Docker, some sandboxes)."""
    stack = Ulimit(name="stack", soft=64 << 20, hard=64 << 20)
    return [stack, Ulimit(name="memlock", soft=-1, hard=-1)] if gpus.count else [stack]


def require_image(client: docker.DockerClient, reference: str, *, variant: str) -> None:
    if image_id_or_none(client, reference) is None:
        raise TorchdevError(f"image {reference} is not built: run `./dev build --variant {variant}` "
                            "(or pass --build to `./dev smoke`)")


def run_suite(client: docker.DockerClient, *, image: str, variant: Variant, gpus: GpuRequest, suite_dir: Path,
              reports_dir: Path, timeout: float = 900) -> dict:
    """Run the suite in a container as the image's default user; return the JSON summary it wrote.

    The container writes into a scratch folder it may write to; the files are then copied into reports_dir
    by this process, so they belong to the host user, whoever the image's user is.
    """
    with tempfile.TemporaryDirectory(prefix="torchdev-smoke-") as scratch:
        os.chmod(scratch, 0o1777)
        container = client.containers.run(
            image, suite_arguments(variant, gpus=gpus, reports=REPORTS_MOUNT), detach=True,
            volumes={str(suite_dir): {"bind": SUITE_MOUNT, "mode": "ro"}, scratch: {"bind": REPORTS_MOUNT, "mode": "rw"}},
            environment={"PYTHONDONTWRITEBYTECODE": "1"}, device_requests=gpus.device_requests(), init=True,
            shm_size="1g", ulimits=container_ulimits(gpus))
        try:
            _follow(container, timeout=timeout)
        finally:
            container.remove(force=True)
        return _collect_reports(Path(scratch), reports_dir, variant=variant.name)


def _follow(container, *, timeout: float) -> None:
    """Echo the suite's output as it runs; kill it when it outlives the timeout."""
    try:
        for chunk in container.logs(stream=True, follow=True):
            sys.stdout.write(chunk.decode(errors="replace"))
        container.wait(timeout=timeout)
    except (ReadTimeout, RequestsConnectionError):
        container.kill()
        raise TorchdevError(f"the smoke suite did not finish within {timeout:.0f} s and was stopped") from None


def _collect_reports(scratch: Path, reports_dir: Path, *, variant: str) -> dict:
    reports_dir.mkdir(parents=True, exist_ok=True)
    for name in (f"{variant}.xml", f"{variant}.json"):
        if (scratch / name).is_file():
            shutil.copyfile(scratch / name, reports_dir / name)
    summary = reports_dir / f"{variant}.json"
    if not (scratch / f"{variant}.json").is_file():
        raise TorchdevError(f"the smoke suite in {variant} wrote no summary (did pytest start? see the output above)")
    return json.loads(summary.read_text())


def check_cell(checks: list[dict], check: str) -> str:
    """One table cell: failed beats passed beats skipped; a skip shows its reason."""
    rows = [c for c in checks if c["check"] == check]
    if not rows:
        return "-"
    failed = [c for c in rows if c["outcome"] == "failed"]
    passed = [c for c in rows if c["outcome"] == "passed"]
    if failed:
        return f"FAILED {len(failed)}/{len(rows)}"
    if passed:
        skipped = len(rows) - len(passed)
        return f"passed {len(passed)}" + (f" (+{skipped} skipped)" if skipped else "")
    return f"skipped: {rows[0]['reason'][:40]}"


def summary_table(summaries: dict[str, dict | str]) -> str:
    """Variant x check; a variant that did not run shows why in every cell of its row."""
    rows = []
    for variant, summary in summaries.items():
        if isinstance(summary, str):
            rows.append((variant, *([summary] + ["-"] * (len(CHECKS) - 1))))
        else:
            rows.append((variant, *(check_cell(summary["checks"], check) for check in CHECKS)))
    return render_table(["variant", *CHECKS], rows)


def failures(summaries: dict[str, dict | str]) -> list[str]:
    """One line per failed check: variant, test and the reason the suite gave."""
    lines = []
    for variant, summary in summaries.items():
        if isinstance(summary, str):
            lines.append(f"{variant}: {summary}")
            continue
        lines += [f"{variant}: {c['nodeid']}: {c['reason'].splitlines()[0] if c['reason'] else 'failed'}"
                  for c in summary["checks"] if c["outcome"] == "failed"]
    return lines

