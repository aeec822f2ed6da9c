"""`./dev push --sign KEY`, `./dev verify REF --key PUB` and `./dev images --sbom/--provenance`: the edge around the
pure cores (torchdev.sbom, torchdev.provenance, torchdev.trust) that reads an image's facts from the engine and the
checkout, and runs cosign. Its callers hand it the checkout (where the provenance's files are), the engine, and
the engine's factory where one may not answer (verify): it reads no module global.

Signing happens after every tag of an image is in the registry: the pushed digest is signed (the signature's
annotations name the image, its tags and the time, see torchdev.trust), then the SBOM and the provenance are
attached as signed attestations, then reports/push/<image>.signature.json records it. The private key never leaves
the file the user keeps it in; its password reaches cosign as COSIGN_PASSWORD, which torchdev never reads.
"""
from __future__ import annotations

import hashlib
import os
import json
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, TextIO

from torchdev import provenance, sbom, trust
from torchdev.checkout import BUILD_INPUTS, context_digest
from torchdev.cosign import Cosign, CosignResult
from torchdev.engine import ContainerEngine, EngineError, ImageRef, probe
from torchdev.errors import RUNTIME, USAGE, Problem, TorchdevError, UsageError
from torchdev.files import input_file, input_text
from torchdev.gitinfo import read_provenance
from torchdev.images import image_manifest
from torchdev.plan import BuildPlan
from torchdev.records import (PushRecord, RecordError, SignatureRecord, push_record_path, read_push_record,
                              read_signature_records, signature_record_path, write_signature_record)

@dataclass(frozen=True)
class SigningKey:
    """A private key cosign can open (COSIGN_PASSWORD), with its public key's fingerprint."""

    path: Path
    fingerprint: str

NO_SIGNING_KEY = Problem("--sign {path}: no such key file", "make a pair with `cosign generate-key-pair` (it writes "
                         "cosign.key and cosign.pub)", UsageError, USAGE)
NO_KEY_FILE = Problem("{option} {path}: no such public key file", "name cosign.pub (`cosign generate-key-pair` "
                      "writes it)", UsageError, USAGE)
KEY_WONT_OPEN = Problem("cosign cannot open {path} ({cause})", "{fix}", TorchdevError, RUNTIME)
NOT_BUILT = Problem("{reference} is not built", "run `./dev build --variant {variant}{flavour}`", TorchdevError,
                    RUNTIME)
COSIGN_FAILED = Problem("{what} failed: {cause}", "", TorchdevError, RUNTIME)
"""cosign's failure, with the registry's usual refusals turned into their fix (trust.registry_problem)."""
NO_MANIFEST_FOR_SBOM = Problem("reading {reference}'s manifest for its SBOM failed: {error}",
                               "rebuild the image (`./dev build --variant {variant}`)", TorchdevError, RUNTIME)


def open_key(cosign: Cosign, path: str) -> SigningKey:
    """The key for `push --sign`, checked before anything is pushed: it exists and its password opens it."""
    key = Path(path)
    if input_file(key, role="--sign") is None:
        raise NO_SIGNING_KEY(path=path)
    answer = cosign.public_key(key)
    if not answer.ok:
        cause = trust.cosign_cause(answer.stderr)
        fix = ("set COSIGN_PASSWORD to the key's password" if "decrypt" in cause or "password" in cause
               else "is it a cosign private key?")
        raise KEY_WONT_OPEN(path=path, cause=cause, fix=fix)
    return SigningKey(key, trust.key_fingerprint(answer.stdout))


def public_key(path: str) -> tuple[str, str]:
    """(PEM, fingerprint) of a public key file, or a UsageError naming the file."""
    pem = input_text(Path(path), role="--key")
    if pem is None:
        raise NO_KEY_FILE(option="--key", path=path)
    return pem, trust.key_fingerprint(pem, path=f"--key {path}")


def engine_info_or_none(connect: Callable[[float], ContainerEngine]) -> dict | None:
    """The engine's registry settings when one answers within 30 s (which registries it reaches insecurely), else
    None."""
    try:
        engine = connect(30)
    except TorchdevError:
        return None
    try:
        return engine.info()
    finally:
        engine.close()


