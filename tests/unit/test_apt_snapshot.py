"""apt snapshots: validated in images.yaml, passed to the build as one arg, applied by docker/apt-snapshot.sh.

The script is run here for real with bash and sed (what the build runs) on sources files of each kind the
bases ship: one-line .list files, deb822 .sources files, and NVIDIA's CUDA repository that has no snapshot.
"""
import os
import subprocess
from pathlib import Path

import pytest

from torchdev.matrix import load_matrix
from torchdev.plan import apt_snapshot_sources
from tests.helpers.matrix_files import VALID, error_for, write

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docker" / "apt-snapshot.sh"
SNAPSHOT_URLS = """\
apt_snapshot_urls:
  ubuntu: http://snapshot.example/ubuntu/{timestamp}
  debian-security: http://snapshot.example/archive/debian-security/{timestamp}
"""
WITH_SNAPSHOT = SNAPSHOT_URLS + VALID + '    apt_snapshot: "20261101T000000Z"\n'


def test_a_snapshot_becomes_one_build_arg_with_the_time_filled_in(tmp_path):
    matrix = load_matrix(write(tmp_path, WITH_SNAPSHOT))
    assert apt_snapshot_sources(matrix=matrix, variant=matrix.variant("cu118")) == (
        "ubuntu=http://snapshot.example/ubuntu/20261101T000000Z "
        "debian-security=http://snapshot.example/archive/debian-security/20261101T000000Z")


def test_an_overlay_null_switches_the_snapshot_off(tmp_path):
    overlay = write(tmp_path, "variants:\n  cu118:\n    apt_snapshot: null\n", name="overlay.yaml")
    matrix = load_matrix(write(tmp_path, WITH_SNAPSHOT), overlay=str(overlay))
    assert apt_snapshot_sources(matrix=matrix, variant=matrix.variant("cu118")) == ""


def test_the_committed_matrix_snapshots_every_variant_and_the_ci_overlay_does_not():
    if (ROOT / "images.local.yaml").exists():
        pytest.skip("images.local.yaml is present and would be merged in")
    matrix = load_matrix(ROOT / "images.yaml")
    assert all(variant.apt_snapshot for variant in matrix.variants)
    local = load_matrix(ROOT / "images.yaml", overlay=str(ROOT / "overlays" / "local-debian.yaml"))
    assert local.variant("cu117").apt_snapshot == ""


@pytest.mark.parametrize("change, expected", [
    (('"20261101T000000Z"', '"2026-11-01"'), "images.yaml:17: variant 'cu118': key 'apt_snapshot': '2026-11-01' is "
                                             "not a UTC time written YYYYMMDDTHHMMSSZ"),
    (('"20261101T000000Z"', '"20261301T000000Z"'), "key 'apt_snapshot': '20261301T000000Z' is not a real date"),
    (("{timestamp}\n  debian", "latest\n  debian"), "images.yaml:2: apt_snapshot_urls: key 'ubuntu': "
                                                    "'http://snapshot.example/ubuntu/latest' must contain {timestamp}"),
    (("ubuntu: http", "ubuntu: ftp"), "key 'ubuntu': 'ftp://snapshot.example/ubuntu/{timestamp}' is not an http://"),
    (("  ubuntu:", "  Ubuntu Main:"), "key 'Ubuntu Main': 'Ubuntu Main' is not an apt archive name"),
])
def test_bad_snapshot_settings_name_file_line_and_key(tmp_path, change, expected):
    assert expected in error_for(tmp_path, WITH_SNAPSHOT.replace(*change))


def test_a_snapshot_without_a_url_table_says_both_ways_out(tmp_path):
    message = error_for(tmp_path, VALID + '    apt_snapshot: "20261101T000000Z"\n')
    assert "variant 'cu118' sets apt_snapshot but there is no apt_snapshot_urls table" in message
    assert "apt_snapshot: null" in message


def run_script(tmp_path: Path, *, sources: dict[str, str], snapshot: str) -> tuple[subprocess.CompletedProcess, Path]:
    etc, out = tmp_path / "etc", tmp_path / "out"
    (etc / "sources.list.d").mkdir(parents=True)
    for name, text in sources.items():
        (etc / name).write_text(text)
    result = subprocess.run(["bash", str(SCRIPT), str(etc), str(out)], capture_output=True, text=True,
                            env={**os.environ, "APT_SNAPSHOT": snapshot}, check=False)
    return result, out


UBUNTU_WITH_CUDA = {
    "sources.list": "deb http://archive.ubuntu.com/ubuntu/ jammy main restricted\n"
                    "# deb http://archive.ubuntu.com/ubuntu/ jammy universe\n"
                    "deb http://security.ubuntu.com/ubuntu/ jammy-security main\n",
    "sources.list.d/cuda.list": "deb [signed-by=/usr/share/keyrings/cuda.gpg] "
                                "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2204/x86_64/ /\n",
}
SNAPSHOT = "ubuntu=http://snapshot.example/ubuntu/20261101T000000Z"


