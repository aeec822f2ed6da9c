"""The command line itself, for every task in tasks.py: `--help` shows the task's help (exit 0), a malformed command
line is one usage line with a "did you mean" where one fits (exit 2, no traceback), `--list` shows each task's whole
first line; and the entry points (`./dev`, and `invoke` in .venv/bin) run torchdev's tasks from any folder.

Most cases run torchdev.cli's program in-process (it is what `./dev` execs, and it parses without running a task);
the few that must prove the entry points themselves run `./dev` and `invoke` as subprocesses, in parallel.
"""
from __future__ import annotations

import inspect
import os
import subprocess
from dataclasses import dataclass

import pytest

from tests.helpers.cli import ROOT
from torchdev.cli import DevProgram, load_tasks

TASKS = load_tasks()
NAMES = sorted(TASKS.task_names)


@dataclass(frozen=True)
class Ran:
    status: int
    out: str
    err: str


def dev(capsys, *argv: str) -> Ran:
    """Run the program as `./dev ARGV` runs it, in-process; parse errors, help and listings end before any task."""
    with pytest.raises(SystemExit) as exited:
        DevProgram().run(["dev", *argv])
    out, err = capsys.readouterr()
    return Ran(exited.value.code or 0, out, err)


def assert_usage_line(ran: Ran) -> str:
    """Exit 2, one `torchdev: ...` line on stderr, nothing on stdout, no traceback; the line."""
    assert ran.status == 2, ran
    assert ran.out == "" and "Traceback" not in ran.err, ran
    assert len(ran.err.splitlines()) == 1 and ran.err.startswith("torchdev: "), ran.err
    return ran.err.strip()


def long_options(name: str) -> list[str]:
    """The task's --options as invoke makes them from its parameters (all_ -> --all, dry_run -> --dry-run)."""
    return [f"--{arg.name.replace('_', '-').strip('-')}" for arg in TASKS[name].get_arguments()]


def misspelled(option: str) -> str:
    """--variant -> --vairant: two letters of the name swapped, as a typing hand does."""
    body = option[2:]
    middle = len(body) // 2
    return "--" + body[:middle - 1] + body[middle] + body[middle - 1] + body[middle + 1:]


