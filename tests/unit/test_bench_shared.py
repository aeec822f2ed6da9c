"""benchmarks/shared.py: a round builds into a repository of its own and makes the one-line change the rebuild
measures, and both are undone however the round ends, on a checkout others may be working in."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.benchmarks import load_benchmark

shared = load_benchmark("shared")


def make_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    (tree / "docker").mkdir(parents=True)
    (tree / "overlays").mkdir()
    (tree / shared.CHANGED_FILE).write_text("print('manifest')\n")
    (tree / "overlays" / "ci.yaml").write_text("variants: {}\n")
    return tree


def test_a_round_names_its_own_repository_and_undoes_its_change_and_its_tags(tmp_path):
    tree, removed = make_tree(tmp_path), []
    with shared.bench_round(tree, "overlays/ci.yaml", "torchdev-bench-x1", 1, remove=removed.append) as (overlay,
                                                                                                          change):
        assert overlay.read_text() == "variants: {}\n\nimage:\n  repository: torchdev-bench-x1\n"
        change()
        assert (tree / shared.CHANGED_FILE).read_text().count("\n") == 2
    assert (tree / shared.CHANGED_FILE).read_text() == "print('manifest')\n"
    assert removed == ["torchdev-bench-x1"]


def test_a_round_that_fails_still_undoes_its_change_and_removes_its_tags(tmp_path):
    tree, removed = make_tree(tmp_path), []
    with pytest.raises(SystemExit):
        with shared.bench_round(tree, "overlays/ci.yaml", "torchdev-bench-x2", 2, remove=removed.append) as (_, change):
            change()
            raise SystemExit("the build failed")
    assert (tree / shared.CHANGED_FILE).read_text() == "print('manifest')\n"
    assert removed == ["torchdev-bench-x2"]


def test_the_export_step_is_read_from_the_plain_progress_log():
    log = "#16 [runtime 1/1] RUN true\n#16 DONE 1.4s\n\n#17 exporting to image\n#17 exporting layers 38.1s done\n" \
          "#17 DONE 38.2s\n"
    assert shared.export_seconds(log) == 38.2
    assert shared.export_seconds("#1 [internal] load build definition\n#1 DONE 0.0s\n") == 0.0
