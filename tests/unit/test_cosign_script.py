"""scripts/cosign.sh's decisions, against a fake apt and a fake apt layout (the install itself is CI's business).

cosign is packaged by Debian in trixie only; the script adds trixie's apt source to get it, so, like scripts/engine.sh,
it does that only with consent, and otherwise says what apt would install and the other routes, changing nothing.
"""
import os
import shutil
import subprocess

import pytest

from tests.helpers.cli import ROOT
from tests.helpers.fake_apt import fake_host, files, run_script

SCRIPT = ROOT / "scripts" / "cosign.sh"
TOOLS = ("bash", "sed", "grep", "head", "cat", "cp", "mkdir", "mktemp", "rm", "tr", "id", "dirname")
FAKE_APT = r"""#!/bin/bash
echo "apt-get $*" >> "$FAKE_APT_LOG"
case " $* " in
  *" update "*) exit 0 ;;
  *" -s install "*) printf '%s\n' "Inst cosign (2.5.0-2+b5 Debian:13.8/stable [amd64])" \
                                  "Conf cosign (2.5.0-2+b5 Debian:13.8/stable [amd64])"; exit 0 ;;
  *" install "*) echo "E: the fake apt installs nothing" >&2; exit 100 ;;
esac
"""


@pytest.fixture()
def host(tmp_path):
    """A PATH without cosign and with a fake apt; an apt layout with one Debian source."""
    found = fake_host(tmp_path, tools=TOOLS, fakes={"apt-get": FAKE_APT})
    (found[1] / "sources.list").write_text("deb http://mirror.example/debian bookworm main\n")
    return found


def run(host, *args, **env):
    return run_script(SCRIPT, host, *args, **env)


def test_without_consent_it_says_what_apt_would_install_and_changes_nothing(host):
    _, apt, log = host
    before = files(apt)
    result = run(host, "install")
    assert result.returncode == 1, result.stderr
    assert "would install Debian's cosign 2.5 from trixie" in result.stderr
    assert "apt would install or upgrade: cosign" in result.stderr
    assert "nothing was changed" in result.stderr and "docs.sigstore.dev" in result.stderr
    calls = [line for line in log.read_text().splitlines() if line.startswith("apt-get")]
    assert len(calls) == 2 and " -s install -t trixie cosign" in calls[1]
    assert all("Dir::State::Lists=" in call for call in calls), "the simulation uses a private apt state"
    assert files(apt) == before


def test_a_cosign_on_path_is_left_alone(host):
    bin_dir, apt, log = host
    (bin_dir / "cosign").write_text("#!/bin/bash\nexit 0\n")
    (bin_dir / "cosign").chmod(0o755)
    result = run(host, "install")
    assert result.returncode == 0 and "present, nothing to do" in result.stdout
    assert not log.exists()


@pytest.mark.skipif(os.getuid() != 0, reason="the install path checks for root first")
@pytest.mark.parametrize("consent", [{"args": ["--install-from-trixie"]}, {"env": {"CI": "true"}}],
                         ids=["flag", "CI=true"])
def test_with_consent_it_adds_the_pinned_trixie_source_and_installs_cosign_from_it(host, consent):
    _, apt, log = host
    result = run(host, "install", *consent.get("args", []), **consent.get("env", {}))
    assert result.returncode == 100, result.stderr  # the fake apt refuses the real install
    assert "apt-get install -y -qq -t trixie cosign" in log.read_text()
    marker, source = (apt / "sources.list.d" / "torchdev-trixie.sources").read_text().split("\n", 1)
    assert source.startswith("Types: deb\nURIs: http://mirror.example/debian\nSuites: trixie\n")
    assert marker.startswith("# Written by torchdev") and "scripts/engine.sh stop removes it" in marker
    assert (apt / "preferences.d" / "torchdev-trixie").read_text().startswith(f"{marker}\n")
    assert "Pin-Priority: 100" in (apt / "preferences.d" / "torchdev-trixie").read_text()


@pytest.mark.skipif(os.getuid() != 0, reason="the install path checks for root first")
def test_scripts_engine_sh_stop_removes_the_source_and_pin_it_added(host, tmp_path):
    """CI installs cosign after the engine: whichever script added the trixie source, `engine.sh stop` takes it away
    (both write scripts/trixie-source.sh's marker), and leaves the host's own sources."""
    _, apt, _ = host
    assert run(host, "install", "--install-from-trixie").returncode == 100  # the fake apt refuses the real install
    assert (apt / "preferences.d" / "torchdev-trixie").exists()
    stopped = run_script(ROOT / "scripts" / "engine.sh", host, "stop",
                         TORCHDEV_ENGINE_PIDFILE=str(tmp_path / "dockerd.pid"))
    assert stopped.returncode == 0, stopped.stderr
    assert files(apt) == ["preferences.d", "sources.list", "sources.list.d"]


def test_an_unknown_command_is_a_usage_error(host):
    result = run(host, "sign")
    assert result.returncode == 2 and "usage:" in result.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_is_clean():
    """With the apt source it shares with scripts/engine.sh followed (scripts/.shellcheckrc)."""
    scripts = [SCRIPT, ROOT / "scripts" / "trixie-source.sh"]
    result = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout
