"""The build plan of one variant: build args, labels, tags, secrets and the build request the engine runs.

Everything here is pure, so `invoke build --dry-run` prints precisely what a real build would run: the engine's
own rendering of the plan's request (torchdev.engine.buildx_command).
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from torchdev.credentials import APT_AUTH_SECRET, APT_AUTH_VARIABLE, NETRC_SECRET, Login, apt_auth_file, host_of
from torchdev.engine import BuildOutput, BuildRequest, buildx_command
from torchdev.errors import CONFIGURATION, ConfigError, Problem, joined
from torchdev.files import input_file
from torchdev.matrix import DEFAULT_INDEX, RUNTIME, CudaRelease, Flavour, Matrix, Variant
from torchdev.oci import LEVELS, STORE_COMPRESSION
from torchdev.platforms import AMD64, Platform
from torchdev.tags import BuildStamp, flavour_suffix, image_tags, immutable_tags

CA_BUNDLE_VARIABLES = ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
"""Host variables that point at a CA bundle; the first one set is passed to the build as a secret."""

LABEL_PREFIX = "io.torchdev"
NO_CA_BUNDLE = Problem("{variable}={value} names no file", "fix the path or unset {variable}", ConfigError,
                       CONFIGURATION)
UNCOVERED_ARCHIVE = Problem("variant '{variant}' on {platform}: its base {base} reads the apt archive '{archive}', "
                            "which apt_snapshot_urls does not cover", "add `{archive}: <snapshot URL with "
                            "{{timestamp}}>` to apt_snapshot_urls in images.yaml, or set the variant's apt_snapshot: "
                            "null", ConfigError, CONFIGURATION)

ENGINE_OUTPUT = BuildOutput("docker", (("compression", STORE_COMPRESSION),
                                        ("compression-level", str(LEVELS[STORE_COMPRESSION])),
                                        ("force-compression", "true"), ("oci-mediatypes", "true")))
"""Load the result into the engine, its layers gzip at a fixed level (torchdev.oci.STORE_COMPRESSION says why gzip;
force-compression, so that the base image's layers are recompressed the same way as the build's own). OCI media
types: the push's zstd copies need them (zstd under Docker's own types is no standard type, and the containerd image
store leaves such an image out of every listing), and the image and its copies then share one kind of manifest.
Every build this way is reproducible: each RUN step of docker/Dockerfile ends by giving what it changed one fixed
modification time (docker/clamp-mtimes.sh), SOURCE_DATE_EPOCH dates the config and history, and gzip at a fixed level
with no time in its header writes the same bytes for the same layer, so the same inputs give the same image ID with
no export-time rewrite (BuildKit's rewrite-timestamp cannot export into the engine's store, moby/buildkit#4230)."""


@dataclass(frozen=True)
class Provenance:
    """Where the build comes from: commit, the time that stands for it, and the source URL."""

    stamp: BuildStamp
    revision: str
    created: datetime
    source: str

    @property
    def source_date_epoch(self) -> int:
        return int(self.created.timestamp())


@dataclass(frozen=True)
class LockInput:
    """One platform's lock file of the variant as the build sees it (read at the edge, so plans stay pure)."""

    path: Path
    sha256: str
    platform: Platform = AMD64


@dataclass(frozen=True)
class Secret:
    """A BuildKit secret: its id inside the build and the host file it is read from (never its contents)."""

    id: str
    source: Path
    variable: str


@dataclass(frozen=True)
class BuildPlan:
    """Everything needed to build and tag one variant in one flavour."""

    variant: Variant
    flavour: Flavour
    references: tuple[str, ...]
    immutable_references: tuple[str, ...]
    build_args: dict[str, str]
    labels: dict[str, str]
    secrets: tuple[Secret, ...]
    dockerfile: Path
    context: Path
    locks: tuple[LockInput, ...] = ()
    platforms: tuple[Platform, ...] = (AMD64,)
    logins: tuple[Login, ...] = ()
    """The logins pip (and devel's CUDA toolchain download) get, for the hosts they talk to: staged as the netrc secret
    for the build alone (torchdev.credentials); never a build arg, a label or part of {inputs}."""
    added_locks: tuple[LockInput, ...] = ()
    """The locks of the variant's added packages (images.yaml: a variant's added_packages), one per platform: the
    build's `added` context, apart from `lock` so that a change to them leaves torch's layer cached."""

    @property
    def primary_reference(self) -> str:
        return self.references[0]

    @property
    def name(self) -> str:
        """The image's name in tables, logs and reports: the variant, plus the flavour unless it is runtime."""
        return self.variant.name + flavour_suffix(self.flavour)

    @property
    def unlocked(self) -> bool:
        """Whether pip resolves at build time for some platform (no lock, and --unlocked asked for it)."""
        return self.build_args.get("UNLOCKED") == "1"

    @property
    def target(self) -> str:
        """The Dockerfile stage: runtime, or devel (runtime plus a flavour's packages)."""
        return RUNTIME if self.flavour.is_runtime else "devel"

    def build_request(self, *, metadata_file: Path, lock_context: Path, added_context: Path, no_cache: bool = False,
                      netrc: Path | None = None) -> BuildRequest:
        """What to ask the engine to build; tags are applied afterwards, only on success.

        `lock_context` is a folder holding this variant's locks as <os>-<arch>.txt (or nothing), `added_context` one
        holding the locks of its added packages so (or nothing): two contexts, because a RUN step that mounts a
        context is rebuilt whenever anything in it changes, and the step that installs torch mounts the first.
        `netrc` is the file the plan's logins were staged in (credentials.write_netrc), passed as the secret netrc.
        """
        secrets = {secret.id: secret.source for secret in self.secrets}
        return BuildRequest(
            context=self.context, dockerfile=self.dockerfile, target=self.target,
            platforms=tuple(map(str, self.platforms)), output=ENGINE_OUTPUT, metadata_file=metadata_file,
            build_args=dict(self.build_args), labels=dict(self.labels),
            secrets={**secrets, **({NETRC_SECRET: netrc} if netrc else {})},
            contexts={"lock": lock_context, "added": added_context},
            no_cache=no_cache)


def ca_bundle_secret(environ: dict[str, str]) -> tuple[Secret, ...]:
    """The host's CA bundle as a secret, when one of CA_BUNDLE_VARIABLES names it."""
    for variable in CA_BUNDLE_VARIABLES:
        value = environ.get(variable)
        if not value:
            continue
        path = Path(value)
        if input_file(path, role=f"the CA bundle {variable} names") is None:
            raise NO_CA_BUNDLE(variable=variable, value=value)
        return (Secret(id="ca_bundle", source=path, variable=variable),)
    return ()


def build_secrets(environ: dict[str, str]) -> tuple[Secret, ...]:
    """The host files a build reads as secrets: the CA bundle, and apt's logins (TORCHDEV_APT_AUTH_CONF)."""
    apt = apt_auth_file(environ)
    return ca_bundle_secret(environ) + ((Secret(id=APT_AUTH_SECRET, source=apt, variable=APT_AUTH_VARIABLE),)
                                        if apt else ())


def login_hosts(*, matrix: Matrix, variant: Variant, flavour: Flavour = Flavour(RUNTIME)) -> tuple[str, ...]:
    """The hosts a build of `variant` in `flavour` asks for Python packages (images.yaml's pip_index, the variant's
    index) or, in a flavour with a CUDA toolchain, NVIDIA's archives: the hosts a netrc login is passed on for."""
    urls = [matrix.image.pip_index, variant.index]
    if not flavour.is_runtime and variant.cuda and flavour.cuda_toolchain:
        urls.append(flavour.cuda_toolchain)
    return tuple(dict.fromkeys(host for host in map(host_of, (u for u in urls if u != DEFAULT_INDEX)) if host))


def matrix_hosts(matrix: Matrix) -> tuple[str, ...]:
    """Every host any build of the matrix passes a login on for (login_hosts of each variant in each flavour)."""
    return tuple(dict.fromkeys(host for variant in matrix.variants for flavour in matrix.flavours
                               for host in login_hosts(matrix=matrix, variant=variant, flavour=flavour)))


def apt_snapshot_sources(*, matrix: Matrix, variant: Variant) -> str:
    """The APT_SNAPSHOT build arg: `archive=URL` words with the variant's time filled in, or "" for live archives.
    docker/apt-snapshot.sh points each base source whose archive is named here at its URL, for the build only."""
    if not variant.apt_snapshot:
        return ""
    return " ".join(f"{archive}={url.replace('{timestamp}', variant.apt_snapshot)}"
                    for archive, url in matrix.image.apt_snapshot_urls)


def base_archives(base: str, platform: Platform) -> tuple[str, ...]:
    """The apt archives (the last part of a source URI) an official Ubuntu or Debian base reads on `platform`; ()
    for other bases, which docker/apt-snapshot.sh checks once the build sees their sources. Ubuntu serves amd64 from
    archive.ubuntu.com/ubuntu and every other architecture from ports.ubuntu.com/ubuntu-ports."""
    name = base.partition("@")[0]
    name = name.rpartition(":")[0] if ":" in name.rpartition("/")[2] else name
    name = name.removeprefix("docker.io/").removeprefix("library/")
    if name == "ubuntu":
        return ("ubuntu",) if platform == AMD64 else ("ubuntu-ports",)
    return ("debian", "debian-security") if name == "debian" else ()


def uncovered_archives(*, matrix: Matrix, variant: Variant, platform: Platform, base: str) -> str:
    """Why the variant's apt snapshot cannot cover its base on `platform` ('' when it can, or when unknown): said
    before a build, not 40 seconds into one."""
    if not variant.apt_snapshot:
        return ""
    known = {archive for archive, _ in matrix.image.apt_snapshot_urls}
    missing = [archive for archive in base_archives(base, platform) if archive not in known]
    if not missing:
        return ""
    return UNCOVERED_ARCHIVE.line(variant=variant.name, platform=platform, base=base, archive=missing[0])


def build_args(*, matrix: Matrix, variant: Variant, provenance: Provenance, locks: tuple[LockInput, ...],
               uid: int, gid: int, flavour: Flavour = Flavour(RUNTIME), unlocked: bool = False,
               added_locks: tuple[LockInput, ...] = ()) -> dict[str, str]:
    """Dockerfile build args for a variant ("default" indexes become empty: pip's own default). UNLOCKED=1 only
    when the build was asked for --unlocked (`unlocked`) and has no lock: a locked build is the same with or
    without the flag."""
    base = flavour.base_for(variant)
    release = matrix.cuda_release(variant.cuda)
    return {
        "BASE_IMAGE": base,
        "BASE_DIGEST": base.partition("@")[2],
        "APT_SNAPSHOT": apt_snapshot_sources(matrix=matrix, variant=variant),
        "PYTHON_VERSION": variant.python,
        "TORCH_VERSION": variant.torch,
        "TORCHVISION_VERSION": variant.torchvision,
        "TORCHAUDIO_VERSION": variant.torchaudio,
        "TORCH_INDEX_URL": "" if variant.index == DEFAULT_INDEX else variant.index,
        "PIP_INDEX_URL": "" if matrix.image.pip_index == DEFAULT_INDEX else matrix.image.pip_index,
        "EXTRA_PACKAGES": " ".join(matrix.image.packages),
        "LOCK_SHA256": " ".join(f"{lock.platform.slug}={lock.sha256}" for lock in locks),
        "ADDED_PACKAGES": " ".join(variant.added_packages),
        "ADDED_LOCK_SHA256": " ".join(f"{lock.platform.slug}={lock.sha256}" for lock in added_locks),
        "RUNTIME_LEAVES_OUT": " ".join(runtime_leaves_out(matrix)),
        "CUDA_VERSION": variant.cuda or "",
        "CUDNN_MAJOR": str(variant.cudnn or ""),
        "REQUIRE_CUDA": required_cuda(variant, release),
        "VARIANT": variant.name,
        "USER_UID": str(uid),
        "USER_GID": str(gid),
        "SOURCE_DATE_EPOCH": str(provenance.source_date_epoch),
        **({"UNLOCKED": "1"} if unlocked else {}),
        **({} if flavour.is_runtime else toolchain_args(flavour, variant, release)),
    }


def runtime_leaves_out(matrix: Matrix) -> tuple[str, ...]:
    """The lock's packages that other flavours install and runtime does not (flavours.<name>.lock_packages). The
    same for every flavour's build, since devel is built on the very runtime stage."""
    return tuple(dict.fromkeys(name for flavour in matrix.flavours for name in flavour.lock_packages))


def required_cuda(variant: Variant, release: CudaRelease | None) -> str:
    """NVIDIA_REQUIRE_CUDA: the matching nvidia/cuda image's constraint (cuda_releases), else the bare version."""
    if not variant.cuda:
        return ""
    return release.nvidia_require_cuda if release else f"cuda>={variant.cuda}"


def toolchain_args(flavour: Flavour, variant: Variant, release: CudaRelease | None) -> dict[str, str]:
    """The devel stage's args: the flavour's packages and, for a CUDA variant, where its nvcc comes from."""
    cuda = bool(flavour.cuda_toolchain and release)
    return {
        "FLAVOUR": flavour.name,
        "TOOLCHAIN_APT": " ".join(flavour.apt_packages),
        "TOOLCHAIN_PIP": " ".join(flavour.pip_packages),
        "LOCK_PACKAGES": " ".join(flavour.lock_packages),
        "CUDA_TOOLCHAIN_URL": flavour.cuda_toolchain if cuda else "",
        "CUDA_RELEASE": release.release if cuda and release else "",
        "CUDA_REDISTRIB_SHA256": release.redistrib_sha256 if cuda and release else "",
        "CUDA_COMPONENTS": " ".join(flavour.cuda_components) if cuda else "",
        "CUDA_HOME": f"/usr/local/cuda-{variant.cuda}" if cuda else "",
    }


def image_labels(*, variant: Variant, provenance: Provenance, flavour: Flavour = Flavour(RUNTIME)) -> dict[str, str]:
    """OCI labels plus torchdev's own, which `invoke images` and `invoke smoke` read back (the version label, the
    primary tag, is added once the tags are known)."""
    return {
        "org.opencontainers.image.title": f"torchdev {variant.name}{flavour_suffix(flavour)}",
        "org.opencontainers.image.revision": provenance.revision,
        "org.opencontainers.image.created": provenance.created.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "org.opencontainers.image.source": provenance.source,
        "org.opencontainers.image.base.name": flavour.base_for(variant),
        f"{LABEL_PREFIX}.variant": variant.name,
        f"{LABEL_PREFIX}.flavour": flavour.name,
        f"{LABEL_PREFIX}.torch": variant.torch,
        f"{LABEL_PREFIX}.torchvision": variant.torchvision,
        f"{LABEL_PREFIX}.torchaudio": variant.torchaudio,
        f"{LABEL_PREFIX}.cuda": variant.cuda or "none",
        f"{LABEL_PREFIX}.cudnn": str(variant.cudnn or "none"),
        f"{LABEL_PREFIX}.python": variant.python,
        f"{LABEL_PREFIX}.apt-snapshot": variant.apt_snapshot or "none",
    }


def inputs_digest(*, args: dict[str, str], labels: dict[str, str], context_digest: str) -> str:
    """8 hex digits of everything that goes into the image: build args (base, versions, indexes, lock hash, UID,
    SOURCE_DATE_EPOCH), labels (commit, variant) and the build context's files. An untracked overlay or a local
    edit changes it where the git commit does not."""
    document = json.dumps({"args": args, "labels": labels, "context": context_digest}, sort_keys=True)
    return hashlib.sha256(document.encode()).hexdigest()[:8]


def make_plan(*, matrix: Matrix, variant: Variant, provenance: Provenance, docker_dir: Path,
              locks: tuple[LockInput, ...] = (), environ: dict[str, str] | None = None, uid: int = 1000,
              gid: int = 1000, context_digest: str = "", flavour: Flavour = Flavour(RUNTIME),
              platforms: tuple[Platform, ...] = (AMD64,), logins: tuple[Login, ...] = (),
              unlocked: bool = False, added_locks: tuple[LockInput, ...] = ()) -> BuildPlan:
    """Assemble the plan for one variant in one flavour for its platforms; reads no files and runs nothing
    (`context_digest` is the hash of the build context's files, and `logins` every login found for the matrix's
    hosts, read at the edge; the plan keeps those for its own hosts). `unlocked`: the user chose --unlocked, which
    lets a platform without a lock resolve at build time."""
    for platform in platforms:
        uncovered = uncovered_archives(matrix=matrix, variant=variant, platform=platform,
                                       base=flavour.base_for(variant))
        if uncovered:
            raise joined([uncovered])  # UNCOVERED_ARCHIVE's line
    locks = tuple(lock for lock in locks if lock.platform in platforms)
    unpinned = unlocked and any(platform not in {lock.platform for lock in locks} for platform in platforms)
    added_locks = tuple(lock for lock in added_locks if lock.platform in platforms) if variant.added_packages else ()
    args = build_args(matrix=matrix, variant=variant, provenance=provenance, locks=locks, uid=uid, gid=gid,
                      flavour=flavour, unlocked=unpinned, added_locks=added_locks)
    labels = image_labels(variant=variant, provenance=provenance, flavour=flavour)
    stamp = replace(provenance.stamp, inputs=inputs_digest(args=args, labels=labels, context_digest=context_digest))
    tags = image_tags(settings=matrix.image, variant=variant, stamp=stamp, flavour=flavour)
    immutable = immutable_tags(settings=matrix.image, variant=variant, stamp=stamp, flavour=flavour)
    return BuildPlan(
        variant=variant,
        flavour=flavour,
        references=tuple(f"{matrix.image.repository}:{tag}" for tag in tags),
        immutable_references=tuple(f"{matrix.image.repository}:{tag}" for tag in immutable),
        build_args=args,
        labels={**labels, "org.opencontainers.image.version": tags[0]},
        secrets=build_secrets(dict(os.environ) if environ is None else environ),
        dockerfile=docker_dir / "Dockerfile",
        context=docker_dir,
        locks=locks,
        platforms=platforms,
        logins=tuple(login for login in logins if login.host in login_hosts(matrix=matrix, variant=variant,
                                                                             flavour=flavour)),
        added_locks=added_locks,
    )


def dry_run_request(plan: BuildPlan) -> BuildRequest:
    """The plan's request with placeholders for the paths a real build makes in a scratch folder."""
    return plan.build_request(metadata_file=Path("<metadata-file>"), lock_context=Path("<folder with the lock>"),
                              added_context=Path("<folder with the added packages' lock>"),
                              netrc=Path("<netrc with the logins above>") if plan.logins else None)


def describe_plan(plan: BuildPlan) -> str:
    """Human-readable plan for --dry-run: what would be built, tagged and which secrets are used."""
    lines = [f"{plan.name}: build plan, stage {plan.target}, for {', '.join(map(str, plan.platforms))} "
             "(nothing is built in a dry run)", "  tags:"]
    lines += [f"    {reference}" + (" (immutable)" if reference in plan.immutable_references else "")
              for reference in plan.references]
    lines.append("  build args:")
    lines += [f"    {key}={value}" for key, value in plan.build_args.items()]
    lines.append("  secrets (mounted during the RUN steps that need them only, never stored):")
    lines += [f"    {s.id} <- {s.source} (from ${s.variable})" for s in plan.secrets]
    lines += [f"    {NETRC_SECRET} <- the login for {login.host} from {login.source}" for login in plan.logins]
    if not plan.secrets and not plan.logins:
        lines.append("    none (no PIP_CERT, SSL_CERT_FILE or REQUESTS_CA_BUNDLE set, no login for an index host)")
    lines += [f"  lock for {lock.platform}: {lock.path} (sha256 {lock.sha256[:12]}), installed with --require-hashes"
              for lock in plan.locks]
    lines += [f"  lock for {platform}: none: " + ("--unlocked: pip resolves at build time, nothing hash-pinned"
                                                   if plan.unlocked else
                                                   f"a build is refused (`./dev lock --variant {plan.variant.name}`, "
                                                   "or --unlocked)")
              for platform in plan.platforms if platform not in {lock.platform for lock in plan.locks}]
    lines += [f"  added packages' lock for {lock.platform}: {lock.path} (sha256 {lock.sha256[:12]}), installed after "
              "torch's layer" for lock in plan.added_locks]
    lines.append("  command:")
    lines.append("    " + shlex.join(buildx_command(dry_run_request(plan))))
    return "\n".join(lines)
