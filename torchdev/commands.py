"""The commands behind tasks.py, one function each: load the matrix, choose plans, call the features, return a result
(torchdev.results), which torchdev.presenter shows.

Each takes the Context first (torchdev.context): the checkout's paths, the engine, the environment and the output come
from there, and the engine is connected only once a command needs it. A command prints nothing itself but progress
through the context's output while long work runs. A command never calls another for its side effects: `smoke
--build` and `up` build through the same `build.build_images` as `build`, and act on what it returns.

torchdev.signing is imported only by the commands that use it: spdx-tools, behind its SBOM, takes a third of a second
to import, which every other command would pay.
"""
from __future__ import annotations

import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Mapping

from torchdev import (bases, build as builds, capture as captures, doctor as doctors, k8s as kube, lock as locks,
                      processes, push as pushes, repro, smoke, trust)
from torchdev.checkout import read_logins, read_plan_inputs, read_plans
from torchdev.context import Context
from torchdev.credentials import Login
from torchdev.engine import ContainerEngine, ImageRef, require_buildx
from torchdev.errors import RUNTIME, USAGE, Problem, TorchdevError, UsageError, joined
from torchdev.files import check_output_folder, check_outputs, write_atomically
from torchdev.grammar import reference_problem, repository_problem
from torchdev.gpuprobe import find_access
from torchdev.gpus import GPUS_AUTO, GpuRequest, check_option, parse_option, request_for
from torchdev.images import built_images, image_manifest
from torchdev.matrix import RUNTIME as RUNTIME_FLAVOUR, Flavour, Matrix, Variant, load_matrix, with_text
from torchdev.oci import COMPRESSIONS
from torchdev.plan import BuildPlan
from torchdev.options import CONTRADICTION, count, not_empty, one_name
from torchdev.platforms import Platform, parse_list
from torchdev.profile import memlock_limit
from torchdev.project import plans_for, select_flavours, select_platforms, select_variants
from torchdev.records import PushRecord
from torchdev.yamlsource import decode
from torchdev.results import (Attestation, BaseExists, BuildReport, CaptureReport, DoctorReport, DryRun,
                              Exited, ImageList,
                              ImageManifest, JobDockerfile, JobManifests, LockReport, MatrixView, MirroredBases,
                              PinReport, PushReport, ReproReport, SavedArchives, SmokeReport, Verification)


NO_DESTINATION = Problem("say where the bases go", "--to-registry HOST[:PORT]/PREFIX or --to-archive FOLDER",
                         UsageError, USAGE)
NOT_PINNED = Problem("the base of {variants} is not pinned by digest", "run `./dev pin` first", TorchdevError, RUNTIME)
BAD_COMPRESSION = Problem("--compression {value}: not a layer compression", "use one of {known}", UsageError, USAGE)
GPUS_FOR_CPU = Problem("--gpus {gpus}: {variant} is a CPU variant", "use a CUDA variant, or --nproc for CPU processes",
                       UsageError, USAGE)
REPRO_BUILD_FAILED = Problem("build {number} of {variant} failed: {cause}", "see its log, {log}", TorchdevError,
                             RUNTIME)
NOT_A_PUSHED_IMAGE = Problem("{reference}: not a pushed image",
                             "name a pushed image, REGISTRY/NAME:TAG or REGISTRY/NAME@sha256:...", UsageError, USAGE)
ONE_THING = Problem("--manifest, --sbom and --provenance each show one thing", "name one of them", UsageError, USAGE)
OUT_WITHOUT_ATTESTATION = Problem("--out writes the SBOM or the provenance",
                                  "use it with --sbom VARIANT or --provenance VARIANT", UsageError, USAGE)
BAD_IMAGE_NAME = Problem("{option} {value}: not {what}", "{fix}", UsageError, USAGE)
NOTHING_TO_DECLARE = Problem("container {name} added nothing that can be declared{why}",
                             "pip install the packages from an index in the container, then capture again", UsageError,
                             USAGE)


def _load(ctx: Context, overlay: str | None) -> Matrix:
    return load_matrix(ctx.paths.matrix_file, overlay=overlay, environ=ctx.environ)


