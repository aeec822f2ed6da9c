"""The program `./dev` runs: invoke's, loading tasks.py, with its command-line errors said as torchdev says every
usage error, one `torchdev: ...` line and exit status 2, where invoke would exit 1 after its own wording."""
from __future__ import annotations

import re
import sys

from invoke import Program
from invoke.exceptions import Exit, ParseError

from torchdev.errors import USAGE, Problem, UsageError

HELP = "`./dev --list` lists the tasks, `./dev --help TASK` a task's options"
NEEDS_VALUE = Problem("--{option} needs a value", HELP, UsageError, USAGE)
UNKNOWN_WORD = Problem("unknown task or option '{word}'", HELP, UsageError, USAGE)
BAD_COMMAND_LINE = Problem("{message}", HELP, UsageError, USAGE)
"""invoke's other parse errors, in its words."""


class DevProgram(Program):
    """invoke's Program; a ParseError becomes torchdev's usage line, exit 2."""

    def parse_tasks(self) -> None:
        try:
            super().parse_tasks()
        except ParseError as error:
            raise Exit(_usage_line(error), code=UsageError.exit_status) from None

    def parse_cleanup(self) -> None:
        try:
            super().parse_cleanup()
        except ParseError as error:
            raise Exit(_usage_line(error), code=UsageError.exit_status) from None


def _usage_line(error: ParseError) -> str:
    """invoke's words, plainer: `--variant needs a value`, `unknown task or option '--bogus'`."""
    message = str(error)
    needs = re.match(r"Flag <Argument: ([\w-]+).*> needed value", message)
    unknown = re.match(r"No idea what '(.*)' is!", message)
    if needs:
        line = NEEDS_VALUE.line(option=needs.group(1).replace("_", "-"))
    elif unknown:
        line = UNKNOWN_WORD.line(word=unknown.group(1))
    else:
        line = BAD_COMMAND_LINE.line(message=message.rstrip("!"))
    return f"torchdev: {line}"


def main(argv: list[str] | None = None) -> None:
    DevProgram(name="torchdev", binary="dev", binary_names=["dev"]).run(argv)


if __name__ == "__main__":
    main(sys.argv)
