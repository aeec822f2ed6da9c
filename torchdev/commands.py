"""The commands behind tasks.py: each loads the matrix, talks to the engine at the edge, prints a table."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

from torchdev import bases, engine, smoke
from torchdev.build import BuildResult, failure_cause, image_id_or_none, run_build, run_buildx, summary_table
from torchdev.errors import TorchdevError, UsageError
from torchdev.gitinfo import read_provenance
from torchdev.images import built_images, images_table
from torchdev.matrix import Matrix, Variant, load_matrix, load_sources, parse_matrix
from torchdev.plan import BuildPlan, LockInput, describe_plan, make_plan
from torchdev.repro import describe_differences
from torchdev.table import render_table
from torchdev.tags import image_references, image_tags

ROOT = Path(__file__).resolve().parent.parent
MATRIX_FILE = ROOT / "images.yaml"
DOCKER_DIR = ROOT / "docker"
REPORTS_DIR = ROOT / "reports"
BUILD_INPUTS = ("docker", "images.yaml", "locks", "overlays")
"""What an image is built from: SOURCE_DATE_EPOCH is the last commit that touched one of these."""
MANIFEST_IN_IMAGE = "/usr/share/torchdev/manifest.json"
SMOKE_DIR = ROOT / "smoke"


def exit_on_error(action: Callable[[], int]) -> None:
    """Run a command; a TorchdevError becomes its message on stderr and the error's exit status."""
    try:
        status = action()
    except TorchdevError as error:
        for line in str(error).splitlines():
            print(f"torchdev: {line}" if not line.startswith("torchdev:") else line, file=sys.stderr)
        sys.exit(error.exit_status)
    if status:
        sys.exit(status)


def select_variants(matrix: Matrix, *, variant: str | None, every: bool) -> list[Variant]:
    """--variant NAME (repeatable with commas) or --all; neither is a usage error naming both."""
    if every == bool(variant):
        raise UsageError("say which image: --variant NAME (one of "
                         f"{', '.join(v.name for v in matrix.variants)}) or --all")
    if every:
        return list(matrix.variants)
    return [matrix.variant(name.strip()) for name in variant.split(",")]


def show_matrix(*, overlay: str | None) -> int:
    matrix = load_matrix(MATRIX_FILE, overlay=overlay)
    stamp = read_provenance(ROOT).stamp
    rows = [(v.name, v.base, v.python, f"{v.torch}/{v.torchvision}/{v.torchaudio}", v.cuda or "-",
             v.cudnn or "-", v.index, v.lock_path if lock_file(v).is_file() else "none",
             v.apt_snapshot or "live", ", ".join(image_tags(settings=matrix.image, variant=v, stamp=stamp)))
            for v in matrix.variants]
    print(render_table(["variant", "base", "python", "torch/vision/audio", "cuda", "cudnn", "index", "lock",
                        "apt snapshot", "tags"], rows))
    print(f"\nrepository: {matrix.image.repository}   from: {', '.join(str(s) for s in matrix.sources)}")
    return 0


def primary_reference(matrix: Matrix, variant: Variant) -> str:
    """The tag an image is known by (its first template), e.g. torchdev:2.0.1-cu118-py3.10."""
    return image_references(settings=matrix.image, variant=variant, stamp=read_provenance(ROOT).stamp)[0]


def lock_file(variant: Variant) -> Path:
    """Where the variant's lock lives: its `lock:` path (or locks/<name>.txt), relative to images.yaml."""
    return MATRIX_FILE.parent / variant.lock_path


def lock_input(variant: Variant) -> LockInput | None:
    """The variant's lock file with its hash, when it has one."""
    path = lock_file(variant)
    return LockInput(path=path, sha256=hashlib.sha256(path.read_bytes()).hexdigest()) if path.is_file() else None


def plans_for(matrix: Matrix, variants: list[Variant]) -> list[BuildPlan]:
    provenance = read_provenance(ROOT, inputs=BUILD_INPUTS)
    return [make_plan(matrix=matrix, variant=v, provenance=provenance, docker_dir=DOCKER_DIR, lock=lock_input(v))
            for v in variants]


def read_manifest(client, image: str) -> bytes:
    """The manifest an image carries (docker/write_manifest.py wrote it at build time)."""
    return client.containers.run(image, ["cat", MANIFEST_IN_IMAGE], remove=True, entrypoint=[])


