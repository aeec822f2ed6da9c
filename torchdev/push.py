"""`invoke push`: publish built images to a registry by digest, the way their tags promise.

Every tag of the image is pushed and the registry's digest printed and recorded (reports/push/<image>.json), so
deployment files can name exactly what was tested. An immutable tag (one with {inputs}) that the registry already
has for other content is never overwritten; the same content pushed again is a no-op that says so. Only an image
whose last smoke run passed, on this very image, is pushed (unless --force). Layers go out gzip by default, as the
engine stores them (Docker before 23.0 and containerd before 1.5 cannot pull zstd), so the pushed digest is the tested
image's own ID; with --compression zstd a copy goes out (torchdev.oci). Credentials stay in Docker's own store
(`docker login`).
"""
from __future__ import annotations

import enum
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, TextIO

from torchdev.engine import ContainerEngine, EngineError, ImageRef
from torchdev.errors import USAGE, Problem, UsageError
from torchdev.oci import STORE_COMPRESSION, recompressed_copy
from torchdev.plan import BuildPlan
from torchdev.platforms import Platform
from torchdev.records import (PushRecord, RecordError, push_record_path, read_copy_digests, read_smoke_summary,
                              record_copy_digest, run_name, signature_record_path, smoke_summary_path,
                              write_push_record)

NO_REGISTRY = Problem("'{repository}' names no registry", "push with --to REGISTRY[:PORT]/NAMESPACE/NAME (e.g. "
                      "registry.corp:5000/ml/torchdev), or set image.repository in images.yaml", UsageError, USAGE)


class PushStatus(enum.Enum):
    PUSHED = "pushed"
    UNCHANGED = "already there"
    REFUSED = "refused"
    FAILED = "failed"


@dataclass(frozen=True)
class PushResult:
    """One image's push: its tags in the registry, the digest they name, and why not when it did not happen."""

    image: str
    status: PushStatus
    references: tuple[str, ...] = ()
    digest: str = ""
    size: int = 0
    compression: str = ""
    detail: str = ""
    platforms: tuple[Platform, ...] = ()
    """What one pull by these tags serves: each engine pulls its own platform."""

    def pinned(self) -> list[str]:
        return [f"{reference}@{self.digest}" for reference in self.references]


def destination(repository: str) -> str:
    """The registry repository to push to; one without a registry host would go to Docker Hub's library/."""
    ref, host = ImageRef.parse(repository), repository.split("/")[0]
    if ref.tag or ref.digest or "/" not in repository or not (re.search(r"[.:]", host) or host == "localhost"):
        raise NO_REGISTRY(repository=repository)
    return repository


def registry_of(repository: str) -> str:
    return repository.split("/")[0]


def pushed_references(plan: BuildPlan, repository: str) -> tuple[str, ...]:
    """The plan's tags under the registry repository."""
    return tuple(f"{repository}:{ImageRef.parse(reference).tag}" for reference in plan.references)


def smoke_problem(summary_path: Path, *, image_id: str, plan: BuildPlan, platform: Platform) -> str:
    """Why the image may not be pushed without --force ('' when its last smoke run on `platform` passed on this very
    image): a multi-platform image goes out only when each of its platforms passed."""
    name = run_name(plan, platform)
    again = (f"run `./dev smoke --variant {plan.variant.name} --flavour {plan.flavour.name} --platform {platform}`, "
             "or push with --force")
    try:
        summary = read_smoke_summary(summary_path)
    except RecordError as error:
        return f"{summary_path} is not a smoke summary ({error.problem}): {again}"
    if summary is None:
        return f"{name} has no smoke result ({summary_path}): {again}"
    if summary.image_id != image_id:
        return f"the last smoke run of {name} was on {str(summary.image_id)[:19]}, not on this build " \
               f"{image_id[:19]}: {again}"
    if summary.failed or not summary.passed:
        return f"the last smoke run of {name} failed {summary.failed} check(s): fix them and {again}"
    return ""


