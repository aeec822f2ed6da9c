"""scripts/ci-cleanup.sh's rule for which image names are the run's (its functions, sourced), its usage errors, and
shellcheck over it and .ci/run. What it removes on a real engine is tests/integration/test_ci_cleanup.py's."""
import shutil
import subprocess

import pytest

from tests.helpers.cli import ROOT

SCRIPT = ROOT / "scripts" / "ci-cleanup.sh"


def claimed(name: str, *claims: str) -> bool:
    result = subprocess.run(["bash", "-c", 'source "$1"; shift; claimed "$@"', "test", str(SCRIPT), name, *claims],
                            capture_output=True, text=True, check=False)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode == 0


@pytest.mark.parametrize("name, expected", [
    ("torchdev-ci-7:cu117", True),
    ("torchdev-ci-7@sha256:0123", True),
    ("torchdev-ci-7-snapshot:cu117-abc", True),  # a repository named after the run's
    ("torchdev-ci-77:cu117", False),  # another run's
    ("torchdev-ci:cu117", False),
    ("localhost:5000/torchdev-ci-7:cu117", False),  # a registry's copy is the test's to remove, not the run's
    ("torchdev-base:bookworm", True),  # the exact reference claimed
    ("torchdev-base:trixie", False),
    ("someone/else:latest", False),
])
def test_which_names_are_the_runs(name, expected):
    assert claimed(name, "torchdev-ci-7", "torchdev-base:bookworm") is expected


def test_a_registry_port_is_not_a_tag():
    assert claimed("registry.example:5000/ml/torchdev-ci-7:cu117", "registry.example:5000/ml/torchdev-ci-7")
    assert not claimed("registry.example:5000/ml/torchdev-ci-7:cu117", "registry.example")


@pytest.mark.parametrize("args", [[], ["record"], ["clean", "/tmp/x"], ["prune", "/tmp/x"]])
def test_usage(args):
    result = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, check=False)
    assert (result.returncode, result.stderr.strip()) == (2, f"usage: {SCRIPT} record STATE | clean STATE CLAIM...")


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_is_clean():
    scripts = [SCRIPT, ROOT / ".ci" / "run", ROOT / "scripts" / "engine.sh", ROOT / "scripts" / "make-base.sh"]
    result = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout
