"""The links of the project's Markdown pages, and where each leads: a relative link must name a file or folder of the
checkout and, with #anchor, a heading of that page (as GitHub makes an anchor from a heading)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # https:, mailto:, ...


@dataclass(frozen=True)
class Link:
    """A relative link where a page makes it: the page, the line, and the target as written."""

    page: Path
    line: int
    target: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: ({self.target})"


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """(number, line) for the lines outside fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def relative_links(page: Path, text: str) -> list[Link]:
    """Every link in the page's prose (code spans and fenced blocks hold none) that is not to another site."""
    found = []
    for number, line in _prose_lines(text):
        prose = INLINE_CODE.sub("", line)  # [`text`](target) keeps its link, `[text](target)` is no link
        found += [Link(page, number, target) for target in LINK.findall(prose) if not EXTERNAL.match(target)]
    return found


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: its text without markup, lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors of a page's headings; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    for _, line in _prose_lines(text):
        heading = HEADING.match(line)
        if heading:
            base = anchor(heading.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            if count:
                seen.setdefault(f"{base}-{count}", 1)
    return set(seen)


def problem_with(link: Link, root: Path) -> str:
    """'' when the link leads somewhere, else where it does not lead."""
    path, _, fragment = link.target.partition("#")
    target = (root / link.page).parent / path if path else root / link.page
    target = target.resolve()
    if root.resolve() not in [target, *target.parents]:
        return f"{link.target} leads out of the checkout"
    if not target.exists():
        return f"{path} does not exist"
    if fragment and target.suffix == ".md" and fragment not in anchors(target.read_text(encoding="utf-8")):
        return f"{target.relative_to(root.resolve())} has no heading whose anchor is #{fragment}"
    return ""
