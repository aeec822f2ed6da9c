"""Where things live in a torchdev checkout, and what a command needs from it before it acts: the variants it
names, their locks, and their build plans (with every input file read once, here, so plans stay pure)."""
from __future__ import annotations

import hashlib
import platform as host
from pathlib import Path

from torchdev.errors import UsageError
from torchdev.gitinfo import read_provenance
from torchdev.matrix import Flavour, Matrix, Variant
from torchdev.plan import BuildPlan, LockInput, make_plan
from torchdev.platforms import ALIASES, AMD64, Platform, parse_list

ROOT = Path(__file__).resolve().parent.parent
MATRIX_FILE = ROOT / "images.yaml"
DOCKER_DIR = ROOT / "docker"
REPORTS_DIR = ROOT / "reports"
SMOKE_DIR = ROOT / "smoke"
BUILD_INPUTS = ("docker", "images.yaml", "locks", "overlays")
"""What an image is built from: SOURCE_DATE_EPOCH is the last commit that touched one of these."""
MANIFEST_IN_IMAGE = "/usr/share/torchdev/manifest.json"


def select_variants(matrix: Matrix, *, variant: str | None, every: bool) -> list[Variant]:
    """--variant NAME (several with commas) or --all; neither is a usage error naming both."""
    if every == bool(variant):
        raise UsageError("say which image: --variant NAME (one of "
                         f"{', '.join(v.name for v in matrix.variants)}) or --all")
    if every:
        return list(matrix.variants)
    return [matrix.variant(name.strip()) for name in variant.split(",")]


def select_flavours(matrix: Matrix, *, flavour: str | None, every: bool) -> list[Flavour]:
    """--flavour NAME (several with commas); without it --all means every flavour, --variant the runtime one."""
    if flavour:
        return [matrix.flavour(name.strip()) for name in flavour.split(",")]
    return list(matrix.flavours) if every else [matrix.flavours[0]]


def native_platform() -> Platform:
    """The platform this host runs without emulation (Docker Desktop's VM shares the Mac's architecture); `./dev
    doctor` says so when the engine's differs (a remote DOCKER_HOST)."""
    machine = host.machine().lower()
    return Platform("linux", ALIASES.get(machine, machine))


def select_platforms(variant: Variant, *, platform: str | None, native: Platform) -> tuple[Platform, ...]:
    """--platform LIST (each one the variant declares), `all` (every declared one), or by default the native one
    when the variant has it, else its first (emulated)."""
    if platform is None:
        return (native,) if native in variant.platforms else variant.platforms[:1]
    if platform == "all":
        return variant.platforms
    chosen = parse_list(platform)
    for wanted in chosen:
        if wanted not in variant.platforms:
            why = " (torch 2.0 has CUDA wheels for linux/amd64 only)" if variant.cuda else ""
            raise UsageError(f"variant '{variant.name}' is built for {', '.join(map(str, variant.platforms))} only"
                             f"{why}, not {wanted}: drop --platform {wanted}, or add it to the variant's platforms")
    return chosen


def lock_file(variant: Variant, platform: Platform = AMD64) -> Path:
    """Where the variant's lock for `platform` lives (Variant.lock_path_for), relative to images.yaml."""
    return MATRIX_FILE.parent / variant.lock_path_for(platform)


def lock_inputs(variant: Variant) -> tuple[LockInput, ...]:
    """The variant's lock files with their hashes, one per platform that has one."""
    paths = [(platform, lock_file(variant, platform)) for platform in variant.platforms]
    return tuple(LockInput(path=path, sha256=hashlib.sha256(path.read_bytes()).hexdigest(), platform=platform)
                 for platform, path in paths if path.is_file())


def context_digest(folder: Path) -> str:
    """One hash of every file in the build context, names and contents: a changed script is a changed input."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(f"{path.relative_to(folder)}\0{path.stat().st_size}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def plans_for(matrix: Matrix, variants: list[Variant], flavours: list[Flavour] | None = None, *,
              platform: str | None = None) -> list[BuildPlan]:
    """The build plan of each variant in each flavour (runtime only unless told) for the platforms --platform
    selects, from this checkout as it is now. A variant's flavours follow each other, runtime first, so the others
    find its layers in the build cache."""
    provenance = read_provenance(ROOT, inputs=BUILD_INPUTS)
    context = context_digest(DOCKER_DIR)
    chosen = sorted(flavours or matrix.flavours[:1], key=lambda flavour: not flavour.is_runtime)
    native = native_platform()
    return [make_plan(matrix=matrix, variant=v, provenance=provenance, docker_dir=DOCKER_DIR, locks=lock_inputs(v),
                      context_digest=context, flavour=flavour,
                      platforms=select_platforms(v, platform=platform, native=native))
            for v in variants for flavour in chosen]
