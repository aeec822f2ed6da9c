"""torchdev/presenter.py: the tables and lines that results become, and how they are written."""
from torchdev.build import BuildResult, BuildStatus
from torchdev.engine import ImageSizes
from torchdev.presenter import build_table


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
