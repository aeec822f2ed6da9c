"""What a task's option values mean, read once and checked when the command starts: names given by commas, counts
in the range their target accepts, words split as a shell would. Each bad value is one usage line naming the option
and the fix (exit 2); nothing is done before. Pure: the values come from tasks.py as invoke parsed them (text, or
None when the option was not given).
"""
from __future__ import annotations

import shlex

from torchdev.errors import USAGE, Problem, UsageError

EMPTY_VALUE = Problem("{option} is empty", "give it a value, or leave the option out", UsageError, USAGE)
EMPTY_ITEM = Problem("{option} {value}: an empty name between commas", "write {option} {fixed}", UsageError, USAGE)
ONE_NAME = Problem("{option} {value}: one name, not several", "run the command once per name", UsageError, USAGE)
NOT_A_NUMBER = Problem("{option} {value}: not a whole number", "write a number from {minimum} to {maximum}",
                       UsageError, USAGE)
OUT_OF_RANGE = Problem("{option} {value}: out of range ({why})", "write a number from {minimum} to {maximum}",
                       UsageError, USAGE)
UNBALANCED_QUOTES = Problem("{option} {value}: {reason}", "close every quote you open (quote the whole value once "
                            "for the shell, and the words inside it again for the command)", UsageError, USAGE)
CONTRADICTION = Problem("{first} and {second} contradict each other", "{fix}", UsageError, USAGE)


def names(option: str, value: str | None) -> tuple[str, ...]:
    """`--variant cpu,cu118` as its names, in order, each once; () when the option was not given."""
    if value is None:
        return ()
    if not value.strip():
        raise EMPTY_VALUE(option=option)
    items = [item.strip() for item in value.split(",")]
    if not all(items):
        raise EMPTY_ITEM(option=option, value=value, fixed=",".join(filter(None, items)) or "NAME")
    return tuple(dict.fromkeys(items))


def one_name(option: str, value: str) -> str:
    """An option that takes a single name (`./dev up --variant cu118`)."""
    chosen = names(option, value)
    if len(chosen) != 1:
        raise ONE_NAME(option=option, value=value)
    return chosen[0]


def count(option: str, value: str | int | None, *, minimum: int, maximum: int, why: str = "") -> int | None:
    """A whole number from `minimum` to `maximum` (what its target accepts: `why` says which); None when not given."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise NOT_A_NUMBER(option=option, value=value, minimum=minimum, maximum=maximum)
    text = str(value).strip()
    if not text:
        raise EMPTY_VALUE(option=option)
    try:
        number = int(text)
    except ValueError:
        raise NOT_A_NUMBER(option=option, value=value, minimum=minimum, maximum=maximum) from None
    if not minimum <= number <= maximum:
        raise OUT_OF_RANGE(option=option, value=value, minimum=minimum, maximum=maximum,
                           why=why or f"{minimum} to {maximum}")
    return number


def words(option: str, value: str) -> tuple[str, ...]:
    """`--train-args "--task 'mlp x'"` split as a shell splits it: ('--task', 'mlp x')."""
    try:
        return tuple(shlex.split(value))
    except ValueError as error:
        raise UNBALANCED_QUOTES(option=option, value=value, reason=str(error).lower()) from None


def not_empty(option: str, value: str | None) -> str | None:
    """A text option that, when given, must say something."""
    if value is not None and not value.strip():
        raise EMPTY_VALUE(option=option)
    return value