def _plans(ctx: Context, matrix: Matrix, variants: list[Variant], flavours: list[Flavour] | None = None, *,
           platform: str | None = None, unlocked: bool = False) -> list[BuildPlan]:
    return read_plans(ctx.paths, matrix, variants, flavours, platform=platform, environ=ctx.environ,
                      native=ctx.native_platform, unlocked=unlocked)


def show_matrix(ctx: Context, *, overlay: str | None, wide: bool = False) -> MatrixView:
    """Every variant in every flavour; on a terminal the columns that fit it, unless --wide."""
    matrix = _load(ctx, overlay)
    inputs = read_plan_inputs(ctx.paths, matrix, environ=ctx.environ, native=ctx.native_platform)
    plans = plans_for(matrix, list(matrix.variants), list(matrix.flavours), inputs=inputs)
    locked = frozenset((name, lock.platform) for name, found in inputs.locks.items() for lock in found)
    return MatrixView(matrix, tuple(plans), locked, width=None if wide else ctx.width)


def build(ctx: Context, *, variant: str | None, every: bool, dry_run: bool, overlay: str | None,
          no_cache: bool = False, reproducible: bool = False, flavour: str | None = None,
          platform: str | None = None, unlocked: bool = False) -> DryRun | BuildReport:
    """Build the selected variants in the selected flavours one after another; a failure does not stop the others.
    `reproducible` is accepted for the scripts that pass --reproducible: every build is reproducible now. A variant
    without a lock is refused unless `unlocked` (--unlocked) says to let pip resolve at build time."""
    matrix = _load(ctx, overlay)
    chosen = select_variants(matrix, variant=variant, every=every)
    plans = _plans(ctx, matrix, chosen, select_flavours(matrix, flavour=flavour, every=every), platform=platform,
                   unlocked=unlocked)
    locks.require_fitting_locks(matrix, plans)  # a dry run checks what a build checks before it starts
    if dry_run:
        return DryRun(tuple(plans))
    notes = builds.emulation_notes(plans, native=ctx.native_platform) + ([REPRODUCIBLE_NOTE] if reproducible else [])
    for note in notes:
        print(f"note: {note}", file=ctx.out)
    return _build(ctx, ctx.engine(), plans, no_cache=no_cache)


def _build(ctx: Context, engine: ContainerEngine, plans: list[BuildPlan], *, no_cache: bool = False) -> BuildReport:
    """The plans built (build.build_images); interrupted, the table of how far they got is shown before the
    interrupt goes on to the runner, which says so in one line."""
    results: list[builds.BuildResult] = []
    try:
        builds.build_images(engine, plans, log_dir=ctx.paths.reports.build, no_cache=no_cache, out=ctx.out,
                            results=results)
    except KeyboardInterrupt:
        ctx.show(BuildReport(tuple(results)))
        raise
    return BuildReport(tuple(results))


def lock(ctx: Context, *, variant: str | None, every: bool, check: bool, overlay: str | None,
         platform: str | None = None) -> LockReport:
    """Every variant unless --variant names some, and every platform of each unless --platform does (a lock is per
    platform: the wheels differ)."""
    matrix = _load(ctx, overlay)
    chosen = select_variants(matrix, variant=variant, every=every or variant is None)
    logins = () if check else read_logins(matrix, ctx.environ)
    return LockReport(tuple(locks.lock_variants(matrix, chosen, check=check, out=ctx.out, platforms=lambda v: (
        select_platforms(v, platform=platform or "all", native=ctx.native_platform)), logins=logins,
        environ=ctx.environ)))


def doctor(ctx: Context, *, overlay: str | None, wide: bool = False) -> DoctorReport:
    """The host checked for the matrix's CUDA variants (their built images say what they need)."""
    matrix = _load(ctx, overlay)
    plans = _plans(ctx, matrix, [v for v in matrix.variants if v.cuda])
    return DoctorReport(tuple(doctors.diagnose(matrix, plans, connect=ctx.connect, native=ctx.native_platform,
                                               environ=ctx.environ)), width=None if wide else ctx.width)


