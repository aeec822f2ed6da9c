"""Plain-text tables for summaries (matrix, build results, images): aligned columns, no dependencies."""
from __future__ import annotations

import textwrap
from itertools import zip_longest
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from torchdev.engine import ImageSizes

SIZE_HEADERS = ("on disk (unpacked)", "download (compressed)")
"""The two sizes of an image, labelled alike wherever torchdev prints them (docs/images.md, Sizes)."""


GAP = 2
"""Spaces between two columns."""
NARROWEST = 8
"""A column is not wrapped narrower than this, nor than its header."""


def render_table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, width: int | None = None) -> str:
    """Left-aligned columns separated by two spaces, with a dashed rule under the header. Given a `width` (a
    terminal's columns), the widest columns are narrowed until the table fits, their cells wrapped onto more lines
    (at spaces where they can be); a table whose columns cannot narrow enough is left wider."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max([len(header), *(len(row[i]) for row in cells)]) for i, header in enumerate(headers)]
    if width is not None:
        widths = fitted(widths, [min(w, max(len(h), NARROWEST)) for w, h in zip(widths, headers)], width)

    def lines(values: Sequence[str]) -> list[str]:
        wrapped = [textwrap.wrap(value, w, break_on_hyphens=False) or [""] if len(value) > w else [value]
                   for value, w in zip(values, widths)]
        return [(" " * GAP).join(part.ljust(w) for part, w in zip(parts, widths)).rstrip()
                for parts in zip_longest(*wrapped, fillvalue="")]

    return "\n".join([*lines(headers), *lines(["-" * w for w in widths]), *(line for row in cells for line in lines(row))])


def fitted(widths: list[int], floors: list[int], width: int) -> list[int]:
    """Column widths that fit in `width` with the gaps between them: the widest column is narrowed first, down to
    the next widest, and so on, none below its floor."""
    widths = list(widths)
    while (excess := sum(widths) + GAP * (len(widths) - 1) - width) > 0:
        shrinkable = [i for i, (w, floor) in enumerate(zip(widths, floors)) if w > floor]
        if not shrinkable:
            break
        widest = max(shrinkable, key=lambda i: widths[i])
        others = [widths[i] for i in shrinkable if i != widest]
        target = max(floors[widest], widths[widest] - excess, max(others, default=0))
        widths[widest] = target if target < widths[widest] else widths[widest] - 1
    return widths


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
