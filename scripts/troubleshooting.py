#!/usr/bin/env python3
"""Write the section of docs/troubleshooting.md that lists every error line torchdev prints, with its fix, from the
Problems declared in torchdev/ (torchdev.errors.catalogue), so the page cannot drift from the code.

    .venv/bin/python scripts/troubleshooting.py           # rewrite the section in place
    .venv/bin/python scripts/troubleshooting.py --check   # exit 1 when the committed page differs (the unit test does this)
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from torchdev.errors import CONFIGURATION, RUNTIME, STATE, USAGE, catalogue  # noqa: E402
from torchdev.presenter import BUG  # noqa: E402

PAGE = ROOT / "docs" / "troubleshooting.md"
BEGIN = "<!-- BEGIN error lines: written by scripts/troubleshooting.py from torchdev's Problems; do not edit -->"
END = "<!-- END error lines -->"
TOPICS = ((USAGE, "The command line and the environment", "what a task was told"),
          (CONFIGURATION, "images.yaml and overlays", "the matrix, checked when it is loaded, before any build"),
          (STATE, "Files torchdev wrote and reads back", "reports/ and the like: cut short, edited, or replaced"),
          (RUNTIME, "At run time", "the engine, a registry, a build, uv"))


def cell(text: str) -> str:
    """A table cell as code (so <name> shows, and backticks inside stay), its pipes escaped as tables need."""
    escaped = text.replace("|", "\\|")
    return f"`` {escaped} ``" if text else "(the line says it)"


def section() -> str:
    """The generated section, markers included."""
    problems = list(catalogue())
    lines = [BEGIN, "", "Every error torchdev prints is one line, `torchdev: <cause>: <fix>`, on stderr; `<name>` below "
             "stands for what the line fills in. The exit status is 2 for the command line, the environment and the "
             "configuration, 1 for the others; a command interrupted by Ctrl-C (SIGINT) or SIGTERM removes what it had "
             "started and says so in one line, exit 130 or 143 (128 + the signal). Anything else is a bug in "
             f"torchdev: one line saying so, with the path of the log that holds its traceback (reports/bugs/), and "
             f"exit status {BUG}; `./dev --debug TASK` or TORCHDEV_DEBUG=1 shows the traceback of any error.", ""]
    for topic, title, what in TOPICS:
        rows = [(problem.template(), problem.exit_status, module) for module, _, problem in problems
                if problem.topic == topic]
        lines += [f"### {title}", "", f"{what[0].upper()}{what[1:]}.", "", "| error line | fix | exit | from |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {cell(cause)} | {cell(fix)} | {status} | `torchdev/{module}.py` |"
                  for (cause, fix), status, module in sorted(rows, key=lambda row: (row[2], row[0]))]
        lines.append("")
    return "\n".join(lines + [END])


def page(text: str) -> str:
    """`text` (the page) with its generated section written anew, or appended when it has none."""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        return head + section() + rest.split(END, 1)[1]
    return text.rstrip("\n") + "\n\n## Every error line\n\n" + section() + "\n"


def main(argv: list[str]) -> int:
    current = PAGE.read_text(encoding="utf-8")
    wanted = page(current)
    if "--check" in argv:
        if current != wanted:
            print(f"{PAGE} differs from the error definitions: run .venv/bin/python scripts/troubleshooting.py",
                  file=sys.stderr)
            return 1
        return 0
    if current != wanted:
        PAGE.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
