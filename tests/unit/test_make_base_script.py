"""scripts/make-base.sh's consent rule for installing mmdebstrap, on a fake host: PATH holds only the tools the script
needs, a `docker` that has no base image, no mmdebstrap, and a fake `apt-get` that logs its arguments and installs
nothing. Like scripts/engine.sh, it installs only under CI=true or with --install-mmdebstrap; otherwise it names
the package and the command and changes nothing. (Making the base for real is tests/integration's.)"""
import os
import subprocess

import pytest

from tests.helpers.cli import ROOT
from tests.helpers.fake_commands import command_folder

SCRIPT = ROOT / "scripts" / "make-base.sh"
TOOLS = ("bash", "uname", "id", "dirname", "mktemp", "rm", "cat")


@pytest.fixture()
def host(tmp_path):
    fakes = {"docker": "#!/bin/bash\nexit 1\n",  # no image of any platform
             "apt-get": '#!/bin/bash\necho "apt-get $*" >>"$FAKE_APT_LOG"\n'
                        'case " $* " in *" install "*) exit 100 ;; esac\n'}
    return command_folder(tmp_path / "bin", fakes, tools=TOOLS), tmp_path / "apt.log"


def run(host, *args, **env):
    bin_dir, log = host
    return subprocess.run(["bash", str(SCRIPT), "torchdev-test-base:bookworm", *args], capture_output=True, text=True,
                          env={"PATH": str(bin_dir), "FAKE_APT_LOG": str(log), **env}, timeout=60, check=False)


def test_without_consent_it_names_the_package_and_the_command_and_installs_nothing(host):
    _, log = host
    result = run(host, "--platform", "linux/amd64")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "base: mmdebstrap is missing; nothing was changed: install Debian's mmdebstrap (sudo apt-get install "
        f"mmdebstrap) and rerun, or let this script install it: {SCRIPT} torchdev-test-base:bookworm --platform "
        "linux/amd64 --install-mmdebstrap"]
    assert not log.exists(), "apt-get was run without consent"


@pytest.mark.skipif(os.getuid() != 0, reason="the install path checks for root first")
@pytest.mark.parametrize("consent", [{"args": ["--install-mmdebstrap"]}, {"env": {"CI": "true"}}],
                         ids=["flag", "CI=true"])
def test_with_consent_it_installs_mmdebstrap(host, consent):
    _, log = host
    result = run(host, *consent.get("args", []), **consent.get("env", {}))
    assert result.returncode == 100, result.stderr  # the fake apt refuses the real install
    assert "base: installing mmdebstrap (apt-get install mmdebstrap)" in result.stderr
    assert log.read_text().splitlines() == ["apt-get update -qq", "apt-get install -y -qq mmdebstrap"]


@pytest.mark.skipif(os.getuid() == 0, reason="as root the install goes ahead")
def test_with_consent_but_not_root_it_says_sudo(host):
    result = run(host, "--install-mmdebstrap")
    assert result.returncode == 1 and "base: installing mmdebstrap needs root: sudo " in result.stderr


def test_an_unknown_option_is_a_usage_error(host):
    result = run(host, "--yes")
    assert result.returncode == 2 and result.stderr.startswith("base: unknown option --yes (usage: ")
