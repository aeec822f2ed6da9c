"""The commands behind tasks.py: each loads the matrix once, connects to the engine, prints a table.

A command never calls another for its side effects: `smoke --build` and `up` build through the same
`build_all` as `build`, and act on what it returns.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable

from torchdev import bases, build as builds, k8s as kube, lock as locks, push as pushes, repro, smoke
from torchdev.doctor import run_doctor
from torchdev.engine import Engine, ImageRef, require_buildx
from torchdev.errors import TorchdevError, UsageError
from torchdev.files import write_atomically
from torchdev.gpus import check_option, find_access, memlock_limit, request_for
from torchdev.images import built_images, images_table
from torchdev.matrix import Matrix, Variant, load_matrix, load_sources, parse_matrix
from torchdev.plan import BuildPlan, describe_plan
from torchdev.project import (MANIFEST_IN_IMAGE, MATRIX_FILE, REPORTS_DIR, ROOT, SMOKE_DIR, lock_file,
                              native_platform, plans_for, select_flavours, select_platforms, select_variants)
from torchdev.repro import describe_differences
from torchdev.table import render_table
from torchdev.yamlsource import SourcedDict


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


def show_matrix(*, overlay: str | None) -> int:
    matrix = load_matrix(MATRIX_FILE, overlay=overlay)
    plans = plans_for(matrix, list(matrix.variants), list(matrix.flavours))
    rows = [(p.variant.name, p.flavour.name, ", ".join(map(str, p.variant.platforms)), p.build_args["BASE_IMAGE"],
             p.variant.python, f"{p.variant.torch}/{p.variant.torchvision}/{p.variant.torchaudio}",
             p.variant.cuda or "-", p.variant.cudnn or "-", p.variant.index, locks_cell(p.variant),
             p.variant.apt_snapshot or "live", toolchain(p),
             ", ".join(str(ImageRef.parse(reference).tag) for reference in p.references)) for p in plans]
    print(render_table(["variant", "flavour", "platforms", "base", "python", "torch/vision/audio", "cuda", "cudnn",
                        "index", "locks", "apt snapshot", "toolchain", "tags"], rows))
    print(f"\nrepository: {matrix.image.repository}   from: {', '.join(str(s) for s in matrix.sources)}")
    return 0


def locks_cell(variant: Variant) -> str:
    """The variant's lock per platform, or none (such builds resolve at build time)."""
    paths = [variant.lock_path_for(platform) if lock_file(variant, platform).is_file() else "none"
             for platform in variant.platforms]
    return ", ".join(paths)


def toolchain(plan: BuildPlan) -> str:
    """What a flavour adds, in a few words: its packages, and nvcc's CUDA release for a CUDA variant."""
    if plan.flavour.is_runtime:
        return "-"
    args = plan.build_args
    nvcc = f"nvcc {args['CUDA_RELEASE']}" if args["CUDA_RELEASE"] else ("no nvcc" if plan.variant.cuda else "")
    return ", ".join(filter(None, [*plan.flavour.apt_packages, *plan.flavour.pip_packages, nvcc]))


def save_manifest(engine: Engine, *, image_id: str, image: str) -> Path:
    """Copy the image's own manifest next to the build logs, where tools on the host can read it."""
    path = REPORTS_DIR / "build" / f"{image}.manifest.json"
    write_atomically(path, engine.output(image_id, "cat", MANIFEST_IN_IMAGE))
    return path


def check_locks(data: SourcedDict, matrix: Matrix, plans: list[BuildPlan]) -> None:
    """Stop before any build when a variant's lock for a platform it is built for does not fit, with the one line
    `lock --check` would give."""
    problems = []
    for plan in plans:
        declared = data["variants"][plan.variant.name]
        overlay_owns_lock = "lock" in declared and declared.origin("lock").file != str(MATRIX_FILE)
        problems += [locks.unfit_lock(matrix=matrix, variant=plan.variant, platform=platform,
                                      overlay_owns_lock=overlay_owns_lock) for platform in plan.platforms]
    if any(problems):
        raise TorchdevError("\n".join(dict.fromkeys(problem for problem in problems if problem)))


def emulation_notes(plans: list[BuildPlan]) -> list[str]:
    """A line per image built for a platform this host does not run natively: qemu makes it several times slower."""
    native = native_platform()
    return [f"{plan.name}: {platform} is not this host's platform ({native}): it builds and runs under emulation "
            "(qemu), several times slower" for plan in plans for platform in plan.platforms if platform != native]


