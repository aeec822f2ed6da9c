"""scripts/engine.sh's decisions, against a fake apt and a fake apt layout (the install itself is CI's business).

The script installs Docker from Debian trixie, which upgrades libc6, python3, systemd and apt on Debian 12: it must
do that only with consent, show what it would upgrade otherwise, and find the host's Debian URI in either apt
sources format; `stop` removes the trixie source and pin only where the script wrote them. PATH holds only the
tools it needs, a `docker` that finds no engine, and a fake `apt-get` that logs its arguments and answers
`-s install` with what trixie's apt answered on Debian 12.
"""
import os

import pytest

from tests.helpers.cli import ROOT
from tests.helpers.fake_apt import fake_host, files, run_script

SCRIPT = ROOT / "scripts" / "engine.sh"
MARKER = "# Written by torchdev (scripts/engine.sh or scripts/cosign.sh); scripts/engine.sh stop removes it."
TOOLS = ("bash", "sed", "grep", "head", "cat", "cp", "mkdir", "mktemp", "rm", "wc", "id", "seq", "sleep", "timeout",
         "ln", "dirname")
FAKE_APT = r"""#!/bin/bash
echo "apt-get $*" >> "$FAKE_APT_LOG"
for arg; do case $arg in Dir::Etc::SourceParts=*) parts=${arg#*=};; esac; done
case " $* " in
  *" update "*) [ -n "${parts:-}" ] && cat "$parts"/torchdev-trixie.sources >> "$FAKE_APT_LOG"; exit 0 ;;
  *" -s install "*) printf '%s\n' \
    "Inst libc6 [2.36-9+deb12u10] (2.41-12 Debian:13.2/stable [amd64])" \
    "Inst python3 [3.11.2-1+b1] (3.13.5-1 Debian:13.2/stable [amd64])" \
    "Inst systemd [252.38-1~deb12u1] (257.9-1~deb13u1 Debian:13.2/stable [amd64])" \
    "Inst docker.io (26.1.5+dfsg1-9+b9 Debian:13.2/stable [amd64])"; exit 0 ;;
  *" install "*) echo "E: the fake apt installs nothing" >&2; exit 100 ;;
esac
"""


@pytest.fixture()
def host(tmp_path):
    """A PATH with no Docker engine and a fake apt, and an empty apt layout."""
    return fake_host(tmp_path, tools=TOOLS, fakes={"docker": "#!/bin/bash\nexit 1\n", "apt-get": FAKE_APT})


def run(host, *args, **env):
    """The script on the fake host; its pid file is a test's own, so `stop` can never reach a real dockerd."""
    return run_script(SCRIPT, host, *args, TORCHDEV_ENGINE_PIDFILE=str(host[1].parent / "dockerd.pid"), **env)