def test_every_task_is_found():
    assert {"build", "k8s", "verify", "verify-repro", "lock", "up", "smoke", "doctor", "matrix"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("form", ["{name} --help", "{name} -h", "--help {name}"])
def test_help_works_for_every_task(capsys, name, form):
    """Also for the tasks with a required argument (k8s, verify, verify-repro), which invoke 2.2 fed `--help` to."""
    ran = dev(capsys, *form.format(name=name).split())
    assert (ran.status, ran.err) == (0, ""), ran
    assert ran.out.startswith(f"Usage: ./dev {name} "), ran.out
    assert inspect.getdoc(TASKS[name]).splitlines()[0] in ran.out
    assert all(option in ran.out for option in long_options(name)), ran.out


@pytest.mark.parametrize("name", NAMES)
def test_a_misspelled_option_of_every_task_is_one_line_with_the_option_it_resembles(capsys, name):
    option = max(long_options(name), key=len)
    line = assert_usage_line(dev(capsys, name, misspelled(option)))
    assert line.startswith(f"torchdev: `./dev {name}` has no option {misspelled(option)}: did you mean {option}? ")
    assert line.endswith(f"`./dev {name} --help` lists its options")


@pytest.mark.parametrize("name", [name for name in NAMES if any(arg.kind is str for arg in TASKS[name].get_arguments())])
def test_an_option_of_every_task_without_its_value_is_one_line(capsys, name):
    option = next(f"--{arg.name.replace('_', '-')}" for arg in TASKS[name].get_arguments() if arg.kind is str)
    positional = [value for arg in TASKS[name].get_arguments() if arg.positional
                  for value in (f"--{arg.name.replace('_', '-')}", "x") if f"--{arg.name}" != option]
    line = assert_usage_line(dev(capsys, name, *positional, option))
    assert line == f"torchdev: {option} needs a value: write {option} VALUE (`./dev {name} --help` says what it takes)"


@pytest.mark.parametrize("argv, line", [
    (["biuld"], "no task 'biuld': did you mean build? `./dev --list` lists the tasks"),
    (["frobnicate"], "no task 'frobnicate': `./dev --list` lists the tasks"),
    (["--help", "smok"], "no task 'smok': did you mean smoke? `./dev --list` lists the tasks"),
    (["build", "--variant", "cu118", "smok"], "`./dev build` takes no word 'smok': did you mean the task smoke? its "
                                              "options start with -- (`./dev build --help` lists them)"),
    (["build", "cu118"], "`./dev build` takes no word 'cu118': its options start with -- (`./dev build --help` lists "
                         "them)"),
    (["build", "--all=yes"], "--all takes no value: write --all alone"),
    (["k8s"], "`./dev k8s` needs --variant: e.g. `./dev k8s --variant VARIANT` (`./dev k8s --help` lists its "
              "options)"),
    (["verify"], "`./dev verify` needs --reference and --key: e.g. `./dev verify --reference REFERENCE --key KEY` "
                 "(`./dev verify --help` lists its options)"),
    (["build", "--variant", "cpu", "--dry"], "`./dev build` has no option --dry: did you mean --dry-run? `./dev "
                                             "build --help` lists its options"),
    (["smoke", "--variant", "cpu", "--echo"], "`./dev smoke` has no option --echo: --echo goes before the task: "
                                              "`./dev --echo smoke ...`; `./dev smoke --help` lists its options"),
    (["--bogus"], "`./dev` has no option --bogus: `./dev --help` lists its options"),
    (["--list-depth", "x"], "--list-depth x: not a whole number: write a number, e.g. --list-depth 2"),
    (["--list", "build"], "--list build: torchdev's tasks have no namespaces to list: `./dev --list` lists every "
                          "task, `./dev TASK --help` one task's options"),
    (["--list", "--list-format", "xml"], "--list-format xml: not a format: use flat, nested or json"),
])
def test_each_kind_of_command_line_invoke_cannot_parse_is_torchdevs_usage_line(capsys, argv, line):
    assert assert_usage_line(dev(capsys, *argv)) == f"torchdev: {line}"


def test_list_shows_each_tasks_whole_first_line_on_one_line_of_80_columns(capsys):
    """invoke lists a docstring's first line only, wrapped to the terminal (80 columns when it is none): each task's
    first line is a whole sentence that fits, so the listing has one line per task."""
    ran = dev(capsys, "--list")
    rows = [line for line in ran.out.splitlines()[1:] if line.strip()]
    assert len(rows) == len(NAMES) and all(len(row) <= 80 for row in rows), ran.out
    for name, row in zip(NAMES, rows):
        first = inspect.getdoc(TASKS[name]).splitlines()[0]
        assert row.split(None, 1) == [name, first] and first.endswith("."), row


# --- the entry points, as a user's shell runs them ----------------------------------------------------------------

VENV_BIN = ROOT / ".venv" / "bin"


def plain_environment() -> dict[str, str]:
    """A shell's environment after the README's set-up and nothing else: .venv/bin first on PATH, no virtualenv
    active, no PYTHONPATH."""
    return {"PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8", **{name: os.environ[name] for name in ("DOCKER_HOST", "TMPDIR") if name in os.environ}}


def test_dev_and_invoke_run_torchdevs_tasks_from_any_folder_and_a_closed_pipe_ends_quietly():
    """`./dev` from the root, `invoke` from train/ (which once had a tasks.py of its own) with a path relative to
    it, `inv` from docs/, in parallel; then `./dev matrix` into a pipe closed before it writes."""
    if not (VENV_BIN / "python").exists() or (ROOT / ".venv/.requirements").read_bytes() != \
            (ROOT / "requirements.txt").read_bytes():
        pytest.skip("./dev has not made .venv from this requirements.txt: it would install it first")
    subprocess.run([str(ROOT / "dev"), "--version"], check=True, capture_output=True, cwd=ROOT / "docs")
    runs = {}
    for name, argv, folder in [("dev", [str(ROOT / "dev"), "k8s", "--help"], ROOT),
                               ("invoke", ["invoke", "build", "--variant", "cu117", "--overlay",
                                           "../overlays/local-debian.yaml", "--dry-run"], ROOT / "train"),
                               ("inv", ["inv", "biuld"], ROOT / "docs"),
                               ("pipe", [str(ROOT / "dev"), "matrix", "--wide"], ROOT)]:
        runs[name] = subprocess.Popen(argv, cwd=folder, env=plain_environment(), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
    runs["pipe"].stdout.close()  # before it writes: its first line meets a closed pipe
    done = {name: (run.wait(60), run.stdout.read() if not run.stdout.closed else "", run.stderr.read())
            for name, run in runs.items()}
    assert done["dev"][0] == 0 and done["dev"][1].startswith("Usage: ./dev k8s --variant VARIANT"), done["dev"]
    assert done["invoke"][0] == 0 and "cu117: build plan" in done["invoke"][1], done["invoke"]
    assert done["inv"][0] == 2 and done["inv"][2] == (
        "torchdev: no task 'biuld': did you mean build? `./dev --list` lists the tasks\n"), done["inv"]
    assert done["pipe"][0] == 1 and done["pipe"][2] == "", done["pipe"]


# --- files users write, read through the command line as they wrote them ------------------------------------------

OVERLAY_TEXT = 'image:\n  repository: registry.test:5000/ml/torchdev\nvariants:\n  cu118:\n    python: 3.10\n'


@pytest.mark.parametrize("encoding, newline", [
    ("utf-16", "\r\n"),      # Windows PowerShell 5's `>` and Notepad's "Unicode": UTF-16 LE with a byte-order mark
    ("utf-8-sig", "\r\n"),   # Notepad's UTF-8: a byte-order mark, CRLF
    ("utf-8", "\r\n"),
], ids=["utf-16 bom crlf", "utf-8 bom crlf", "utf-8 crlf"])
def test_an_overlay_saved_on_windows_is_read_as_written_through_the_command_line(capsys, monkeypatch, tmp_path,
                                                                                 encoding, newline):
    """Read as the user wrote it: the repository it sets is used, and the unquoted 3.10 on its line 5 is named
    there, with the quoting that keeps it 3.10 (YAML reads 3.1)."""
    monkeypatch.delenv("TORCHDEV_OVERLAY", raising=False)
    overlay = tmp_path / "site.yaml"
    overlay.write_bytes(OVERLAY_TEXT.replace("\n", newline).encode(encoding))
    with pytest.raises(SystemExit) as exited:
        DevProgram().run(["dev", "matrix", "--overlay", str(overlay)])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err == (f"torchdev: {overlay}:5: variant 'cu118': key 'python': expected a "
                                             'string, got a number (3.1): write it quoted: python: "3.10"\n'), err
    overlay.write_bytes(OVERLAY_TEXT.replace("3.10", '"3.10"').replace("\n", newline).encode(encoding))
    DevProgram().run(["dev", "matrix", "--overlay", str(overlay), "--wide"])
    out, err = capsys.readouterr()
    assert err == "" and "repository: registry.test:5000/ml/torchdev" in out


def test_an_overlay_in_a_legacy_windows_code_page_is_refused_in_one_line(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("TORCHDEV_OVERLAY", raising=False)
    overlay = tmp_path / "site.yaml"
    overlay.write_bytes("# café mirror\r\npip_index: https://pypi.test/simple\r\n".encode("cp1252"))
    with pytest.raises(SystemExit) as exited:
        DevProgram().run(["dev", "matrix", "--overlay", str(overlay)])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"torchdev: {overlay}:1: not UTF-8 text") and "save the file as UTF-8" in err


FAKE_PYTHON = """#!/bin/sh
# answers ./dev's two questions as Python {version} would
case "$2" in
  *version_info*) exit 1 ;;
  *python_version*) echo {version} ;;
  *) echo "not asked: $*" >&2; exit 3 ;;
esac
"""


@pytest.mark.parametrize("python, said", [
    ("fake-3.9", "torchdev: {python} is Python 3.9.18, and torchdev's tools need 3.10 or newer: install one"),
    ("no-such-python3", "torchdev: no {python} on PATH: install Python 3.10 or newer"),
])
def test_dev_checks_the_python_floor_before_it_makes_anything(tmp_path, python, said):
    """requirements.txt needs Python 3.10 (packaging 26.4): an older one is one line naming both versions, exit 2,
    before pip could print its 2 KB of versions; nothing is made."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in ("dev", "requirements.txt"):
        (checkout / name).write_bytes((ROOT / name).read_bytes())
    fake = tmp_path / "fake-3.9"
    fake.write_text(FAKE_PYTHON.format(version="3.9.18"))
    fake.chmod(0o755)
    chosen = str(fake) if python == "fake-3.9" else python
    result = subprocess.run(["bash", str(checkout / "dev"), "--list"], capture_output=True, text=True, timeout=30,
                            env={**plain_environment(), "TORCHDEV_PYTHON": chosen})
    assert result.returncode == 2 and result.stdout == "", result
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(said.format(python=chosen)), result.stderr
    assert sorted(path.name for path in checkout.iterdir()) == ["dev", "requirements.txt"]