def save_manifest(client, *, image_id: str, variant: str) -> Path:
    """Copy the image's own manifest next to the build logs, where tools on the host can read it."""
    path = REPORTS_DIR / "build" / f"{variant}.manifest.json"
    path.write_bytes(read_manifest(client, image_id))
    return path


def build(*, variant: str | None, every: bool, dry_run: bool, overlay: str | None, no_cache: bool = False,
          reproducible: bool = False) -> int:
    """Build the selected variants one after another; a failure does not stop the others."""
    matrix = load_matrix(MATRIX_FILE, overlay=overlay)
    plans = plans_for(matrix, select_variants(matrix, variant=variant, every=every))
    if dry_run:
        print("\n\n".join(describe_plan(plan) for plan in plans))
        return 0
    client = engine.connect()
    engine.require_buildx()
    results: list[BuildResult] = []
    for number, plan in enumerate(plans, start=1):
        print(f"==> [{number}/{len(plans)}] building {plan.variant.name} as {plan.primary_reference}", flush=True)
        results.append(run_build(plan, client=client, log_dir=REPORTS_DIR / "build", no_cache=no_cache,
                                 reproducible=reproducible))
        if results[-1].status == "built":
            save_manifest(client, image_id=results[-1].image_id, variant=plan.variant.name)
        if results[-1].status == "interrupted":
            break
    print("\n" + summary_table(results))
    for result in results:
        if result.status == "failed":
            print(f"torchdev: {result.variant} failed: {result.cause} (full log: {result.log})", file=sys.stderr)
    if any(result.status == "interrupted" for result in results):
        return 130
    return 1 if any(result.status != "built" for result in results) else 0


def list_images(*, overlay: str | None, manifest: str | None = None) -> int:
    matrix = load_matrix(MATRIX_FILE, overlay=overlay)
    client = engine.connect()
    if manifest:
        return show_manifest(client, matrix=matrix, variant=matrix.variant(manifest))
    found = built_images(client, repository=matrix.image.repository)
    if not found:
        print(f"no {matrix.image.repository} images yet: run `./dev build --variant NAME`")
        return 0
    print(images_table(found))
    return 0


def show_manifest(client, *, matrix: Matrix, variant: Variant) -> int:
    """The manifest an image carries: its base, lock, Python packages, and how many Debian packages."""
    reference = primary_reference(matrix, variant)
    smoke.require_image(client, reference, variant=variant.name)
    content = json.loads(read_manifest(client, reference))
    print(f"{reference}: base {content['base']['image']} (digest {content['base']['digest'] or 'not pinned'}), "
          f"lock sha256 {content['lock_sha256'] or 'none'}, {len(content['debian_packages'])} Debian packages")
    print(render_table(["python package", "version"],
                       [(p["name"], p["version"]) for p in content["python"]["packages"]]))
    return 0


def run_smoke(*, variant: str | None, every: bool, gpus: str, build_missing: bool, overlay: str | None,
              reports: str | None = None) -> int:
    """Run the smoke suite in each selected image; exit non-zero when any check fails or an image is missing."""
    matrix = load_matrix(MATRIX_FILE, overlay=overlay)
    variants = select_variants(matrix, variant=variant, every=every)
    client = engine.connect()
    request = smoke.parse_gpus(gpus, engine_has_gpus=engine.has_nvidia_runtime(client))
    reports_dir = Path(reports) if reports else REPORTS_DIR / "smoke"
    summaries: dict[str, dict | str] = {}
    for chosen in variants:
        reference = primary_reference(matrix, chosen)
        if build_missing and image_id_or_none(client, reference) is None:
            build(variant=chosen.name, every=False, dry_run=False, overlay=overlay)
        try:
            smoke.require_image(client, reference, variant=chosen.name)
        except TorchdevError as missing:
            if not every:
                raise
            summaries[chosen.name] = "not built"
            print(f"torchdev: {missing}", file=sys.stderr)
            continue
        print(f"==> smoke {chosen.name} in {reference} (gpus: {gpus})", flush=True)
        summaries[chosen.name] = smoke.run_suite(client, image=reference, variant=chosen, gpus=request,
                                                 suite_dir=SMOKE_DIR, reports_dir=reports_dir)
    print("\n" + smoke.summary_table(summaries) + f"\n\nreports: {reports_dir}")
    problems = smoke.failures(summaries)
    for line in problems:
        print(f"torchdev: failed: {line}", file=sys.stderr)
    return 1 if problems else 0