def push_failure(message: str, registry: str) -> str:
    """One line for what the engine said, with the fix: the usual refusals of a push or a registry query."""
    lowered = message.lower()
    if "no basic auth credentials" in lowered or "unauthorized" in lowered or "authentication required" in lowered:
        return f"{registry} wants a login: run `docker login {registry}` (torchdev uses Docker's credentials store)"
    if "server gave http response to https client" in lowered:
        return (f"{registry} speaks plain HTTP and Docker expects HTTPS: add \"{registry}\" to \"insecure-registries\" "
                "in /etc/docker/daemon.json and restart dockerd, or serve the registry over TLS")
    if "x509" in lowered or "certificate" in lowered or "tls" in lowered:
        return (f"{registry}'s TLS certificate is not trusted ({message.strip()[-120:]}): put its CA in "
                f"/etc/docker/certs.d/{registry}/ca.crt")
    if "connection refused" in lowered or "no such host" in lowered or "i/o timeout" in lowered \
            or "dial tcp" in lowered:
        return f"cannot reach the registry {registry}: is it running, and is the address right?"
    if "name unknown" in lowered or "repository name not known" in lowered or "not found" in lowered:
        return f"{registry} has no such repository and does not create it on push: create it there first"
    if "denied" in lowered:
        return f"{registry} denies this push: check that your login may write there (`docker login {registry}`)"
    return f"the push to {registry} failed: {message.strip()}"


def conflict(remote: dict[str, str | None], *, immutable: tuple[str, ...], digest: str) -> str:
    """Why the push must not happen ('' when it may): an immutable tag the registry has for other content."""
    for reference, current in remote.items():
        if reference.rsplit(":", 1)[1] in immutable and current and current != digest:
            return (f"the immutable tag {reference} already names {current} in the registry, and this image is "
                    f"{digest}: an immutable tag is never overwritten; rebuild from a new commit (a new tag)")
    return ""


def push_image(engine: ContainerEngine, plan: BuildPlan, *, repository: str, compression: str, smoke_dir: Path,
               force: bool, copies: dict[str, tuple[str, int]] | None = None) -> PushResult:
    """Push every tag of one image; PushResult says what the registry now holds, or why nothing was pushed.
    `copies` (image ID -> the manifest digest and size of its copy in the compression the store does not keep, from
    earlier pushes) lets a push that would change nothing say so without recompressing the image first."""
    image_id = engine.image_id(plan.primary_reference)
    if image_id is None:
        flavour = "" if plan.flavour.is_runtime else f" --flavour {plan.flavour.name}"
        return PushResult(plan.name, PushStatus.REFUSED, detail=f"{plan.primary_reference} is not built: run "
                          f"`./dev build --variant {plan.variant.name}{flavour}`")
    held = tuple(Platform.parse(name) for name in engine.image_platforms(image_id, tuple(map(str,
                                                                                            plan.variant.platforms))))
    problems = [smoke_problem(smoke_summary_path(smoke_dir, run_name(plan, platform)), image_id=image_id,
                              plan=plan, platform=platform) for platform in held] \
        or [f"{plan.primary_reference} holds none of the variant's platforms "
            f"({', '.join(map(str, plan.variant.platforms))}), so no smoke result can vouch for it: rebuild it with "
            f"`./dev build --variant {plan.variant.name}`, or push with --force"]
    problem = "" if force else next(filter(None, problems), "")
    if problem:
        return PushResult(plan.name, PushStatus.REFUSED, detail=problem)
    references = pushed_references(plan, repository)
    immutable = tuple(ImageRef.parse(reference).tag for reference in plan.immutable_references)
    registry = registry_of(repository)
    try:
        return replace(_push_checked(engine, plan, references, immutable, image_id, compression, copies or {}),
                       platforms=held)
    except EngineError as error:
        return PushResult(plan.name, PushStatus.FAILED, references, detail=push_failure(str(error), registry))
    finally:
        if compression != STORE_COMPRESSION and engine.image_id(references[0]):
            engine.untag(references[0], force=True)  # the copy goes with its last name


