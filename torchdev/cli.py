"""The program `./dev` runs (and `invoke`, after the README's set-up): invoke's, always on this checkout's tasks.py
wherever it is started from, with every command-line error said as torchdev says usage errors: one `torchdev: ...`
line naming the cause and the fix, a "did you mean" where one fits, and exit status 2 (invoke would exit 1 after its
own wording, or show a traceback for a count that is not a number).

Two things invoke 2.2 gets wrong are handled here:
- a task's required positional argument takes `--help` as its value (pyinvoke/invoke#982), so `./dev k8s --help` ran
  k8s for a variant called '--help'; any other word starting with '-' too. Each task's parser context gets its own
  -h/--help flag, which the parser sees before it fills a positional, so `--help` after any task shows that task's
  help; and a required argument refuses a value that starts with '-' (RequiredArgument).
- invoke's own options (`--dry`, `--echo`, `--warn-only`, ...) are accepted after a task's name, where a user means
  the task's: `./dev build --variant cu118 --dry` would build. After a task's name only its own options (and
  --help) are taken; invoke's go before it.
"""
from __future__ import annotations

import difflib
import importlib.util
import inspect
import os
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Iterable

from invoke import Collection, Program
from invoke.exceptions import Exit, ParseError
from invoke.parser import Argument, Parser, ParserContext

from torchdev.errors import USAGE, Problem, UsageError

ROOT = Path(__file__).resolve().parent.parent
"""The checkout whose tasks.py this program runs."""

NO_SUCH_TASK = Problem("no task '{word}'", "{guess}`./dev --list` lists the tasks", UsageError, USAGE)
NO_SUCH_OPTION = Problem("`{command}` has no option {word}", "{guess}`{command} --help` lists its options",
                         UsageError, USAGE)
STRAY_WORD = Problem("`{command}` takes no word '{word}'",
                     "{guess}its options start with -- (`{command} --help` lists them)", UsageError, USAGE)
NEEDS_VALUE = Problem("{flag} needs a value", "write {flag} VALUE (`{command} --help` says what it takes)",
                      UsageError, USAGE)
TAKES_NO_VALUE = Problem("{flag} takes no value", "write {flag} alone", UsageError, USAGE)
MISSING_ARGUMENTS = Problem("`{command}` needs {missing}", "e.g. `{usage}` (`{command} --help` lists its options)",
                            UsageError, USAGE)
NOT_A_COUNT = Problem("{flag} {value}: not a whole number", "write a number, e.g. {flag} 2", UsageError, USAGE)
LIST_TAKES_NO_NAME = Problem("--list {value}: torchdev's tasks have no namespaces to list",
                             "`./dev --list` lists every task, `./dev TASK --help` one task's options",
                             UsageError, USAGE)
BAD_LIST_FORMAT = Problem("--list-format {value}: not a format", "use flat, nested or json", UsageError, USAGE)
BAD_COMMAND_LINE = Problem("{message}", "`./dev --list` lists the tasks, `./dev TASK --help` a task's options",
                           UsageError, USAGE)
"""invoke's other parse errors, in its words."""

HELP = Argument(names=("help", "h"), kind=bool, default=False, help="Show this task's help and exit.")
LIST_FORMATS = ("flat", "nested", "json")


def load_tasks(root: Path = ROOT) -> Collection:
    """The tasks of the checkout at `root` (its tasks.py), whatever the current folder: invoke would search upward
    from there and could load another tasks.py, or none."""
    module = sys.modules.get("tasks")
    if module is None or Path(getattr(module, "__file__", "") or "").resolve() != root / "tasks.py":
        module = _import_file("tasks", root / "tasks.py")
    return Collection.from_module(module)