def list_images(ctx: Context, *, overlay: str | None, manifest: str | None = None, flavour: str | None = None,
                sbom: str | None = None, provenance: str | None = None,
                out: str | None = None) -> ImageList | ImageManifest | Attestation:
    manifest, sbom = not_empty("--manifest", manifest), not_empty("--sbom", sbom)
    provenance, out = not_empty("--provenance", provenance), not_empty("--out", out)
    if sum(value is not None for value in (manifest, sbom, provenance)) > 1:
        raise ONE_THING()
    if out is not None and sbom is None and provenance is None:
        raise OUT_WITHOUT_ATTESTATION()
    if flavour is not None and manifest is None and sbom is None and provenance is None:
        raise CONTRADICTION(first="--flavour", second="a list of every image", fix="add --manifest VARIANT (or "
                            "--sbom, --provenance) to see one flavour's, or leave --flavour out")
    matrix = _load(ctx, overlay)
    chosen = matrix.variant(one_name("--manifest", manifest)) if manifest is not None else None
    engine = ctx.engine()
    attested = sbom or provenance
    if attested:
        plan = _plans(ctx, matrix, [matrix.variant(one_name("--sbom" if sbom else "--provenance", attested))],
                      select_flavours(matrix, flavour=flavour, every=False)[:1])[0]
        if out is not None:
            check_outputs([Path(out)])
        return _attestation(ctx, engine, plan, kind="sbom" if sbom else "provenance", out=out, matrix=matrix)
    if chosen:
        flavours = select_flavours(matrix, flavour=flavour, every=False)
        plan = _plans(ctx, matrix, [chosen], flavours[:1])[0]
        if engine.image_id(plan.primary_reference) is None:
            raise smoke.NOT_BUILT(**smoke.missing_image_fields(plan))
        return ImageManifest(plan.primary_reference, image_manifest(engine, plan.primary_reference,
                                                                    variant=chosen.name))
    return ImageList(matrix.image.repository, tuple(built_images(engine, repository=matrix.image.repository)))


def _attestation(ctx: Context, engine: ContainerEngine, plan: BuildPlan, *, kind: str, out: str | None,
                 matrix: Matrix) -> Attestation:
    """The image's SBOM (SPDX 2.3 JSON) or provenance (SLSA v1 statement), written to --out when given: as pushed
    when reports/push records this build, else as the engine holds it."""
    from torchdev import signing

    described = signing.describe_local(engine, plan, reports_dir=ctx.paths.reports.push)
    text = (signing.render_sbom(engine, plan, described) if kind == "sbom"
            else signing.to_json(signing.provenance_statement(engine, plan, described, checkout=signing.Checkout(
                ctx.paths.root, ctx.paths.docker, matrix.sources))))
    if out:
        write_atomically(Path(out), text)
    return Attestation(kind, text, described.repository, described.digest, described.pushed,
                       Path(out) if out else None)


def run_smoke(ctx: Context, *, variant: str | None, every: bool, gpus: str, build_missing: bool,
              overlay: str | None, reports: str | None = None, flavour: str | None = None,
              platform: str | None = None, checks: str | None = None, unlocked: bool = False) -> SmokeReport:
    """Run the smoke suite in each selected image (building the missing ones first with --build, --unlocked letting
    a variant without a lock be built); it fails when any check fails or an image is missing."""
    reports_dir = Path(not_empty("--reports", reports)) if reports is not None else ctx.paths.reports.smoke
    check_output_folder(reports_dir)
    matrix = _load(ctx, overlay)
    chosen = select_variants(matrix, variant=variant, every=every)
    gpu_count = parse_option(gpus)
    check_option(gpu_count, chosen)
    selected_checks = smoke.select_checks(checks)
    memlock = memlock_limit(ctx.environ)
    plans = _plans(ctx, matrix, chosen, select_flavours(matrix, flavour=flavour, every=every), platform=platform,
                   unlocked=unlocked)
    check_outputs(smoke.report_paths(plans, reports_dir))
    engine = ctx.engine()
    images = smoke.image_ids(engine, plans)
    not_built: dict[str, str] = {}
    missing = [plan for plan in plans if images[plan.name] is None]
    if build_missing and missing:
        locks.require_fitting_locks(matrix, missing)
        report = _build(ctx, engine, missing)
        ctx.show(report)
        results = report.results
        not_built = {r.image: f"its build failed: {r.cause}" for r in results
                     if r.status is not builds.BuildStatus.BUILT}
        images = smoke.image_ids(engine, plans)
    access = find_access(engine, probe_image=smoke.gpu_probe_image(plans, images) if gpu_count is GPUS_AUTO else None)
    requests = {plan.name: request_for(plan.variant, gpu_count, access) for plan in plans}
    runs = smoke.run_all(engine, plans, images=images, gpus=requests, suite_dir=ctx.paths.smoke,
                         reports_dir=reports_dir, stop_at_missing=not (every or build_missing), not_built=not_built,
                         memlock=memlock, checks=selected_checks, out=ctx.out)
    return SmokeReport(tuple(runs), reports_dir,
                       tuple(smoke.untested_gpus(runs, plans=plans, gpus=requests, access=access)))


