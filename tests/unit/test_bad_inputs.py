"""Bad inputs of every kind end in success or in one of torchdev's known errors, one line, never a traceback, and
nothing outside what a task made changes.

- Property-based (Hypothesis, derandomized, bounded): the configuration loader over damaged images.yaml files in
  every encoding, the overlay merge, every task's options run through the runner, and every reader of a file
  torchdev writes and reads back.
- Corrupt state: each kind of file under reports/ (and the locks, buildx's metadata, an image's manifest) written cut
  short, empty, of the wrong JSON type, or as a folder, then every task that reads it: one line naming the file.
- No clobber: each output path pointed at a folder, a device-like file (a FIFO, a character device when root) and a
  read-only folder: one line, and no file outside what the task made changes.
Every output of those bad-input cases is collected; `Traceback` appears in none of it (the last test).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from hypothesis import given, strategies as st

from tests.helpers.cli import ROOT
from tests.helpers.context import make_context, output
from tests.helpers.fake_engine import FakeEngine
from tests.helpers.properties import (NAMES, YAML_WORDS, bounded, json_values, known_outcome, option_text,
                                      scalars, tallied, tally_table)
from torchdev import commands, records
from torchdev.checkout import read_plan_inputs
from torchdev.engine import RunResult, RunStatus
from torchdev.errors import TorchdevError
from torchdev.lock import drift, lock_spec, lock_text
from torchdev.matrix import load_matrix
from torchdev.project import plans_for
from torchdev.runner import execute
from smoke.smoke_contract import SummaryError, read_summary

OUTPUTS: list[str] = []
"""Everything the bad-input cases printed: `grep -c Traceback` over it must be 0."""
DIGEST = "sha256:" + "a" * 64
JOB_IMAGE = f"registry.test:5000/ml/job@{DIGEST}"
MATRIX_TEXT = (ROOT / "images.yaml").read_text(encoding="utf-8")
INPUTS = read_plan_inputs(make_context().paths, load_matrix(ROOT / "images.yaml", environ={}), environ={})


@pytest.fixture(scope="module", autouse=True)
def report_tallies(request):
    """Print how many examples each property ran and how long they took, once the module is done."""
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            for line in tally_table():
                reporter.write_line(line)


def ran(ctx, command, **options) -> tuple[int, str, str]:
    """Run a command as a task does (through the runner); its status, stdout and stderr, kept for the final grep."""
    status = execute(ctx, command, **options)
    out, err = output(ctx)
    OUTPUTS.append(out + err)
    return status, out, err


def assert_known(status: int, err: str) -> None:
    """A bad input ends in 0, or 1 or 2 with torchdev lines: never a bug, never a traceback."""
    assert status in (0, 1, 2), err
    assert "a bug in torchdev" not in err and "Traceback" not in err, err
    assert all(line.startswith("torchdev: ") for line in err.splitlines()), err


# --- the configuration loader -------------------------------------------------------------------------------------

WORDS = st.one_of(st.sampled_from(YAML_WORDS), st.text(max_size=12),
                  st.sampled_from(["&x {a: 1}", "*x", "<<: *x", "[a, {b: c}]", "{<<: *x}", "!!binary aGk=", "!!set {a}",
                                   "!!python/name:os.system", "- numpy: 1.26", "a: b: c", "'unclosed", "[" * 40]))


@st.composite
def damaged_matrix(draw) -> bytes:
    """The committed images.yaml with a few lines damaged (a value or key replaced by what YAML misreads, a line
    deleted, inserted, re-indented, the file cut short), CRLF or not, in some encoding."""
    lines = MATRIX_TEXT.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        index = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["value", "key", "delete", "insert", "indent", "truncate"]))
        line = lines[index]
        indent = " " * (len(line) - len(line.lstrip()))
        if kind == "value" and ": " in line:
            lines[index] = f"{line.partition(': ')[0]}: {draw(WORDS)}"
        elif kind == "key" and ":" in line:
            lines[index] = f"{indent}{draw(WORDS)}:{line.split(':', 1)[1]}"
        elif kind == "delete":
            del lines[index]
        elif kind == "insert":
            lines.insert(index, indent + draw(st.text(alphabet="&*<: -[]{}!|>'\"#ab1\t,.?%@`", max_size=16)))
        elif kind == "indent":
            lines[index] = " " * draw(st.integers(0, 9)) + line.lstrip()
        elif kind == "truncate":
            lines = lines[:index]
    text = ("\n".join(lines) + "\n").replace("\n", draw(st.sampled_from(["\n", "\r\n"])))
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "utf-16", "utf-32", "utf-16-le", "latin-1"]))
    return text.encode(encoding, errors="replace")


@bounded(40)
@given(data=damaged_matrix())
@tallied("loader: damaged images.yaml, any encoding")
def test_the_loader_reads_a_damaged_matrix_or_says_what_is_wrong(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("matrix", numbered=True)
    (folder / "images.yaml").write_bytes(data)
    matrix = known_outcome(lambda: load_matrix(folder / "images.yaml", environ={}))
    if not isinstance(matrix, TorchdevError):
        known_outcome(lambda: plans_for(matrix, list(matrix.variants), list(matrix.flavours),
                                        inputs=replace(INPUTS, locks={})))
    else:
        assert all(str(folder) in line for line in str(matrix).splitlines()), str(matrix)


KEYS = st.sampled_from(["image", "repository", "tags", "variants", "cpu", "cu117", "cu118", "base", "python", "torch",
                        "torchvision", "torchaudio", "index", "cuda", "cudnn", "lock", "digest", "apt_snapshot",
                        "platforms", "flavours", "runtime", "devel", "apt_packages", "pip_packages", "bases",
                        "cuda_toolchain", "cuda_components", "cuda_releases", "11.8", "packages", "pip_index",
                        "apt_snapshot_urls", "ubuntu", "release", "nvidia_require_cuda"])
OVERLAYS = st.recursive(scalars() | st.lists(scalars(), max_size=3),
                        lambda inner: st.dictionaries(KEYS, inner, max_size=4), max_leaves=10)


@bounded(30)
@given(overlay=st.dictionaries(KEYS, OVERLAYS, min_size=1, max_size=3))
@tallied("overlay merged over images.yaml")
def test_any_overlay_merges_into_a_matrix_or_a_known_error(tmp_path_factory, overlay):
    path = tmp_path_factory.mktemp("overlay", numbered=True) / "overlay.yaml"
    path.write_text(yaml.safe_dump(overlay))
    known_outcome(lambda: load_matrix(ROOT / "images.yaml", overlay=str(path), environ={}))


# --- every task's options, through the runner -----------------------------------------------------------------

def task_options():
    """Each task's command with its options drawn as a user may type them."""
    text, flag = option_text(), st.booleans()
    return st.one_of(
        st.tuples(st.just(commands.show_matrix), st.fixed_dictionaries({"overlay": st.none() | st.just("")})),
        st.tuples(st.just(commands.build), st.fixed_dictionaries(
            {"variant": text, "every": flag, "dry_run": st.just(True), "overlay": st.none(), "flavour": text,
             "platform": text})),
        st.tuples(st.just(commands.lock), st.fixed_dictionaries(
            {"variant": text, "every": flag, "check": st.just(True), "overlay": st.none(), "platform": text})),
        st.tuples(st.just(commands.list_images), st.fixed_dictionaries(
            {"overlay": st.none(), "manifest": text, "flavour": text, "sbom": text, "provenance": text,
             "out": text})),
        st.tuples(st.just(commands.run_smoke), st.fixed_dictionaries(
            {"variant": text, "every": flag, "gpus": text.map(lambda v: "auto" if v is None else v),
             "build_missing": st.just(False), "overlay": st.none(), "reports": text, "flavour": text,
             "platform": text, "checks": text})),
        st.tuples(st.just(commands.push), st.fixed_dictionaries(
            {"variant": text, "every": flag, "flavour": text, "overlay": st.none(), "to": text,
             "compression": text.map(lambda v: "gzip" if v is None else v), "force": flag})),
        st.tuples(st.just(commands.save_bases), st.fixed_dictionaries(
            {"variant": text, "every": flag, "overlay": st.none(), "to_registry": text, "to_archive": text})),
        st.tuples(st.just(commands.k8s), st.fixed_dictionaries(
            {"variant": NAMES | text.map(lambda v: v or ""), "image": st.none() | st.just(JOB_IMAGE) | text,
             "nodes": text, "gpus": text, "nproc": text, "name": text,
             "shm_size": text.map(lambda v: v or "2Gi"), "train_args": text.map(lambda v: v or "--task mlp"),
             "out": text, "overlay": st.none(), "cpu": text, "memory": text})),
    )


