"""Where things live in a torchdev checkout, and what a command needs before it acts: the variants, flavours and
platforms it names, and their build plans. Pure: what plans are made from beyond the matrix (git's provenance, file
hashes, the host's platform) is read once at the edge (torchdev.checkout) and handed in as PlanInputs."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from torchdev.credentials import Login
from torchdev.errors import USAGE, Problem, UsageError
from torchdev.matrix import Flavour, Matrix, Variant
from torchdev.options import CONTRADICTION, names
from torchdev.plan import BuildPlan, LockInput, Provenance, make_plan
from torchdev.platforms import Platform, parse_list

MANIFEST_IN_IMAGE = "/usr/share/torchdev/manifest.json"


@dataclass(frozen=True)
class Reports:
    """What commands write under reports/, a folder each."""

    build: Path
    """Each build's log and its image's manifest."""
    smoke: Path
    """The smoke suite's JUnit XML and JSON summaries, one per run (`./dev push` reads the summaries)."""
    push: Path
    """What each push put in the registry (torchdev.records), read by `./dev k8s` and deployment files."""
    k8s: Path
    """A job's files from `./dev k8s`, a folder per job, unless it is told where."""
    bugs: Path
    """The traceback of each unexpected error (a bug in torchdev), which the user is pointed to."""

    @classmethod
    def at(cls, folder: Path) -> Reports:
        return cls(build=folder / "build", smoke=folder / "smoke", push=folder / "push", k8s=folder / "k8s",
                   bugs=folder / "bugs")


@dataclass(frozen=True)
class Paths:
    """The checkout's files and folders, made once from its root (`Paths.at`); a test points any of them elsewhere
    with dataclasses.replace."""

    root: Path
    matrix_file: Path
    docker: Path
    smoke: Path
    scripts: Path
    reports: Reports

    @classmethod
    def at(cls, root: Path) -> Paths:
        return cls(root=root, matrix_file=root / "images.yaml", docker=root / "docker", smoke=root / "smoke",
                   scripts=root / "scripts", reports=Reports.at(root / "reports"))


@dataclass(frozen=True)
class PlanInputs:
    """What build plans are made from besides the matrix, read once from the checkout and the host
    (torchdev.checkout.read_plan_inputs), so that making plans reads and runs nothing."""

    docker_dir: Path
    provenance: Provenance
    context_digest: str
    """One hash of every file in the build context (docker/)."""
    locks: Mapping[str, tuple[LockInput, ...]]
    """Variant name -> its lock files that exist, one per platform, with their hashes."""
    native: Platform
    """The platform this host runs without emulation: a variant's default when it has it."""
    environ: Mapping[str, str]
    """The environment the build runs in (its CA bundle variables become secrets)."""
    logins: tuple[Login, ...] = ()
    """The logins found for the matrix's index hosts (torchdev.credentials.pip_logins); each plan keeps its own."""
    added_locks: Mapping[str, tuple[LockInput, ...]] = field(default_factory=dict)
    """Variant name -> the locks of its added packages that exist, one per platform, with their hashes."""


NO_IMAGE_NAMED = Problem("say which image", "--variant NAME (one of {known}) or --all", UsageError, USAGE)
NOT_BUILT_FOR = Problem("variant '{variant}' is built for {platforms} only{why}, not {wanted}",
                        "drop --platform {wanted}, or add it to the variant's platforms", UsageError, USAGE)


def select_variants(matrix: Matrix, *, variant: str | None, every: bool) -> list[Variant]:
    """--variant NAME (several with commas) or --all; neither, or both, is a usage error naming them."""
    chosen = names("--variant", variant)
    if every and chosen:
        raise CONTRADICTION(first="--variant", second="--all", fix="give one of them")
    if not every and not chosen:
        raise NO_IMAGE_NAMED(known=", ".join(v.name for v in matrix.variants))
    if every:
        return list(matrix.variants)
    return [matrix.variant(name) for name in chosen]


def select_flavours(matrix: Matrix, *, flavour: str | None, every: bool) -> list[Flavour]:
    """--flavour NAME (several with commas); without it --all means every flavour, --variant the runtime one."""
    chosen = names("--flavour", flavour)
    if chosen:
        return [matrix.flavour(name) for name in chosen]
    return list(matrix.flavours) if every else [matrix.flavours[0]]


def select_platforms(variant: Variant, *, platform: str | None, native: Platform) -> tuple[Platform, ...]:
    """--platform LIST (each one the variant declares), `all` (every declared one), or by default the native one
    when the variant has it, else its first (emulated)."""
    if platform is None:
        return (native,) if native in variant.platforms else variant.platforms[:1]
    if platform.strip() == "all":
        return variant.platforms
    chosen = parse_list(platform)
    for wanted in chosen:
        if wanted not in variant.platforms:
            why = " (torch 2.0 has CUDA wheels for linux/amd64 only)" if variant.cuda else ""
            raise NOT_BUILT_FOR(variant=variant.name, platforms=", ".join(map(str, variant.platforms)), why=why,
                                wanted=wanted)
    return chosen


def plans_for(matrix: Matrix, variants: list[Variant], flavours: list[Flavour] | None = None, *,
              inputs: PlanInputs, platform: str | None = None, unlocked: bool = False) -> list[BuildPlan]:
    """The build plan of each variant in each flavour (runtime only unless told) for the platforms --platform
    selects, from the checkout as `inputs` found it. A variant's flavours follow each other, runtime first, so the
    others find its layers in the build cache. `unlocked`: the user passed --unlocked."""
    chosen = sorted(flavours or matrix.flavours[:1], key=lambda flavour: not flavour.is_runtime)
    return [make_plan(matrix=matrix, variant=v, provenance=inputs.provenance, docker_dir=inputs.docker_dir,
                      locks=inputs.locks.get(v.name, ()), environ=dict(inputs.environ),
                      context_digest=inputs.context_digest, flavour=flavour,
                      platforms=select_platforms(v, platform=platform, native=inputs.native), logins=inputs.logins,
                      unlocked=unlocked, added_locks=inputs.added_locks.get(v.name, ()))
            for v in variants for flavour in chosen]
