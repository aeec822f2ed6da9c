"""Files torchdev writes and the files it is told to read, checked before anything is done with them.

torchdev writes only regular files, atomically (a reader sees the old content or the new, never half of either),
into folders it may write to; a path that names a folder, a device, a FIFO or a socket, a symbolic link that leads
out of the folder it is written into, or a folder that cannot be written is refused in one line before anything is
written, so no command replaces what it did not make (as root, replacing /dev/sda's node would be easy). A file it
is told to read (an overlay, a lock, a CA bundle, a key) must be a regular file too: a folder or a device given
there is refused, never silently skipped.
"""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Iterable

from torchdev.errors import RUNTIME, USAGE, Problem, TorchdevError, UsageError

NOT_A_FILE = Problem("{path} is {what}, not a regular file", "{fix}", UsageError, topic=USAGE)
"""An output path that names something else; the fix is the caller's (choose another path, remove it)."""
LINK_OUT = Problem("{path} is a symbolic link to {target}, out of {folder}",
                   "torchdev does not write through a link out of the folder it writes into: remove the link, or "
                   "choose another path", UsageError, topic=USAGE)
NOT_A_FOLDER = Problem("{path} is {what}, not a folder", "name a folder (torchdev makes it when it is missing), or "
                       "move that away", UsageError, topic=USAGE)
UNWRITABLE = Problem("{path} cannot be written ({reason})", "choose a folder you may write to, or change its "
                     "permissions", UsageError, topic=USAGE)
BAD_PATH = Problem("{path!r} is no usable path ({reason})", "name the file or folder without NUL characters, within "
                   "the file system's length limits", UsageError, USAGE)
WRITE_FAILED = Problem("cannot write {path} ({reason})", "free some space, or choose a folder you may write to",
                       TorchdevError, RUNTIME)
INPUT_NOT_A_FILE = Problem("{path} ({role}) is {what}, not a regular file", "name the file itself", UsageError,
                           topic=USAGE)
INPUT_UNREADABLE = Problem("{path} ({role}) cannot be read ({reason})", "make it readable, or name another file",
                           UsageError, topic=USAGE)

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link"))
REPLACE_IT = "remove it or choose another path (torchdev writes only regular files, and replaces only those)"


def kind_of(mode: int) -> str:
    """What a file of `mode` is, in words: "a folder", "a character device", ... ("a regular file" for one)."""
    return next((what for test, what in _KINDS if test(mode)), "a regular file" if stat.S_ISREG(mode) else
                "an unknown kind of file")


def usable(path: Path) -> Path:
    """`path`, unless the operating system cannot take it at all (a NUL character, a name too long)."""
    if "\0" in str(path):
        raise BAD_PATH(path=str(path), reason="it holds a NUL character")
    if any(len(os.fsencode(part)) > 255 for part in path.parts) or len(os.fsencode(str(path))) > 4095:
        raise BAD_PATH(path=str(path)[:80] + "...", reason="a name in it, or the whole, is too long")
    return path


def check_output_folder(folder: Path) -> None:
    """Refuse a folder that is something else, or that (or, while missing, its nearest existing parent) cannot be
    written. A folder that is a symbolic link to a folder is a folder: the user put it there."""
    probe = usable(folder)
    while not os.path.lexists(probe):
        if probe.parent == probe:
            break
        probe = probe.parent
    try:
        mode = probe.stat().st_mode
    except OSError as error:
        raise UNWRITABLE(path=probe, reason=error.strerror or str(error)) from None
    if not stat.S_ISDIR(mode):
        raise NOT_A_FOLDER(path=probe, what=kind_of(mode))
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UNWRITABLE(path=probe, reason="permission denied or a read-only file system")


def output_target(path: Path) -> Path:
    """The regular file writing `path` replaces (the path itself, or where a link inside its folder leads), once it
    is known to be safe to write; a refusal in one line otherwise."""
    check_output_folder(usable(path).parent)
    if not os.path.lexists(path):
        return path
    if path.is_symlink():
        target = path.resolve()
        folder = path.parent.resolve()
        if not target.is_relative_to(folder):
            raise LINK_OUT(path=path, target=os.readlink(path), folder=path.parent)
        if os.path.lexists(target) and not stat.S_ISREG(target.lstat().st_mode):
            raise NOT_A_FILE(path=path, what=f"a link to {kind_of(target.lstat().st_mode)}", fix=REPLACE_IT)
        return target
    mode = path.lstat().st_mode
    if not stat.S_ISREG(mode):
        raise NOT_A_FILE(path=path, what=kind_of(mode), fix=REPLACE_IT)
    return path


def check_outputs(paths: Iterable[Path]) -> None:
    """Refuse the first of `paths` that cannot be written safely, before any of them is."""
    for path in paths:
        output_target(path)


def write_atomically(path: Path, content: str | bytes | Iterable[bytes]) -> None:
    """Write beside `path`, then rename over it; a failure part-way leaves `path` as it was and no temporary file.
    The file keeps the mode of the one it replaces (0644 when new). Only a regular file is replaced (output_target)."""
    path = output_target(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise WRITE_FAILED(path=path, reason=error.strerror or str(error)) from None
    chunks = [content.encode()] if isinstance(content, str) else [content] if isinstance(content, bytes) else content
    try:
        with os.fdopen(handle, "wb") as stream:
            for chunk in chunks:
                stream.write(chunk)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except OSError as error:
        os.unlink(temporary)
        raise WRITE_FAILED(path=path, reason=error.strerror or str(error)) from None
    except BaseException:
        os.unlink(temporary)
        raise


def input_text(path: Path, *, role: str) -> str | None:
    """The text of a file torchdev is told to read (input_file's checks), None when nothing is there."""
    if input_file(path, role=role) is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = "it is not UTF-8 text" if isinstance(error, UnicodeDecodeError) else error.strerror or str(error)
        raise INPUT_UNREADABLE(path=path, role=role, reason=reason) from None


def input_file(path: Path, *, role: str) -> Path | None:
    """`path` when it is a regular file (or a link to one) that can be read, None when nothing is there; a folder, a
    device or an unreadable file is refused in one line naming its `role` (the overlay, variant cu118's lock, ...)."""
    try:
        mode = usable(path).stat().st_mode
    except FileNotFoundError:
        return None
    except OSError as error:
        raise INPUT_UNREADABLE(path=path, role=role, reason=error.strerror or str(error)) from None
    if not stat.S_ISREG(mode):
        raise INPUT_NOT_A_FILE(path=path, role=role, what=kind_of(mode))
    if not os.access(path, os.R_OK):
        raise INPUT_UNREADABLE(path=path, role=role, reason="permission denied")
    return path