def up(ctx: Context, *, variant: str, overlay: str | None, gpus: str = "auto", unlocked: bool = False) -> Exited:
    """The main job: build one image (a no-op when it is current; --unlocked for a variant without a lock), then
    train in it through compose, with compose.gpu.yaml when the run gets GPUs (--gpus as smoke reads it: auto gives a
    CUDA variant every GPU the engine offers)."""
    matrix = _load(ctx, overlay)
    chosen = matrix.variant(one_name("--variant", variant))
    gpu_count = parse_option(gpus)
    check_option(gpu_count, [chosen])
    plans = _plans(ctx, matrix, [chosen], unlocked=unlocked)
    locks.require_fitting_locks(matrix, plans)
    engine = ctx.engine()
    report = _build(ctx, engine, plans)
    ctx.show(report)
    status = builds.exit_status(list(report.results))
    if status:
        return Exited(status)
    request = GpuRequest(0)  # --gpus none needs no probe: the GPUs are hidden whatever route the engine has
    if chosen.cuda and gpu_count != 0:
        access = find_access(engine, probe_image=plans[0].primary_reference if gpu_count is GPUS_AUTO else None)
        request = request_for(chosen, gpu_count, access)
        if request.chosen_by_auto and not request.count:
            print(f"note: training {chosen.name} without GPUs: --gpus auto found {access.evidence} "
                  "(docs/troubleshooting.md; --gpus all lets the engine answer)", file=ctx.out)
    files, options, settings = compose_gpus(request, cuda=chosen.cuda is not None)
    env = {**ctx.environ, "VARIANT": chosen.name, "TORCHDEV_REPOSITORY": matrix.image.repository, **settings}
    return Exited(engine.compose_run("train", cwd=ctx.paths.root, env=env, files=files, options=options))


def compose_gpus(request: GpuRequest, *, cuda: bool) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, str]]:
    """The compose files, the `run` options and the variables the files read that train with the GPUs of `request`:
    compose.gpu.yaml with GPUS=all or the count; or none (NVIDIA_VISIBLE_DEVICES=void in the container, so that a
    default nvidia runtime does not hand the CUDA image every GPU anyway)."""
    if not request.count:
        hidden = tuple(part for name, value in request.environment().items() for part in ("-e", f"{name}={value}")
                       if cuda)
        return (), hidden, {}
    count = "all" if request.count < 0 else str(request.count)
    return ("compose.yaml", "compose.gpu.yaml"), (), {"GPUS": count}


def base(ctx: Context, *, name: str, platform: str | None) -> BaseExists | Exited:
    """`./dev base`: the local Debian base, made by scripts/make-base.sh only when the image lacks a platform asked
    for. The engine's own probe (Engine.image_platforms) tells; the script then makes every platform asked for, as
    one multi-platform image under the name."""
    problem = reference_problem(name)
    if problem:
        raise BAD_IMAGE_NAME(option="--name", value=name, what=problem, fix="name the image, e.g. "
                             "torchdev-base:bookworm")
    wanted = tuple(map(str, parse_list(platform) if platform is not None else (ctx.native_platform,)))
    if ctx.engine().image_platforms(name, wanted) == wanted:
        return BaseExists(name, wanted)
    script = ctx.paths.scripts / "make-base.sh"
    with subprocess.Popen(["bash", str(script), name, "--platform", ",".join(wanted)]) as process:
        return Exited(processes.wait(process, group=False))  # an interrupt reaches the script, whose trap cleans up


