"""How an image was built, as a SLSA v1 provenance statement (an in-toto Statement v1 whose predicate type is
https://slsa.dev/provenance/v1): what a verifier reads to learn which commit, lock and base an image came from.

- externalParameters: what the user chose: variant, flavour, platforms, the Dockerfile stage, and the configuration
  files (images.yaml and the overlay) with their sha256.
- internalParameters: what torchdev derived from them: the build args (no secret is ever one: the CA bundle goes in
  as a BuildKit secret) and the labels.
- resolvedDependencies: the source at its commit (gitCommit), the build context (docker/, one hash of its files),
  the base image by digest (when pinned), each platform's lock file with its sha256, and the apt snapshot's
  archives (or none: live archives).
- runDetails.builder: torchdev at its commit, and the buildx, BuildKit and Docker Engine versions the engine reports.

No time is recorded: SLSA's metadata times are optional, and leaving them out keeps the statement the same for the
same build (its SOURCE_DATE_EPOCH is among the build args). cosign attaches the predicate (`--type
slsaprovenance1`); cosign 2.5 wraps it in its own in-toto statement (Statement v0.1, the same shape).

Pure: a build plan and facts read at the edge in, a dict out.
"""
from __future__ import annotations

from dataclasses import dataclass

from torchdev.plan import BuildPlan

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:torchdev:buildtype:image:v1"
"""What the parameters mean is torchdev's: docs/publishing.md ("Provenance") describes them. torchdev has no web site,
so the type is a URN."""
BUILDER_ID = "urn:torchdev:builder:docker-buildx"
"""`./dev build` on the host it runs on, through the engine's buildx: no hosted build platform vouches for it (SLSA
Build L1); the signature on the attestation says whose key published it."""


@dataclass(frozen=True)
class FileDigest:
    """A file the build read, by its path (relative to the checkout where it is inside it) and sha256."""

    path: str
    sha256: str


@dataclass(frozen=True)
class Builder:
    """What built the image: torchdev's commit and the versions of buildx, BuildKit and the engine, as reported."""

    torchdev_revision: str
    versions: dict[str, str]


@dataclass(frozen=True)
class BuildFacts:
    """What the plan does not hold, read at the edge: the configuration files and the lock files with their hashes,
    the hash of the build context's files, whether the checkout had uncommitted changes, and the subject (the image
    by the manifest digest a pull gets)."""

    configuration: tuple[FileDigest, ...]
    locks: tuple[FileDigest, ...]
    context_sha256: str
    dirty: bool
    subject_name: str
    subject_digest: str


def _sha256(digest: str) -> dict[str, str]:
    algorithm, _, value = digest.partition(":")
    return {algorithm: value}


def resolved_dependencies(plan: BuildPlan, facts: BuildFacts) -> list[dict]:
    """Everything the build took in that is not a parameter, each a ResourceDescriptor."""
    labels, args = plan.labels, plan.build_args
    revision, source = labels["org.opencontainers.image.revision"], labels["org.opencontainers.image.source"]
    found = [{"name": "source", "uri": f"git+{source}@{revision}", "digest": {"gitCommit": revision},
              **({"annotations": {"uncommittedChanges": True}} if facts.dirty else {})},
             {"name": "docker/", "digest": {"sha256": facts.context_sha256},
              "annotations": {"what": "the build context: Dockerfile and the scripts its steps run"}}]
    base = {"name": "base image", "uri": f"docker-image://{args['BASE_IMAGE'].partition('@')[0]}"}
    found.append({**base, "digest": _sha256(args["BASE_DIGEST"])} if args["BASE_DIGEST"]
                 else {**base, "annotations": {"pinned": False}})
    found += [{"name": f"lock {lock.path}", "uri": lock.path, "digest": {"sha256": lock.sha256}}
              for lock in facts.locks]
    snapshot = plan.variant.apt_snapshot
    found += [{"name": f"apt archive {archive}", "uri": url, "annotations": {"snapshot": snapshot}}
              for archive, url in (word.split("=", 1) for word in args["APT_SNAPSHOT"].split())]
    return found


def statement(plan: BuildPlan, facts: BuildFacts, builder: Builder) -> dict:
    """The in-toto Statement v1 with the SLSA v1 provenance of the image built from `plan`."""
    source = plan.labels["org.opencontainers.image.source"]
    external = {"variant": plan.variant.name, "flavour": plan.flavour.name,
                "platforms": [str(platform) for platform in plan.platforms], "target": plan.target,
                "configuration": [{"path": f.path, "sha256": f.sha256} for f in facts.configuration]}
    internal = {"buildArgs": dict(plan.build_args), "labels": dict(plan.labels)}
    run = {"builder": {"id": BUILDER_ID, "version": {"torchdev": builder.torchdev_revision, **builder.versions},
                       "builderDependencies": [{"name": "torchdev", "uri": f"git+{source}@{builder.torchdev_revision}",
                                                "digest": {"gitCommit": builder.torchdev_revision}}]}}
    return {"_type": STATEMENT_TYPE,
            "subject": [{"name": facts.subject_name, "digest": _sha256(facts.subject_digest)}],
            "predicateType": PREDICATE_TYPE,
            "predicate": {"buildDefinition": {"buildType": BUILD_TYPE, "externalParameters": external,
                                              "internalParameters": internal,
                                              "resolvedDependencies": resolved_dependencies(plan, facts)},
                          "runDetails": run}}


@dataclass(frozen=True)
class Origin:
    """What `./dev verify` tells from a provenance predicate: the commit, whether it had uncommitted changes, each
    lock's path and sha256, and the base."""

    commit: str
    dirty: bool
    locks: tuple[FileDigest, ...]
    base: str


def origin(predicate: dict) -> Origin:
    """Read back what `statement` wrote (a KeyError or TypeError for a predicate torchdev did not write)."""
    dependencies = predicate["buildDefinition"]["resolvedDependencies"]
    source = next(d for d in dependencies if d.get("name") == "source")
    base = next(d for d in dependencies if d.get("name") == "base image")
    base_digest = "".join(f"@{algorithm}:{value}" for algorithm, value in base.get("digest", {}).items())
    return Origin(commit=source["digest"]["gitCommit"],
                  dirty=bool(source.get("annotations", {}).get("uncommittedChanges")),
                  locks=tuple(FileDigest(d["uri"], d["digest"]["sha256"]) for d in dependencies
                              if str(d.get("name", "")).startswith("lock ")),
                  base=base["uri"].removeprefix("docker-image://") + base_digest)
