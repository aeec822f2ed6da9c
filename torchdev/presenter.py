"""What a user sees of each command's result (torchdev.results) and of an error: the tables and notes on stdout, the
`torchdev: ...` failure lines on stderr, and the exit status. The one place results become text, so one command's
output reads like another's; progress lines are the only output written elsewhere (as they happen, through the
context's output).
"""
from __future__ import annotations

import signal
import textwrap
from dataclasses import dataclass
from functools import singledispatch
from pathlib import Path
from typing import TextIO

from smoke.smoke_contract import CHECKS, FAILED, PASSED, CheckResult
from torchdev import build as builds, doctor as doctors
from torchdev.bases import PinOutcome
from torchdev.build import BuildResult, BuildStatus
from torchdev.doctor import FAIL, WARN
from torchdev.engine import ImageRef
from torchdev.errors import TorchdevError, signal_of
from torchdev.grammar import without_userinfo
from torchdev.images import BuiltImage
from torchdev.plan import BuildPlan, describe_plan
from torchdev.push import PushResult, PushStatus
from torchdev.results import (Attestation, BaseExists, BuildReport, CaptureReport, DoctorReport, DryRun, Exited,
                              ImageList,
                              ImageManifest, JobDockerfile, JobManifests, LockReport, MatrixView, MirroredBases,
                              PinReport, PushReport, ReproReport, SavedArchives, SmokeReport, Verification)
from torchdev.smoke import SuiteRun, SuiteStatus
from torchdev.table import SIZE_HEADERS, human_size, render_table, size_cells


@dataclass(frozen=True)
class Presentation:
    """What one result looks like: lines for stdout, then lines for stderr, and the exit status."""

    out: tuple[str, ...] = ()
    err: tuple[str, ...] = ()
    status: int = 0


def write(shown: Presentation, *, out: TextIO, err: TextIO) -> int:
    """Print a presentation, every URL in it without a login (a git remote, an engine's or a tool's message may carry
    one); its exit status."""
    for line in shown.out:
        print(without_userinfo(line), file=out)
    for line in shown.err:
        print(without_userinfo(line), file=err)
    return shown.status


def show(result: object, *, out: TextIO, err: TextIO) -> int:
    """Present `result` and print it; its exit status."""
    return write(present(result), out=out, err=err)


def present_error(error: TorchdevError) -> Presentation:
    """A known error: each line of its message on stderr as `torchdev: ...`, and its exit status (2 for usage and
    configuration, 1 otherwise)."""
    return Presentation(err=tuple(line if line.startswith("torchdev: ") else f"torchdev: {line}"
                                  for line in str(error).splitlines() or [type(error).__name__]),
                        status=error.exit_status)



BUG = 70
"""EX_SOFTWARE (sysexits.h), an internal software error: a bug in torchdev exits neither 1 (a failure the user can
act on, such as a failed build) nor 2 (a usage or configuration error), so a script or CI can tell the three apart."""


def present_interrupt(error: BaseException, *, task: str = "") -> Presentation:
    """A command ended by a signal: one line saying which command and which signal, and the signal's status, as a
    shell reports it (128 + its number: 130 for SIGINT, 143 for SIGTERM)."""
    number = signal_of(error)
    how = f"{signal.Signals(number).name}" + (" (Ctrl-C)" if number == signal.SIGINT else "")
    return Presentation(err=(f"torchdev: {f'./dev {task}' if task else 'the command'} was interrupted by {how}: what "
                             "it had started is stopped and removed (containers, temporary files), what had "
                             "finished stays",), status=128 + number)


def present_bug(error: BaseException, log: str, *, traceback: str = "") -> Presentation:
    """An exception no one expected: one line saying it is a bug, where its traceback is, and what to do; the
    traceback itself only when asked for (TORCHDEV_DEBUG=1, ./dev --debug)."""
    line = (f"torchdev: a bug in torchdev: {type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}"
            .rstrip(": ") + f" (traceback in {log}): please report it with that file; TORCHDEV_DEBUG=1 or "
            "./dev --debug shows the traceback here")
    return Presentation(err=(*traceback.rstrip("\n").splitlines(), line) if traceback else (line,), status=BUG)