# --- facts read from the image and the checkout --------------------------------------------------------------------

@dataclass(frozen=True)
class Checkout:
    """Where the provenance's files are read from: the checkout's root (paths inside it are written relative to it),
    its build context (docker/), and the configuration files the matrix came from (images.yaml and the overlay)."""

    root: Path
    docker: Path
    configuration: tuple[Path, ...]


def image_facts(engine: ContainerEngine, plan: BuildPlan, *, repository: str, digest: str,
                tags: tuple[str, ...]) -> sbom.ImageFacts:
    os_id, os_version = sbom.parse_os_release(engine.output(plan.primary_reference, "cat", "/etc/os-release"))
    labels = plan.labels
    created = datetime.fromtimestamp(int(plan.build_args["SOURCE_DATE_EPOCH"]), tz=timezone.utc)
    return sbom.ImageFacts(repository=repository, digest=digest, tags=tags, created=created,
                           revision=labels["org.opencontainers.image.revision"],
                           source=labels["org.opencontainers.image.source"], os_id=os_id, os_version=os_version,
                           platforms=tuple(str(platform) for platform in plan.platforms))


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


def file_digest(path: Path, root: Path) -> provenance.FileDigest:
    return provenance.FileDigest(_relative(path, root), hashlib.sha256(path.read_bytes()).hexdigest())


def builder_versions(*, buildx: str, inspect: str, engine_version: str) -> dict[str, str]:
    """The versions `docker buildx version`, `docker buildx inspect` and the engine report ('unknown' where one
    says nothing)."""
    words = buildx.split()
    found = {"buildx": words[1] if len(words) > 1 else "unknown"}
    match = re.search(r"^BuildKit version:\s*(\S+)", inspect, re.M)
    found["buildkit"] = match.group(1) if match else "unknown"
    found["docker-engine"] = engine_version or "unknown"
    return found


def read_builder(engine: ContainerEngine, root: Path) -> provenance.Builder:
    """torchdev's commit and the build tools' versions, as the engine reports them now (when the provenance is
    written, at push: an engine upgraded between build and push would be named wrongly)."""
    buildx = probe(["docker", "buildx", "version"])
    inspect = probe(["docker", "buildx", "inspect"])
    versions = builder_versions(buildx=buildx.output if buildx else "", inspect=inspect.output if inspect else "",
                                engine_version=str(engine.version().get("Version", "")))
    return provenance.Builder(torchdev_revision=read_provenance(root, environ={}).revision, versions=versions)


def build_facts(plan: BuildPlan, *, checkout: Checkout, subject_name: str,
                subject_digest: str) -> provenance.BuildFacts:
    """What the provenance says beyond the plan. Whether the checkout has uncommitted changes is git's answer
    (SOURCE_DATE_EPOCH, which the environment may set, plays no part in it)."""
    root = checkout.root
    dirty = read_provenance(root, inputs=BUILD_INPUTS, environ={}).stamp.git_sha.endswith("-dirty")
    return provenance.BuildFacts(configuration=tuple(file_digest(path, root) for path in checkout.configuration),
                                 locks=tuple(provenance.FileDigest(_relative(lock.path, root), lock.sha256)
                                             for lock in plan.locks),
                                 context_sha256=context_digest(checkout.docker), dirty=dirty,
                                 subject_name=subject_name, subject_digest=subject_digest)


@dataclass(frozen=True)
class Described:
    """An image as the SBOM and provenance describe it: where it lives, by which digest, under which tags."""

    repository: str
    digest: str
    tags: tuple[str, ...]
    pushed: bool