def build_and_report(engine: Engine, plans: list[BuildPlan], *, no_cache: bool = False) -> list[builds.BuildResult]:
    """Build, save each new image's manifest, print the summary table and each failure's cause."""
    require_buildx()
    results = builds.build_all(engine, plans, log_dir=REPORTS_DIR / "build", no_cache=no_cache)
    for result in results:
        if result.status is builds.BuildStatus.BUILT:
            save_manifest(engine, image_id=result.image_id, image=result.image)
    print("\n" + builds.summary_table(results))
    for result in results:
        if result.status is builds.BuildStatus.FAILED:
            print(f"torchdev: {result.image} failed: {result.cause} (full log: {result.log})", file=sys.stderr)
    return results


def _load(overlay: str | None) -> tuple[SourcedDict, Matrix]:
    """The merged YAML (each key knowing its file and line) and the matrix validated from it."""
    data, sources = load_sources(MATRIX_FILE, overlay=overlay)
    return data, parse_matrix(data, sources=sources)


def build(*, variant: str | None, every: bool, dry_run: bool, overlay: str | None, no_cache: bool = False,
          reproducible: bool = False, flavour: str | None = None, platform: str | None = None) -> int:
    """Build the selected variants in the selected flavours one after another; a failure does not stop the others.
    `reproducible` is accepted for the scripts that pass --reproducible: every build is reproducible now."""
    data, matrix = _load(overlay)
    chosen = select_variants(matrix, variant=variant, every=every)
    plans = plans_for(matrix, chosen, select_flavours(matrix, flavour=flavour, every=every), platform=platform)
    if dry_run:
        print("\n\n".join(describe_plan(plan) for plan in plans))
        return 0
    check_locks(data, matrix, plans)
    for note in emulation_notes(plans) + ([REPRODUCIBLE_NOTE] if reproducible else []):
        print(f"note: {note}")
    engine = Engine.connect()
    return builds.exit_status(build_and_report(engine, plans, no_cache=no_cache))


def lock(*, variant: str | None, every: bool, check: bool, overlay: str | None, platform: str | None = None) -> int:
    """Every platform of each variant unless --platform names some (a lock is per platform: the wheels differ)."""
    matrix = load_matrix(MATRIX_FILE, overlay=overlay)
    chosen = select_variants(matrix, variant=variant, every=every)
    native = native_platform()
    return locks.lock_variants(matrix, chosen, check=check, platforms=lambda v: select_platforms(
        v, platform=platform or "all", native=native))


def doctor(*, overlay: str | None) -> int:
    return run_doctor(matrix=load_matrix(MATRIX_FILE, overlay=overlay))


def list_images(*, overlay: str | None, manifest: str | None = None, flavour: str | None = None) -> int:
    matrix = load_matrix(MATRIX_FILE, overlay=overlay)
    engine = Engine.connect()
    if manifest:
        flavours = select_flavours(matrix, flavour=flavour, every=False)
        return show_manifest(engine, plan=plans_for(matrix, [matrix.variant(manifest)], flavours[:1])[0])
    found = built_images(engine, repository=matrix.image.repository)
    if not found:
        print(f"no {matrix.image.repository} images yet: run `./dev build --variant NAME`")
        return 0
    print(images_table(found))
    return 0


def show_manifest(engine: Engine, *, plan: BuildPlan) -> int:
    """The manifest an image carries: its base, lock, Python packages, and how many Debian packages."""
    reference = plan.primary_reference
    if engine.image_id(reference) is None:
        raise TorchdevError(smoke.missing_image(plan))
    content = json.loads(engine.output(reference, "cat", MANIFEST_IN_IMAGE))
    print(f"{reference}: base {content['base']['image']} (digest {content['base']['digest'] or 'not pinned'}), "
          f"lock sha256 {content['lock_sha256'] or 'none'}, {len(content['debian_packages'])} Debian packages")
    print(render_table(["python package", "version"],
                       [(p["name"], p["version"]) for p in content["python"]["packages"]]))
    return 0


