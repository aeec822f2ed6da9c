"""torchdev/table.py: tables that narrow to a width by wrapping their widest cells, and sizes in binary units."""
from torchdev.table import human_size, render_table

LONG = ("no nvidia runtime or CDI GPU devices, and no image to try --gpus with: CPU variants only; install the NVIDIA "
        "Container Toolkit, then `sudo nvidia-ctk runtime configure --runtime=docker` and restart Docker")


def test_sizes_read_in_binary_units():
    assert [human_size(n) for n in (None, 512, 1536, 5 * 1024 ** 3)] == ["-", "512 B", "1.50 KiB", "5.00 GiB"]


def words(text: str) -> list[str]:
    """The words of a table, rules left out, in any order: what wrapping must keep."""
    return sorted(word for word in text.split() if set(word) != {"-"})


def test_a_table_narrows_to_the_width_by_wrapping_its_widest_cells_and_loses_no_word():
    rows = [("gpu runtime", "warn", LONG), ("disk", "ok", "24.34 GiB free under /var/lib/docker")]
    wide = render_table(["check", "status", "detail"], rows)
    narrow = render_table(["check", "status", "detail"], rows, width=60)
    assert max(map(len, wide.splitlines())) > 200
    assert max(map(len, narrow.splitlines())) <= 60 and len(narrow.splitlines()) > len(wide.splitlines())
    assert words(narrow) == words(wide)
    assert narrow.splitlines()[0].split() == ["check", "status", "detail"]
    assert narrow.splitlines()[2].startswith("gpu runtime  warn    no nvidia runtime")


def test_columns_are_never_narrower_than_their_header_so_a_tiny_width_leaves_the_table_wider():
    table = render_table(["variant", "flavour", "platforms"], [("cu118", "runtime", "linux/amd64")], width=10)
    assert table.splitlines()[0] == "variant  flavour  platforms"