def describe_local(engine: ContainerEngine, plan: BuildPlan, *, reports_dir: Path) -> Described:
    """The image as pushed when reports/push records this very build (its immutable tag is among the pushed tags),
    so `./dev images --sbom` shows the bytes `push --sign` attached; else as the engine holds it (its ID, which the
    containerd store makes the manifest or index digest)."""
    image_id = engine.image_id(plan.primary_reference)
    if image_id is None:
        flavour = "" if plan.flavour.is_runtime else f" --flavour {plan.flavour.name}"
        raise NOT_BUILT(reference=plan.primary_reference, variant=plan.variant.name, flavour=flavour)
    tags = tuple(ImageRef.parse(reference).tag for reference in plan.references)
    path = push_record_path(reports_dir, plan.name)
    immutable = {ImageRef.parse(reference).tag for reference in plan.immutable_references}
    if os.path.lexists(path):
        try:
            record = read_push_record(path)
        except RecordError as error:
            raise RecordError(path, error.problem, fix=f"run `./dev push --variant {plan.variant.name}` to write it "
                              "again") from None
        if immutable and immutable <= set(record.tags):
            return Described(record.repository, record.digest, record.tags, pushed=True)
    return Described(ImageRef.parse(plan.primary_reference).repository, image_id, tags, pushed=False)


def render_sbom(engine: ContainerEngine, plan: BuildPlan, described: Described) -> str:
    facts = image_facts(engine, plan, repository=described.repository, digest=described.digest, tags=described.tags)
    return sbom.render(image_manifest(engine, plan.primary_reference), facts)


def provenance_statement(engine: ContainerEngine, plan: BuildPlan, described: Described, *,
                         checkout: Checkout) -> dict:
    facts = build_facts(plan, checkout=checkout, subject_name=described.repository, subject_digest=described.digest)
    return provenance.statement(plan, facts, read_builder(engine, checkout.root))


def to_json(document: dict) -> str:
    return json.dumps(document, indent=1) + "\n"


# --- push --sign ---------------------------------------------------------------------------------------------------

def _require(answer: CosignResult, what: str, registry: str) -> None:
    if not answer.ok:
        raise COSIGN_FAILED(what=what, cause=trust.registry_problem(answer.stderr, registry)
                            or trust.cosign_cause(answer.stderr))


