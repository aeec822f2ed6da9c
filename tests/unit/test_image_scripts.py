"""The scripts the Dockerfile runs, run here on their own: the duplicate-library check (runtime and devel) and the
CUDA toolchain installer (devel), the latter against a loopback server that plays NVIDIA's redist folder. What this
does not prove: that NVIDIA's real archives unpack into a working nvcc (they are out of reach from CI)."""
from __future__ import annotations

import base64
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


class _LoginRequired(http.server.SimpleHTTPRequestHandler):
    """Serves a folder only to requests with the login alice:s3cret (basic auth), as a private mirror would."""

    def do_GET(self):  # noqa: N802
        if self.headers.get("Authorization") != "Basic " + base64.b64encode(b"alice:s3cret").decode():
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="mirror"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture()
def redist(tmp_path, request):
    """A loopback HTTP server holding redistrib_11.8.0.json and two component archives; yields (url, folder).
    Parametrized "login" (indirectly), the server asks for one (alice:s3cret)."""
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
    kind = _LoginRequired if getattr(request, "param", "") == "login" else http.server.SimpleHTTPRequestHandler
    handler = lambda *args: kind(*args, directory=str(folder))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()


def pinned(folder: Path) -> str:
    """The sha256 of the redist folder's manifest, as images.yaml's cuda_releases would pin it."""
    return hashlib.sha256((folder / "redistrib_11.8.0.json").read_bytes()).hexdigest()


def install(url: str, tmp_path: Path, *components: str, manifest_sha256: str = "",
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, str(CUDA_TOOLCHAIN), "--url", url, "--release", "11.8.0", "--prefix",
               str(tmp_path / "cuda"), "--site-packages", str(tmp_path / "site"), "--cache", str(tmp_path / "cache"),
               "--manifest-sha256", manifest_sha256]
    for component in components:
        command += ["--component", component]
    return subprocess.run(command, capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ["PATH"], **(env or {})})


def test_the_toolchain_merges_its_components_into_one_cuda_home_with_the_wheels_headers(redist, tmp_path):
    (tmp_path / "site" / "nvidia" / "cublas" / "include").mkdir(parents=True)
    (tmp_path / "site" / "nvidia" / "cublas" / "include" / "cublas_v2.h").write_text("/* cublas */\n")
    result = install(redist[0], tmp_path, "cuda_nvcc", "cuda_cudart", manifest_sha256=pinned(redist[1]))
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
    result = install(url, tmp_path, "cuda_nvcc", "cuda_cudart", manifest_sha256=pinned(folder))
    assert result.returncode == 1
    assert "torchdev: cuda_cudart/" in result.stderr and "NVIDIA's manifest says" in result.stderr
    assert not (tmp_path / "cuda").exists(), "a half-made CUDA_HOME was left behind"


def test_components_without_nvcc_and_an_unreachable_server_each_fail_in_one_line(redist, tmp_path):
    without = install(redist[0], tmp_path, "cuda_cudart", manifest_sha256=pinned(redist[1]))
    assert without.returncode == 1 and "list cuda_nvcc among the components" in without.stderr
    unreachable = install("http://127.0.0.1:9", tmp_path, "cuda_nvcc", manifest_sha256="0" * 64)
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


def test_a_manifest_over_plain_http_without_a_pinned_hash_is_refused_before_anything_is_fetched(redist, tmp_path):
    """A sha256 read from the same plain-http server as the archives proves nothing: https, or images.yaml's pin."""
    result = install(redist[0], tmp_path, "cuda_nvcc")
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "is not https and images.yaml pins no sha256 for redistrib_11.8.0.json" in result.stderr
    assert "use an https:// URL, or add redistrib_sha256 under cuda_releases" in result.stderr
    assert not (tmp_path / "cuda").exists() and not (tmp_path / "cache").exists()


def test_a_manifest_that_is_not_the_pinned_one_is_refused_with_both_hashes(redist, tmp_path):
    url, folder = redist
    result = install(url, tmp_path, "cuda_nvcc", manifest_sha256="f" * 64)
    assert result.returncode == 1
    assert f"redistrib_11.8.0.json from {url} has sha256 {pinned(folder)}, images.yaml pins {'f' * 64}" in result.stderr
    assert not (tmp_path / "cuda").exists()


@pytest.mark.parametrize("redist", ["login"], indirect=True)
def test_a_mirror_behind_a_login_gets_the_netrc_secrets_login_and_without_it_names_the_route(redist, tmp_path):
    url, folder = redist
    refused = install(url, tmp_path, "cuda_nvcc", manifest_sha256=pinned(folder))
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "asks for a login the build was not given for 127.0.0.1 (HTTP 401)" in refused.stderr
    assert "in ~/.netrc or the file $NETRC names (docs/security.md, Credentials)" in refused.stderr
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login alice password s3cret\n")
    result = install(url, tmp_path, "cuda_nvcc", manifest_sha256=pinned(folder), env={"NETRC": str(netrc)})
    assert result.returncode == 0, result.stderr
    assert "s3cret" not in result.stdout + result.stderr
    assert (tmp_path / "cuda" / "bin" / "nvcc").is_file()


