"""docker/run-as-owner.sh outside a container: `stat`, `id` and `setpriv` replaced by stand-ins on PATH, so its
choice of user can be read without Docker or root. The stand-in `stat` reports the owner the test gives
/workspace, `id` the UID the script runs as and torchdev's 1000, and `setpriv` prints the switch it was asked for,
then runs the command as it is."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.helpers.cli import ROOT
from tests.helpers.fake_commands import command_folder

SCRIPT = ROOT / "docker" / "run-as-owner.sh"
STANDINS = {
    "stat": '[ "$3" = /workspace ] || exit 9\ncase "$2" in %u) echo "$STUB_OWNER_UID" ;; %g) echo "$STUB_OWNER_GID" ;; '
            'esac\n',
    "id": 'case "$*" in "-u") echo "$STUB_SELF_UID" ;; "-u torchdev" | "-g torchdev") echo 1000 ;; *) exit 1 ;; esac\n',
    "setpriv": 'echo "setpriv $1 $2 $3"\nshift 4\nexec "$@"\n',
}


def run_as_owner(tmp_path: Path, *command: str, owner: tuple[int, int], uid: int = 0,
                 run_as: str | None = None, home: Path | None = None) -> subprocess.CompletedProcess:
    """The script with /workspace owned by `owner` (uid, gid), started as `uid`, TORCHDEV_RUN_AS `run_as`, HOME
    `home` (tmp_path/home by default: never the image's /home/owners on this host)."""
    bin_dir = command_folder(tmp_path / "bin", {name: "#!/bin/sh\n" + body for name, body in STANDINS.items()})
    env = {key: value for key, value in os.environ.items() if key != "TORCHDEV_RUN_AS"}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", STUB_OWNER_UID=str(owner[0]), STUB_OWNER_GID=str(owner[1]),
               STUB_SELF_UID=str(uid), HOME_OVERRIDE=str(home or tmp_path / "home"))
    if run_as is not None:
        env["TORCHDEV_RUN_AS"] = run_as
    return subprocess.run(["sh", str(SCRIPT), *command], env=env, capture_output=True, text=True, timeout=30,
                          check=False)
