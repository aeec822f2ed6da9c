"""docker/run-as-owner.sh's choice of user, with stand-ins for stat, id and setpriv (tests/helpers/run_as_owner.py):
the owner of /workspace, torchdev when that is root (saying why in one line), root only by name. What it does in a
real container, with the profile's capabilities, is tests/integration/test_compose.py's."""
from __future__ import annotations

import pytest

from pathlib import Path

from tests.helpers.run_as_owner import SCRIPT, run_as_owner

WORKSPACE_UID = 4242

COMMAND = ("sh", "-c", 'echo "ran with HOME=$HOME"')


def test_a_workspace_owned_by_a_user_runs_the_command_as_that_user_and_says_nothing(tmp_path):
    result = run_as_owner(tmp_path, *COMMAND, owner=(4242, 4343))
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.splitlines() == ["setpriv --reuid=4242 --regid=4343 --clear-groups",
                                          f"ran with HOME={tmp_path / 'home'}"]
    assert (tmp_path / "home").is_dir(), "HOME is made after the switch, by the user"


def test_a_workspace_owned_by_root_runs_as_torchdev_and_says_why_in_one_line(tmp_path):
    result = run_as_owner(tmp_path, *COMMAND, owner=(0, 0))
    assert result.returncode == 0
    assert result.stdout.splitlines()[0] == "setpriv --reuid=1000 --regid=1000 --clear-groups"
    [line] = result.stderr.splitlines()
    assert line.startswith("run-as-owner: /workspace belongs to root, so this runs as torchdev (uid 1000), not as "
                           "root: files it writes there belong to uid 1000, which your host user may not be able to")
    assert 'sudo chown -R "$(id -u):$(id -g)" FOLDER' in line and line.endswith("or set TORCHDEV_RUN_AS=root to run "
                                                                                  "as root")


@pytest.mark.parametrize("owner", [(0, 0), (4242, 4242)])
def test_root_only_when_asked_for_by_name(tmp_path, owner):
    result = run_as_owner(tmp_path, *COMMAND, owner=owner, run_as="root")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.splitlines() == [f"ran with HOME={tmp_path / 'home'}"], "no switch: it stays root"


@pytest.mark.parametrize("value", ["ROOT", "0", "torchdev", "owner"])
def test_any_other_run_as_value_is_refused_in_one_line_with_exit_2(tmp_path, value):
    result = run_as_owner(tmp_path, *COMMAND, owner=(4242, 4242), run_as=value)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (f"run-as-owner: TORCHDEV_RUN_AS={value}: the one value is root (run as root); unset it "
                             "to run as the owner of /workspace\n")


@pytest.mark.parametrize("uid", [4242, 5000])
def test_a_container_started_as_a_user_runs_as_that_user(tmp_path, uid):
    """`docker compose run --user UID`: already the owner, or another user, who cannot switch; either way, as is."""
    result = run_as_owner(tmp_path, *COMMAND, owner=(4242, 4242), uid=uid)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.splitlines() == [f"ran with HOME={tmp_path / 'home'}"]


def test_an_empty_run_as_is_unset(tmp_path):
    """compose passes TORCHDEV_RUN_AS through; an empty value in the host's environment means the default."""
    result = run_as_owner(tmp_path, *COMMAND, owner=(4242, 4242), run_as="")
    assert result.returncode == 0 and result.stdout.startswith("setpriv --reuid=4242")


def test_home_is_the_owners_folder_and_a_home_that_cannot_be_made_falls_back_to_tmp_saying_so(tmp_path):
    """HOME is /home/owners/UID unless told; where it cannot be made (an older image without /home/owners), the
    command still runs, with a HOME in /tmp that lasts as long as the container, and one line saying so."""
    assert "/home/owners/$uid" in SCRIPT.read_text()
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    fallback = Path(f"/tmp/home-{WORKSPACE_UID}")
    existed = fallback.exists()
    try:
        result = run_as_owner(tmp_path, *COMMAND, owner=(WORKSPACE_UID, WORKSPACE_UID), uid=WORKSPACE_UID,
                              home=blocked / "home")
        assert result.returncode == 0
        assert result.stdout.splitlines()[-1] == f"ran with HOME={fallback}"
        [line] = result.stderr.splitlines()
        assert line == (f"run-as-owner: {blocked / 'home'} cannot be made, so HOME is {fallback}, which lasts only "
                        "as long as the container")
    finally:
        if not existed and fallback.exists():
            fallback.rmdir()