def _push_checked(engine: ContainerEngine, plan: BuildPlan, references: tuple[str, ...], immutable: tuple[str, ...],
                  image_id: str, compression: str, copies: dict[str, tuple[str, int]]) -> PushResult:
    """The push itself, once the image may go: the registry is asked first (a login or an unreachable registry fails
    before minutes of recompression), refused on a conflict, a no-op when the registry has it all (for a copy, known
    without recompressing when an earlier push recorded this image's copy)."""
    remote = {reference: engine.remote_digest(reference) for reference in references}
    known = copies.get(image_id) if compression != STORE_COMPRESSION else None
    if known and all(current == known[0] for current in remote.values()):
        return PushResult(plan.name, PushStatus.UNCHANGED, references, known[0], known[1], compression,
                          detail=f"every tag already names this image's {compression} copy: nothing was recompressed "
                                 "or pushed")
    source, digest, size = _pushable(engine, image_id, references[0], compression)
    refusal = conflict(remote, immutable=immutable, digest=digest)
    if refusal:
        return PushResult(plan.name, PushStatus.REFUSED, references, digest, detail=refusal)
    if all(current == digest for current in remote.values()):
        return PushResult(plan.name, PushStatus.UNCHANGED, references, digest, size, compression,
                          detail="every tag already names this digest: nothing was pushed")
    _push_all(engine, source, references)
    published = engine.remote_digest(references[0])
    if published != digest:
        return PushResult(plan.name, PushStatus.FAILED, references, detail=f"the registry answers {published} for "
                          f"{references[0]}, not the pushed {digest}: another push raced this one")
    return PushResult(plan.name, PushStatus.PUSHED, references, digest, size, compression)


def _pushable(engine: ContainerEngine, image_id: str, name: str, compression: str) -> tuple[str, str, int]:
    """(local image to push, the manifest digest the registry will hold, bytes a pull downloads): the image itself
    in the store's compression, else a copy."""
    if compression == STORE_COMPRESSION:
        return image_id, image_id, engine.image_sizes(image_id).download or 0
    copy = recompressed_copy(engine, image_id, name=name, compression=compression)
    return copy.digest, copy.digest, copy.size


def _push_all(engine: ContainerEngine, source: str, references: tuple[str, ...]) -> None:
    """Tag every reference, push each; the registry names stay local only while pushing (all of them, so a copy keeps
    a name until the last push is done)."""
    try:
        for reference in references:
            engine.tag(source, reference)
        for reference in references:
            engine.push(reference)
    finally:
        for reference in references:
            if engine.image_id(reference):
                engine.untag(reference, force=True)


def push_record(result: PushResult) -> PushRecord:
    """What reports/push/<image>.json says of a push that finished: every tag in the registry, pinned by digest."""
    return PushRecord(image=result.image, tags=tuple(r.rsplit(":", 1)[1] for r in result.references),
                      repository=result.references[0].rsplit(":", 1)[0], digest=result.digest,
                      references=tuple(result.pinned()), size=result.size, compression=result.compression,
                      platforms=tuple(str(platform) for platform in result.platforms))


def write_report(reports_dir: Path, result: PushResult) -> Path:
    """reports/push/<image>.json: what deployment files and CI read. Written only once every tag is pushed."""
    return write_push_record(reports_dir, push_record(result))


Pushed = Callable[[BuildPlan, PushRecord], None]
"""What a push does next with an image once every tag is in the registry and its record is written (`push --sign`
signs it there and then, before the next image goes)."""


def push_images(engine: ContainerEngine, plans: list[BuildPlan], *, repository: str, compression: str,
                reports_dir: Path, smoke_dir: Path, force: bool, out: TextIO = sys.stdout,
                then: Pushed | None = None) -> list[PushResult]:
    """Push each plan's image in turn (push_image) and keep the books in `reports_dir`: an image's old records (the
    push's and the signature's) go before its push, and a new push record comes once every tag is in the registry
    (with, for a copy, the copy's digest); then `then`, if given."""
    results = []
    for plan in plans:
        # a stale entry never reads as this push
        push_record_path(reports_dir, plan.name).unlink(missing_ok=True)
        signature_record_path(reports_dir, plan.name).unlink(missing_ok=True)
        print(f"==> pushing {plan.name} to {repository} ({compression} layers)", file=out, flush=True)
        results.append(push_image(engine, plan, repository=repository, compression=compression, smoke_dir=smoke_dir,
                                  force=force, copies=read_copy_digests(reports_dir)))
        if results[-1].status in (PushStatus.PUSHED, PushStatus.UNCHANGED):
            write_report(reports_dir, results[-1])
            if compression != STORE_COMPRESSION:
                record_copy_digest(reports_dir, engine.image_id(plan.primary_reference),
                                   digest=results[-1].digest, size=results[-1].size)
            print("\n".join(results[-1].pinned()), file=out, flush=True)
            if then:
                then(plan, push_record(results[-1]))
    return results
