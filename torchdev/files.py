"""Writing files so that a reader sees the old content or the new, never half of either."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable


def write_atomically(path: Path, content: str | bytes | Iterable[bytes]) -> None:
    """Write beside `path`, then rename over it; a failure part-way leaves `path` as it was and no temporary file.
    The file keeps the mode of the one it replaces (0644 when new)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    chunks = [content.encode()] if isinstance(content, str) else [content] if isinstance(content, bytes) else content
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            for chunk in chunks:
                stream.write(chunk)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
