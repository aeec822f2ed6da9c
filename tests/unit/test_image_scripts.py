"""The scripts the Dockerfile runs, run here on their own: the duplicate-library check (runtime and devel) and the
CUDA toolchain installer (devel), the latter against a loopback server that plays NVIDIA's redist folder. What this
does not prove: that NVIDIA's real archives unpack into a working nvcc (they are out of reach from CI)."""
from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED_LIBS = ROOT / "docker" / "shared_libs.py"
CUDA_TOOLCHAIN = ROOT / "docker" / "cuda_toolchain.py"
LOCK_PART = ROOT / "docker" / "lock_part.py"
MACHINE = {"x86_64": "linux-x86_64", "aarch64": "linux-sbsa"}[os.uname().machine]


@pytest.fixture(scope="module")
def real_library() -> Path:
    """A real ELF shared object with a soname, from this host (libz.so.1)."""
    folders = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64")
    files = sorted(path for folder in folders for path in Path(folder).glob("libz.so.1.*")
                   if path.is_file() and not path.is_symlink())
    if not files:
        pytest.skip("no libz.so.1.* on this host to copy")
    return files[0]


def check(*roots: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SHARED_LIBS), *map(str, roots)], capture_output=True, text=True,
                          timeout=60)


def test_a_soname_held_twice_fails_listing_both_copies_with_their_size(tmp_path, real_library):
    for folder in ("usr/lib", "site-packages/nvidia/zlib/lib"):
        (tmp_path / folder).mkdir(parents=True)
        shutil.copyfile(real_library, tmp_path / folder / "libz.so.1")
    result = check(tmp_path)
    assert result.returncode == 1
    assert "torchdev: 1 shared library is held twice" in result.stderr
    assert f"libz.so.1: {tmp_path}/site-packages/nvidia/zlib/lib/libz.so.1 (" in result.stderr
    assert f"{tmp_path}/usr/lib/libz.so.1 (" in result.stderr


