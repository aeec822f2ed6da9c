"""Running a build plan: BuildKit through `docker buildx build`, then tags through the Docker SDK.

Tags move only after a build has fully succeeded, and all of them or none: a failed or interrupted
build leaves every tag where it was, so `torchdev:cu118` never points at half of a new build.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import docker
from docker.errors import APIError, ImageNotFound

from torchdev.errors import TorchdevError
from torchdev.plan import BuildPlan
from torchdev.table import human_size, render_table


@dataclass(frozen=True)
class BuildResult:
    """The outcome of one variant's build, one row of the summary table."""

    variant: str
    status: str  # built | failed | interrupted
    seconds: float
    references: tuple[str, ...] = ()
    image_id: str = ""
    size: int | None = None
    cause: str = ""
    log: Path | None = None


def failure_cause(log_lines: list[str]) -> str:
    """The most telling line of a failed build: torchdev's own message (printed by a RUN step, as
    `#7 0.52 torchdev: ...`), else BuildKit's last ERROR, with the fix when the base cannot be had."""
    for line in reversed(log_lines):
        found = re.match(r"^#\d+ \d+\.\d+ (torchdev: .*)", line)
        if found:
            return found.group(1).strip()
    for line in reversed(log_lines):
        if line.startswith("ERROR:"):
            return _base_hint(line.strip())
    return log_lines[-1].strip() if log_lines else "buildx exited without output"


def _base_hint(error: str) -> str:
    """Upstream bases disappear (NVIDIA deletes end-of-life CUDA tags) or sit behind an unreachable registry."""
    found = re.search(r"failed to resolve source metadata for (\S+?):? (?:failed|.*?not found)", error)
    if not found:
        return error
    return (f"the base image {found.group(1)} cannot be found or reached ({error.rsplit(': ', 1)[-1]}): "
            "if it was deleted upstream, point the variant's base at a mirror in an overlay (README, Overlay); "
            "`./dev save-bases` keeps copies of pinned bases in a registry or archive you control")


def stream_build(command: list[str], *, log_path: Path, out: TextIO) -> tuple[int, list[str]]:
    """Run buildx, echoing its progress to `out` and keeping a full log on disk."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    with log_path.open("w", encoding="utf-8") as log, subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace") as process:
        assert process.stdout is not None
        for line in process.stdout:
            out.write(line)
            log.write(line)
            lines.append(line.rstrip("\n"))
        return process.wait(), lines


def apply_tags(client: docker.DockerClient, *, image_id: str, references: tuple[str, ...]) -> None:
    """Point every reference at image_id; on any failure put back the ones already moved."""
    previous = {reference: image_id_or_none(client, reference) for reference in references}
    moved: list[str] = []
    try:
        for reference in references:
            repository, tag = reference.rsplit(":", 1)
            client.api.tag(image_id, repository, tag, force=True)
            moved.append(reference)
    except BaseException as error:
        _restore_tags(client, moved=moved, previous=previous)
        if isinstance(error, APIError):
            raise TorchdevError(f"the engine refused to tag {image_id[:19]} as {reference}: {error.explanation}; "
                                "no tag was moved") from None
        raise


def built_image_id(client: docker.DockerClient, metadata_file: Path) -> str:
    """The built image's ID from buildx's metadata: the manifest digest on the containerd image store,
    the config digest on the classic store; whichever the engine knows."""
    metadata = json.loads(metadata_file.read_text())
    for key in ("containerimage.digest", "containerimage.config.digest"):
        digest = metadata.get(key)
        if digest and image_id_or_none(client, digest):
            return digest
    raise TorchdevError(f"buildx reported success but the engine holds none of its digests ({metadata_file})")


def image_id_or_none(client: docker.DockerClient, reference: str) -> str | None:
    """The ID of the image `reference` names, or None when the engine has no such image."""
    try:
        return client.images.get(reference).id
    except ImageNotFound:
        return None


def _restore_tags(client: docker.DockerClient, *, moved: list[str], previous: dict[str, str | None]) -> None:
    for reference in moved:
        repository, tag = reference.rsplit(":", 1)
        if previous[reference]:
            client.api.tag(previous[reference], repository, tag, force=True)
        else:
            client.api.remove_image(reference, noprune=True)


def run_buildx(plan: BuildPlan, *, scratch: Path, log_path: Path, no_cache: bool = False,
               oci_archive: Path | None = None, out: TextIO = sys.stdout) -> tuple[int, list[str], Path]:
    """Stage the variant's lock as the build's `lock` context and run buildx: (status, log lines, metadata file)."""
    lock_context = scratch / "lock"
    lock_context.mkdir()
    if plan.lock:
        shutil.copyfile(plan.lock.path, lock_context / "requirements.txt")
    metadata_file = scratch / "metadata.json"
    command = plan.buildx_command(metadata_file=metadata_file, lock_context=lock_context, no_cache=no_cache,
                                  oci_archive=oci_archive)
    status, lines = stream_build(command, log_path=log_path, out=out)
    return status, lines, metadata_file


def run_build(plan: BuildPlan, *, client: docker.DockerClient, log_dir: Path, no_cache: bool = False,
              reproducible: bool = False, out: TextIO = sys.stdout) -> BuildResult:
    """Build one plan and tag the result; KeyboardInterrupt yields an 'interrupted' result, tags untouched.

    Reproducible builds go through an OCI archive (timestamps clamped to SOURCE_DATE_EPOCH) that is then
    loaded into the engine; when the variant records an expected digest, any other result fails untagged.
    """
    started = time.monotonic()
    log_path = log_dir / f"{plan.variant.name}.log"
    with tempfile.TemporaryDirectory(prefix="torchdev-build-") as scratch:
        archive = Path(scratch) / "image.oci.tar" if reproducible else None
        try:
            status, lines, metadata_file = run_buildx(plan, scratch=Path(scratch), log_path=log_path,
                                                      no_cache=no_cache, oci_archive=archive, out=out)
        except KeyboardInterrupt:
            return BuildResult(plan.variant.name, "interrupted", time.monotonic() - started,
                               cause="interrupted: the previous tags are unchanged", log=log_path)
        if status != 0 or not metadata_file.is_file():
            return BuildResult(plan.variant.name, "failed", time.monotonic() - started, cause=failure_cause(lines),
                               log=log_path)
        if archive:
            with archive.open("rb") as data:
                client.images.load(data)
        image_id = built_image_id(client, metadata_file)
    expected = plan.variant.digest
    if reproducible and expected and image_id != expected:
        _remove_if_untagged(client, image_id)
        return BuildResult(plan.variant.name, "failed", time.monotonic() - started, image_id=image_id, log=log_path,
                           cause=f"reproducible build gave {image_id}, images.yaml expects {expected}: "
                                 f"run `./dev verify-repro --variant {plan.variant.name}` to see what differs")
    apply_tags(client, image_id=image_id, references=plan.references)
    size = client.images.get(image_id).attrs.get("Size")
    return BuildResult(plan.variant.name, "built", time.monotonic() - started, plan.references, image_id, size,
                       log=log_path)


def _remove_if_untagged(client: docker.DockerClient, image_id: str) -> None:
    if not client.images.get(image_id).tags:
        client.images.remove(image_id)


def summary_table(results: list[BuildResult]) -> str:
    """One row per variant: how it went, how long it took, what it produced or why it failed."""
    rows = [(r.variant, r.status, f"{r.seconds:.0f} s", human_size(r.size),
             r.references[0] if r.references else "-", r.cause or (r.image_id[:19] if r.image_id else ""))
            for r in results]
    return render_table(["variant", "status", "time", "size", "primary tag", "image / cause"], rows)
