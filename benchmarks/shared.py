"""What the benchmark scripts share: a committed tree to build and a round in it (repro.py, layer_store.py), a timed
command and a push through ./dev (push.py, cold_node.py), and how a median with its spread is printed.

A round builds into a repository of its own, so no build meets another's immutable tag, and makes the one-line
change the rebuild measures; both are undone however the round ends.
"""
from __future__ import annotations

import io
import re
import statistics
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from torchdev.records import PushRecord, read_push_record

ROOT = Path(__file__).resolve().parent.parent

CHANGED_FILE = "docker/write_manifest.py"
"""Mounted only by the image's last two RUN steps (the manifest's and the user layer's)."""


def export_tree(root: Path, ref: str, folder: Path) -> Path:
    """The files of commit `ref` of the checkout at `root`, as `git archive` gives them (no .git: the builds get
    SOURCE_DATE_EPOCH instead)."""
    archive = subprocess.run(["git", "-C", str(root), "archive", ref], capture_output=True, check=True).stdout
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="tar") if hasattr(tarfile, "data_filter") else tar.extractall(folder)
    return folder


def export_seconds(log: str) -> float:
    """How long BuildKit's export step took, from the plain progress log (0 when the log has none)."""
    step = re.search(r"^#(\d+) exporting to image$", log, re.M)
    done = step and re.search(rf"^#{step.group(1)} DONE ([\d.]+)s$", log, re.M)
    return float(done.group(1)) if done else 0.0


def remove_repository(repository: str) -> None:
    """Every tag of the bench repository; an image goes with its last name (unless another tag names it)."""
    listed = subprocess.run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", repository],
                            capture_output=True, text=True, check=False).stdout.split()
    if listed:
        subprocess.run(["docker", "image", "rm", *listed], capture_output=True, check=False)


@contextmanager
def bench_round(tree: Path, overlay: str, repository: str, number: int, *,
                remove: Callable[[str], None] = remove_repository) -> Iterator[tuple[Path, Callable[[], None]]]:
    """(an overlay file: the tree's `overlay` with `repository`, a function making the one-line change); on the way
    out the change is undone and the repository's tags removed."""
    written = tree.parent / f"overlay-{repository}.yaml"
    written.write_text((tree / overlay).read_text() + f"\nimage:\n  repository: {repository}\n")
    changed = tree / CHANGED_FILE
    original = changed.read_text()

    def change() -> None:
        changed.write_text(original + f"# benchmark round {number}: a one-line change in the last layer\n")

    try:
        yield written, change
    finally:
        changed.write_text(original)
        remove(repository)


def timed(command: list[str]) -> float:
    """Seconds the command took, run from the checkout; it must succeed."""
    started = time.monotonic()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def push_runtime(variant: str, repository: str, compression: str, overlay: list[str]) -> tuple[float, PushRecord]:
    """`./dev push --force` of the variant's runtime image to `repository`, as a user runs it: (seconds, what the push
    recorded in reports/push/)."""
    seconds = timed([str(ROOT / "dev"), "push", "--variant", variant, "--flavour", "runtime", "--to", repository,
                     "--compression", compression, "--force", *overlay])
    return seconds, read_push_record(ROOT / "reports" / "push" / f"{variant}.json")


def spread(values: list[float]) -> str:
    """The median in whole seconds, and the range when there is more than one value: '41 s (39-44)'."""
    middle = f"{statistics.median(values):.0f} s"
    return middle if len(values) == 1 else f"{middle} ({min(values):.0f}-{max(values):.0f})"
