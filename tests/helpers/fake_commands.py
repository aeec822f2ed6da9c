"""Stand-in commands: executable scripts in a folder put ahead of PATH, so that the code under test runs them where it
would run the real ones (docker, torchrun, Slurm's and apt's tools), and a test reads what they were asked."""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path


def command_folder(folder: Path, scripts: Mapping[str, str], *, tools: Iterable[str] = ()) -> Path:
    """`folder` (made when missing) holding each of `scripts` (name -> its text, #! line included) as an executable,
    and links to this host's `tools`, for a PATH that holds nothing else."""
    folder.mkdir(parents=True, exist_ok=True)
    for tool in tools:
        (folder / tool).symlink_to(shutil.which(tool))
    for name, script in scripts.items():
        (folder / name).write_text(script)
        (folder / name).chmod(0o755)
    return folder


def ahead_of_path(folder: Path) -> str:
    """This process's PATH with `folder` first."""
    return f"{folder}{os.pathsep}{os.environ['PATH']}"
