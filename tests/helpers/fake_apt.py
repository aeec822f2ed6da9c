"""A fake Debian host for the scripts that install with apt (scripts/engine.sh and scripts/cosign.sh from trixie,
scripts/make-base.sh's mmdebstrap): a PATH folder that holds only the tools a script needs plus fakes (an apt-get
that logs its arguments and installs nothing), an apt layout of its own (TORCHDEV_APT_DIR), and the script run
there."""
from __future__ import annotations

import subprocess
from pathlib import Path

from tests.helpers.fake_commands import command_folder

Host = tuple[Path, Path, Path]
"""(the PATH folder, the apt layout, apt-get's log)."""


def fake_host(tmp_path: Path, *, tools: tuple[str, ...], fakes: dict[str, str]) -> Host:
    """The PATH folder and an apt layout with an empty sources.list.d, under tmp_path."""
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    return command_folder(tmp_path / "bin", fakes, tools=tools), apt, tmp_path / "apt.log"


def run_script(script: Path, host: Host, *args: str, **env: str) -> subprocess.CompletedProcess:
    """`bash script args` on the fake host, with nothing of this host's environment but `env`."""
    bin_dir, apt, log = host
    environ = {"PATH": str(bin_dir), "TORCHDEV_APT_DIR": str(apt), "FAKE_APT_LOG": str(log), "HOME": str(apt), **env}
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, env=environ, timeout=60,
                          check=False)


def files(folder: Path) -> list[str]:
    """Everything under `folder`, relative to it, sorted."""
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))