def test_ubuntu_sources_are_redirected_and_the_cuda_repository_is_named_as_live(tmp_path):
    result, out = run_script(tmp_path, sources=UBUNTU_WITH_CUDA, snapshot=SNAPSHOT)
    assert result.returncode == 0, result.stderr
    assert (out / "sources.list").read_text() == (
        "deb http://snapshot.example/ubuntu/20261101T000000Z/ jammy main restricted\n"
        "# deb http://archive.ubuntu.com/ubuntu/ jammy universe\n"
        "deb http://snapshot.example/ubuntu/20261101T000000Z/ jammy-security main\n")
    assert (out / "sources.list.d" / "cuda.list").read_text() == UBUNTU_WITH_CUDA["sources.list.d/cuda.list"]
    assert "ubuntu2204/x86_64/ stays live: apt_snapshot_urls has no entry for its archive 'x86_64'" in result.stderr
    assert "2 apt source(s) read from snapshots" in result.stderr


def test_deb822_files_with_several_uris_and_similar_archive_names(tmp_path):
    sources = {"sources.list.d/debian.sources":
               "Types: deb\nURIs: http://deb.debian.org/debian http://ftp.example/debian/\nSuites: bookworm\n\n"
               "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n"}
    snapshot = "debian=http://s.example/archive/debian/20261101T000000Z"
    result, out = run_script(tmp_path, sources=sources, snapshot=snapshot)
    assert result.returncode == 0, result.stderr
    assert (out / "sources.list.d" / "debian.sources").read_text() == (
        "Types: deb\nURIs: http://s.example/archive/debian/20261101T000000Z/ "
        "http://s.example/archive/debian/20261101T000000Z/\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n")
    assert "debian-security stays live" in result.stderr


def test_a_snapshot_that_covers_no_source_fails_with_the_fix(tmp_path):
    result, _ = run_script(tmp_path, sources=UBUNTU_WITH_CUDA,
                           snapshot="debian=http://s.example/archive/debian/20261101T000000Z")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        "torchdev: apt_snapshot is set but apt_snapshot_urls covers none of the base's apt sources")
    assert "set apt_snapshot: null" in result.stderr


def test_the_original_sources_are_left_untouched(tmp_path):
    run_script(tmp_path, sources=UBUNTU_WITH_CUDA, snapshot=SNAPSHOT)
    assert (tmp_path / "etc" / "sources.list").read_text() == UBUNTU_WITH_CUDA["sources.list"]


UBUNTU_PORTS = {
    "sources.list": "deb http://ports.ubuntu.com/ubuntu-ports/ jammy main restricted\n"
                    "deb http://ports.ubuntu.com/ubuntu-ports jammy-security main\n",
    "sources.list.d/ubuntu.sources": "Types: deb\nURIs: http://ports.ubuntu.com/ubuntu-ports/\n"
                                     "Suites: noble noble-updates\n",
}
PORTS_URL = "http://snapshot.example/ubuntu-ports/20261101T000000Z"


def test_arm64_ubuntu_sources_read_the_ubuntu_ports_snapshot_not_the_ubuntu_one(tmp_path):
    result, out = run_script(tmp_path, sources=UBUNTU_PORTS, snapshot=f"{SNAPSHOT} ubuntu-ports={PORTS_URL}")
    assert result.returncode == 0, result.stderr
    assert (out / "sources.list").read_text() == (f"deb {PORTS_URL}/ jammy main restricted\n"
                                                  f"deb {PORTS_URL}/ jammy-security main\n")
    assert (out / "sources.list.d" / "ubuntu.sources").read_text() == (
        f"Types: deb\nURIs: {PORTS_URL}/\nSuites: noble noble-updates\n")
    assert "3 apt source(s) read from snapshots" in result.stderr and "stays live" not in result.stderr


def test_ubuntu_ports_without_its_own_entry_stays_live_and_says_so(tmp_path):
    result, out = run_script(tmp_path, sources=UBUNTU_PORTS, snapshot=SNAPSHOT)
    assert (out / "sources.list").read_text() == UBUNTU_PORTS["sources.list"], "an ubuntu entry is not ubuntu-ports'"
    assert ("apt-snapshot: http://ports.ubuntu.com/ubuntu-ports/ stays live: apt_snapshot_urls has no entry for its "
            "archive 'ubuntu-ports'") in result.stderr
    assert result.returncode == 1 and "covers none of the base's apt sources" in result.stderr


def test_the_committed_matrix_sends_an_arm64_cpu_build_to_ubuntus_ports_snapshot(tmp_path):
    if (ROOT / "images.local.yaml").exists():
        pytest.skip("images.local.yaml is present and would be merged in")
    matrix = load_matrix(ROOT / "images.yaml")
    snapshot = apt_snapshot_sources(matrix=matrix, variant=matrix.variant("cpu"))
    result, out = run_script(tmp_path, sources={"sources.list": UBUNTU_PORTS["sources.list"]}, snapshot=snapshot)
    assert result.returncode == 0, result.stderr
    assert (out / "sources.list").read_text().splitlines()[0] == (
        f"deb http://snapshot.ubuntu.com/ubuntu-ports/{matrix.variant('cpu').apt_snapshot}/ jammy main restricted")