def run_smoke(*, variant: str | None, every: bool, gpus: str, build_missing: bool, overlay: str | None,
              reports: str | None = None, flavour: str | None = None, platform: str | None = None,
              checks: str | None = None) -> int:
    """Run the smoke suite in each selected image; exit non-zero when any check fails or an image is missing."""
    data, matrix = _load(overlay)
    chosen = select_variants(matrix, variant=variant, every=every)
    check_option(gpus, chosen)
    selected_checks = smoke.select_checks(checks)
    memlock = memlock_limit(dict(os.environ))
    plans = plans_for(matrix, chosen, select_flavours(matrix, flavour=flavour, every=every), platform=platform)
    engine = Engine.connect()
    reports_dir = Path(reports) if reports else REPORTS_DIR / "smoke"
    not_built: dict[str, str] = {}
    missing = [plan for plan in plans if engine.image_id(plan.primary_reference) is None]
    if build_missing and missing:
        check_locks(data, matrix, missing)
        not_built = {r.image: f"its build failed: {r.cause}" for r in build_and_report(engine, missing)
                     if r.status is not builds.BuildStatus.BUILT}
    cuda_images = [p.primary_reference for p in plans if p.variant.cuda and engine.image_id(p.primary_reference)]
    access = find_access(engine, probe_image=cuda_images[0] if cuda_images and gpus == "auto" else None)
    requests = {plan.name: request_for(plan.variant, gpus, access) for plan in plans}
    runs = smoke.run_all(engine, plans, gpus=requests, suite_dir=SMOKE_DIR, reports_dir=reports_dir,
                         stop_at_missing=not (every or build_missing), not_built=not_built, memlock=memlock,
                         checks=selected_checks)
    print("\n" + smoke.summary_table(runs) + f"\n\nreports: {reports_dir}")
    for note in smoke.untested_gpus(runs, plans=plans, gpus=requests, access=access):
        print(f"note: {note}")
    problems = smoke.failures(runs)
    for line in problems:
        print(f"torchdev: failed: {line}", file=sys.stderr)
    return 1 if problems else 0


def up(*, variant: str, overlay: str | None) -> int:
    """The main job: build one image (a no-op when it is current), then train in it through compose."""
    data, matrix = _load(overlay)
    chosen = matrix.variant(variant)
    plans = plans_for(matrix, [chosen])
    check_locks(data, matrix, plans)
    engine = Engine.connect()
    status = builds.exit_status(build_and_report(engine, plans))
    if status:
        return status
    env = {**os.environ, "VARIANT": variant, "TORCHDEV_REPOSITORY": matrix.image.repository}
    return engine.compose("run", "--rm", "train", cwd=ROOT, env=env)


REPRODUCIBLE_NOTE = ("--reproducible is no longer needed: every build gives the same image ID from the same inputs "
                      "(`./dev verify-repro` proves it); the flag changes nothing")


def verify_repro(*, variant: str, overlay: str | None) -> int:
    """Build twice with no layer cache into the engine; 0 only when both give one image ID. When they differ, both are
    saved and compared down to the file. Neither build moves a tag; what they made is removed unless a tag names it."""
    matrix = load_matrix(MATRIX_FILE, overlay=overlay)
    plan = plans_for(matrix, [matrix.variant(variant)])[0]
    engine = Engine.connect()
    require_buildx()
    made: list[repro.UncachedBuild] = []
    try:
        for number in (1, 2):
            print(f"==> [{number}/2] {plan.name} without layer cache (downloads stay cached)", flush=True)
            made.append(_uncached_build(engine, plan, number))
        first, second = made
        print("\n" + render_table(["build", "image ID", "config digest", "RUN steps run"],
                                  [(n, b.image_id, b.config_digest, len(b.steps)) for n, b in enumerate(made, 1)]))
        if not first.steps or second.steps != first.steps:
            raise TorchdevError(f"build 2 ran {len(second.steps)} of build 1's {len(first.steps)} RUN steps: BuildKit "
                                "shares a step with another build of the same step on this engine even without cache, "
                                "so nothing was compared; run verify-repro again when no other build of it is running")
        if first.image_id != second.image_id:
            with tempfile.TemporaryDirectory(prefix="torchdev-repro-") as scratch:
                print("\n" + describe_differences(*(_saved(engine, b.image_id, Path(scratch)) for b in made)))
            raise TorchdevError(f"{plan.name} is not reproducible: two builds from the same inputs gave two image IDs")
        mismatch = builds.digest_mismatch(plan, first.image_id, first.config_digest)
        if mismatch:
            raise TorchdevError(mismatch.replace("the build gave", f"{plan.name} builds reproducibly as", 1))
        print(f"\n{plan.name} is reproducible: {first.image_id} (config {first.config_digest})")
        print(immutable_tag_note(engine, plan, first.image_id))
    finally:
        for image_id in {b.image_id for b in made}:
            builds.discard_unless_tagged(engine, image_id)
    return 0