def test_links_and_wheel_private_copies_are_not_duplicates(tmp_path, real_library):
    (tmp_path / "lib").mkdir()
    shutil.copyfile(real_library, tmp_path / "lib" / "libz.so.1.2.13")
    (tmp_path / "lib" / "libz.so.1").symlink_to("libz.so.1.2.13")
    os.link(tmp_path / "lib" / "libz.so.1.2.13", tmp_path / "lib" / "libz-hardlink.so")
    (tmp_path / "torchvision.libs").mkdir()
    shutil.copyfile(real_library, tmp_path / "torchvision.libs" / "libz.e3d3156c.so.1")
    result = check(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no soname is held twice" in result.stdout


def archive(top: str, files: dict[str, bytes]) -> bytes:
    """A redist-style tar.xz: every file under one top folder."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture()
def redist(tmp_path):
    """A loopback HTTP server holding redistrib_11.8.0.json and two component archives; yields (url, folder)."""
    folder = tmp_path / "redist"
    components = {"cuda_nvcc": {"bin/nvcc": b"#!/bin/sh\necho 'Cuda compilation tools, release 11.8, V11.8.89'\n",
                                "include/crt/host_config.h": b"/* crt */\n"},
                  "cuda_cudart": {"lib/libcudart.so.11.0": b"not really ELF", "include/cuda_runtime.h": b"/* rt */\n"}}
    manifest = {}
    for name, files in components.items():
        relative = f"{name}/{MACHINE}/{name}-{MACHINE}-11.8.89-archive.tar.xz"
        data = archive(f"{name}-{MACHINE}-11.8.89-archive", files)
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(data)
        manifest[name] = {"version": "11.8.89", MACHINE: {"relative_path": relative,
                                                           "sha256": hashlib.sha256(data).hexdigest()}}
    (folder / "redistrib_11.8.0.json").write_text(json.dumps(manifest))
    handler = lambda *args: http.server.SimpleHTTPRequestHandler(*args, directory=str(folder))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()


def install(url: str, tmp_path: Path, *components: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(CUDA_TOOLCHAIN), "--url", url, "--release", "11.8.0", "--prefix",
               str(tmp_path / "cuda"), "--site-packages", str(tmp_path / "site"), "--cache", str(tmp_path / "cache")]
    for component in components:
        command += ["--component", component]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_the_toolchain_merges_its_components_into_one_cuda_home_with_the_wheels_headers(redist, tmp_path):
    (tmp_path / "site" / "nvidia" / "cublas" / "include").mkdir(parents=True)
    (tmp_path / "site" / "nvidia" / "cublas" / "include" / "cublas_v2.h").write_text("/* cublas */\n")
    result = install(redist[0], tmp_path, "cuda_nvcc", "cuda_cudart")
    assert result.returncode == 0, result.stderr
    home = tmp_path / "cuda"
    assert subprocess.run([home / "bin" / "nvcc", "--version"], capture_output=True, text=True).stdout.startswith(
        "Cuda compilation tools, release 11.8")
    assert (home / "lib64" / "libcudart.so.11.0").is_file() and (home / "lib64").is_symlink()
    assert (home / "include" / "crt" / "host_config.h").is_file() and (home / "include" / "cuda_runtime.h").is_file()
    assert (home / "include" / "cublas_v2.h").resolve() == (tmp_path / "site/nvidia/cublas/include/cublas_v2.h")


def test_an_archive_whose_sha256_differs_from_nvidias_manifest_is_refused_and_nothing_is_left(redist, tmp_path):
    url, folder = redist
    broken = folder / f"cuda_cudart/{MACHINE}/cuda_cudart-{MACHINE}-11.8.89-archive.tar.xz"
    broken.write_bytes(broken.read_bytes() + b"tampered")
    result = install(url, tmp_path, "cuda_nvcc", "cuda_cudart")
    assert result.returncode == 1
    assert "torchdev: cuda_cudart/" in result.stderr and "NVIDIA's manifest says" in result.stderr
    assert not (tmp_path / "cuda").exists(), "a half-made CUDA_HOME was left behind"


def test_components_without_nvcc_and_an_unreachable_server_each_fail_in_one_line(redist, tmp_path):
    without = install(redist[0], tmp_path, "cuda_cudart")
    assert without.returncode == 1 and "list cuda_nvcc among the components" in without.stderr
    unreachable = install("http://127.0.0.1:9", tmp_path, "cuda_nvcc")
    assert unreachable.returncode == 1 and len(unreachable.stderr.strip().splitlines()) == 1
    assert "cannot download http://127.0.0.1:9/redistrib_11.8.0.json" in unreachable.stderr
    assert "cuda_toolchain at a mirror, or set it to null" in unreachable.stderr


def test_every_stage_that_installs_debian_packages_sees_the_apt_snapshot():
    """Build args do not cross stages: a stage without its own `ARG APT_SNAPSHOT` would install from live archives."""
    stages = re.split(r"^FROM ", (ROOT / "docker" / "Dockerfile").read_text(), flags=re.M)[1:]
    installing = [stage for stage in stages if "bash /tmp/torchdev/apt-install.sh" in stage]
    assert len(installing) == 2, "runtime and devel both install Debian packages"
    for stage in installing:
        assert stage.index("ARG APT_SNAPSHOT") < stage.index("bash /tmp/torchdev/apt-install.sh"), stage[:40]


def test_every_run_step_ends_by_clamping_what_it_changed():
    """docker/clamp-mtimes.sh is what makes every build reproducible: a RUN step without it would leave its files with
    the build's time, and two builds of the same inputs would differ. It must be mounted and be the step's last word."""
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    steps = re.findall(r"^RUN (.*?)(?<!\\)\n", dockerfile, flags=re.M | re.S)
    assert len(steps) >= 9, "runtime and devel stages"
    for step in steps:
        assert "--mount=type=bind,source=clamp-mtimes.sh,target=/tmp/torchdev/clamp-mtimes.sh" in step, step[:60]
        assert step.rstrip().endswith("&& bash /tmp/torchdev/clamp-mtimes.sh"), step[-120:]
    assert "!clamp-mtimes.sh" in (ROOT / "docker" / ".dockerignore").read_text().split()
    assert not re.search(r"^(COPY|ADD) ", dockerfile, flags=re.M), \
        "COPY and ADD give the folders they create the build's time: install files from a RUN with a bind mount"


def lock_part(lock: Path, *args: str) -> str:
    return subprocess.run([sys.executable, str(LOCK_PART), str(lock), *args], capture_output=True, text=True,
                          check=True, timeout=60).stdout


def requirements(text: str) -> dict[str, list[str]]:
    """name -> its --hash values, as pip would read the requirement file."""
    found: dict[str, list[str]] = {}
    for entry in re.split(r"\n(?=[^\s#])", "\n" + text):
        first = entry.strip().split("\n", 1)[0]
        if first and not first.startswith("#"):
            found[first.split("==")[0]] = re.findall(r"--hash=(sha256:[0-9a-f]{64})", entry)
    return found


def test_runtime_and_devel_install_the_two_parts_of_one_lock_with_its_hashes():
    """Runtime leaves triton (and triton's own cmake, lit) to devel, which takes them from the same lock: together
    the two parts are the lock, every entry with every one of its hashes."""
    lock = ROOT / "overlays" / "local-debian" / "cu117.lock.txt"
    whole = requirements(lock.read_text())
    runtime = requirements(lock_part(lock, "--without", "triton", "CMake", "lit"))
    devel = requirements(lock_part(lock, "--only", "triton", "cmake", "lit"))
    assert sorted(devel) == ["cmake", "lit", "triton"] and not set(devel) & set(runtime)
    assert {**runtime, **devel} == whole and all(whole.values())
    assert lock_part(lock, "--only", "triton").startswith("# torchdev lock:"), "the header stays, for people"
    assert requirements(lock_part(lock, "--only", "not-in-the-lock")) == {}