@bounded(48)
@given(case=task_options())
@tallied("task options, run through the runner")
def test_every_tasks_options_end_in_a_result_or_one_usage_line(tmp_path_factory, monkeypatch, case):
    command, options = case
    folder = tmp_path_factory.mktemp("options", numbered=True)
    monkeypatch.chdir(folder)  # relative --out, --reports and --to-archive land here
    status, _, err = ran(make_context(engine=FakeEngine(), reports=folder / "reports"), command, **options)
    assert_known(status, err)


# --- readers of files torchdev wrote --------------------------------------------------------------------------

def corrupted(document: object) -> st.SearchStrategy[bytes]:
    """A valid document cut short, emptied, with a field dropped or retyped, any JSON, or bytes that are no text."""
    text = json.dumps(document)
    keys = list(document) if isinstance(document, dict) else []
    return st.one_of(
        st.integers(0, len(text)).map(lambda n: text[:n].encode()),
        json_values().map(lambda value: json.dumps(value).encode()),
        st.sampled_from(keys).flatmap(lambda key: json_values().map(
            lambda value: json.dumps({**document, key: value}).encode())) if keys else st.just(b"{}"),
        st.binary(max_size=40))


PUSH_RECORD = {"image": "cu118", "tags": ["cu118"], "repository": "r.test:5000/t", "digest": DIGEST,
               "references": [f"r.test:5000/t:cu118@{DIGEST}"], "size": 1, "compression": "gzip",
               "platforms": ["linux/amd64"]}
