"""torchdev's dependencies point one way: tasks -> commands -> features -> core -> engine. Only the engine
module talks to Docker, so the rest can be tested against tests/helpers/fake_engine.py."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "torchdev"
LAYERS = {
    "engine": 0, "errors": 0, "oci": 0,
    "yamlsource": 1, "platforms": 1, "matrix": 1, "tags": 1, "plan": 1, "gitinfo": 1, "table": 1, "files": 1,
    "project": 1, "gpus": 1, "profile": 1,
    "build": 2, "smoke": 2, "images": 2, "bases": 2, "lock": 2, "doctor": 2, "repro": 2, "push": 2, "k8s": 2,
    "commands": 3,
}


def imports(module: Path) -> set[str]:
    """Top-level names of everything `module` imports (torchdev.X counts as X)."""
    found = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= ({f"torchdev.{alias.name}" for alias in node.names} if node.module == "torchdev"
                      else {node.module})
    return {name.removeprefix("torchdev.").split(".")[0] if name.startswith("torchdev.") else f"!{name.split('.')[0]}"
            for name in found}


MODULES = sorted(p for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def test_every_module_has_a_layer():
    assert sorted(p.stem for p in MODULES) == sorted(LAYERS)


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.stem)
def test_no_module_imports_from_a_layer_above_its_own(module):
    upward = [name for name in imports(module) if not name.startswith("!") and LAYERS[name] > LAYERS[module.stem]]
    assert upward == [], f"{module.stem} (layer {LAYERS[module.stem]}) imports {upward}"


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.stem)
def test_only_the_engine_module_imports_the_docker_sdk_or_requests(module):
    sdk = {"!docker", "!requests"} & imports(module)
    assert not sdk or module.stem == "engine", f"{module.stem} imports {sorted(sdk)}"
