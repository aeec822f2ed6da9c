"""Output fits a terminal: tables narrow to its width (cells wrapped, nothing cut), `./dev matrix` keeps the columns
that tell images apart with the rest behind --wide, and output that is not a terminal keeps full lines."""
from __future__ import annotations

import io
from dataclasses import replace

import pytest

from tests.helpers.cli import ROOT
from tests.helpers.context import make_context, output
from torchdev import commands, presenter
from torchdev.doctor import FAIL, OK, CheckResult
from torchdev.results import DoctorReport
from torchdev.runner import execute, terminal_width

LONG = ("no nvidia runtime or CDI GPU devices, and no image to try --gpus with: CPU variants only; install the NVIDIA "
        "Container Toolkit, then `sudo nvidia-ctk runtime configure --runtime=docker` and restart Docker")


def words(text: str) -> list[str]:
    """The words of a table, rules left out, in any order: what wrapping must keep."""
    return sorted(word for word in text.split() if set(word) != {"-"})


@pytest.mark.parametrize("environ, stream, width", [
    ({"COLUMNS": "100"}, io.StringIO(), 100),
    ({}, io.StringIO(), None),             # a file or a pipe: no limit
    ({"COLUMNS": "wide"}, io.StringIO(), None),
    ({"COLUMNS": "0"}, io.StringIO(), None),
])
def test_the_width_is_columns_else_the_terminals_else_none(environ, stream, width):
    assert terminal_width(environ, stream) == width


def matrix_lines(*, width: int | None, wide: bool = False) -> list[str]:
    if (ROOT / "images.local.yaml").exists():
        pytest.skip("images.local.yaml is present and would be merged in")
    ctx = replace(make_context(environ={"TORCHDEV_OVERLAY": ""}), width=width)
    assert execute(ctx, commands.show_matrix, overlay=None, wide=wide) == 0
    return output(ctx)[0].splitlines()


def test_the_matrix_on_an_80_column_terminal_fits_and_says_where_the_rest_is():
    lines = matrix_lines(width=80)
    assert max(map(len, lines)) <= 80, "\n".join(lines)
    rows = [line.split() for line in lines[2:8]]
    assert [row[:2] for row in rows] == [[variant, flavour] for variant in ("cpu", "cu117", "cu118")
                                         for flavour in ("runtime", "devel")]
    assert rows[4][:7] + rows[4][8:] == ["cu118", "runtime", "amd64", "3.10", "2.0.1", "11.8", "8", "cu118"]
    assert rows[4][7] in ("no", "yes") and rows[2][7] == "yes"  # cu117's lock is committed; cu118's may be
    assert lines[-1] == "--wide: bases, indexes, locks, apt snapshots, toolchains and every tag"


@pytest.mark.parametrize("width, wide", [(None, False), (80, True)], ids=["not a terminal", "--wide"])
def test_the_whole_matrix_is_one_line_per_image_with_every_tag(width, wide):
    lines = matrix_lines(width=width, wide=wide)
    assert lines[0].split("  ")[0] == "variant" and "apt snapshot" in lines[0] and "toolchain" in lines[0]
    assert len([line for line in lines if line.startswith(("cpu ", "cu117 ", "cu118 "))]) == 6
    assert any(line.rstrip().endswith("-devel") and "-cu118-py3.10-" in line for line in lines)


def test_a_doctor_line_wraps_to_the_terminal_and_keeps_its_fix():
    checks = (CheckResult("gpu runtime", FAIL, "no nvidia runtime", fix=LONG), CheckResult("disk", OK, "24 GiB free"))
    narrow = "\n".join(presenter.present(DoctorReport(checks, width=72)).out)
    wide = "\n".join(presenter.present(DoctorReport(checks)).out)
    assert max(map(len, narrow.splitlines())) <= 72 < max(map(len, wide.splitlines()))
    assert words(narrow) == words(wide) and "fix:" in narrow
    assert narrow.splitlines()[-1].split() == ["disk", "ok", "24", "GiB", "free"]


def test_the_tags_the_narrow_matrix_shows_are_the_plans_own():
    lines = matrix_lines(width=100)
    tags = {line.split()[0] + "/" + line.split()[1]: line.split()[-1] for line in lines[2:8]}
    assert tags == {"cpu/runtime": "cpu", "cpu/devel": "cpu-devel", "cu117/runtime": "cu117",
                    "cu117/devel": "cu117-devel", "cu118/runtime": "cu118", "cu118/devel": "cu118-devel"}