def _uncached_build(engine: Engine, plan: BuildPlan, number: int) -> repro.UncachedBuild:
    log_path = REPORTS_DIR / "build" / f"{plan.name}.repro{number}.log"
    with tempfile.TemporaryDirectory(prefix="torchdev-repro-") as scratch:
        status, lines, metadata = builds.run_buildx(engine, plan, scratch=Path(scratch), log_path=log_path,
                                                    no_cache=True)
        if status != 0 or not metadata.is_file():
            raise TorchdevError(f"build {number} of {plan.name} failed: {builds.failure_cause(lines)} "
                                f"(log: {log_path})")
        return repro.UncachedBuild(builds.built_image_id(engine, metadata), builds.config_digest(metadata),
                                   repro.executed_steps(lines))


def _saved(engine: Engine, image_id: str, folder: Path) -> Path:
    """`docker save` of one image into `folder`: an OCI archive with the layers as the engine stores them."""
    path = folder / f"{image_id.split(':')[-1][:12]}.tar"
    with path.open("wb") as out:
        for chunk in engine.save(image_id, named=False):
            out.write(chunk)
    return path


def immutable_tag_note(engine: Engine, plan: BuildPlan, image_id: str) -> str:
    """Whether the image the immutable tag names (built earlier from the same inputs) is this one: then any build of
    these inputs, cached or not, takes its tags."""
    if not plan.immutable_references:
        return ""
    reference = plan.immutable_references[0]
    current = engine.image_id(reference)
    if not current:
        return f"no image is tagged {reference} yet: `./dev build --variant {plan.variant.name}` makes this one"
    if current == image_id:
        return f"{reference} names this very image"
    return (f"{reference} names another image, {current[:19]}, built from the same declared inputs: something not "
            f"pinned has changed since ({', '.join(builds.UNPINNED_INPUTS)}), and builds of these inputs are refused "
            f"that tag until it is removed (`docker image rm {reference}`)")


def pin(*, variant: str | None, every: bool, overlay: str | None) -> int:
    """Resolve each selected base to its registry digest and write it where that base is declared."""
    data, matrix = _load(overlay)
    engine = Engine.connect()
    results = [bases.pin_variant(engine, variant=chosen, origin=data["variants"][chosen.name].origin("base"))
               for chosen in select_variants(matrix, variant=variant, every=every)]
    print(render_table(["variant", "base", "outcome", "detail"],
                       [(r.variant, r.base, r.outcome.value, r.detail) for r in results]))
    failed = [result for result in results if result.outcome is bases.PinOutcome.FAILED]
    for result in failed:
        print(f"torchdev: {result.variant}: {result.detail}", file=sys.stderr)
    return 1 if failed else 0


def save_bases(*, variant: str | None, every: bool, overlay: str | None, to_registry: str | None,
               to_archive: str | None) -> int:
    """Copy the selected variants' pinned bases to a registry or into archives the user controls."""
    if bool(to_registry) == bool(to_archive):
        raise UsageError("say where the bases go: --to-registry HOST[:PORT]/PREFIX or --to-archive FOLDER")
    matrix = load_matrix(MATRIX_FILE, overlay=overlay)
    chosen = select_variants(matrix, variant=variant, every=every)
    unpinned = [v.name for v in chosen if not bases.is_pinned(v.base)]
    if unpinned:
        raise TorchdevError(f"the base of {', '.join(unpinned)} is not pinned by digest: run `./dev pin` first")
    engine = Engine.connect()
    if to_archive:
        written = bases.save_archives(engine, bases=sorted({v.base for v in chosen}), folder=Path(to_archive))
        print("\n".join(f"saved {path} (restore: docker load -i {path})" for path in written))
        return 0
    rows = [(v.name, v.base, bases.push_base(engine, base=v.base, registry=to_registry)) for v in chosen]
    print(render_table(["variant", "base", "copy (use as `base:` in an overlay)"], rows))
    return 0


def push(*, variant: str | None, every: bool, flavour: str | None, overlay: str | None, to: str | None = None,
         compression: str = "gzip", force: bool = False) -> int:
    """Push each selected image (every flavour unless --flavour) with all its tags; one line per image with its
    digest, and reports/push/<image>.json once all its tags are in the registry."""
    if compression not in pushes.COMPRESSIONS:
        raise UsageError(f"--compression {compression}: use one of {', '.join(pushes.COMPRESSIONS)}")
    matrix = load_matrix(MATRIX_FILE, overlay=overlay)
    repository = pushes.destination(to or matrix.image.repository)
    plans = plans_for(matrix, select_variants(matrix, variant=variant, every=every),
                      select_flavours(matrix, flavour=flavour, every=True))
    engine = Engine.connect()
    reports_dir = REPORTS_DIR / "push"
    results = []
    for plan in plans:
        pushes.report_path(reports_dir, plan.name).unlink(missing_ok=True)  # a stale entry never reads as this push
        print(f"==> pushing {plan.name} to {repository} ({compression} layers)", flush=True)
        results.append(pushes.push_image(engine, plan, repository=repository, compression=compression,
                                         smoke_dir=REPORTS_DIR / "smoke", force=force,
                                         gzipped=pushes.read_gzip_digests(reports_dir)))
        if results[-1].status in (pushes.PushStatus.PUSHED, pushes.PushStatus.UNCHANGED):
            pushes.write_report(reports_dir, results[-1])
            if compression == "gzip":
                pushes.record_gzip_digest(reports_dir, engine.image_id(plan.primary_reference), results[-1])
            print("\n".join(results[-1].pinned()), flush=True)
    print("\n" + pushes.summary_table(results))
    failed = [r for r in results if r.status in (pushes.PushStatus.REFUSED, pushes.PushStatus.FAILED)]
    for result in failed:
        print(f"torchdev: {result.image}: {result.status.value}: {result.detail}", file=sys.stderr)
    return 1 if failed else 0


def k8s(*, variant: str, image: str | None, nodes: int, gpus: str | int | None, nproc: str | int | None,
        name: str | None, shm_size: str, train_args: str, out: str | None, overlay: str | None) -> int:
    """Without --image: the job image's Dockerfile, FROM the pushed torchdev image by digest, and what to run next.
    With --image: the PyTorchJob and the Indexed Job for that image."""
    gpus, nproc = _count("--gpus", gpus), _count("--nproc", nproc)
    chosen = load_matrix(MATRIX_FILE, overlay=overlay).variant(variant)
    name = name or f"torchdev-{chosen.name}"
    folder = Path(out) if out else REPORTS_DIR / "k8s" / name
    if not image:
        base = kube.pushed_reference(REPORTS_DIR / "push", chosen.name)
        dockerfile = folder / "Dockerfile"
        write_atomically(dockerfile, kube.job_dockerfile(base))
        print(f"wrote {dockerfile}: FROM {base}, plus train/\n"
              f"next: docker build -f {dockerfile} -t REGISTRY/NAME . && docker push REGISTRY/NAME\n"
              f"then: ./dev k8s --variant {chosen.name} --image REGISTRY/NAME@sha256:<the digest docker push printed>")
        return 0
    if gpus and not chosen.cuda:
        raise UsageError(f"--gpus {gpus}: {chosen.name} is a CPU variant; use a CUDA variant, or --nproc for CPU "
                         "processes")
    job = kube.train_job(name=name, image=image, nodes=nodes, gpus_per_node=1 if gpus is None and chosen.cuda
                         else gpus or 0, nproc_per_node=nproc, shm_size=shm_size, train_args=train_args)
    for file_name, text in kube.manifests(job, variant=chosen.name).items():
        write_atomically(folder / file_name, text)
        print(f"wrote {folder / file_name}")
    print(f"apply one: kubectl apply -f {folder / 'pytorchjob.yaml'}   (Kubeflow training operator)\n"
          f"       or: kubectl apply -f {folder / 'indexed-job.yaml'}   (plain Kubernetes)")
    return 0


def _count(flag: str, value: str | int | None) -> int | None:
    try:
        return None if value is None else int(value)
    except ValueError:
        raise UsageError(f"{flag} {value}: a whole number") from None
