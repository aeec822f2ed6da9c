"""A script of benchmarks/ loaded as a module, so unit tests can check its pure parts without running it."""
from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from tests.helpers.cli import ROOT


def load_benchmark(name: str) -> ModuleType:
    """benchmarks/<name>.py as the module `name` (registered first: dataclasses look their module up there)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
