"""A real registry (Debian's docker-registry) on a free loopback port, optionally behind an htpasswd login.

Docker treats 127.0.0.0/8 as an insecure registry, so plain HTTP works there without touching daemon.json."""
from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import yaml

from tests.helpers.cli import unavailable


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serve_registry(folder: Path, *, login: tuple[str, str] | None = None) -> Iterator[str]:
    """Run a registry storing into `folder`; yields its host:port, stops it and deletes what it stored afterwards."""
    binary = shutil.which("docker-registry")
    if binary is None:
        unavailable("docker-registry is not installed (apt-get install docker-registry)")
    port = free_port()
    config = {"version": 0.1, "storage": {"filesystem": {"rootdirectory": str(folder / "data")},
                                          "delete": {"enabled": True}},
              "http": {"addr": f"127.0.0.1:{port}"}}
    if login:
        (folder / "htpasswd").write_text(f"{login[0]}:{bcrypt_hash(login[1])}\n")
        config["auth"] = {"htpasswd": {"realm": "torchdev-test", "path": str(folder / "htpasswd")}}
    (folder / "config.yml").write_text(yaml.safe_dump(config))
    process = subprocess.Popen([binary, "serve", str(folder / "config.yml")], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/v2/")
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(folder / "data", ignore_errors=True)  # pushed images: gigabytes that pytest would keep


def bcrypt_hash(password: str) -> str:
    """The only hash docker-registry's htpasswd accepts: from Python's crypt (gone in 3.13), else `htpasswd -B`."""
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))
    except ImportError:
        if not shutil.which("htpasswd"):
            unavailable("no bcrypt for the registry's login: Python's crypt is gone and htpasswd (apache2-utils) "
                        "is not installed")
        return subprocess.run(["htpasswd", "-nbB", "u", password], capture_output=True, text=True,
                              check=True).stdout.strip().split(":", 1)[1]


def wait_until_up(url: str) -> None:
    for _ in range(100):
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # 401: it answers, and wants a login
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"the registry at {url} did not answer")
