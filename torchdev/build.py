"""Running build plans: the plan's build request through the engine (BuildKit), then tags.

Tags move only after a build has fully succeeded, and all of them or none: a failed or interrupted
build leaves every tag where it was, so `torchdev:cu118` never points at half of a new build. An
immutable tag (one whose template has {inputs}) is never moved to other content at all.
"""
from __future__ import annotations

import enum
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from torchdev.credentials import write_netrc
from torchdev.engine import ContainerEngine, EngineError, ImageSizes, require_buildx
from torchdev.errors import RUNTIME, Problem, TorchdevError, signal_of
from torchdev.files import write_atomically
from torchdev.plan import BuildPlan
from torchdev.platforms import Platform
from torchdev.project import MANIFEST_IN_IMAGE
from torchdev.records import RecordError, read_build_metadata

REBUILD = ("build again; if it happens again, buildx wrote a metadata file torchdev does not know (`docker buildx "
           "version` says which buildx)")


def buildx_metadata(path: Path) -> dict[str, str]:
    """What buildx's metadata file says of the image it made; one line with the fix when it is no such file."""
    try:
        return read_build_metadata(path)
    except RecordError as error:
        raise RecordError(path, f"buildx's metadata: {error.problem}", fix=REBUILD) from None
NO_DIGEST_HELD = Problem("buildx reported success but the engine holds none of its digests ({metadata})",
                         "build again; `docker buildx ls` should show the default builder on the engine's own driver",
                         TorchdevError, RUNTIME)
TAG_REFUSED = Problem("the engine refused to tag {image} as {reference}: {error}; no tag was moved",
                      "see the engine's reason; `docker image ls` shows the tags as they were", TorchdevError,
                      RUNTIME)


class BuildStatus(enum.Enum):
    BUILT = "built"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class BuildResult:
    """The outcome of one image's build (cu118, cu118-devel), one row of the summary table."""

    image: str
    status: BuildStatus
    seconds: float
    references: tuple[str, ...] = ()
    image_id: str = ""
    sizes: ImageSizes | None = None
    cause: str = ""
    log: Path | None = None
    unlocked: bool = False
    """Built with --unlocked: pip resolved at build time, nothing hash-pinned (said in the table)."""


def failure_cause(log_lines: list[str]) -> str:
    """The most telling line of a failed build: torchdev's own message (printed by a RUN step, as
    `#7 0.52 torchdev: ...`), else pip's or apt's own error line, else BuildKit's last ERROR (which only
    names the shell command that failed), with the fix when the base cannot be had."""
    for pattern in (r"^#\d+ \d+\.\d+ (torchdev: .*)", r"^#\d+ \d+\.\d+ ((?:ERROR|E): .*)"):
        for line in reversed(log_lines):
            found = re.match(pattern, line)
            if found:
                return _first_sentence(found.group(1).strip())
    for line in reversed(log_lines):
        if line.startswith("ERROR:"):
            return _base_hint(line.strip())
    return log_lines[-1].strip() if log_lines else "buildx exited without output"


def _first_sentence(message: str, *, longest: int = 200) -> str:
    """pip's hash error runs on for three sentences; its first says what happened."""
    if len(message) <= longest or ". " not in message:
        return message
    return message.split(". ", 1)[0] + "."


def _base_hint(error: str) -> str:
    """Upstream bases disappear (NVIDIA deletes end-of-life CUDA tags) or sit behind an unreachable registry."""
    found = re.search(r"failed to resolve source metadata for (\S+?):? (?:failed|.*?not found)", error)
    if not found:
        return error
    return (f"the base image {found.group(1)} cannot be found or reached ({error.rsplit(': ', 1)[-1]}): "
            "if it was deleted upstream, point the variant's base at a mirror in an overlay (docs/images.md, Overlays); "
            "`./dev save-bases` keeps copies of pinned bases in a registry or archive you control")


def apply_tags(engine: ContainerEngine, *, image_id: str, references: tuple[str, ...]) -> None:
    """Point every reference at image_id; on any failure put back the ones already moved."""
    previous = {reference: engine.image_id(reference) for reference in references}
    moved: list[str] = []
    try:
        for reference in references:
            engine.tag(image_id, reference)
            moved.append(reference)
    except BaseException as error:
        _restore_tags(engine, moved=moved, previous=previous)
        if isinstance(error, EngineError):
            raise TAG_REFUSED(image=image_id[:19], reference=reference, error=error) from None
        raise


