"""Property-based testing with Hypothesis, as the unit suite runs it: a fixed seed (derandomize), no example database,
a bounded number of examples per property, and a tally of how many ran and how long they took, which the test module
prints at its end. Plus the strategies for what users feed torchdev: YAML-ish text, values YAML reads as something
else, option values, and files cut short or of the wrong type."""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import wraps
from typing import Callable

from hypothesis import HealthCheck, settings, strategies as st

from torchdev.errors import TorchdevError


@dataclass
class Tally:
    name: str
    examples: int = 0
    seconds: float = 0.0


TALLIES: dict[str, Tally] = {}


def bounded(max_examples: int) -> settings:
    """The unit suite's settings: the same examples on every run (derandomize), bounded, no deadline (a shared CI
    machine is slow at times: time is reported, not asserted)."""
    return settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.filter_too_much, HealthCheck.data_too_large])


def tallied(name: str) -> Callable:
    """Count the examples a property runs, and their time, under `name`."""
    def wrap(body: Callable) -> Callable:
        @wraps(body)
        def run(*args, **kwargs):
            tally = TALLIES.setdefault(name, Tally(name))
            started = time.perf_counter()
            try:
                return body(*args, **kwargs)
            finally:
                tally.examples += 1
                tally.seconds += time.perf_counter() - started
        return run
    return wrap


def tally_table() -> list[str]:
    """What the properties ran: a line each, and the total."""
    rows = [f"  {t.name:<44} {t.examples:>5} examples {t.seconds:6.2f} s" for t in TALLIES.values()]
    total = sum(t.examples for t in TALLIES.values()), sum(t.seconds for t in TALLIES.values())
    return ["property-based tests (Hypothesis, derandomized):", *rows,
            f"  {'total':<44} {total[0]:>5} examples {total[1]:6.2f} s"]


def known_outcome(action: Callable[[], object]) -> object:
    """What `action` returns, or the known error it raises (a TorchdevError); anything else propagates, and fails the
    property: a bad input must end in success or one of torchdev's errors."""
    try:
        return action()
    except TorchdevError as error:
        assert str(error).strip(), "a known error says something"
        return error


YAML_WORDS = ["on", "off", "yes", "no", "y", "n", "true", "null", "~", "11.8", "11.10", "3.10", "0x1f", "0o17",
              "1e3", ".inf", ".nan", "2026-11-01", "2026-11-01T00:00:00Z", "-", "<<", "?", "|", ">", "!!str x", "'",
              '"', "&a", "*a", "{}", "[]", "", " ", "\t", "#", "%", "@", "`", "é", "\u00a0", "\ufeff", "\x07"]
"""Scalars YAML reads as something else than they look (booleans, numbers, null, dates), and its syntax characters."""

NAMES = st.sampled_from(["cpu", "cu117", "cu118", "runtime", "devel", "linux/amd64", "linux/arm64", "all", "auto",
                         "none", "environment", "gzip", "zstd", "torchdev-base:bookworm", "registry.test:5000/ml/t"])


def option_text() -> st.SearchStrategy[str | None]:
    """What a user may type as an option's value: nothing, names that exist, lists with empty items, quotes, spaces,
    numbers out of range, text of any kind."""
    listed = st.lists(st.one_of(NAMES, st.just(""), st.just(" ")), min_size=1, max_size=4).map(",".join)
    return st.one_of(st.none(), NAMES, listed, st.sampled_from(YAML_WORDS),
                     st.integers(min_value=-10**20, max_value=10**20).map(str),
                     st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30))


def scalars() -> st.SearchStrategy[object]:
    return st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                     st.text(max_size=20), st.sampled_from(YAML_WORDS))


def json_values() -> st.SearchStrategy[object]:
    """Any JSON document: the wrong type where an object was meant, nested."""
    return st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                                  st.text(max_size=10)),
                        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                     max_size=4),
                        max_leaves=12)
