"""Plain-text tables for summaries (matrix, build results, images): aligned columns, no dependencies."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from torchdev.engine import ImageSizes

SIZE_HEADERS = ("on disk (unpacked)", "download (compressed)")
"""The two sizes of an image, labelled alike wherever torchdev prints them (README: Sizes)."""


def render_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns separated by two spaces, with a dashed rule under the header."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max([len(header), *(len(row[i]) for row in cells)]) for i, header in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(value.ljust(width) for value, width in zip(values, widths)).rstrip()

    return "\n".join([line(headers), line(["-" * width for width in widths]), *(line(row) for row in cells)])


def human_size(size_bytes: int | None) -> str:
    """1234567890 -> '1.15 GiB'."""
    if size_bytes is None:
        return "-"
    size = float(size_bytes)
    if size < 1024:
        return f"{size:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            return f"{size:.2f} {unit}"
    return ""


def size_cells(sizes: ImageSizes | None) -> tuple[str, str]:
    """The SIZE_HEADERS cells of one image; '-' where the engine cannot say."""
    if sizes is None:
        return ("-", "-")
    return (human_size(sizes.on_disk), human_size(sizes.download))