REPRODUCIBLE_NOTE = ("--reproducible is no longer needed: every build gives the same image ID from the same inputs "
                     "(`./dev verify-repro` proves it); the flag changes nothing")


def verify_repro(ctx: Context, *, variant: str, overlay: str | None, unlocked: bool = False) -> ReproReport:
    """Build twice with no layer cache into the engine; reproducible only when both give one image ID (and it is the
    one images.yaml records, if it records one). When they differ, both are saved and compared down to the file.
    Neither build moves a tag; what they made is removed unless a tag names it. A variant without a lock needs
    --unlocked, as a build does."""
    matrix = _load(ctx, overlay)
    variant = one_name("--variant", variant)
    plan = _plans(ctx, matrix, [matrix.variant(variant)], unlocked=unlocked)[0]
    locks.require_fitting_locks(matrix, [plan])
    engine = ctx.engine()
    require_buildx()
    made: list[repro.UncachedBuild] = []
    try:
        for number in (1, 2):
            print(f"==> [{number}/2] {plan.name} without layer cache (downloads stay cached)", file=ctx.out, flush=True)
            made.append(_uncached_build(ctx, engine, plan, number))
        return _compared(engine, plan, ReproReport(plan.name, plan.variant.name, (made[0], made[1])))
    finally:
        for image_id in {b.image_id for b in made}:
            builds.discard_unless_tagged(engine, image_id)


def _compared(engine: ContainerEngine, plan: BuildPlan, report: ReproReport) -> ReproReport:
    """What follows from two builds that ran the same steps: when their image IDs differ, what differs between the
    saved images; when they agree, whether images.yaml records another digest, and what the immutable tag names."""
    if not report.compared:
        return report
    first, second = report.builds
    if not report.reproducible:
        with tempfile.TemporaryDirectory(prefix="torchdev-repro-") as scratch:
            saved = [repro.save(engine, build.image_id, Path(scratch)) for build in (first, second)]
            return replace(report, differences=repro.describe_differences(*saved))
    immutable = plan.immutable_references[0] if plan.immutable_references else ""
    return replace(report, immutable_tag=immutable, tagged=engine.image_id(immutable) if immutable else None,
                   mismatch=builds.digest_mismatch(plan, first.image_id, first.config_digest,
                                                   gave=f"{plan.name} builds reproducibly as"))


def _uncached_build(ctx: Context, engine: ContainerEngine, plan: BuildPlan, number: int) -> repro.UncachedBuild:
    log_path = ctx.paths.reports.build / f"{plan.name}.repro{number}.log"
    with tempfile.TemporaryDirectory(prefix="torchdev-repro-") as scratch:
        status, lines, metadata = builds.run_buildx(engine, plan, scratch=Path(scratch), log_path=log_path,
                                                    no_cache=True, out=ctx.out)
        if status != 0 or not metadata.is_file():
            raise REPRO_BUILD_FAILED(number=number, variant=plan.name, cause=builds.failure_cause(lines),
                                     log=log_path)
        return repro.UncachedBuild(builds.built_image_id(engine, metadata), builds.config_digest(metadata),
                                   repro.executed_steps(lines))


def pin(ctx: Context, *, variant: str | None, every: bool, overlay: str | None) -> PinReport:
    """Resolve each selected base to its registry digest and write it where that base is declared."""
    matrix = _load(ctx, overlay)
    engine = ctx.engine()
    return PinReport(tuple(bases.pin_variant(engine, variant=chosen,
                                             origin=matrix.origin("variants", chosen.name, "base"))
                           for chosen in select_variants(matrix, variant=variant, every=every)))