def up(*, variant: str, overlay: str | None) -> int:
    """The main job: build one image (a no-op when it is current), then train in it through compose."""
    status = build(variant=variant, every=False, dry_run=False, overlay=overlay)
    if status:
        return status
    repository = load_matrix(MATRIX_FILE, overlay=overlay).image.repository
    env = {**os.environ, "VARIANT": variant, "TORCHDEV_REPOSITORY": repository}
    return subprocess.run(["docker", "compose", "run", "--rm", "train"], cwd=ROOT, env=env, check=False).returncode


def verify_repro(*, variant: str, overlay: str | None) -> int:
    """Build twice with no layer cache into OCI archives; 0 only when both digests are equal."""
    matrix = load_matrix(MATRIX_FILE, overlay=overlay)
    plan = plans_for(matrix, [matrix.variant(variant)])[0]
    engine.connect()
    engine.require_buildx()
    with tempfile.TemporaryDirectory(prefix="torchdev-repro-") as scratch:
        archives, digests = [], []
        for number in (1, 2):
            build_dir = Path(scratch) / f"build{number}"
            build_dir.mkdir()
            archives.append(build_dir / "image.oci.tar")
            print(f"==> [{number}/2] reproducible build of {variant}, no layer cache", flush=True)
            log_path = REPORTS_DIR / "build" / f"{variant}.repro{number}.log"
            status, lines, metadata = run_buildx(plan, scratch=build_dir, log_path=log_path, no_cache=True,
                                                 oci_archive=archives[-1])
            if status != 0:
                raise TorchdevError(f"build {number} of {variant} failed: {failure_cause(lines)} (log: {log_path})")
            digests.append(json.loads(metadata.read_text())["containerimage.digest"])
        print("\n" + render_table(["build", "digest"], [(1, digests[0]), (2, digests[1])]))
        if digests[0] != digests[1]:
            print(describe_differences(archives[0], archives[1]))
            raise TorchdevError(f"{variant} is not reproducible: two builds from the same inputs gave two digests")
    if plan.variant.digest and plan.variant.digest != digests[0]:
        raise TorchdevError(f"{variant} builds reproducibly as {digests[0]}, but images.yaml records "
                            f"{plan.variant.digest}: an input changed (lock, base, Dockerfile, SOURCE_DATE_EPOCH)")
    print(f"\n{variant} is reproducible: {digests[0]}")
    return 0


def pin(*, variant: str | None, every: bool, overlay: str | None) -> int:
    """Resolve each selected base to its registry digest and write it where that base is declared."""
    data, sources = load_sources(MATRIX_FILE, overlay=overlay)
    matrix = parse_matrix(data, sources=sources)
    client = engine.connect()
    results = [bases.pin_variant(client, variant=chosen, origin=data["variants"][chosen.name].origin("base"))
               for chosen in select_variants(matrix, variant=variant, every=every)]
    print(render_table(["variant", "base", "outcome", "detail"],
                       [(r.variant, r.base, r.outcome, r.detail) for r in results]))
    for result in results:
        if result.outcome == "failed":
            print(f"torchdev: {result.variant}: {result.detail}", file=sys.stderr)
    return 1 if any(result.outcome == "failed" for result in results) else 0


def save_bases(*, variant: str | None, every: bool, overlay: str | None, to_registry: str | None,
               to_archive: str | None) -> int:
    """Copy the selected variants' pinned bases to a registry or into archives the user controls."""
    if bool(to_registry) == bool(to_archive):
        raise UsageError("say where the bases go: --to-registry HOST[:PORT]/PREFIX or --to-archive FOLDER")
    matrix = load_matrix(MATRIX_FILE, overlay=overlay)
    chosen = select_variants(matrix, variant=variant, every=every)
    unpinned = [v.name for v in chosen if not bases.DIGEST_RE.search(v.base)]
    if unpinned:
        raise TorchdevError(f"the base of {', '.join(unpinned)} is not pinned by digest: run `./dev pin` first")
    client = engine.connect()
    if to_archive:
        written = bases.save_archives(client, bases=sorted({v.base for v in chosen}), folder=Path(to_archive))
        print("\n".join(f"saved {path} (restore: docker load -i {path})" for path in written))
        return 0
    rows = [(v.name, v.base, bases.push_base(client, base=v.base, registry=to_registry)) for v in chosen]
    print(render_table(["variant", "base", "copy (use as `base:` in an overlay)"], rows))
    return 0