def _restore_tags(engine: ContainerEngine, *, moved: list[str], previous: dict[str, str | None]) -> None:
    for reference in moved:
        if previous[reference]:
            engine.tag(previous[reference], reference)
        else:
            engine.untag(reference)


UNPINNED_INPUTS = ("a base named by tag, not digest", "a variant without a lock", "apt without a snapshot")
"""What the {inputs} hash cannot see, so what can make two builds of the same inputs differ."""


def immutable_conflict(engine: ContainerEngine, *, image_id: str, plan: BuildPlan) -> str:
    """Why the build may not take its immutable tags ('' when it may): one already names another image. Builds are
    reproducible, so this means an input the tag's hash cannot see has changed since that image was built."""
    for reference in plan.immutable_references:
        current = engine.image_id(reference)
        if current and current != image_id:
            return (f"the immutable tag {reference} already names {current[:19]}, and this build made "
                    f"{image_id[:19]} from the same declared inputs, so something not pinned changed in between "
                    f"({', '.join(UNPINNED_INPUTS)}; `./dev verify-repro --variant {plan.variant.name}` says what "
                    f"differs): it is never moved; keep the old image, or remove the tag first "
                    f"(`docker image rm {reference}`)")
    return ""


def digest_mismatch(plan: BuildPlan, image_id: str, config_digest: str = "", *, gave: str = "the build gave") -> str:
    """Why the build's result is not the one images.yaml records ('' when it is, or none is recorded). The record
    may be the image ID or its config digest (which does not depend on how the engine compresses layers). `gave`
    says which build: a verification says the image builds reproducibly as it."""
    expected = plan.variant.digest
    if not expected or expected in (image_id, config_digest):
        return ""
    return (f"{gave} {image_id} (config {config_digest or 'unknown'}), images.yaml expects {expected}: "
            f"run `./dev verify-repro --variant {plan.variant.name}` to see what differs")


def config_digest(metadata_file: Path) -> str:
    """The built image's config digest from buildx's metadata ('' when it has none)."""
    return buildx_metadata(metadata_file).get("containerimage.config.digest", "")


def built_image_id(engine: ContainerEngine, metadata_file: Path) -> str:
    """The built image's ID from buildx's metadata: the manifest digest on the containerd image store,
    the config digest on the classic store; whichever the engine knows."""
    metadata = buildx_metadata(metadata_file)
    for key in ("containerimage.digest", "containerimage.config.digest"):
        digest = metadata.get(key)
        if digest and engine.image_id(digest):
            return digest
    raise NO_DIGEST_HELD(metadata=metadata_file)


def run_buildx(engine: ContainerEngine, plan: BuildPlan, *, scratch: Path, log_path: Path, no_cache: bool = False,
               out: TextIO = sys.stdout) -> tuple[int, list[str], Path]:
    """Stage the variant's locks as the build's `lock` context and those of its added packages as its `added` context,
    one <os>-<arch>.txt per platform in each (the Dockerfile takes its TARGETPLATFORM's), and the plan's logins as the
    netrc secret, in `scratch` (a private temporary folder the caller removes however the build ends), and run buildx:
    (status, log lines, metadata file)."""
    contexts = {}
    for name, locks in (("lock", plan.locks), ("added", plan.added_locks)):
        contexts[name] = scratch / name
        contexts[name].mkdir()
        for lock in locks:
            shutil.copyfile(lock.path, contexts[name] / f"{lock.platform.slug}.txt")
    metadata_file = scratch / "metadata.json"
    request = plan.build_request(metadata_file=metadata_file, lock_context=contexts["lock"],
                                 added_context=contexts["added"], no_cache=no_cache,
                                 netrc=write_netrc(scratch, plan.logins))
    status, lines = engine.build(request, log_path=log_path, out=out)
    return status, lines, metadata_file


