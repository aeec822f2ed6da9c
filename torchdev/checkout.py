"""What plans are made from, read from this checkout and this host once, at the edge: git's provenance, one hash of
the build context, the variants' lock files with their hashes, and the platform this host runs natively.
torchdev.project.plans_for then makes plans from it without reading or running anything."""
from __future__ import annotations

import hashlib
import os
import platform as host
from pathlib import Path
from typing import Mapping

from torchdev.credentials import Login, pip_logins
from torchdev.gitinfo import read_provenance
from torchdev.matrix import Flavour, Matrix, Variant
from torchdev.plan import BuildPlan, LockInput, matrix_hosts
from torchdev.platforms import ALIASES, Platform
from torchdev.project import Paths, PlanInputs, plans_for

BUILD_INPUTS = ("docker", "images.yaml", "locks", "overlays")
"""What an image is built from: SOURCE_DATE_EPOCH is the last commit that touched one of these."""


def native_platform() -> Platform:
    """The platform this host runs without emulation (Docker Desktop's VM shares the Mac's architecture); `./dev
    doctor` says so when the engine's differs (a remote DOCKER_HOST)."""
    machine = host.machine().lower()
    return Platform("linux", ALIASES.get(machine, machine))


def lock_inputs(matrix: Matrix, variant: Variant) -> tuple[LockInput, ...]:
    """The variant's lock files with their hashes, one per platform that has one."""
    paths = [(platform, matrix.lock_file(variant, platform)) for platform in variant.platforms]
    return tuple(LockInput(path=path, sha256=hashlib.sha256(path.read_bytes()).hexdigest(), platform=platform)
                 for platform, path in paths if path.is_file())


def added_lock_inputs(matrix: Matrix, variant: Variant) -> tuple[LockInput, ...]:
    """The locks of the variant's added packages with their hashes, one per platform that has one (none when it adds
    no package: a lock left from earlier is not the variant's)."""
    if not variant.added_packages:
        return ()
    paths = [(platform, matrix.added_lock_file(variant, platform)) for platform in variant.platforms]
    return tuple(LockInput(path=path, sha256=hashlib.sha256(path.read_bytes()).hexdigest(), platform=platform)
                 for platform, path in paths if path.is_file())


def context_digest(folder: Path) -> str:
    """One hash of every file in the build context, names and contents: a changed script is a changed input."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(f"{path.relative_to(folder)}\0{path.stat().st_size}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def read_logins(matrix: Matrix, environ: Mapping[str, str]) -> tuple[Login, ...]:
    """The logins the routes hold for the hosts the matrix's builds and locks ask (torchdev.credentials): ~/.netrc is
    the one in `environ`'s HOME, so a test's environment without one reads none."""
    hosts = matrix_hosts(matrix)
    home = environ.get("HOME")
    return pip_logins(environ, hosts=hosts, known=hosts, home=Path(home) if home else None)


def read_plan_inputs(paths: Paths, matrix: Matrix, *, environ: Mapping[str, str] | None = None,
                     native: Platform | None = None) -> PlanInputs:
    """The checkout as it is now, for plans of any of the matrix's variants; `environ` and `native` default to this
    process's environment and this host's platform (a command passes its context's)."""
    environ = dict(os.environ) if environ is None else environ
    return PlanInputs(docker_dir=paths.docker,
                      provenance=read_provenance(paths.root, inputs=BUILD_INPUTS, environ=dict(environ)),
                      context_digest=context_digest(paths.docker),
                      locks={variant.name: lock_inputs(matrix, variant) for variant in matrix.variants},
                      added_locks={variant.name: added_lock_inputs(matrix, variant) for variant in matrix.variants},
                      native=native or native_platform(), environ=environ, logins=read_logins(matrix, environ))


def read_plans(paths: Paths, matrix: Matrix, variants: list[Variant], flavours: list[Flavour] | None = None, *,
               platform: str | None = None, environ: Mapping[str, str] | None = None,
               native: Platform | None = None, unlocked: bool = False) -> list[BuildPlan]:
    """plans_for from the checkout as it is now (read_plan_inputs): the plans, and so the tags, of a build run here."""
    inputs = read_plan_inputs(paths, matrix, environ=environ, native=native)
    return plans_for(matrix, variants, flavours, inputs=inputs, platform=platform, unlocked=unlocked)