INDEX_LOGIN = ROOT / "docker" / "index_login.py"


def test_after_a_failed_pip_the_build_says_whether_an_index_wanted_a_login_it_was_not_given_or_refused_it(tmp_path):
    """pip skips an index page that answers 401 without a word, then says "No matching distribution found"."""
    from tests.helpers.auth_index import AuthIndex, canary_wheel

    index = AuthIndex(("127.0.0.1", 0), user="alice", password="s3cret", project="canary",
                      wheel=canary_wheel("canary", "0.1", "x")).start()
    try:
        def probe(netrc: str | None) -> subprocess.CompletedProcess:
            env = {"PATH": os.environ["PATH"]}
            if netrc is not None:
                (tmp_path / "netrc").write_text(netrc)
                env["NETRC"] = str(tmp_path / "netrc")
            return subprocess.run([sys.executable, str(INDEX_LOGIN), index.url, ""], capture_output=True, text=True,
                                  timeout=60, env=env)
        none = probe(None)
        assert none.returncode == 0 and none.stderr == (
            f"torchdev: the index {index.url} asks for a login (HTTP 401) and the build was given none for 127.0.0.1: "
            "give it through ~/.netrc or the file $NETRC names (machine HOST login USER password TOKEN), or "
            "TORCHDEV_PIP_INDEX_URL (the index URL with USER:TOKEN@ in it); docs/security.md, Credentials\n")
        wrong = probe("machine 127.0.0.1 login alice password wrong\n")
        assert "refused the login the build was given for 127.0.0.1 (HTTP 401)" in wrong.stderr
        assert "wrong" not in wrong.stderr.replace("refused", "")
        right = probe("machine 127.0.0.1 login alice password s3cret\n")
        assert right.stderr == "", "an index that takes the login is not the reason pip failed"
    finally:
        index.stop()


PIP_ENV = ROOT / "docker" / "pip-env.sh"


@pytest.mark.parametrize("index, torch_index, trusted", [
    ("http://172.17.0.1:8080/simple", "https://download.pytorch.org/whl/cu118", "172.17.0.1:8080"),
    ("http://alice@mirror.corp/simple", "http://mirror.corp:81/torch", "mirror.corp mirror.corp:81"),
    ("", "https://download.pytorch.org/whl/cpu", None),
])
def test_an_index_declared_over_plain_http_is_one_pip_trusts_and_no_other(index, torch_index, trusted):
    """pip ignores any http index but localhost's ("not a trusted or secure host") and then finds nothing at all."""
    script = f"source {PIP_ENV} && echo \"${{PIP_TRUSTED_HOST-unset}}\""
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30,
                            env={"PATH": os.environ["PATH"], "PIP_INDEX_URL": index, "TORCH_INDEX_URL": torch_index})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (trusted or "unset")


def test_every_pip_step_installs_through_pip_env_with_the_secrets_and_says_why_an_index_refused(tmp_path):
    """docker/pip-env.sh, which every step that runs pip sources: the netrc secret reaches pip through NETRC (the
    canary comes through the login), and a pip that fails on a login it was not given fails the step with
    index_login.py's line."""
    from tests.helpers.auth_index import AuthIndex, canary_wheel

    python = tmp_path / "bin" / "python"
    python.parent.mkdir()
    python.symlink_to(sys.executable)
    index = AuthIndex(("127.0.0.1", 0), user="alice", password="s3cret", project="canary",
                      wheel=canary_wheel("canary", "0.1", "x")).start()
    try:
        def pip_install(secrets: Path) -> subprocess.CompletedProcess:
            """The script as a step runs it, mounted beside index_login.py, its secrets in `secrets`."""
            step = tmp_path / "step" / secrets.name
            step.mkdir(parents=True)
            (step / "pip-env.sh").write_text(PIP_ENV.read_text().replace("/run/secrets", str(secrets)))
            shutil.copyfile(INDEX_LOGIN, step / "index_login.py")
            script = f"source {step}/pip-env.sh && pip_install --no-input --target {tmp_path / 'site'} canary"
            env = {"PATH": f"{python.parent}:{os.environ['PATH']}", "PIP_INDEX_URL": index.url, "TORCH_INDEX_URL": "",
                   "PIP_CONFIG_FILE": os.devnull, "PIP_NO_CACHE_DIR": "1", "PIP_RETRIES": "0",
                   "PIP_DISABLE_PIP_VERSION_CHECK": "1"}  # as the image's ENV has it
            return subprocess.run(["bash", "-c", script + " && echo installed"], capture_output=True, text=True,
                                  timeout=120, env=env, stdin=subprocess.DEVNULL)
        none = pip_install(tmp_path / "none")
        assert none.returncode == 1 and "installed" not in none.stdout
        assert f"torchdev: the index {index.url} asks for a login (HTTP 401)" in none.stderr
        (tmp_path / "secrets").mkdir()
        (tmp_path / "secrets" / "netrc").write_text("machine 127.0.0.1 login alice password s3cret\n")
        given = pip_install(tmp_path / "secrets")
        assert given.returncode == 0 and given.stdout.rstrip().endswith("installed"), given.stderr
        assert "s3cret" not in none.stdout + none.stderr + given.stdout + given.stderr
        assert (tmp_path / "site" / "canary" / "__init__.py").read_text() == 'VALUE = "x"\n'
    finally:
        index.stop()