def run_build(engine: ContainerEngine, plan: BuildPlan, *, log_dir: Path, no_cache: bool = False,
              out: TextIO = sys.stdout) -> BuildResult:
    """Build one plan and tag the result. An interrupt goes on (buildx stopped, the scratch folder with the staged
    lock and logins removed), with every tag where it was.

    Every build is reproducible (see plan.ENGINE_OUTPUT): when the variant records an expected digest, any other
    result fails untagged.
    """
    started = time.monotonic()
    log_path = log_dir / f"{plan.name}.log"

    def failed(cause: str, image_id: str = "") -> BuildResult:
        return BuildResult(plan.name, BuildStatus.FAILED, time.monotonic() - started, image_id=image_id,
                           cause=cause, log=log_path, unlocked=plan.unlocked)

    with tempfile.TemporaryDirectory(prefix="torchdev-build-") as scratch:
        status, lines, metadata_file = run_buildx(engine, plan, scratch=Path(scratch), log_path=log_path,
                                                  no_cache=no_cache, out=out)
        if status != 0 or not os.path.lexists(metadata_file):
            return failed(failure_cause(lines))
        image_id = built_image_id(engine, metadata_file)
        config = config_digest(metadata_file)
    conflict = digest_mismatch(plan, image_id, config) or immutable_conflict(engine, image_id=image_id, plan=plan)
    if conflict:
        discard_unless_tagged(engine, image_id)
        return failed(conflict, image_id)
    apply_tags(engine, image_id=image_id, references=plan.references)
    engine.forget_build_name(image_id)  # only now: an image loses its last name with it
    return BuildResult(plan.name, BuildStatus.BUILT, time.monotonic() - started, plan.references, image_id,
                       engine.image_sizes(image_id), log=log_path, unlocked=plan.unlocked)


def discard_unless_tagged(engine: ContainerEngine, image_id: str) -> None:
    """Remove an image no tag names (a refused or a verification build), else only the build's own name for it."""
    image = engine.image(image_id)
    if image and not image.tags:
        engine.remove_image(image_id)
    elif image:
        engine.forget_build_name(image_id)


def build_all(engine: ContainerEngine, plans: list[BuildPlan], *, log_dir: Path, no_cache: bool = False,
              out: TextIO = sys.stdout, results: list[BuildResult] | None = None) -> list[BuildResult]:
    """Build the plans one after another into `results` (a new list unless the caller hands one in): a failure does
    not stop the others. An interrupt stops them all and goes on, the caller's list ending in the interrupted build's
    row, so the caller can show how far they got."""
    results = [] if results is None else results
    for number, plan in enumerate(plans, start=1):
        print(f"==> [{number}/{len(plans)}] building {plan.name} for {', '.join(map(str, plan.platforms))} as "
              f"{plan.primary_reference}", file=out, flush=True)
        started = time.monotonic()
        try:
            results.append(run_build(engine, plan, log_dir=log_dir, no_cache=no_cache, out=out))
        except KeyboardInterrupt as error:
            results.append(BuildResult(plan.name, BuildStatus.INTERRUPTED, time.monotonic() - started,
                                       cause=f"interrupted by {signal.Signals(signal_of(error)).name}: buildx was "
                                             "stopped, the previous tags are unchanged",
                                       log=log_dir / f"{plan.name}.log", unlocked=plan.unlocked))
            raise
    return results


def build_images(engine: ContainerEngine, plans: list[BuildPlan], *, log_dir: Path, no_cache: bool = False,
                 out: TextIO = sys.stdout, results: list[BuildResult] | None = None) -> list[BuildResult]:
    """Build the plans (build_all, into `results` as it goes, once buildx is known to be there), then copy each new
    image's own manifest next to its log (<image>.manifest.json), where tools on the host can read it."""
    require_buildx()
    results = build_all(engine, plans, log_dir=log_dir, no_cache=no_cache, out=out, results=results)
    for result in results:
        if result.status is BuildStatus.BUILT:
            write_atomically(log_dir / f"{result.image}.manifest.json",
                             engine.output(result.image_id, "cat", MANIFEST_IN_IMAGE))
    return results


def emulation_notes(plans: list[BuildPlan], *, native: Platform) -> list[str]:
    """A line per image built for a platform this host does not run natively: qemu makes it several times slower."""
    return [f"{plan.name}: {platform} is not this host's platform ({native}): it builds and runs under emulation "
            "(qemu), several times slower" for plan in plans for platform in plan.platforms if platform != native]


def exit_status(results: list[BuildResult]) -> int:
    """1 when any build failed (or was interrupted: the runner then exits with the signal's status), else 0."""
    return 1 if any(result.status is not BuildStatus.BUILT for result in results) else 0