def save_bases(ctx: Context, *, variant: str | None, every: bool, overlay: str | None, to_registry: str | None,
               to_archive: str | None) -> SavedArchives | MirroredBases:
    """Copy the selected variants' pinned bases to a registry or into archives the user controls."""
    to_registry, to_archive = not_empty("--to-registry", to_registry), not_empty("--to-archive", to_archive)
    if to_registry is not None and to_archive is not None:
        raise CONTRADICTION(first="--to-registry", second="--to-archive", fix="give one of them")
    if to_registry is None and to_archive is None:
        raise NO_DESTINATION()
    problem = repository_problem(to_registry.rstrip("/")) if to_registry is not None else ""
    if problem:
        raise BAD_IMAGE_NAME(option="--to-registry", value=to_registry, what=problem,
                             fix="write HOST[:PORT]/PREFIX, e.g. registry.corp:5000/mirror")
    matrix = _load(ctx, overlay)
    chosen = select_variants(matrix, variant=variant, every=every)
    unpinned = [v.name for v in chosen if not bases.is_pinned(v.base)]
    if unpinned:
        raise NOT_PINNED(variants=", ".join(unpinned))
    if to_archive is not None:
        folder = Path(to_archive)
        check_outputs(bases.archive_path(folder, base) for base in sorted({v.base for v in chosen}))
        engine = ctx.engine()
        return SavedArchives(tuple(bases.save_archives(engine, bases=sorted({v.base for v in chosen}),
                                                       folder=folder)))
    engine = ctx.engine()
    return MirroredBases(tuple((v.name, v.base, bases.push_base(engine, base=v.base, registry=to_registry))
                               for v in chosen))


def push(ctx: Context, *, variant: str | None, every: bool, flavour: str | None, overlay: str | None,
         to: str | None = None, compression: str = "gzip", force: bool = False, sign: str | None = None,
         tlog: bool = False) -> PushReport:
    """Push each selected image (every flavour unless --flavour) with all its tags; one line per image with its
    digest, and reports/push/<image>.json once all its tags are in the registry. With --sign, each image is signed
    as soon as its tags are all in the registry, with the key opened before anything is pushed."""
    if compression not in COMPRESSIONS:
        raise BAD_COMPRESSION(value=compression, known=", ".join(COMPRESSIONS))
    matrix = _load(ctx, overlay)
    repository = pushes.destination(not_empty("--to", to) or matrix.image.repository)
    plans = _plans(ctx, matrix, select_variants(matrix, variant=variant, every=every),
                   select_flavours(matrix, flavour=flavour, every=True))
    engine = ctx.engine()
    unsigned: list[str] = []
    then = _signing(ctx, engine, sign, tlog=tlog, registry=pushes.registry_of(repository), matrix=matrix,
                    unsigned=unsigned) if sign else None
    results = pushes.push_images(engine, plans, repository=repository, compression=compression,
                                 reports_dir=ctx.paths.reports.push, smoke_dir=ctx.paths.reports.smoke, force=force,
                                 out=ctx.out, then=then)
    return PushReport(tuple(results), tuple(unsigned))


def _signing(ctx: Context, engine: ContainerEngine, key: str, *, tlog: bool, registry: str, matrix: Matrix,
             unsigned: list[str]) -> pushes.Pushed:
    """What `push --sign KEY` does with each pushed image: sign it, adding to `unsigned` the line that says why not.
    The key is opened here, before anything is pushed, so a wrong password stops the push."""
    from torchdev import signing

    signer = signing.open_signer(key, tlog=tlog, registry=registry, engine=engine, reports_dir=ctx.paths.reports.push,
                                 checkout=signing.Checkout(ctx.paths.root, ctx.paths.docker, matrix.sources))

    def sign(plan: BuildPlan, pushed: PushRecord) -> None:
        unsigned.extend(filter(None, [signing.sign_push(engine, signer, plan, pushed, out=ctx.out)]))
    return sign