@singledispatch
def present(result: object) -> Presentation:
    raise TypeError(f"torchdev.presenter cannot present a {type(result).__name__}")


def _shown(out: tuple[str, ...], failures: list[str], *, status: int | None = None) -> Presentation:
    """`out` on stdout, then a `torchdev: ...` line on stderr per failure; status 1 when anything failed, unless
    `status` says otherwise."""
    return Presentation(out=out, err=tuple(f"torchdev: {line}" for line in failures),
                        status=(1 if failures else 0) if status is None else status)


# --- ./dev matrix -------------------------------------------------------------------------------------------------

@present.register
def _matrix(result: MatrixView) -> Presentation:
    """Every column, one line per image; on a terminal (a width) the columns that tell the images apart, fitted to
    it, and where the rest is."""
    sources = ", ".join(str(source) for source in result.matrix.sources)
    footer = f"\nrepository: {result.matrix.image.repository}   from: {sources}"
    if result.width is not None:
        table = render_table(["variant", "flavour", "platforms", "python", "torch", "cuda", "cudnn", "locked", "tag"],
                             [narrow_matrix_row(p, result.locked) for p in result.plans], width=result.width)
        more = "--wide: bases, indexes, locks, apt snapshots, toolchains and every tag"
        return Presentation(out=(table, "", *(textwrap.fill(line, result.width, subsequent_indent="  ",
                                                            break_on_hyphens=False) for line in (footer[1:], more))))
    rows = [(p.variant.name, p.flavour.name, ", ".join(map(str, p.variant.platforms)), p.build_args["BASE_IMAGE"],
             p.variant.python, f"{p.variant.torch}/{p.variant.torchvision}/{p.variant.torchaudio}",
             p.variant.cuda or "-", p.variant.cudnn or "-", p.variant.index, locks_cell(p, result.locked),
             p.variant.apt_snapshot or "live", toolchain(p),
             ", ".join(str(ImageRef.parse(reference).tag) for reference in p.references)) for p in result.plans]
    table = render_table(["variant", "flavour", "platforms", "base", "python", "torch/vision/audio", "cuda", "cudnn",
                          "index", "locks", "apt snapshot", "toolchain", "tags"], rows)
    return Presentation(out=(table, footer))


def narrow_matrix_row(plan: BuildPlan, locked: frozenset) -> tuple[str, ...]:
    """One image in few characters: platforms by architecture when all are Linux, whether each has its lock (yes,
    no, or the architectures that do), and its shortest tag (cu118, cu118-devel)."""
    variant = plan.variant
    linux = all(platform.os == "linux" for platform in variant.platforms)
    name = (lambda platform: platform.arch if linux else str(platform))
    has = [platform for platform in variant.platforms if (variant.name, platform) in locked]
    lock = "yes" if len(has) == len(variant.platforms) else ", ".join(map(name, has)) or "no"
    tags = [str(ImageRef.parse(reference).tag) for reference in plan.references]
    return (variant.name, plan.flavour.name, ", ".join(map(name, variant.platforms)), variant.python, variant.torch,
            variant.cuda or "-", variant.cudnn or "-", lock, min(tags, key=len) if tags else "-")


def locks_cell(plan: BuildPlan, locked: frozenset) -> str:
    """The variant's lock per platform, or none (such builds resolve at build time)."""
    variant = plan.variant
    return ", ".join(variant.lock_path_for(platform) if (variant.name, platform) in locked else "none"
                     for platform in variant.platforms)


def toolchain(plan: BuildPlan) -> str:
    """What a flavour adds, in a few words: its packages, and nvcc's CUDA release for a CUDA variant."""
    if plan.flavour.is_runtime:
        return "-"
    args = plan.build_args
    nvcc = f"nvcc {args['CUDA_RELEASE']}" if args["CUDA_RELEASE"] else ("no nvcc" if plan.variant.cuda else "")
    return ", ".join(filter(None, [*plan.flavour.apt_packages, *plan.flavour.pip_packages, nvcc]))


