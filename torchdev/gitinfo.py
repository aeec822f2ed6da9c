"""What the git checkout says about a build: commit, its time, the remote it came from."""
from __future__ import annotations

import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from torchdev.plan import Provenance
from torchdev.tags import BuildStamp


def _git(root: Path, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 else ""


def read_provenance(root: Path, *, today: datetime | None = None) -> Provenance:
    """Provenance of a build from `root`; outside a git checkout the revision reads "nogit".

    `created` is the commit time, not the clock, so a rebuild with nothing changed yields the same labels
    and stays a full cache hit. A dirty tree is marked in the short sha, so an immutable tag never claims
    a commit whose content it does not hold.
    """
    revision = _git(root, "rev-parse", "HEAD") or "nogit"
    short = revision[:7] if revision != "nogit" else revision
    if revision != "nogit" and _git(root, "status", "--porcelain", "--untracked-files=no"):
        short += "-dirty"
    committed = _git(root, "log", "-1", "--format=%ct")
    created = datetime.fromtimestamp(int(committed), tz=timezone.utc) if committed else datetime(1970, 1, 1, tzinfo=timezone.utc)
    now = today or datetime.now(tz=timezone.utc)
    source = re.sub(r"//[^/@]+@", "//", _git(root, "remote", "get-url", "origin")) or "local"  # no credentials
    return Provenance(stamp=BuildStamp(day=now.date(), git_sha=short), revision=revision, created=created,
                      source=source)