def sign_pushed(engine: ContainerEngine, cosign: Cosign, plan: BuildPlan, *, key: SigningKey, repository: str,
                digest: str, tags: tuple[str, ...], checkout: Checkout, reports_dir: Path,
                registry_flags: tuple[str, ...]) -> SignatureRecord:
    """Sign `repository@digest`, attach its SBOM and provenance as signed attestations, record it. A failure is a
    TorchdevError naming the step and cosign's cause; the record is written only when all three are in place."""
    signature_record_path(reports_dir, plan.name).unlink(missing_ok=True)
    described = Described(repository, digest, tags, pushed=True)
    reference = f"{repository}@{digest}"
    registry = repository.split("/")[0]
    try:
        documents = {trust.SBOM_TYPE: render_sbom(engine, plan, described),
                     trust.PROVENANCE_TYPE: to_json(provenance_statement(engine, plan, described,
                                                                          checkout=checkout)["predicate"])}
    except EngineError as error:
        raise NO_MANIFEST_FOR_SBOM(reference=plan.primary_reference, error=error,
                                   variant=plan.variant.name) from None
    signed_at = datetime.now(tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    annotations = trust.signature_annotations(image=plan.name, tags=tags, signed_at=signed_at)
    _require(cosign.sign(reference, key=key.path, annotations=annotations, registry=registry_flags),
             f"signing {reference}", registry)
    with tempfile.TemporaryDirectory(prefix="torchdev-attest-") as scratch:
        for kind, what in trust.ATTESTED:
            predicate = Path(scratch) / f"{kind}.json"
            predicate.write_text(documents[kind])
            _require(cosign.attest(reference, key=key.path, predicate=predicate, kind=kind, registry=registry_flags),
                     f"attaching the {what} to {reference}", registry)
    record = SignatureRecord(image=plan.name, repository=repository, digest=digest, tags=tags,
                             key_fingerprint=key.fingerprint, signed_at=signed_at,
                             sbom_sha256=hashlib.sha256(documents[trust.SBOM_TYPE].encode()).hexdigest(),
                             provenance_sha256=hashlib.sha256(documents[trust.PROVENANCE_TYPE].encode()).hexdigest())
    write_signature_record(reports_dir, record)
    return record


@dataclass(frozen=True)
class Signer:
    """What `push --sign` signs each pushed image with: cosign, the key (opened before anything is pushed), the
    registry flags, the checkout the provenance reads, and where the signature records go."""

    cosign: Cosign
    key: SigningKey
    registry_flags: tuple[str, ...]
    checkout: Checkout
    reports_dir: Path


def open_signer(key: str, *, tlog: bool, registry: str, engine: ContainerEngine, checkout: Checkout,
                reports_dir: Path) -> Signer:
    """cosign, the key (opened now, so a wrong password stops the push before anything goes out) and the registry
    flags for `push --sign KEY`."""
    cosign = Cosign.find(tlog=tlog)
    return Signer(cosign, open_key(cosign, key), trust.registry_flags(registry, engine_info=engine.info()), checkout,
                  reports_dir)


def sign_push(engine: ContainerEngine, signer: Signer, plan: BuildPlan, pushed: PushRecord, *, out: TextIO) -> str:
    """Sign one image whose tags are all in the registry (its push record) and attach its attestations, saying so on
    `out`; the line that says why not, or ''."""
    try:
        record = sign_pushed(engine, signer.cosign, plan, key=signer.key, repository=pushed.repository,
                             digest=pushed.digest, tags=pushed.tags, checkout=signer.checkout,
                             reports_dir=signer.reports_dir, registry_flags=signer.registry_flags)
    except TorchdevError as error:
        return f"{pushed.image}: pushed, but not signed: {error}"
    print(f"signed {record.repository}@{record.digest} with key {record.key_fingerprint}; attached its SBOM and "
          f"provenance", file=out, flush=True)
    return ""


# --- verify --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Verified:
    """What `./dev verify` found: the digest, the signatures that verified, the SBOM and the provenance."""

    reference: str
    digest: str
    fingerprint: str
    signed: tuple[trust.Signed, ...]
    sbom: dict
    provenance: dict


def resolve(cosign: Cosign, ref: ImageRef, *, flags: tuple[str, ...]) -> str:
    """The digest the reference names now (a digest reference names itself)."""
    if ref.digest:
        return ref.digest
    answer = cosign.triangulate(str(ref), registry=flags)
    registry = ref.repository.split("/")[0]
    if not answer.ok:
        cause = trust.registry_problem(answer.stderr, registry)
        if not cause and ("manifest unknown" in answer.stderr.lower() or "name unknown" in answer.stderr.lower()):
            cause = f"{ref} is not in the registry (no such repository or tag)"
        raise trust.VerifyFailure(cause or f"{ref}: {trust.cosign_cause(answer.stderr)}")
    return trust.triangulated_digest(answer.stdout)


def moved_from(records: list[SignatureRecord], *, repository: str, tag: str, digest: str) -> SignatureRecord | None:
    """The last signed push that put `tag` on another digest than `digest`, if this host recorded one."""
    earlier = [r for r in records if r.repository == repository and tag in r.tags and r.digest != digest]
    return max(earlier, key=lambda record: record.signed_at, default=None)


def _signatures(cosign: Cosign, reference: str, *, key: Path, flags: tuple[str, ...]) -> CosignResult:
    return cosign.verify(reference, key=key, registry=flags)


def verify(cosign: Cosign, reference: str, *, key: str, reports_dir: Path, flags: tuple[str, ...]) -> Verified:
    """Check the signature and both attestations of `reference` against the public key; VerifyFailure (one line,
    the cause) on the first check that fails."""
    _, fingerprint = public_key(key)
    ref = ImageRef.parse(reference)
    digest = resolve(cosign, ref, flags=flags)
    pinned = f"{ref.repository}@{digest}"
    registry = ref.repository.split("/")[0]
    answer = _signatures(cosign, pinned, key=Path(key), flags=flags)
    if answer.status == trust.NOT_SIGNED or (not answer.ok and "no signatures found" in answer.stderr):
        record = moved_from(read_signature_records(reports_dir), repository=ref.repository, tag=ref.tag or "",
                            digest=digest) if ref.tag and not ref.digest else None
        if record:
            earlier = _signatures(cosign, f"{ref.repository}@{record.digest}", key=Path(key), flags=flags)
            if earlier.ok and any(ref.tag in s.tags for s in trust.signatures(earlier.stdout)):
                raise trust.VerifyFailure(trust.moved_line(reference=reference, digest=digest, fingerprint=fingerprint,
                                                           moved=trust.Moved(record.digest, record.signed_at)))
        raise trust.VerifyFailure(trust.not_signed_line(reference=reference, digest=digest))
    if answer.status == trust.OTHER_KEY or (not answer.ok and "no matching signatures" in answer.stderr):
        raise trust.VerifyFailure(trust.other_key_line(reference=reference, digest=digest, key=key,
                                                       fingerprint=fingerprint))
    if not answer.ok:
        raise trust.VerifyFailure(f"{reference}: " + (trust.registry_problem(answer.stderr, registry)
                                                       or trust.cosign_cause(answer.stderr)))
    signed = [s for s in trust.signatures(answer.stdout) if s.digest == digest]
    problem = trust.tag_problem(reference=reference, tag=None if ref.digest else ref.tag, digest=digest, signed=signed,
                                fingerprint=fingerprint)
    if problem:
        raise trust.VerifyFailure(problem)
    found = {kind: attestation(cosign, pinned, kind=kind, what=what, key=key, digest=digest, flags=flags,
                               reference=reference) for kind, what in trust.ATTESTED}
    return Verified(reference, digest, fingerprint, tuple(signed), found[trust.SBOM_TYPE],
                    found[trust.PROVENANCE_TYPE])


def attestation(cosign: Cosign, pinned: str, *, kind: str, what: str, key: str, digest: str, flags: tuple[str, ...],
                reference: str) -> dict:
    """The predicate of the attestation of `kind` signed by the key for this very digest."""
    answer = cosign.verify_attestation(pinned, key=Path(key), kind=kind, registry=flags)
    for statement in trust.statements(answer.stdout) if answer.ok else []:
        if any(subject.get("digest", {}).get("sha256") == digest.removeprefix("sha256:")
               for subject in statement.get("subject", [])):
            return statement["predicate"]
    if answer.ok or trust.no_attestation(answer.stderr):
        raise trust.VerifyFailure(trust.missing_attestation_line(reference=reference, what=what, kind=kind, key=key))
    raise trust.VerifyFailure(f"{reference}: checking the {what} failed: {trust.cosign_cause(answer.stderr)}")


def report(verified: Verified, *, key: str, tlog: bool) -> list[str]:
    """A few lines: what was verified, who signed, when, from which commit and lock."""
    signed_at = max((s.signed_at for s in verified.signed if s.signed_at), default="")
    when = (f"{signed_at} by the signer's clock, a signed claim: no transparency log vouches for it" if not tlog
            else f"{signed_at} by the signer's clock; the transparency log entry dates the upload")
    origin = provenance.origin(verified.provenance)
    locks = ", ".join(f"{lock.path} (sha256 {lock.sha256[:12]})" for lock in origin.locks) or "none (unlocked build)"
    tags = sorted({tag for signature in verified.signed for tag in signature.tags})
    listed = sbom.listed_packages(verified.sbom)
    return [f"{verified.reference}: signature and attestations verified",
            f"  image:     {ImageRef.parse(verified.reference).repository}@{verified.digest} (signed for tags: "
            f"{', '.join(tags) or 'none'})",
            f"  signed by: key {verified.fingerprint} ({key})",
            f"  when:      {when if signed_at else 'not said (signed without torchdev annotations)'}",
            f"  commit:    {origin.commit}" + (" with uncommitted changes" if origin.dirty else ""),
            f"  lock:      {locks}",
            f"  SBOM:      {sum(1 for p in listed if p.kind == 'deb')} Debian and "
            f"{sum(1 for p in listed if p.kind == 'pypi')} Python packages; base {origin.base}"]
