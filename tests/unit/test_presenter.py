"""torchdev/presenter.py: the tables and lines that results become, and how they are written."""
import dataclasses
import inspect
import io

import pytest

from tests.helpers.summaries import check
from torchdev import presenter, results
from torchdev.build import BuildResult, BuildStatus
from torchdev.engine import ImageSizes
from torchdev.presenter import Presentation, build_table, smoke_failures, smoke_table, write
from torchdev.smoke import SuiteRun, SuiteStatus


def test_the_summary_has_one_row_per_image_with_status_both_sizes_and_cause():
    table = build_table([BuildResult("cpu", BuildStatus.BUILT, 61.2, ("torchdev:2.0.1-cpu-py3.10",),
                                       "sha256:" + "a" * 64, ImageSizes(on_disk=5 * 1024 ** 3, download=2 * 1024 ** 3)),
                           BuildResult("cu118", BuildStatus.FAILED, 3.0, cause="ERROR: failed to solve")])
    header, rule, cpu, cu118 = table.splitlines()
    assert header.split()[:3] == ["image", "status", "time"]
    assert "on disk (unpacked)" in header and "download (compressed)" in header
    assert cpu.split()[:7] == ["cpu", "built", "61", "s", "5.00", "GiB", "2.00"]
    assert "torchdev:2.0.1-cpu-py3.10" in cpu
    assert cu118.split()[:2] == ["cu118", "failed"] and cu118.endswith("ERROR: failed to solve")


def ran(variant, *checks):
    return SuiteRun(variant, SuiteStatus.RAN, tuple(check(c, o, r, index=i) for i, (c, o, r) in enumerate(checks)))


def test_the_table_shows_each_check_per_variant_and_failures_name_the_test():
    runs = [ran("cu117", ("environment", "passed", ""), ("environment", "failed", "expected CUDA 11.8, got 11.7\nmore"),
                ("gpu", "skipped", "no GPUs requested"), ("ddp", "passed", ""), ("ddp", "skipped", "x")),
            SuiteRun("cu118", SuiteStatus.NOT_BUILT, detail="image torchdev:cu118 is not built")]
    header, _, cu117, cu118 = smoke_table(runs).splitlines()
    assert header.split() == ["image", "environment", "flavour", "gpu", "convergence", "ddp", "shm"]
    assert "FAILED 1/2" in cu117 and "skipped: no GPUs requested" in cu117 and "passed 1 (+1 skipped)" in cu117
    assert cu118.split()[:3] == ["cu118", "not", "built"]
    assert smoke_failures(runs) == ["cu117: test_environment.py::t1: expected CUDA 11.8, got 11.7",
                              "cu118: not built: image torchdev:cu118 is not built"]


def test_every_result_a_command_returns_has_a_presentation():
    kinds = [kind for _, kind in inspect.getmembers(results, inspect.isclass)
             if dataclasses.is_dataclass(kind) and kind.__module__ == results.__name__]
    assert len(kinds) > 10
    missing = [kind.__name__ for kind in kinds if presenter.present.dispatch(kind) is presenter.present.dispatch(object)]
    assert missing == []
    with pytest.raises(TypeError, match="cannot present a str"):
        presenter.present("a result nobody presents")


def test_whatever_torchdev_prints_shows_urls_without_logins():
    out, err = io.StringIO(), io.StringIO()
    write(Presentation(out=("remote https://ci:tok@git.corp/r.git",), err=("torchdev: https://a:b@h/x failed",)),
          out=out, err=err)
    assert (out.getvalue(), err.getvalue()) == ("remote https://git.corp/r.git\n", "torchdev: https://h/x failed\n")
