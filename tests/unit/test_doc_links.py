"""Every relative link of the documentation leads somewhere: README.md, docs/*.md and the other READMEs link files
and folders that exist and, with #anchor, headings those pages have. Pages are moved and headings renamed; a link
left behind fails here, not in a reader's browser."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.cli import ROOT
from tests.helpers.doc_links import Link, anchors, problem_with, relative_links

PAGES = sorted({*ROOT.glob("*.md"), *ROOT.glob("docs/*.md"), *ROOT.glob("*/README.md"), *ROOT.glob("*/*/README.md"),
                *ROOT.glob(".devcontainer/*.md")})
LINKS = [link for page in PAGES for link in relative_links(page.relative_to(ROOT), page.read_text(encoding="utf-8"))]


def test_the_pages_link_each_other():
    linked = {link.page for link in LINKS}
    assert {Path("README.md"), Path("docs/images.md"), Path("docs/scaling-out.md")} <= linked
    assert len([link for link in LINKS if "#" in link.target]) > 20


@pytest.mark.parametrize("link", LINKS, ids=str)
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(link):
    assert problem_with(link, ROOT) == ""


SAMPLE = """# A page

## Images: `cu118` and flavours (runtime/devel)
## Images: `cu118` and flavours (runtime/devel)

[ok](#images-cu118-and-flavours-runtimedevel) [second](#images-cu118-and-flavours-runtimedevel-1)
[gone](#images) [file](README.md) [missing](nope.md) [site](https://example.com/x.md) `[code](nope.md)`
[heading elsewhere](docs/security.md#credentials) [no such heading](docs/security.md#nope)

```bash
[in a block](nope.md)
# not a heading
```
"""


def test_a_missing_file_or_heading_is_named_and_code_is_not_read(tmp_path):
    page = Path("page.md")
    links = relative_links(page, SAMPLE)
    assert [link.target for link in links] == [
        "#images-cu118-and-flavours-runtimedevel", "#images-cu118-and-flavours-runtimedevel-1", "#images", "README.md",
        "nope.md", "docs/security.md#credentials", "docs/security.md#nope"]
    assert anchors(SAMPLE) == {"a-page", "images-cu118-and-flavours-runtimedevel",
                               "images-cu118-and-flavours-runtimedevel-1"}
    sample_root = tmp_path
    (sample_root / "page.md").write_text(SAMPLE, encoding="utf-8")
    (sample_root / "README.md").write_text("# R\n", encoding="utf-8")
    (sample_root / "docs").mkdir()
    (sample_root / "docs" / "security.md").write_text("# S\n\n## Credentials\n", encoding="utf-8")
    found = {link.target: problem_with(link, sample_root) for link in links}
    assert found == {
        "#images-cu118-and-flavours-runtimedevel": "", "#images-cu118-and-flavours-runtimedevel-1": "",
        "#images": "page.md has no heading whose anchor is #images", "README.md": "",
        "nope.md": "nope.md does not exist", "docs/security.md#credentials": "",
        "docs/security.md#nope": "docs/security.md has no heading whose anchor is #nope"}
    assert problem_with(Link(page, 1, "../../etc/passwd"), sample_root) == "../../etc/passwd leads out of the checkout"