# --- ./dev build, and the builds of smoke --build and up ----------------------------------------------------------

@present.register
def _dry_run(result: DryRun) -> Presentation:
    return Presentation(out=("\n\n".join(describe_plan(plan) for plan in result.plans),))


@present.register
def _builds(result: BuildReport) -> Presentation:
    failed = [f"{r.image} failed: {r.cause} (full log: {r.log})" for r in result.results
              if r.status is BuildStatus.FAILED]
    unlocked = [f"note: {r.image} was built with --unlocked: pip resolved its packages at build time, none is "
                "checked against a hash (`./dev lock` writes the lock that pins them)"
                for r in result.results if r.unlocked and r.status is BuildStatus.BUILT]
    return _shown(("\n" + build_table(list(result.results)), *unlocked), failed,
                  status=builds.exit_status(list(result.results)))


def build_table(results: list[BuildResult]) -> str:
    """One row per image: how it went (an image built with --unlocked says so: nothing in it is hash-pinned), how
    long it took, its sizes, what it produced or why it failed."""
    rows = [(r.image, r.status.value + (" UNLOCKED" if r.unlocked else ""), f"{r.seconds:.0f} s", *size_cells(r.sizes),
             r.references[0] if r.references else "-", r.cause or (r.image_id[:19] if r.image_id else ""))
            for r in results]
    return render_table(["image", "status", "time", *SIZE_HEADERS, "primary tag", "image id / cause"], rows)


@present.register
def _repro(result: ReproReport) -> Presentation:
    first, second = result.builds
    rows = [(number, b.image_id, b.config_digest, len(b.steps)) for number, b in enumerate(result.builds, start=1)]
    table = "\n" + render_table(["build", "image ID", "config digest", "RUN steps run"], rows)
    if not result.compared:
        return _shown((table,), [f"build 2 ran {len(second.steps)} of build 1's {len(first.steps)} RUN steps: BuildKit "
                                 "shares a step with another build of the same step on this engine even without "
                                 "cache, so nothing was compared; run verify-repro again when no other build of it "
                                 "is running"])
    if not result.reproducible:
        return _shown((table, "\n" + result.differences),
                      [f"{result.image} is not reproducible: two builds from the same inputs gave two image IDs"])
    if result.mismatch:
        return _shown((table,), [result.mismatch])
    said = f"\n{result.image} is reproducible: {first.image_id} (config {first.config_digest})"
    return Presentation(out=(table, said, *filter(None, [immutable_tag_note(result)])))


def immutable_tag_note(result: ReproReport) -> str:
    """Whether the image the immutable tag names (built earlier from the same inputs) is this one: then any build of
    these inputs, cached or not, takes its tags."""
    reference, image_id = result.immutable_tag, result.builds[0].image_id
    if not reference:
        return ""
    if not result.tagged:
        return f"no image is tagged {reference} yet: `./dev build --variant {result.variant}` makes this one"
    if result.tagged == image_id:
        return f"{reference} names this very image"
    return (f"{reference} names another image, {result.tagged[:19]}, built from the same declared inputs: something "
            f"not pinned has changed since ({', '.join(builds.UNPINNED_INPUTS)}), and builds of these inputs are "
            f"refused that tag until it is removed (`docker image rm {reference}`)")


# --- ./dev lock, ./dev doctor -------------------------------------------------------------------------------------

@present.register
def _locks(result: LockReport) -> Presentation:
    return _shown((), list(result.problems))


@present.register
def _doctor(result: DoctorReport) -> Presentation:
    return Presentation(out=(doctor_report(list(result.checks), width=result.width),),
                        status=doctors.exit_status(list(result.checks)))


def doctor_report(results: list[doctors.CheckResult], *, width: int | None = None) -> str:
    """A row per check, a warning or a failure carrying its fix in the same row: one line each, or wrapped to
    `width`."""
    rows = [(r.name, r.status, f"{r.detail.rstrip('.')}; fix: {r.fix}" if r.status in (WARN, FAIL) else r.detail)
            for r in results]
    return render_table(["check", "status", "detail"], rows, width=width)


# --- ./dev images -------------------------------------------------------------------------------------------------

@present.register
def _images(result: ImageList) -> Presentation:
    if not result.images:
        return Presentation(out=(f"no {result.repository} images yet: run `./dev build --variant NAME`",))
    return Presentation(out=(images_table(list(result.images)),))


def images_table(images: list[BuiltImage]) -> str:
    rows = [(i.variant, i.flavour, ", ".join(i.tags), *size_cells(i.sizes), i.created, i.image_id[:19])
            for i in images]
    return render_table(["variant", "flavour", "tags", *SIZE_HEADERS, "created", "digest"], rows)


@present.register
def _manifest(result: ImageManifest) -> Presentation:
    """The manifest an image carries: its base, lock, Python packages, and how many Debian packages."""
    content = result.manifest
    packages = [(package["name"], package["version"]) for package in content["python"]["packages"]]
    return Presentation(out=(
        f"{result.reference}: base {content['base']['image']} (digest {content['base']['digest'] or 'not pinned'}), "
        f"lock sha256 {content['lock_sha256'] or 'none'}"
        f"{' (built with --unlocked: nothing hash-pinned)' if content.get('unlocked') else ''}, "
        f"{len(content['debian_packages'])} Debian packages",
        render_table(["python package", "version"], packages)))


@present.register
def _attestation(result: Attestation) -> Presentation:
    """The document itself on stdout (its bytes as written: it ends in a newline), or where --out put it."""
    if result.path is None:
        return Presentation(out=(result.text.removesuffix("\n"),))
    where = "as pushed" if result.pushed else "as built (not pushed yet: its digest in this engine)"
    return Presentation(out=(f"wrote {result.path}: the {result.kind} of {result.repository}@{result.digest}, "
                             f"{where}",))


# --- ./dev smoke --------------------------------------------------------------------------------------------------

@present.register
def _smoke(result: SmokeReport) -> Presentation:
    runs = list(result.runs)
    return _shown(("\n" + smoke_table(runs) + f"\n\nreports: {result.reports_dir}",
                   *(f"note: {note}" for note in result.notes)),
                  [f"failed: {line}" for line in smoke_failures(runs)])


def check_cell(checks: tuple[CheckResult, ...], check: str) -> str:
    """One table cell: failed beats passed beats skipped; a skip shows its reason."""
    rows = [c for c in checks if c.check == check]
    if not rows:
        return "-"
    failed = [c for c in rows if c.outcome == FAILED]
    passed = [c for c in rows if c.outcome == PASSED]
    if failed:
        return f"FAILED {len(failed)}/{len(rows)}"
    if passed:
        skipped = len(rows) - len(passed)
        return f"passed {len(passed)}" + (f" (+{skipped} skipped)" if skipped else "")
    return f"skipped: {rows[0].reason[:40]}"


def smoke_table(runs: list[SuiteRun]) -> str:
    """Image x check; an image that did not run says why in its first cell."""
    rows = []
    for run in runs:
        if run.status is SuiteStatus.RAN:
            rows.append((run.image, *(check_cell(run.checks, check) for check in CHECKS)))
        else:
            rows.append((run.image, run.status.value, *(["-"] * (len(CHECKS) - 1))))
    return render_table(["image", *CHECKS], rows)


def smoke_failures(runs: list[SuiteRun]) -> list[str]:
    """One line per failed check or variant that did not run: variant, test or status, and the reason."""
    lines = []
    for run in runs:
        if run.status is not SuiteStatus.RAN:
            lines.append(f"{run.image}: {run.status.value}: {run.detail}")
            continue
        lines += [f"{run.image}: {c.nodeid}: {c.reason.splitlines()[0] if c.reason else 'failed'}"
                  for c in run.checks if c.outcome == FAILED]
    return lines


# --- ./dev pin, ./dev save-bases, ./dev base ----------------------------------------------------------------------

