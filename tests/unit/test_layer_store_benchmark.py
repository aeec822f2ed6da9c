"""benchmarks/layer_store.py compares two exporters by changing one thing in the build: the zstd side's launch line
must give the shipped build command with zstd in place of gzip, and the gzip side the shipped command itself; and the
zstd side's push must know its store holds zstd (so a gzip push makes a copy). Proved on `build --dry-run`, which
prints the buildx command the build would run, and on the launch line's own module state; no engine is needed."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers.benchmarks import load_benchmark
from tests.helpers.cli import ROOT
from torchdev.oci import GZIP_LEVEL, ZSTD_LEVEL
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
    expected = shipped if store == "gzip" else shipped.replace("compression=gzip", "compression=zstd").replace(
        f"compression-level={GZIP_LEVEL}", f"compression-level={ZSTD_LEVEL}")
    assert f"compression=gzip,compression-level={GZIP_LEVEL}" in shipped  # what the replacement above assumes
    assert dry_run_output(store) == expected


@pytest.mark.parametrize("store", ["zstd", "gzip"])
def test_each_sides_push_copies_only_what_its_store_does_not_hold(store):
    line = layer_store.DEV.replace("from torchdev.cli import main; main()", "import torchdev.push as p; "
                                   "print(p.STORE_COMPRESSION)")
    done = subprocess.run([sys.executable, "-c", line, str(ROOT), store], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)
    assert (done.returncode, done.stdout.strip()) == (0, store), done.stderr