SUMMARY = {"variant": "cu118", "torch": "2.0.1", "python": "3.10", "passed": 1, "failed": 0, "skipped": 0,
           "checks": [{"check": "environment", "nodeid": "test_environment.py::t", "outcome": "passed", "reason": "",
                       "duration": 0.1}], "image_id": DIGEST}
MANIFEST = {"base": {"image": "ubuntu:22.04", "digest": None}, "lock_sha256": None,
            "python": {"packages": [{"name": "torch", "version": "2.0.1"}]}, "debian_packages": ["libc6"]}
READERS = {
    "push record": (PUSH_RECORD, records.read_push_record),
    "copy digests": ({"sha256:1": [DIGEST, 1]}, lambda path: records.read_copy_digests(path.parent)),
    "smoke summary": (SUMMARY, records.read_smoke_summary),
    "buildx metadata": ({"containerimage.digest": DIGEST}, records.read_build_metadata),
    "image manifest": (MANIFEST, lambda path: records.parse_image_manifest(str(path), path.read_bytes().decode(
        "utf-8", errors="replace"))),
}


@bounded(60)
@given(case=st.sampled_from(sorted(READERS)).flatmap(lambda kind: st.tuples(st.just(kind),
                                                                             corrupted(READERS[kind][0]))))
@tallied("state-file readers, corrupted records")
def test_every_reader_of_a_file_torchdev_wrote_reads_it_or_names_it(tmp_path_factory, case):
    kind, data = case
    path = tmp_path_factory.mktemp("record", numbered=True) / records.COPY_DIGESTS
    path.write_bytes(data)
    result = known_outcome(lambda: READERS[kind][1](path))
    if isinstance(result, TorchdevError):
        assert str(result).startswith(str(path)) and "\n" not in str(result), str(result)


