"""Wheels for a container's pip, offline: ones a test makes (a stand-in for an index's torch 2.1.0 or numpy 2, tiny,
so that pip has a candidate to refuse), and a real one downloaded on the host, served to the container from a folder
it mounts (a running container does not trust the host's proxy, and tests keep containers offline)."""
from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.helpers.cli import unavailable


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def make_wheel(folder: Path, name: str, version: str, *, requires: tuple[str, ...] = ()) -> Path:
    """A pure-Python wheel of `name` `version` (one module that says which it is), requiring `requires`."""
    module = name.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": f'__version__ = "{version}"\nMADE_BY = "torchdev tests"\n'.encode(),
        f"{dist_info}/METADATA": "\n".join(["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
                                            *(f"Requires-Dist: {r}" for r in requires), ""]).encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: torchdev-tests\nRoot-Is-Purelib: true\n"
                              b"Tag: py3-none-any\n",
    }
    record = [_record_line(path, data) for path, data in files.items()] + [f"{dist_info}/RECORD,,"]
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = folder / f"{module}-{version}-py3-none-any.whl"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as wheel:
        for member, data in files.items():
            wheel.writestr(member, data)
    return path


def download_wheel(folder: Path, requirement: str) -> Path:
    """The index's own wheel of `requirement` (pip on the host, through its proxy): the package a test installs in a
    container and then takes into an image, where the build gets the same file from the index by its locked hash."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "pip", "download", requirement, "--no-deps", "--only-binary", ":all:",
                           "--dest", str(folder), "--quiet"], capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        unavailable(f"cannot download {requirement} from the index: {done.stderr.strip()[-300:]}")
    name = requirement.split("==")[0].replace("-", "_")
    return next(folder.glob(f"{name}-*.whl"))
