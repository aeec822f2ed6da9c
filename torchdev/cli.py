"""The program `./dev` runs: invoke's, loading tasks.py, with its command-line errors said as torchdev says every
usage error, one `torchdev: ...` line and exit status 2, where invoke would exit 1 after its own wording."""
from __future__ import annotations

import re
import sys

from invoke import Program
from invoke.exceptions import Exit, ParseError

from torchdev.errors import Problem, UsageError

BAD_COMMAND_LINE = Problem("{message}", "`./dev --list` lists the tasks, `./dev --help TASK` a task's options",
                           UsageError, topic="usage")
"""invoke's own parse errors: an unknown task or option, an option without its value."""


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
        message = f"--{needs.group(1).replace('_', '-')} needs a value"
    elif unknown:
        message = f"unknown task or option '{unknown.group(1)}'"
    return f"torchdev: {BAD_COMMAND_LINE.line(message=message.rstrip('!'))}"


def main(argv: list[str] | None = None) -> None:
    DevProgram(name="torchdev", binary="dev", binary_names=["dev"]).run(argv)


if __name__ == "__main__":
    main(sys.argv)