def test_every_step_that_runs_pip_mounts_pip_env_beside_index_login_and_installs_through_it():
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    steps = [step for step in re.findall(r"^RUN (.*?)(?<!\\)\n", dockerfile, flags=re.M | re.S)
             if re.search(r"\bpip\b|user-layer\.sh", step)]
    assert len(steps) == 4, "runtime-base's locked install, devel-base's, and the two user layers"
    for step in steps:
        assert "--mount=type=bind,source=pip-env.sh,target=/tmp/torchdev/pip-env.sh" in step
        assert "--mount=type=bind,source=index_login.py,target=/tmp/torchdev/index_login.py" in step
        runs = (ROOT / "docker" / "user-layer.sh").read_text() if "user-layer.sh" in step else step
        assert "source /tmp/torchdev/pip-env.sh" in runs
        assert not re.search(r"(^|&&|\|\||;|then)\s*(python -m )?pip install", runs, flags=re.M), \
            "install through pip_install, which says why an index refused"
    assert "!pip-env.sh" in (ROOT / "docker" / ".dockerignore").read_text().split()


def test_each_image_ends_with_the_user_layer_the_only_step_that_mounts_the_added_packages():
    """runtime and devel are their bases plus one last step (docker/user-layer.sh): a changed added_packages, whose
    lock is the `added` context, reruns it alone. The step that installs torch mounts the `lock` context, never
    `added`, so its 4.5 GB layer stays cached."""
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    stages = {stage.split("\n", 1)[0]: stage for stage in re.split(r"^FROM ", dockerfile, flags=re.M)[1:]}
    assert list(stages) == ["${BASE_IMAGE} AS runtime-base", "runtime-base AS devel-base", "runtime-base AS runtime",
                            "devel-base AS devel"]
    for name in ("runtime-base AS runtime", "devel-base AS devel"):
        steps = re.findall(r"^RUN (.*?)(?<!\\)\n", stages[name], flags=re.M | re.S)
        assert len(steps) == 1 and "bash /tmp/torchdev/user-layer.sh" in steps[0]
        assert "--mount=type=bind,from=added,target=/tmp/added" in steps[0]
        assert "PIP_CONSTRAINT=/usr/share/torchdev/constraints.txt" in stages[name]
    torch_step = next(step for step in re.findall(r"^RUN (.*?)(?<!\\)\n", stages["${BASE_IMAGE} AS runtime-base"],
                                                  flags=re.M | re.S) if "pip_install_locked" in step)
    assert "from=lock" in torch_step and "from=added" not in torch_step
    assert dockerfile.count("from=added") == 2
    assert "!user-layer.sh" in (ROOT / "docker" / ".dockerignore").read_text().split()


def test_the_lock_gives_the_images_pip_constraints_every_name_with_its_version():
    lock = ROOT / "overlays" / "local-debian" / "cu117.lock.txt"
    pins = lock_part(lock, "--without", "--pins").split()
    assert "torch==2.0.1" in pins and "numpy==1.26.4" in pins and "triton==2.0.0" in pins
    assert len(pins) == len(requirements(lock.read_text())) and all(pin.count("==") == 1 for pin in pins)


def test_a_build_script_that_imports_a_sibling_has_it_mounted_beside_it_in_every_step():
    """The scripts in docker/ run inside images and cannot import torchdev; one may import another (cuda_toolchain.py
    takes index_login.py's login handling), which works only where the step mounts both into one folder."""
    siblings = {path.stem for path in (ROOT / "docker").glob("*.py")}
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    for step in re.findall(r"^RUN (.*?)(?<!\\)\n", dockerfile, flags=re.M | re.S):
        mounted = dict(re.findall(r"--mount=type=bind,source=([\w.-]+\.py),target=(\S+)", step))
        for script, target in mounted.items():
            imported = re.findall(r"^(?:from|import) (\w+)", (ROOT / "docker" / script).read_text(), flags=re.M)
            for module in set(imported) & siblings:
                assert mounted.get(f"{module}.py") == str(Path(target).parent / f"{module}.py"), (script, module)
