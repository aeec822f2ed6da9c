"""Every torchdev command the documentation shows fits the real tasks and options: a command line in a shell block
of README.md, docs/ or another README parses as `./dev` parses it (through its parser only: nothing runs, so the
commands that need an engine or a cluster are checked too), and a command a sentence names has its task and options.
The docs cannot drift from the code again without this failing."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.cli import ROOT
from tests.helpers.doc_commands import Shown, problem_with, shown_commands
from torchdev.cli import load_tasks
from torchdev.matrix import load_matrix

TASKS = load_tasks()
DOCS = sorted({*ROOT.glob("*.md"), *ROOT.glob("docs/*.md"), *ROOT.glob("*/README.md"), *ROOT.glob("*/*/README.md"),
               *ROOT.glob(".devcontainer/*.md")})
SHOWN = [shown for path in DOCS for shown in shown_commands(path.relative_to(ROOT),
                                                             path.read_text(encoding="utf-8"))]


def test_the_documentation_shows_commands_of_both_kinds():
    assert len([s for s in SHOWN if s.whole]) > 30 and len([s for s in SHOWN if not s.whole]) > 30
    assert {s.file for s in SHOWN} >= {Path("README.md"), Path("deploy/k8s/README.md"), Path(".devcontainer/README.md"),
                                       *(Path(f"docs/{page}.md") for page in ("images", "gpus", "reproducibility",
                                                                             "publishing", "scaling-out",
                                                                             "architecture", "troubleshooting"))}


@pytest.mark.parametrize("shown", SHOWN, ids=str)
def test_every_command_the_documentation_shows_fits_the_tasks(shown):
    assert problem_with(shown, TASKS) == "", str(shown)


SAMPLE = """Run `./dev build --nope` or `./dev frobnicate`, `./dev k8s --shm-size`, `./dev TASK --help`.

```bash
./dev build --variant cu118 --dry-run     # fine
VARIANT=cu118 ./dev up --gpus all
./dev build --variant cu118 --bogus
./dev lock [--check]
./dev k8s --variant cu118 \\
    --nodes 2 --gpuz 8
invoke biuld
```
"""


def test_a_flag_or_task_that_does_not_exist_is_found_in_either_kind():
    found = {str(shown): problem_with(shown, TASKS) for shown in shown_commands(Path("doc.md"), SAMPLE)}
    assert found == {
        "doc.md:1: ./dev build --nope": "`./dev build` has no option --nope",
        "doc.md:1: ./dev frobnicate": "no task frobnicate",
        "doc.md:1: ./dev k8s --shm-size": "",
        "doc.md:1: ./dev TASK --help": "",
        "doc.md:4: ./dev build --variant cu118 --dry-run": "",
        "doc.md:5: ./dev up --gpus all": "",
        "doc.md:6: ./dev build --variant cu118 --bogus": "torchdev: `./dev build` has no option --bogus: `./dev build "
                                                         "--help` lists its options (exit status 2)",
        "doc.md:7: ./dev lock [--check]": "torchdev: `./dev lock` takes no word '[--check]': its options start with "
                                          "-- (`./dev lock --help` lists them) (exit status 2)",
        "doc.md:9: ./dev k8s --variant cu118 --nodes 2 --gpuz 8": "torchdev: `./dev k8s` has no option --gpuz: did "
                                                                  "you mean --gpus? `./dev k8s --help` lists its "
                                                                  "options (exit status 2)",
        "doc.md:10: ./dev biuld": "torchdev: no task 'biuld': did you mean build? `./dev --list` lists the tasks "
                                  "(exit status 2)",
    }


def test_the_overlay_example_loads_and_keeps_cudnn_single(tmp_path):
    """The example overlay of docs/images.md is valid as written, and moves no variant onto a base that brings cuDNN:
    torch's wheels bring their own, and a build that holds a library twice fails (docker/shared_libs.py)."""
    text = (ROOT / "docs" / "images.md").read_text(encoding="utf-8")
    example = next(block for block in text.split("```yaml\n")[1:] if block.startswith("# images.local.yaml"))
    overlay = tmp_path / "images.local.yaml"
    overlay.write_text(example.split("```")[0], encoding="utf-8")
    matrix = load_matrix(ROOT / "images.yaml", overlay=str(overlay), environ={})
    assert matrix.image.repository == "registry.corp:5000/ml/torchdev"
    assert all("cudnn" not in variant.base for variant in matrix.variants), [v.base for v in matrix.variants]
