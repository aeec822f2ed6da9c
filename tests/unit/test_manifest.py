"""The image manifest writer, run against this interpreter and this host's dpkg (what it does in the image)."""
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

WRITER = Path(__file__).resolve().parents[2] / "docker" / "write_manifest.py"
spec = importlib.util.spec_from_file_location("write_manifest", WRITER)
write_manifest = importlib.util.module_from_spec(spec)
spec.loader.exec_module(write_manifest)


def test_python_packages_list_this_environment_with_versions_and_file_fingerprints():
    packages = {p["name"].lower(): p for p in write_manifest.python_packages()}
    assert packages["pytest"]["version"] == pytest.__version__
    assert len(packages["pytest"]["record_sha256"]) == 64
    names = [p["name"].lower() for p in write_manifest.python_packages()]
    assert names == sorted(names)


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="not a Debian-family host")
def test_debian_packages_match_dpkg():
    packages = {p["name"]: p["version"] for p in write_manifest.debian_packages()}
    expected = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "dpkg"], capture_output=True, text=True,
                              check=True).stdout
    assert packages["dpkg"] == expected


def test_the_whole_manifest_is_stable_json_naming_base_and_lock():
    command = [sys.executable, str(WRITER), "--base", "debian:12@sha256:" + "a" * 64, "--base-digest",
               "sha256:" + "a" * 64, "--lock-sha256", "b" * 64,
               "--apt-snapshot",
               "debian=http://s.example/debian/20261101T000000Z ubuntu=http://s.example/u/20261101T000000Z",
               "--declared", "variant=cu118", "--declared", "cuda=11.8", "--declared", "cudnn-major="]
    first, second = (subprocess.run(command, capture_output=True, text=True, check=True).stdout for _ in range(2))
    assert first == second
    manifest = json.loads(first)
    assert manifest["base"] == {"image": "debian:12@sha256:" + "a" * 64, "digest": "sha256:" + "a" * 64}
    assert manifest["lock_sha256"] == "b" * 64
    assert manifest["declared"] == {"variant": "cu118", "cuda": "11.8"}, "an empty value declares nothing"
    assert manifest["apt_snapshot"] == {"debian": "http://s.example/debian/20261101T000000Z",
                                        "ubuntu": "http://s.example/u/20261101T000000Z"}
    assert manifest["python"]["version"] == "%d.%d.%d" % sys.version_info[:3]
    if importlib.util.find_spec("torch") is None:
        assert manifest["torch_cuda_architectures"] == [], "no torch here: no architectures (an image lists them)"
