"""benchmarks/layer_store.py compares two exporters by changing one thing in the build: the gzip side's launch line
must give the shipped build command with gzip in place of zstd, and the zstd side the shipped command itself. Proved
on `build --dry-run`, which prints the buildx command the build would run; no engine is needed."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers.benchmarks import load_benchmark
from tests.helpers.cli import ROOT
from torchdev.oci import GZIP_LEVEL
from torchdev.plan import ENGINE_OUTPUT


layer_store = load_benchmark("layer_store")


def dry_run_output(store: str) -> str:
    done = subprocess.run([sys.executable, "-c", layer_store.DEV, str(ROOT), store, "build", "--variant", "cu117",
                           "--flavour", "runtime", "--overlay", "overlays/local-debian.yaml", "--dry-run"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    [output] = [word for word in done.stdout.split() if word.startswith("--output=")]
    return output


@pytest.mark.parametrize("store", ["zstd", "gzip"])
def test_each_side_builds_with_the_shipped_exporter_but_for_its_compression(store):
    shipped = f"--output={ENGINE_OUTPUT}"
    expected = shipped if store == "zstd" else shipped.replace("compression=zstd", "compression=gzip").replace(
        "compression-level=3", f"compression-level={GZIP_LEVEL}")
    assert "compression=zstd,compression-level=3" in shipped  # what the replacement above assumes
    assert dry_run_output(store) == expected

