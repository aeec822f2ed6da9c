"""The files of a run directory: checkpoint.pt and metrics.jsonl.

Checkpoints are written atomically (temporary file in the same directory,
fsync, os.replace, fsync of the directory), so a kill at any moment leaves
either the previous complete checkpoint or the new complete one, never a
truncated file.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"


def checkpoint_path(run_dir: Path) -> Path:
    """Location of the run's single, always-latest checkpoint."""
    return run_dir / CHECKPOINT_NAME


def metrics_path(run_dir: Path) -> Path:
    """Location of the run's one-line-per-epoch metrics log."""
    return run_dir / METRICS_NAME


def fsync_directory(directory: Path) -> None:
    """Make a rename inside the directory durable, not just the file contents."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temporary_path(path: Path) -> Path:
    """Hidden per-process sibling of path, so the final rename never crosses filesystems."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def remove_stale_temporaries(run_dir: Path) -> None:
    """Delete temporary checkpoints left by runs that were SIGKILLed mid-write."""
    for leftover in run_dir.glob(f".{CHECKPOINT_NAME}.*.tmp"):
        leftover.unlink(missing_ok=True)


def save_atomically(state: dict[str, Any], path: Path) -> None:
    """torch.save to path so that readers only ever see a complete file.

    The temporary file is created with mode 0o666 minus the umask (not
    mkstemp's 0o600), so the checkpoint gets the same permissions as any
    other file the user creates.
    """
    temporary = temporary_path(path)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load on CPU with weights_only=True: a checkpoint holds only tensors and plain data.

    weights_only refuses arbitrary pickled objects, and it is the default from
    torch 2.6 on, so being explicit gives the same behaviour on every 2.x.
    torch 2.0's weights-only loader trips its own TypedStorage deprecation
    warning; that warning is about torch internals, not this file, so it is muted.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="TypedStorage is deprecated", category=UserWarning)
        return torch.load(path, map_location="cpu", weights_only=True)


def append_metrics(path: Path, record: dict[str, Any]) -> None:
    """Add one epoch's record and push it to disk, so `tail -f` and crashes see it."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def epoch_of_record(line: str) -> int | None:
    """The epoch a metrics line describes, or None for a line torn by a kill mid-write."""
    try:
        return int(json.loads(line)["epoch"])
    except (ValueError, KeyError, TypeError):
        return None


def keep_metrics_up_to(path: Path, last_epoch: int) -> None:
    """Drop records of epochs after the checkpoint's, and torn lines.

    metrics.jsonl is written just before the checkpoint; if a run died between
    the two, the resumed run repeats that epoch and would otherwise log it twice.
    """
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [
        line.rstrip("\n") + "\n"
        for line in lines
        if (epoch := epoch_of_record(line)) is not None and epoch <= last_epoch
    ]
    if kept != lines:
        path.write_text("".join(kept), encoding="utf-8")


def remove_run_files(run_dir: Path) -> None:
    """--no-resume: forget the old run so a later plain resume cannot pick it up."""
    checkpoint_path(run_dir).unlink(missing_ok=True)
    metrics_path(run_dir).unlink(missing_ok=True)
