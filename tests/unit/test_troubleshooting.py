"""The error lines torchdev prints are declared once, as Problems, where they are raised; docs/troubleshooting.md
lists them all, generated from those declarations (scripts/troubleshooting.py), and fails here when it drifts."""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from tests.helpers.cli import ROOT
from torchdev.errors import Problem, TorchdevError, catalogue

GENERIC = {"TorchdevError", "UsageError", "ConfigError"}
"""Error classes a raise may not construct from its own words: such a line has no fix the catalogue knows."""


def load_script():
    spec = importlib.util.spec_from_file_location("troubleshooting", ROOT / "scripts" / "troubleshooting.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_page_lists_every_error_line_as_the_code_declares_it():
    script = load_script()
    page = (ROOT / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
    assert script.page(page) == page, "docs/troubleshooting.md drifted: run .venv/bin/python scripts/troubleshooting.py"
    assert "## NCCL: `Error while creating shared memory segment`" in page, "the hand-written sections stay"


def test_the_catalogue_holds_the_errors_of_every_kind_and_each_fills_in_from_its_own_fields():
    problems = list(catalogue())
    assert len(problems) > 80
    assert {problem.topic for _, _, problem in problems} == {"usage", "configuration", "state", "runtime"}
    for module, name, problem in problems:
        error = problem(**{field: f"<{field}>" for field in problem.fields})
        assert isinstance(error, TorchdevError) and error.exit_status in (1, 2), f"{module}.{name}"
        assert "\n" not in str(error) and str(error).startswith(problem.template()[0]), f"{module}.{name}"


@pytest.mark.parametrize("module", sorted((ROOT / "torchdev").glob("*.py")), ids=lambda path: path.stem)
def test_no_error_is_raised_from_words_of_its_own_only_from_a_declared_problem(module: Path):
    ad_hoc = []
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            function = node.exc.func
            name = function.id if isinstance(function, ast.Name) else getattr(function, "attr", "")
            if name in GENERIC:
                ad_hoc.append(f"{module.name}:{node.lineno}: raise {name}(...)")
    assert ad_hoc == [], "declare a Problem (torchdev.errors) and raise it instead"


def test_a_problem_names_only_plain_fields():
    with pytest.raises(ValueError):
        Problem("{path[0]} is bad", "fix it")
