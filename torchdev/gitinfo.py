"""What the git checkout says about a build: commit, its time, the remote it came from."""
from __future__ import annotations

import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from torchdev.errors import CONFIGURATION, ConfigError, Problem
from torchdev.grammar import without_userinfo

BAD_EPOCH = Problem("SOURCE_DATE_EPOCH={epoch} is not a number of seconds since 1970", "fix or unset it", ConfigError,
                    CONFIGURATION)
from torchdev.plan import Provenance
from torchdev.tags import BuildStamp


def _git(root: Path, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 else ""


def read_provenance(root: Path, *, inputs: tuple[str, ...] = (), environ: dict[str, str] | None = None) -> Provenance:
    """Provenance of a build from `root`; outside a git checkout the revision reads "nogit".

    `created` (which is also the build's SOURCE_DATE_EPOCH) is $SOURCE_DATE_EPOCH when set, else the time
    of the last commit that touched the build `inputs`, not the clock: a rebuild with nothing changed gets
    the same labels and timestamps, hence the same digest. The tags' {date} is that time's day too, never the day
    of the build: the same inputs rebuilt tomorrow get the same immutable tag, not a new copy of it. A dirty tree is
    marked in the short sha, so an immutable tag never claims a commit whose content it does not hold.
    """
    environ = dict(os.environ) if environ is None else environ
    revision = _git(root, "rev-parse", "HEAD") or "nogit"
    short = revision[:7] if revision != "nogit" else revision
    if revision != "nogit" and _git(root, "status", "--porcelain", "--untracked-files=no"):
        short += "-dirty"
    epoch = environ.get("SOURCE_DATE_EPOCH") or _git(root, "log", "-1", "--format=%ct", "--", *inputs) or "0"
    if not epoch.isdigit():
        raise BAD_EPOCH(epoch=epoch)
    created = datetime.fromtimestamp(int(epoch), tz=timezone.utc)
    source = without_userinfo(_git(root, "remote", "get-url", "origin")) or "local"
    return Provenance(stamp=BuildStamp(day=created.date(), git_sha=short), revision=revision, created=created,
                      source=source)
