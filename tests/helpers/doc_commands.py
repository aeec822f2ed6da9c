"""The torchdev commands the documentation shows, and how each fares against the real tasks and options.

Two kinds: a command line in a ```bash block (`./dev build --variant cu118 --dry-run`), which must parse as the
program parses it, values and all; and a command named in a sentence (`./dev lock --check --all`, `./dev k8s
--shm-size`), which may leave out values or use placeholders (TASK, <variant>, [--image JOB@...]), but whose task
and every --option must exist.
"""
from __future__ import annotations

import contextlib
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from invoke import Collection

from torchdev.cli import DevProgram

ENTRY_POINTS = ("./dev", "invoke", "inv")
FENCE = re.compile(r"^\s*```(\w*)")
SHELL_FENCES = {"bash", "sh", "shell", "console"}
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
INLINE = re.compile(r"`((?:\./dev|invoke|inv) [^`]*)`")


@dataclass(frozen=True)
class Shown:
    """A command where the documentation shows it: file, line, the words after the entry point, and whether it is
    a whole command line (a bash block's) or one named in a sentence."""

    file: Path
    line: int
    words: tuple[str, ...]
    whole: bool

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: ./dev {' '.join(self.words)}"


def shown_commands(path: Path, text: str) -> list[Shown]:
    """Every torchdev command in a Markdown text: the lines of its shell blocks that run one (after any VAR=value
    settings, comments dropped, continued lines joined), and those its sentences name in `code`."""
    found: list[Shown] = []
    fence: str | None = None
    pending = ""
    for number, line in enumerate(text.splitlines(), 1):
        opened = FENCE.match(line)
        if opened:
            fence = None if fence is not None else opened.group(1)
            continue
        if fence is None:
            found += [Shown(path, number, tuple(_split(span)[1:]), whole=False) for span in INLINE.findall(line)]
        elif fence in SHELL_FENCES:
            pending += line.rstrip("\\") + " " if line.rstrip().endswith("\\") else line
            if line.rstrip().endswith("\\"):
                continue
            words = _split(pending)
            pending = ""
            while words and ASSIGNMENT.match(words[0]):
                words.pop(0)
            if words and words[0] in ENTRY_POINTS:
                found.append(Shown(path, number, tuple(words[1:]), whole=True))
    return found


def _split(text: str) -> list[str]:
    try:
        return shlex.split(text, comments=True)
    except ValueError:
        return text.split()


class ParseOnly(DevProgram):
    """The program with its parser and its tasks, that parses a command line and runs nothing."""

    def execute(self) -> None:
        self.parsed = [context.name for context in self.tasks]


def problem_with(shown: Shown, tasks: Collection) -> str:
    """'' when the command fits the real tasks and options, else what is wrong with it."""
    return _parse_problem(shown) if shown.whole else _named_problem(shown, tasks)


def _parse_problem(shown: Shown) -> str:
    """A whole command line parsed as `./dev` parses it (help and listings end the parse, as they end the program):
    '' when it parses, else the line the program said."""
    said = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(said):
            ParseOnly().run(["dev", *shown.words])
    except SystemExit as exited:
        return f"{said.getvalue().strip()} (exit status {exited.code})" if exited.code else ""
    return said.getvalue().strip()


def _named_problem(shown: Shown, tasks: Collection) -> str:
    """A command named in a sentence: its task exists (unless a placeholder stands for it) and so does each
    --option; values, and the words in <> or [] that stand for them, are not checked."""
    words = [word.strip("[]") for word in shown.words]
    task = next((word for word in words if not word.startswith("-")), None)
    core = {f"--{name}" for arg in DevProgram().initial_context.args.values() for name in arg.names}
    if task is None or not re.fullmatch(r"[a-z][a-z0-9-]*", task):
        return ", ".join(f"no option {word}" for word in words if word.startswith("--") and word.split("=")[0]
                         not in core)
    if task not in tasks.task_names and task not in tasks.tasks:
        return f"no task {task}"
    context = next(context for context in tasks.to_contexts() if context.name == task)
    flags = set(context.flags) | {"--help", "-h"}
    after = words[words.index(task) + 1:]
    return ", ".join(f"`./dev {task}` has no option {word}" for word in after
                     if word.startswith("--") and word.split("=")[0] not in flags)



def marked_commands(text: str, marker: str) -> list[tuple[str, ...]]:
    """The commands of the shell block right after each `<!-- marker -->` line of a Markdown text, each as the words
    a shell would split it into (comments dropped, continued lines joined; nothing expanded, so `$NAME` stays). The
    marker says which blocks a test walks, so a page can show other commands around them."""
    commands: list[tuple[str, ...]] = []
    lines = iter(text.splitlines())
    for line in lines:
        if line.strip() != f"<!-- {marker} -->":
            continue
        opened = FENCE.match(next(lines, ""))
        assert opened and opened.group(1) in SHELL_FENCES, f"no shell block right after {line.strip()}"
        pending = ""
        for body in lines:
            if FENCE.match(body):
                break
            if body.rstrip().endswith("\\"):
                pending += body.rstrip()[:-1] + " "
                continue
            words = shlex.split(pending + body, comments=True)
            pending = ""
            if words:
                commands.append(tuple(words))
    return commands