def _import_file(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def guess(word: str, candidates: Iterable[str], *, say: str = "{}") -> str:
    """'did you mean X? ' for the candidate `word` begins (--dry: --dry-run), else the one closest to it (difflib's
    ratio at least 0.7, dashes aside: --bogus is not --gpus), else ''."""
    bare = {candidate.lstrip("-"): candidate for candidate in sorted(set(candidates))}
    stem = word.lstrip("-")
    started = sorted((name for name in bare if stem and name.startswith(stem)), key=len)
    close = started[:1] or difflib.get_close_matches(stem, list(bare), n=1, cutoff=0.7)
    return f"did you mean {say.format(bare[close[0]])}? " if close else ""


def long_flags(context: ParserContext) -> list[str]:
    """A context's --long flags (its -x short ones and --help left out)."""
    return [flag for flag in context.flags if flag.startswith("--") and flag != "--help"]


class RequiredArgument(Argument):
    """A task's required argument (a positional one to invoke). A word starting with '-' is an option the user
    meant, never its value: invoke 2.2 fills a missing positional with the next word whatever it is, so `./dev k8s
    --bogus` ran k8s for a variant called '--bogus', and `./dev k8s --bogus --variant cu118` dropped --bogus."""

    owner: ParserContext

    def set_value(self, value: object, cast: bool = True) -> None:
        if isinstance(value, str) and value.startswith("-"):
            raise ParseError(f"No idea what {value!r} is!", self.owner)
        super().set_value(value, cast)


class DevProgram(Program):
    """invoke's Program on this checkout's tasks; each command-line error is one usage line, exit 2."""

    def __init__(self, namespace: Collection | None = None) -> None:
        super().__init__(name="torchdev", binary="./dev", binary_names=["dev", "invoke", "inv"],
                         namespace=namespace if namespace is not None else load_tasks())

    # --- parsing -----------------------------------------------------------------------------------------------

    def _make_parser(self) -> Parser:
        """invoke's parser, each task's context with -h/--help of its own, and its required arguments refusing a
        word that starts with '-' (see the module's docstring)."""
        parser = super()._make_parser()
        for context in {id(c): c for c in parser.contexts.values()}.values():
            names = ("help",) if "-h" in context.flags else HELP.names
            context.add_arg(names=names, kind=bool, default=False, help=HELP.help)
            for argument in context.positional_args:
                argument.__class__ = RequiredArgument
                argument.owner = context
        return parser

    def parse_core(self, argv: list[str] | None) -> None:
        try:
            super().parse_core(argv)
        except (ParseError, ValueError) as error:
            raise self._usage(error) from None

    def parse_tasks(self) -> None:
        try:
            super().parse_tasks()
        except (ParseError, ValueError) as error:
            context = getattr(error, "context", None)
            if context is not None and context.name and context.args.get("help") and context.args.help.value:
                self.print_task_help(context.name)
                raise Exit() from None
            raise self._usage(error) from None
        for context in self.tasks:
            if context.args.help.value:
                self.print_task_help(context.name)
                raise Exit()
            del context.args["help"]  # the task itself has no such parameter
        for context in self.tasks:
            self._refuse_core_flags_after(context)

    def _refuse_core_flags_after(self, context: ParserContext) -> None:
        """invoke's own options given after a task's name: one line, with the task's option they resemble."""
        given = [arg for arg in self.core_via_tasks.args.values() if arg.value != arg.default and arg.name != "help"]
        if given:
            word = f"--{given[0].name}"
            command = f"./dev {context.name}"
            hint = guess(word, long_flags(context)) or f"{word} goes before the task: `./dev {word} {context.name} ...`; "
            raise _exit(NO_SUCH_OPTION.line(command=command, word=word, guess=hint))

    def parse_cleanup(self) -> None:
        asked = self.args.help.value
        if isinstance(asked, str) and asked not in self.parser.contexts:
            raise _exit(NO_SUCH_TASK.line(word=asked, guess=guess(asked, self.parser.contexts)))
        listed = self.args.list.value
        if isinstance(listed, str):
            raise _exit(LIST_TAKES_NO_NAME.line(value=listed))
        if listed and self.args["list-format"].value not in LIST_FORMATS:
            raise _exit(BAD_LIST_FORMAT.line(value=self.args["list-format"].value))
        try:
            super().parse_cleanup()
        except ParseError as error:
            raise self._usage(error) from None

    def _usage(self, error: Exception) -> Exit:
        """The one line an error of invoke's parser becomes."""
        return _exit(usage_line(str(error), getattr(error, "context", None),
                                tasks=list(getattr(self, "parser", None) and self.parser.contexts or ()),
                                argv=list(getattr(self, "argv", None) or [])))

    # --- help -----------------------------------------------------------------------------------------------------

    def task_list_opener(self, extra: str = "") -> str:
        return "Tasks (`./dev TASK --help`: what one does, and its options)"

    def print_task_help(self, name: str) -> None:
        """The task's usage line (its required options first), its whole docstring, then its options."""
        context = self.parser.contexts[name]
        required = " ".join(f"--{arg.name.replace('_', '-')} {arg.name.upper()}" for arg in context.positional_args)
        print(f"Usage: ./dev {name} {required + ' ' if required else ''}[--options]\n")
        for line in (inspect.getdoc(self.collection[name]) or "").splitlines():
            print(self.leading_indent + line if line.strip() else "")
        print("\nOptions:")
        self.print_columns(context.help_tuples())


def usage_line(message: str, context: ParserContext | None, *, tasks: list[str], argv: list[str]) -> str:
    """invoke's parse error `message` (raised in `context`) as torchdev's line: `torchdev: cause: fix`."""
    command = f"./dev {context.name}" if context is not None and context.name else "./dev"
    flags = long_flags(context) if context is not None else []
    unknown = re.match(r"No idea what '(.*)' is!", message)
    needs = re.match(r"Flag <\w*Argument: ([\w-]+).*> needed value", message)
    missing = re.match(r"'(.*)' did not receive required positional arguments: (.*)", message)
    no_value = re.match(r"Flag <\w*Argument: ([\w-]+).*> doesn't take any value", message)
    count = re.match(r"invalid literal for int\(\) with base 10: '(.*)'", message)
    if unknown:
        word = unknown.group(1)
        return f"torchdev: {_unknown(word, command=command, flags=flags, tasks=tasks, argv=argv)}"
    if needs:
        return f"torchdev: {NEEDS_VALUE.line(flag='--' + needs.group(1), command=command)}"
    if missing:
        names = [name.strip("' ") for name in missing.group(2).split(",")]
        wanted = " ".join(f"--{name.replace('_', '-')} {name.upper()}" for name in names)
        return f"torchdev: {MISSING_ARGUMENTS.line(command=command, missing=_listed(names), usage=f'{command} {wanted}')}"
    if no_value:
        return f"torchdev: {TAKES_NO_VALUE.line(flag='--' + no_value.group(1))}"
    if count:
        value = count.group(1)
        flag = next((before for before, after in zip(argv, argv[1:]) if after == value and before.startswith("-")),
                    "an option")
        return f"torchdev: {NOT_A_COUNT.line(flag=flag, value=value)}"
    return f"torchdev: {BAD_COMMAND_LINE.line(message=message.rstrip('!'))}"


def _unknown(word: str, *, command: str, flags: list[str], tasks: list[str], argv: list[str]) -> str:
    """A word invoke has no idea about: a task that does not exist, an option the task lacks, a value given to an
    option that takes none (`--all=yes`), or a stray word after a task."""
    if command == "./dev":
        if word.startswith("-"):
            return NO_SUCH_OPTION.line(command=command, word=word, guess="")
        return NO_SUCH_TASK.line(word=word, guess=guess(word, tasks))
    if word.startswith("-"):
        return NO_SUCH_OPTION.line(command=command, word=word, guess=guess(word.split("=")[0], flags))
    joined = next((token.split("=")[0] for token in argv if token.endswith(f"={word}") and token.startswith("--")),
                  None)
    if joined in flags:
        return TAKES_NO_VALUE.line(flag=joined)
    hint = guess(word, tasks, say="the task {}")
    return STRAY_WORD.line(command=command, word=word, guess=hint)


def _listed(names: list[str]) -> str:
    flags = [f"--{name.replace('_', '-')}" for name in names]
    return flags[0] if len(flags) == 1 else ", ".join(flags[:-1]) + f" and {flags[-1]}"


def _exit(line: str) -> Exit:
    text = line if line.startswith("torchdev: ") else f"torchdev: {line}"
    return Exit(text, code=UsageError.exit_status)


def main(argv: list[str] | None = None) -> None:
    """Run the program; a reader that goes away (`./dev matrix | head`) ends it quietly, as it does `cat`."""
    try:
        try:
            DevProgram().run(argv)
        finally:
            sys.stdout.flush()  # here, where a closed pipe can still be caught, not at the interpreter's exit
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv)
