"""torchdev's modules in layers whose imports point one way, down: each layer may import the layers below it, and
its own modules may import each other, except the features, which must not (what two features share lives a layer
below them). The smoke suite's interface (smoke/smoke_contract.py) and the containers' startup checks (smoke/startup_checks.py) are
leaves outside the layers: any module may import them, and they import nothing but the standard library (and each
other), since they also run inside images that have no torchdev.

What each layer may do is its `does` below; only the engine module talks to Docker (and only the cosign module runs
cosign: the I/O at the edge, like the engine), so everything above them can be tested against
tests/helpers/fake_engine.py and a fake cosign."""
import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "torchdev"


@dataclass(frozen=True)
class Layer:
    name: str
    modules: tuple[str, ...]
    does: str
    peers: bool = True
    """Whether its modules may import each other."""


LAYERS = (
    Layer("base", ("errors", "files", "grammar", "options", "table", "engine", "oci", "cosign", "credentials",
                   "processes"),
          "pure utilities and the boundaries: the engine alone talks to Docker (oci re-compresses an image's "
          "layers through it), cosign alone runs cosign; the grammars of references, tags, Kubernetes names, "
          "requirements and URLs; what option values mean; the routes logins are read from (credentials); child processes that stop "
          "with the command (processes); none knows images.yaml"),
    Layer("configuration", ("yamlsource", "platforms", "matrix"),
          "reads images.yaml and its overlay into validated values that remember where each key was written"),
    Layer("planning", ("tags", "plan", "profile", "records", "gpus", "project", "sbom", "provenance", "trust",
                       "admission"),
          "pure decisions from configuration and values handed in: plans, tags, the container profile, GPU "
          "requests, the checkout's paths, the SBOM, the provenance, what a signature means, the admission policy; "
          "records defines the files under reports/ and reads and writes them whole; nothing here runs git or "
          "cosign, probes the host or calls the engine"),
    Layer("probes", ("gitinfo", "checkout", "gpuprobe", "images"),
          "read the world a plan, a GPU request or an SBOM depends on (git, the checkout's files, the host's platform, "
          "the engine's GPU routes, the images it holds and the manifest each carries) into values, and hand them to "
          "planning; they decide nothing themselves"),
    Layer("features", ("build", "smoke", "push", "bases", "lock", "doctor", "repro", "k8s", "signing", "capture"),
          "one job each, through the engine and the paths they are handed; they return results and print only "
          "progress, to the stream they are given; none imports another", peers=False),
    Layer("interface", ("context", "results"),
          "what a command is given (the context: paths, the engine, the environment, the output) and what it "
          "returns (results)"),
    Layer("commands", ("commands",),
          "one function per task: load the matrix, choose plans, call features, return a result"),
    Layer("presenter", ("presenter",),
          "turns results and known errors into the lines users see and an exit status; reads and runs nothing"),
    Layer("runner", ("runner", "cli"),
          "the edge: the program ./dev runs (invoke's, its command-line errors as usage lines), and what tasks.py "
          "calls: builds the context from this host, runs a command, presents it or its error, exits"),
)
LAYER_OF = {module: number for number, layer in enumerate(LAYERS) for module in layer.modules}


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


def test_every_module_has_one_layer():
    assert sorted(LAYER_OF) == sorted(p.stem for p in MODULES)
    assert sum(len(layer.modules) for layer in LAYERS) == len(LAYER_OF), "a module is in two layers"


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.stem)
def test_no_module_imports_from_a_layer_above_its_own(module):
    upward = [name for name in imports(module) if not name.startswith("!") and LAYER_OF[name] > LAYER_OF[module.stem]]
    assert upward == [], f"{module.stem} ({LAYERS[LAYER_OF[module.stem]].name}) imports {upward}"


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.stem)
def test_a_module_imports_its_own_layer_only_where_the_layer_allows_it(module):
    layer = LAYERS[LAYER_OF[module.stem]]
    peers = [name for name in imports(module) if name in layer.modules and name != module.stem]
    assert layer.peers or peers == [], f"{module.stem} imports {peers}, of its own layer ({layer.name}: {layer.does})"


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


LEAVES = ("smoke_contract", "startup_checks")
"""The smoke suite's interface, and the container's startup checks (whose GPU rule is the contract's): leaves outside
the layers that run inside images and on the host alike."""


@pytest.mark.parametrize("leaf", LEAVES)
def test_the_smoke_leaves_import_only_the_standard_library_and_each_other(leaf):
    """A leaf imports the other as a sibling in a container (`smoke_contract`) and as `smoke.smoke_contract` on the
    host."""
    allowed = {f"smoke.{name}" for name in LEAVES} | set(LEAVES)
    found = module_names(PACKAGE.parent / "smoke" / f"{leaf}.py")
    assert {name for name in found if name.split(".")[0] not in sys.stdlib_module_names} <= allowed


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.stem)
def test_from_the_smoke_suite_torchdev_imports_its_leaves_only(module):
    assert {name for name in module_names(module) if name.split(".")[0] == "smoke"} <= {
        f"smoke.{name}" for name in LEAVES}