@present.register
def _pins(result: PinReport) -> Presentation:
    table = render_table(["variant", "base", "outcome", "detail"],
                         [(r.variant, r.base, r.outcome.value, r.detail) for r in result.results])
    return _shown((table,), [f"{r.variant}: {r.detail}" for r in result.results if r.outcome is PinOutcome.FAILED])


@present.register
def _archives(result: SavedArchives) -> Presentation:
    return Presentation(out=("\n".join(f"saved {path} (restore: docker load -i {path})" for path in result.paths),))


@present.register
def _mirrored(result: MirroredBases) -> Presentation:
    return Presentation(out=(render_table(["variant", "base", "copy (use as `base:` in an overlay)"],
                                          result.copies),))


@present.register
def _base(result: BaseExists) -> Presentation:
    return Presentation(out=(f"base: {result.name} exists for {','.join(result.platforms)}",))


@present.register
def _exited(result: Exited) -> Presentation:
    return Presentation(status=result.status)


# --- ./dev push, ./dev verify, ./dev k8s --------------------------------------------------------------------------

@present.register
def _pushes(result: PushReport) -> Presentation:
    return _shown(("\n" + push_table(list(result.results)),),
                  [f"{r.image}: {r.status.value}: {r.detail}" for r in result.results
                   if r.status in (PushStatus.REFUSED, PushStatus.FAILED)] + list(result.unsigned))


def push_table(results: list[PushResult]) -> str:
    rows = [(r.image, r.status.value, ", ".join(map(str, r.platforms)) or "-", r.compression or "-",
             human_size(r.size) if r.size else "-", r.digest or "-", r.detail) for r in results]
    return render_table(["image", "status", "platforms", "layers", "download", "digest", "detail"], rows)


@present.register
def _verification(result: Verification) -> Presentation:
    return Presentation(out=result.lines)


@present.register
def _job_dockerfile(result: JobDockerfile) -> Presentation:
    return Presentation(out=(
        f"wrote {result.path}: FROM {result.base}, plus train/\n"
        f"next: docker build -f {result.path} -t REGISTRY/NAME . && docker push REGISTRY/NAME\n"
        f"then: ./dev k8s --variant {result.variant} --image REGISTRY/NAME@sha256:<the digest docker push printed>",
        *wrote_policy(result.policy)))


@present.register
def _job_manifests(result: JobManifests) -> Presentation:
    folder = result.folder
    apply = (f"apply one: kubectl apply -f {folder / 'pytorchjob.yaml'}   (Kubeflow training operator)\n"
             f"       or: kubectl apply -f {folder / 'indexed-job.yaml'}   (plain Kubernetes)")
    return Presentation(out=(*(f"wrote {folder / name}" for name in result.files), *wrote_policy(result.policy),
                             apply))


def wrote_policy(path: Path | None) -> tuple[str, ...]:
    return (f"wrote {path}",) if path else ()


# --- ./dev capture ------------------------------------------------------------------------------------------------

@present.register
def _capture(result: CaptureReport) -> Presentation:
    target = result.target
    state = "running" if target.running else "stopped"
    head = f"{target.name} ({state}; {target.variant}, {target.flavour} image {target.image_id[:19]})"
    if not result.additions:
        return Presentation(out=(f"{head}: its users added no package beyond the image",))
    rows = [(a.name, a.version, a.site, f"from {a.url}" if a.url else "") for a in result.additions]
    lines = [f"{head}: added beyond the image", render_table(["package", "version", "site-packages", "note"], rows)]
    if result.declared is None:
        lines.append(f"\nTo take them into the image: ./dev capture --container {target.name} --write "
                     "(declares them, locks them, builds)")
        return Presentation(out=tuple(lines))
    lines.append(f"\ndeclared in {result.file}: variants.{target.variant}.added_packages: "
                 f"{', '.join(result.declared)}")
    lines += [f"locked: {path}" for path in result.locks] or ["locked: nothing (the variant has no lock: the build "
                                                              "resolves them)"]
    lines += [f"left out: {requirement}: {why}" for requirement, why in result.left_out]
    builds_shown = _builds(BuildReport(result.builds))
    return Presentation(out=(*lines, *builds_shown.out), err=builds_shown.err, status=builds_shown.status)
