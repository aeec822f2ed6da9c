"""Where things live in a torchdev checkout, and what a command needs from it before it acts: the variants it
names, their locks, and their build plans (with every input file read once, here, so plans stay pure)."""
from __future__ import annotations

import hashlib
from pathlib import Path

from torchdev.errors import UsageError
from torchdev.gitinfo import read_provenance
from torchdev.matrix import Flavour, Matrix, Variant
from torchdev.plan import BuildPlan, LockInput, make_plan

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


def lock_file(variant: Variant) -> Path:
    """Where the variant's lock lives: its `lock:` path (or locks/<name>.txt), relative to images.yaml."""
    return MATRIX_FILE.parent / variant.lock_path


def lock_input(variant: Variant) -> LockInput | None:
    """The variant's lock file with its hash, when it has one."""
    path = lock_file(variant)
    return LockInput(path=path, sha256=hashlib.sha256(path.read_bytes()).hexdigest()) if path.is_file() else None


def context_digest(folder: Path) -> str:
    """One hash of every file in the build context, names and contents: a changed script is a changed input."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(f"{path.relative_to(folder)}\0{path.stat().st_size}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def plans_for(matrix: Matrix, variants: list[Variant], flavours: list[Flavour] | None = None) -> list[BuildPlan]:
    """The build plan of each variant in each flavour (runtime only unless told), from this checkout as it is now.
    A variant's flavours follow each other, runtime first, so the others find its layers in the build cache."""
    provenance = read_provenance(ROOT, inputs=BUILD_INPUTS)
    context = context_digest(DOCKER_DIR)
    chosen = sorted(flavours or matrix.flavours[:1], key=lambda flavour: not flavour.is_runtime)
    return [make_plan(matrix=matrix, variant=v, provenance=provenance, docker_dir=DOCKER_DIR, lock=lock_input(v),
                      context_digest=context, flavour=flavour) for v in variants for flavour in chosen]