def verify(ctx: Context, *, reference: str, key: str, tlog: bool = False) -> Verification:
    """Check a pushed image's signature and both attestations against a public key: a few lines saying who signed,
    when, from which commit and lock, or one line with the cause (exit 1)."""
    from torchdev import signing
    from torchdev.cosign import Cosign

    if reference_problem(reference):
        raise NOT_A_PUSHED_IMAGE(reference=reference)
    ref = ImageRef.parse(reference)
    if "/" not in ref.repository or not (ref.tag or ref.digest):
        raise NOT_A_PUSHED_IMAGE(reference=reference)
    cosign = Cosign.find(tlog=tlog)
    flags = trust.registry_flags(ref.repository.split("/")[0], engine_info=signing.engine_info_or_none(ctx.connect))
    verified = signing.verify(cosign, reference, key=key, reports_dir=ctx.paths.reports.push, flags=flags)
    return Verification(tuple(signing.report(verified, key=key, tlog=tlog)))


def k8s(ctx: Context, *, variant: str, image: str | None, nodes: str | int | None, gpus: str | int | None,
        nproc: str | int | None, name: str | None, shm_size: str, train_args: str, out: str | None,
        overlay: str | None, cpu: str | None = None, memory: str | None = None,
        policy_key: str | None = None) -> JobDockerfile | JobManifests:
    """Without --image: the job image's Dockerfile, FROM the pushed torchdev image by digest. With --image: the
    PyTorchJob and the Indexed Job for that image. With --policy-key, either way: the ClusterImagePolicy beside
    them, made before anything is written."""
    nodes = count("--nodes", nodes, minimum=1, maximum=kube.NODES_MAX, why="an Indexed Job runs 1 to 100000 pods")
    gpus = count("--gpus", gpus, minimum=0, maximum=kube.PER_NODE_MAX, why="GPUs per node")
    nproc = count("--nproc", nproc, minimum=1, maximum=kube.PER_NODE_MAX, why="processes per node")
    chosen = _load(ctx, overlay).variant(one_name("--variant", variant))
    name = not_empty("--name", name) or f"torchdev-{chosen.name}"
    folder = Path(not_empty("--out", out)) if out is not None else ctx.paths.reports.k8s / name
    policy_key = not_empty("--policy-key", policy_key)
    policy = kube.cluster_image_policy(ctx.paths.reports.push, name=name, variant=chosen.name, image=image,
                                       key=kube.policy_key(policy_key)) if policy_key else None
    if policy is not None:
        check_outputs([folder / "clusterimagepolicy.yaml"])
    if not image:
        check_outputs([folder / "Dockerfile"])
        base = kube.pushed_reference(ctx.paths.reports.push, chosen.name)
        write_atomically(folder / "Dockerfile", kube.job_dockerfile(base))
        return JobDockerfile(folder / "Dockerfile", base, chosen.name, _write_policy(folder, policy))
    if gpus and not chosen.cuda:
        raise GPUS_FOR_CPU(gpus=gpus, variant=chosen.name)
    job = kube.train_job(name=name, image=image, nodes=2 if nodes is None else nodes,
                         gpus_per_node=1 if gpus is None and chosen.cuda else gpus or 0, nproc_per_node=nproc,
                         shm_size=shm_size, train_args=train_args, cpu=cpu, memory=memory)
    manifests = kube.manifests(job, variant=chosen.name)
    check_outputs(folder / file_name for file_name in manifests)
    for file_name, text in manifests.items():
        write_atomically(folder / file_name, text)
    return JobManifests(folder, tuple(manifests), _write_policy(folder, policy))


def _write_policy(folder: Path, policy: str | None) -> Path | None:
    """folder/clusterimagepolicy.yaml when there is a policy (--policy-key); its path."""
    if policy is None:
        return None
    write_atomically(folder / "clusterimagepolicy.yaml", policy)
    return folder / "clusterimagepolicy.yaml"


