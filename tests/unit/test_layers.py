"""torchdev's dependencies point one way: tasks -> commands -> features -> core -> engine. Only the engine
module talks to Docker (and only the cosign module runs cosign: the I/O at the edge, like the engine), so the rest can be tested against tests/helpers/fake_engine.py. The smoke suite's interface
(smoke/smoke_contract.py) is a leaf outside the layers: any module may import it, and it imports nothing but the
standard library, since it also runs inside images that have no torchdev."""
import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "torchdev"
LAYERS = {
    "engine": 0, "errors": 0, "oci": 0, "cosign": 0,
    "yamlsource": 1, "platforms": 1, "matrix": 1, "tags": 1, "plan": 1, "gitinfo": 1, "table": 1, "files": 1,
    "project": 1, "gpus": 1, "records": 1, "sbom": 1, "provenance": 1, "trust": 1, "admission": 1,
    "build": 2, "smoke": 2, "images": 2, "bases": 2, "lock": 2, "doctor": 2, "repro": 2, "push": 2, "k8s": 2,
    "signing": 2,
    "commands": 3,
}


def module_names(module: Path) -> set[str]:
    """Full names of the modules `module` imports (`from torchdev import push`: torchdev.push; `from
    smoke.smoke_contract import X`: smoke.smoke_contract)."""
    found = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= ({f"torchdev.{alias.name}" for alias in node.names} if node.module == "torchdev"
                      else {node.module})
    return found


def imports(module: Path) -> set[str]:
    """Top-level names of everything `module` imports (torchdev.X counts as X, anything else as !name)."""
    return {name.removeprefix("torchdev.").split(".")[0] if name.startswith("torchdev.") else f"!{name.split('.')[0]}"
            for name in module_names(module)}


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


@pytest.mark.parametrize("core", ["sbom", "provenance", "trust", "admission"])
def test_the_signing_cores_are_pure_and_only_signing_runs_cosign(core):
    """The SBOM, the provenance, what a signature means and the admission policy are computed, not run: cosign (like
    Docker) is I/O at the edge, behind torchdev/cosign.py, which only the signing feature uses."""
    assert not {"!subprocess", "engine", "cosign"} & imports(PACKAGE / f"{core}.py")
    users = sorted(p.stem for p in MODULES if "cosign" in imports(p))
    assert users in (["signing"], ["commands", "signing"])


CONTRACT = PACKAGE.parent / "smoke" / "smoke_contract.py"


def test_the_smoke_contract_imports_only_the_standard_library():
    assert {name for name in module_names(CONTRACT) if name.split(".")[0] not in sys.stdlib_module_names} == set()


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.stem)
def test_from_the_smoke_suite_torchdev_imports_its_interface_only(module):
    assert {name for name in module_names(module) if name.split(".")[0] == "smoke"} <= {"smoke.smoke_contract"}