@bounded(30)
@given(data=corrupted(SUMMARY))
@tallied("the smoke suite's own summary reader")
def test_the_suites_summary_reader_says_what_is_wrong_without_a_traceback(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("summary", numbered=True) / "cu118.json"
    path.write_bytes(data)
    try:
        read_summary(path)
    except SummaryError as error:
        assert str(error) and "\n" not in str(error)


LOCK_TEXT = (ROOT / "locks" / "cu117.txt").read_text()


@bounded(40)
@given(data=st.one_of(st.integers(0, 2000).map(lambda n: LOCK_TEXT[:n].encode()), st.binary(max_size=60),
                      st.text(max_size=200).map(str.encode)))
@tallied("lock files cut short or garbled")
def test_a_damaged_lock_reads_as_drift_or_names_the_file(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("lock", numbered=True) / "cu117.txt"
    path.write_bytes(data)
    matrix = load_matrix(ROOT / "images.yaml", environ={})
    spec = lock_spec(matrix=matrix, variant=matrix.variant("cu117"))
    text = known_outcome(lambda: lock_text(path, command="./dev lock --variant cu117"))
    if isinstance(text, str):
        assert isinstance(drift(expected=spec, text=text), list)
    else:
        assert str(text).startswith(str(path)) and "./dev lock --variant cu117" in str(text)


# --- corrupt state: every task that reads a file, with the file broken ------------------------------------------

BROKEN = {"truncated": lambda good: good[: len(good) // 2], "empty": lambda good: "",
          "wrong JSON type": lambda good: '["a list", 1]'}


def checkout(tmp_path: Path) -> Path:
    """A copy of images.yaml with its locks, so a test may break them."""
    shutil.copy(ROOT / "images.yaml", tmp_path / "images.yaml")
    shutil.copytree(ROOT / "locks", tmp_path / "locks")
    return tmp_path / "images.yaml"


def state_cases():
    """(kind, how it is broken): each file kind in each broken form, and as a folder."""
    return [(kind, broken) for kind in ("push record", "copy digests", "smoke summary", "lock", "buildx metadata",
                                        "image manifest") for broken in (*BROKEN, "a folder")]


@pytest.mark.parametrize("kind, broken", state_cases())
def test_a_broken_state_file_is_one_line_naming_it_in_every_task_that_reads_it(tmp_path, kind, broken):
    reports = tmp_path / "reports"
    matrix_file = checkout(tmp_path)
    engine = FakeEngine()
    ctx = lambda: make_context(engine=engine, reports=reports, matrix_file=matrix_file)  # noqa: E731
    plan = read_plans_for(ctx(), "cpu")

    def place(path: Path, good: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        if broken == "a folder":
            path.mkdir()
        else:
            path.write_text(BROKEN[broken](good))
        return path

    runs = []
    if kind == "push record":
        path = place(records.push_record_path(reports / "push", "cpu"), json.dumps(PUSH_RECORD))
        runs.append(lambda: ran(ctx(), commands.k8s, variant="cpu", image=None, nodes=None, gpus=None, nproc=None,
                                name=None, shm_size="2Gi", train_args="--task mlp", out=None, overlay=None))
    elif kind == "copy digests":
        path = place(reports / "push" / records.COPY_DIGESTS, json.dumps({"sha256:1": [DIGEST, 1]}))
        engine.add_image(plan.primary_reference)
        runs.append(lambda: ran(ctx(), commands.push, variant="cpu", every=False, flavour="runtime", overlay=None,
                                to="registry.test:5000/ml/torchdev", force=True))
    elif kind == "smoke summary":
        path = place(records.smoke_summary_path(reports / "smoke", "cpu"), json.dumps(SUMMARY))
        engine.add_image(plan.primary_reference)
        runs.append(lambda: ran(ctx(), commands.push, variant="cpu", every=False, flavour="runtime", overlay=None,
                                to="registry.test:5000/ml/torchdev"))
    elif kind == "lock":
        path = tmp_path / "locks" / "cu117.txt"
        path.unlink()
        place(path, LOCK_TEXT)
        if broken == "wrong JSON type":
            path.write_bytes(b"\xff\xfe\x00garbage that is no text")
        runs += [lambda: ran(ctx(), commands.lock, variant="cu117", every=False, check=True, overlay=None),
                 lambda: ran(ctx(), commands.build, variant="cu117", every=False, dry_run=False, overlay=None),
                 lambda: ran(ctx(), commands.up, variant="cu117", overlay=None)]
    elif kind == "buildx metadata":
        path = Path("<buildx's metadata file>")
        engine.build = broken_metadata_build(engine, broken)
        runs.append(lambda: ran(ctx(), commands.build, variant="cpu", every=False, dry_run=False, overlay=None,
                                unlocked=True))
    else:
        path = Path(f"{plan.primary_reference}:/usr/share/torchdev/manifest.json")
        engine.add_image(plan.primary_reference)
        text = {"a folder": "", **BROKEN}[broken](json.dumps(MANIFEST)) if broken != "a folder" else None
        engine.runs[plan.primary_reference] = (RunResult(RunStatus.EXITED, 1, "cat: Is a directory") if text is None
                                               else RunResult(RunStatus.EXITED, 0, text))
        runs.append(lambda: ran(ctx(), commands.list_images, overlay=None, manifest="cpu"))
    for run in runs:
        status, out, err = run()
        assert status in (1, 2), out + err
        assert_known(status, err)
        named = ["buildx"] if kind == "buildx metadata" else [str(path), f"({path.relative_to(tmp_path)})"] \
            if path.is_relative_to(tmp_path) else [str(path)]
        named += [f" {path.relative_to(tmp_path)} "] if path.is_relative_to(tmp_path) else []
        assert len(err.splitlines()) == 1 and any(name in err for name in named), err


def read_plans_for(ctx, variant: str):
    from torchdev.checkout import read_plans
    matrix = load_matrix(ctx.paths.matrix_file, environ={})
    return read_plans(ctx.paths, matrix, [matrix.variant(variant)], environ={}, native=ctx.native_platform)[0]


def broken_metadata_build(engine: FakeEngine, broken: str):
    """The fake engine's build, then buildx's metadata file broken as `broken` says."""
    build = engine.build

    def run(request, *, log_path, out):
        status, lines = build(request, log_path=log_path, out=out)
        metadata = request.metadata_file
        good = metadata.read_text()
        metadata.unlink()
        if broken == "a folder":
            metadata.mkdir()
        else:
            metadata.write_text(BROKEN[broken](good))
        return status, lines
    return run


# --- no clobber: output paths pointed at what must not be replaced ----------------------------------------------

def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under `folder`: its kind, mode, size and content (for files)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        content = path.read_bytes() if stat.S_ISREG(info.st_mode) else b""
        found[str(path.relative_to(folder))] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), content)
    return found


def device_like(path: Path) -> None:
    """A character device (as root, /dev/null's numbers) or, where that is not allowed, a FIFO."""
    try:
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        os.mkfifo(path)


def output_cases():
    """(task, the output it writes, relative to the test's folder, and the command's options)."""
    k8s = dict(variant="cpu", image=JOB_IMAGE, nodes=None, gpus=None, nproc=None, name="job", shm_size="2Gi",
               train_args="--task mlp", overlay=None)
    return [
        ("k8s --out", "out/pytorchjob.yaml", commands.k8s, {**k8s, "out": "out"}),
        ("k8s, reports/k8s", "reports/k8s/job/indexed-job.yaml", commands.k8s, {**k8s, "out": None}),
        ("smoke --reports", "smoked/cpu.json", commands.run_smoke,
         dict(variant="cpu", every=False, gpus="none", build_missing=False, overlay=None, reports="smoked")),
    ]


@pytest.mark.parametrize("task, target, command, options", output_cases(), ids=lambda value: value
                         if isinstance(value, str) and " " in value else "")
@pytest.mark.parametrize("obstacle", ["a folder", "a device", "a read-only folder"])
def test_an_output_path_that_is_not_a_writable_regular_file_is_refused_and_nothing_changes(
        tmp_path, monkeypatch, task, target, command, options, obstacle):
    with workspace(tmp_path, open_to_others=obstacle == "a read-only folder") as folder:
        monkeypatch.chdir(folder)
        path = folder / target
        path.parent.mkdir(parents=True)
        (path.parent / "theirs.txt").write_text("a file the task did not make\n")
        if obstacle == "a folder":
            path.mkdir()
        elif obstacle == "a device":
            device_like(path)
        engine = FakeEngine()
        if command is commands.run_smoke:
            engine.add_image(read_plans_for(make_context(), "cpu").primary_reference)
        before = snapshot(folder)
        ctx = make_context(engine=engine, reports=folder / "reports")
        if obstacle == "a read-only folder":
            path.parent.chmod(0o555)
            status, err = unprivileged(lambda: ran(ctx, command, **options))
            path.parent.chmod(0o755)
        else:
            status, _, err = ran(ctx, command, **options)
        OUTPUTS.append(err)
        assert status == 2, err
        assert_known(status, err)
        named = Path(target).parent if obstacle == "a read-only folder" else Path(target)
        assert len(err.splitlines()) == 1 and (f"{named} " in err or f"{folder / named} " in err), err
        assert snapshot(folder) == before


@contextlib.contextmanager
def workspace(tmp_path: Path, *, open_to_others: bool):
    """The test's folder; for a test that runs as nobody, one nobody can reach (pytest's own is root's alone)."""
    if not open_to_others or os.geteuid() != 0:
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="torchdev-test-noclobber-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def unprivileged(action) -> tuple[int, str]:
    """Run `action` as nobody when this process is root (root writes into a read-only folder regardless): in a child
    process, its status and stderr sent back through a pipe."""
    if os.geteuid() != 0:
        status, _, err = action()
        return status, err
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        os.close(reader)
        try:
            os.setgid(65534)
            os.setuid(65534)
            status, _, err = action()
            os.write(writer, json.dumps([status, err]).encode())
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        received = pipe.read()
    os.waitpid(child, 0)
    assert received, "the unprivileged child sent nothing back"
    status, err = json.loads(received)
    return status, err


def test_no_bad_input_printed_a_traceback():
    """`grep -c Traceback` over everything the bad-input cases above printed is 0 (and they printed)."""
    assert len(OUTPUTS) > 50
    assert sum(text.count("Traceback") for text in OUTPUTS) == 0