def test_without_consent_it_shows_the_upgrades_and_the_usual_routes_and_changes_nothing(host):
    _, apt, log = host
    (apt / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n")
    before = files(apt)
    result = run(host, "start")
    assert result.returncode == 1, result.stderr
    assert "would install Engine 26 from Debian trixie" in result.stderr
    assert "would also upgrade 3 installed packages" in result.stderr
    for line in ("libc6 2.36-9+deb12u10 -> 2.41-12", "python3 3.11.2-1+b1 -> 3.13.5-1", "systemd 252.38-1~deb12u1"):
        assert line in result.stderr
    assert "nothing was changed" in result.stderr and "docs.docker.com/engine/install" in result.stderr
    assert "Docker Desktop" in result.stderr and "--install-from-trixie" in result.stderr
    calls = [line for line in log.read_text().splitlines() if line.startswith("apt-get")]
    assert len(calls) == 2 and " update " in calls[0] and " -s install -t trixie docker.io" in calls[1]
    assert all("Dir::State::Lists=" in call and "Dir::Etc::SourceParts=" in call for call in calls), \
        "the simulation must use a private apt state, never the host's"
    assert "URIs: http://mirror.example/debian\n" in log.read_text()
    assert files(apt) == before


def test_a_one_line_sources_list_gives_the_uri_too(host):
    _, apt, log = host
    (apt / "sources.list").write_text("# comment\ndeb http://security.example/debian-security bookworm-security main\n"
                                      "deb [arch=amd64] http://mirror.example/debian bookworm main contrib\n")
    result = run(host, "start")
    assert result.returncode == 1 and "would also upgrade" in result.stderr, result.stderr
    assert "URIs: http://mirror.example/debian\n" in log.read_text()


def test_no_debian_source_at_all_is_said_not_a_silent_exit(host):
    result = run(host, "start")
    assert result.returncode == 1
    assert "engine: no Debian archive URI in" in result.stderr and "deb.debian.org" in result.stderr


@pytest.mark.skipif(os.getuid() != 0, reason="the install path checks for root first")
@pytest.mark.parametrize("consent", [{"args": ["--install-from-trixie"]}, {"env": {"CI": "true"}}],
                         ids=["flag", "CI=true"])
def test_with_consent_it_installs_from_trixie(host, consent):
    _, apt, log = host
    (apt / "sources.list").write_text("deb http://mirror.example/debian bookworm main\n")
    result = run(host, "start", *consent.get("args", []), **consent.get("env", {}))
    assert result.returncode == 100, result.stderr  # the fake apt refuses the real install
    assert "apt-get install -y -qq -t trixie docker.io docker-buildx docker-compose" in log.read_text()
    assert (apt / "sources.list.d" / "torchdev-trixie.sources").read_text().startswith(
        f"{MARKER}\nTypes: deb\nURIs: http://mirror.example/debian\nSuites: trixie\n")
    assert (apt / "preferences.d" / "torchdev-trixie").read_text().startswith(f"{MARKER}\nPackage: *\n")
    assert "Pin-Priority: 100" in (apt / "preferences.d" / "torchdev-trixie").read_text()


@pytest.mark.skipif(os.getuid() != 0, reason="the install path checks for root first")
def test_stop_removes_the_trixie_source_and_pin_that_start_wrote_and_nothing_else(host):
    _, apt, _ = host
    (apt / "sources.list").write_text("deb http://mirror.example/debian bookworm main\n")
    (apt / "sources.list.d" / "debian.sources").write_text("Types: deb\nURIs: http://mirror.example/debian\n")
    assert run(host, "start", "--install-from-trixie").returncode == 100  # the fake apt refuses the real install
    assert (apt / "sources.list.d" / "torchdev-trixie.sources").exists()
    result = run(host, "stop")
    assert result.returncode == 0, result.stderr
    assert files(apt) == ["preferences.d", "sources.list", "sources.list.d", "sources.list.d/debian.sources"]
    assert result.stderr.startswith("engine: removed the Debian trixie apt source and pin that torchdev added (")
    assert "apt-get purge docker.io docker-buildx docker-compose" in result.stderr


def test_stop_leaves_a_trixie_source_and_pin_it_did_not_write(host):
    _, apt, _ = host
    written = {apt / "sources.list.d" / "torchdev-trixie.sources": "Types: deb\nSuites: trixie\n",
               apt / "preferences.d" / "torchdev-trixie": "Package: *\nPin: release n=trixie\nPin-Priority: 100\n"}
    for path, text in written.items():
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    result = run(host, "stop")
    assert result.returncode == 0, result.stderr
    assert {path: path.read_text() for path in written} == written
    assert result.stderr.splitlines() == [f"engine: {path} has no line saying this script wrote it: left as it is"
                                          for path in written]


def test_stop_with_nothing_started_or_written_says_nothing_and_succeeds(host):
    result = run(host, "stop")
    assert (result.returncode, result.stderr) == (0, "")


def test_an_unknown_command_is_a_usage_error(host):
    result = run(host, "install")
    assert result.returncode == 2 and "usage:" in result.stderr