def capture(ctx: Context, *, container: str | None = None, write: bool = False,
            overlay: str | None = None) -> CaptureReport:
    """What a dev or compose container's users installed beyond its image (running or stopped; this checkout's one
    when none is named). With `write`: declared as the variant's added_packages in the overlay (or images.yaml),
    locked apart from the variant's lock, and the container's flavour built again (runtime first), which reruns the
    images' last step only. Nothing is written unless every addition fits the lock."""
    container = not_empty("--container", container)
    engine = ctx.engine()
    found = captures.find_container(engine, container, root=ctx.paths.root)
    target = captures.target_of(found)
    additions = tuple(captures.read_additions(engine, found))
    if not write:
        return CaptureReport(target, additions)
    matrix = _load(ctx, overlay)
    variant = matrix.variant(target.variant)
    mains = _main_locks(matrix, variant)
    wanted, left_out = _declarable(matrix, variant, list(additions), mains)
    if not wanted and not variant.added_packages:
        raise NOTHING_TO_DECLARE(name=target.name, why=f" ({'; '.join(f'{r}: {w}' for r, w in left_out)})"
                                 if left_out else ": its users' site-packages are empty")
    declared, source, written = _declare(matrix, variant, captures.merged(variant.added_packages, wanted), mains,
                                         logins=read_logins(matrix, ctx.environ), environ=ctx.environ)
    chosen = declared.variant(variant.name)
    flavours = [declared.flavour(RUNTIME_FLAVOUR)] + ([declared.flavour(target.flavour)]
                                                      if target.flavour != RUNTIME_FLAVOUR else [])
    plans = _plans(ctx, declared, [chosen], flavours)
    locks.require_fitting_locks(declared, plans)
    results = builds.build_images(engine, plans, log_dir=ctx.paths.reports.build, out=ctx.out)
    return CaptureReport(target, additions, chosen.added_packages, source, written, left_out, tuple(results))


def _main_locks(matrix: Matrix, variant: Variant) -> dict[Platform, str]:
    """The variant's lock text per platform that has one (the added packages are held to each)."""
    texts = {platform: locks.lock_text(matrix.lock_file(variant, platform), command=locks.regenerate_command(
        matrix=matrix, variant=variant, platform=platform)) for platform in variant.platforms}
    return {platform: text for platform, text in texts.items() if text is not None}


def _declarable(matrix: Matrix, variant: Variant, additions: list[captures.Addition],
                mains: dict[Platform, str]) -> tuple[list[captures.Addition], tuple[tuple[str, str], ...]]:
    """(the additions to declare, (requirement, why) for each left out: taken from a folder or URL, or locked at that
    version already); a UsageError, a line each naming both versions, when one conflicts with a lock."""
    wanted, unlockable = captures.lockable(additions)
    left_out = {a.requirement: f"installed from {a.url}, not from an index: no lock can name it" for a in unlockable}
    requirements = tuple(a.requirement for a in wanted)
    for platform, text in mains.items():
        conflicts = locks.added_conflicts(requirements, text, lock_name=locks.lock_name(matrix, variant, platform))
        if conflicts:
            raise joined([f"variant '{variant.name}': {line}" for line in conflicts], UsageError)
        left_out.update({requirement: "the image has it already (the variant's lock)"
                         for requirement in locks.already_locked(requirements, text)})
    return [a for a in wanted if a.requirement not in left_out], tuple(left_out.items())


def _declare(matrix: Matrix, variant: Variant, packages: tuple[str, ...], mains: dict[Platform, str], *,
             logins: tuple[Login, ...], environ: Mapping[str, str]) -> tuple[Matrix, Path, tuple[Path, ...]]:
    """Write `packages` as the variant's added_packages into the overlay (else images.yaml) and their locks beside
    the variant's, each resolved first, so that nothing is written unless all of it can be: (the matrix as it now
    reads, the file written, the locks written)."""
    source = matrix.overlay or matrix.sources[0]
    text = captures.declared_text(decode(source, source.read_bytes()), source, variant=variant.name,
                                  packages=packages)
    declared = with_text(matrix, source=source, text=text)
    chosen = declared.variant(variant.name)
    added = {declared.added_lock_file(chosen, platform): locks.added_lock_text(
        matrix=declared, variant=chosen, platform=platform, main_text=main, logins=logins, environ=environ)
        for platform, main in mains.items()}
    check_outputs([source, *added])
    write_atomically(source, text)
    for path, lock_content in added.items():
        write_atomically(path, lock_content)
    return declared, source, tuple(added)
