"""Logins: read only from the routes (netrc by host, TORCHDEV_PIP_INDEX_URL, TORCHDEV_APT_AUTH_CONF), handed to a
build only as secrets, never in a build arg, a plan's text, a label, an error line or a log; a URL with a login in
the matrix is refused naming the route."""
from __future__ import annotations

import io
import os
import shlex
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from tests.helpers.cli import run_cli
from tests.helpers.context import make_context, output
from tests.helpers.fake_engine import FakeEngine
from tests.helpers.variants import TEST_PROVENANCE, make_variant
from torchdev import commands
from torchdev.build import run_build
from torchdev.checkout import read_logins
from torchdev.credentials import (APT_AUTH_VARIABLE, PIP_URL_VARIABLE, Login, netrc_text, pip_logins, write_netrc)
from torchdev.engine import buildx_command
from torchdev.errors import ConfigError
from torchdev.lock import LockSpec, resolution_error
from torchdev.matrix import Flavour, ImageSettings, Matrix
from torchdev.plan import describe_plan, dry_run_request, login_hosts, make_plan, matrix_hosts
from torchdev.runner import execute

CANARY = "canary-pa55word-7f3a"
CORP = ImageSettings("torchdev", ("{variant}", "{variant}-{inputs}"), "https://pypi.corp/simple", ("numpy==1.26.4",))
CU118 = make_variant("cu118", index="https://download.pytorch.org/whl/cu118")
NETRC = (f"machine pypi.corp login alice password {CANARY}\n"
         "machine github.com login bob password not-for-the-build\n"
         "default login anyone password not-for-the-build-either\n")


def plan_with(logins: tuple[Login, ...], *, environ: dict | None = None, flavour: Flavour = Flavour("runtime"),
              settings: ImageSettings = CORP):
    matrix = Matrix(image=settings, variants=(CU118,), sources=(), flavours=(Flavour("runtime"), flavour))
    return make_plan(matrix=matrix, variant=CU118, provenance=TEST_PROVENANCE, docker_dir=Path("/repo/docker"),
                     environ=environ or {}, logins=logins, flavour=flavour)


# --- the routes, and nothing else ---------------------------------------------------------------------------------

def test_the_netrc_gives_only_the_index_hosts_entries_never_another_hosts_or_its_default(tmp_path):
    (tmp_path / ".netrc").write_text(NETRC)
    logins = pip_logins({}, hosts=("pypi.corp", "download.pytorch.org"), known=("pypi.corp",), home=tmp_path)
    assert logins == (Login("pypi.corp", "alice", CANARY, "~/.netrc"),)
    assert CANARY not in repr(logins), "a password never shows in a repr"
    assert pip_logins({}, hosts=(), known=(), home=tmp_path) == ()


def test_netrc_names_another_file_and_without_a_home_no_netrc_is_read(tmp_path):
    named = tmp_path / "team.netrc"
    named.write_text(NETRC)
    (tmp_path / ".netrc").write_text("machine pypi.corp login home password from-home\n")
    assert pip_logins({"NETRC": str(named)}, hosts=("pypi.corp",), known=(), home=tmp_path)[0].source == "$NETRC"
    assert pip_logins({}, hosts=("pypi.corp",), known=(), home=None) == ()


def test_the_index_url_variable_gives_its_login_for_its_host_and_wins_over_the_netrc(tmp_path):
    (tmp_path / ".netrc").write_text(NETRC)
    environ = {PIP_URL_VARIABLE: f"https://ci%2Bbot:{CANARY}x@pypi.corp/simple"}
    [login] = pip_logins(environ, hosts=("pypi.corp",), known=("pypi.corp",), home=tmp_path)
    assert (login.user, login.password, login.source) == ("ci+bot", CANARY + "x", PIP_URL_VARIABLE)


@pytest.mark.parametrize("value, expected", [
    ("https://pypi.corp/simple", "TORCHDEV_PIP_INDEX_URL is not an index URL with a login (it holds no USER:TOKEN@)"),
    ("ftp://a:b@pypi.corp/", "not an http:// or https:// URL with a host"),
    (f"https://a:{CANARY}@elsewhere.corp/simple", "TORCHDEV_PIP_INDEX_URL names the host elsewhere.corp, which no "
                                                  "index of the matrix uses (pypi.corp)"),
])
def test_an_index_url_variable_that_cannot_be_used_is_one_configuration_line_without_the_password(value, expected):
    with pytest.raises(ConfigError) as caught:
        pip_logins({PIP_URL_VARIABLE: value}, hosts=("pypi.corp",), known=("pypi.corp",), home=None)
    assert expected in str(caught.value) and CANARY not in str(caught.value)
    assert caught.value.exit_status == 2


def test_a_broken_netrc_or_a_login_a_netrc_cannot_carry_is_one_line(tmp_path):
    (tmp_path / ".netrc").write_text("machine pypi.corp bogus alice\n")
    with pytest.raises(ConfigError, match=r"\.netrc:\d+ \(~/\.netrc\) cannot be read as a netrc file"):
        pip_logins({}, hosts=("pypi.corp",), known=(), home=tmp_path)
    (tmp_path / ".netrc").write_text(f"machine pypi.corp login alice password '{CANARY}'\n")
    with pytest.raises(ConfigError, match="the login for pypi.corp from ~/.netrc holds white space, a quote") as caught:
        pip_logins({}, hosts=("pypi.corp",), known=(), home=tmp_path)
    assert CANARY not in str(caught.value)


def test_the_staged_netrc_is_the_users_own_file_mode_0600_holding_only_the_logins(tmp_path):
    path = write_netrc(tmp_path, (Login("pypi.corp", "alice", CANARY, "~/.netrc"),))
    assert path.read_text() == f"machine pypi.corp login alice password {CANARY}\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert write_netrc(tmp_path / "none", ()) is None
    assert netrc_text([Login("h", "", "t")]) == "machine h login anonymous password t\n"


# --- plans: which hosts, which secrets, and nothing secret in what is printed --------------------------------------

def test_a_login_goes_to_the_hosts_the_build_asks_and_the_toolchain_host_only_in_devel():
    devel = Flavour("devel", cuda_toolchain="https://mirror.corp/redist", cuda_components=("cuda_nvcc",))
    matrix = Matrix(image=CORP, variants=(CU118,), sources=(), flavours=(Flavour("runtime"), devel))
    assert login_hosts(matrix=matrix, variant=CU118) == ("pypi.corp", "download.pytorch.org")
    assert login_hosts(matrix=matrix, variant=CU118, flavour=devel)[-1] == "mirror.corp"
    assert login_hosts(matrix=matrix, variant=make_variant("cpu", cuda=None, index="default"), flavour=devel) == (
        "pypi.corp",)
    assert set(matrix_hosts(matrix)) == {"pypi.corp", "download.pytorch.org", "mirror.corp"}


def test_a_plan_with_a_login_passes_it_as_the_netrc_secret_and_nowhere_else():
    login = Login("pypi.corp", "alice", CANARY, "~/.netrc")
    plan = plan_with((login, Login("other.corp", "x", "y", "~/.netrc")))
    assert plan.logins == (login,), "only the logins for the hosts this build asks"
    text = describe_plan(plan)
    assert "    netrc <- the login for pypi.corp from ~/.netrc" in text
    assert CANARY not in text and CANARY not in repr(plan) and CANARY not in str(plan.build_args)
    command = shlex.join(buildx_command(dry_run_request(plan)))
    assert "--secret 'id=netrc,src=<netrc with the logins above>'" in command and CANARY not in command
    assert plan == replace(plan_with((login,)), logins=(login,))
    assert plan.references == plan_with(()).references, "a login is no input of the image: its tags do not move"


def test_apt_logins_are_the_named_file_as_a_secret_and_a_name_that_is_no_file_is_refused(tmp_path):
    auth = tmp_path / "apt-auth.conf"
    auth.write_text(f"machine apt.corp login a password {CANARY}\n")
    plan = plan_with((), environ={APT_AUTH_VARIABLE: str(auth)})
    assert {secret.id: secret.source for secret in plan.secrets} == {"apt_auth": auth}
    assert f"apt_auth <- {auth} (from ${APT_AUTH_VARIABLE})" in describe_plan(plan)
    with pytest.raises(ConfigError, match=f"{APT_AUTH_VARIABLE}=.*nothing names no file"):
        plan_with((), environ={APT_AUTH_VARIABLE: str(tmp_path / "nothing")})


def test_a_build_stages_the_logins_in_its_scratch_folder_only_while_buildx_runs(tmp_path):
    engine = FakeEngine()
    staged = []

    def build(request, *, log_path, out):
        staged.append((request.secrets["netrc"], request.secrets["netrc"].read_text()))
        return FakeEngine.build(engine, request, log_path=log_path, out=out)
    engine.build = build
    plan = plan_with((Login("pypi.corp", "alice", CANARY, "~/.netrc"),))
    run_build(engine, plan, log_dir=tmp_path, out=io.StringIO())
    [(path, text)] = staged
    assert text == f"machine pypi.corp login alice password {CANARY}\n"
    assert not path.exists() and not path.parent.exists(), "the scratch folder went with the build"


def test_read_logins_reads_the_home_of_the_commands_environment(tmp_path):
    (tmp_path / ".netrc").write_text(NETRC)
    matrix = Matrix(image=CORP, variants=(CU118,), sources=())
    assert [login.host for login in read_logins(matrix, {"HOME": str(tmp_path)})] == ["pypi.corp"]
    assert read_logins(matrix, {}) == ()


# --- the matrix refuses a URL with a login, and says which route takes it --------------------------------------

@pytest.mark.parametrize("overlay, key, route", [
    (f"pip_index: https://alice:{CANARY}@pypi.corp/simple\n", "key 'pip_index'", "TORCHDEV_PIP_INDEX_URL"),
    (f"variants:\n  cu118:\n    index: https://alice:{CANARY}@pypi.corp/whl\n", "variant 'cu118': key 'index'",
     "~/.netrc or the file $NETRC names"),
    (f"apt_snapshot_urls:\n  ubuntu: http://alice:{CANARY}@apt.corp/ubuntu/{{timestamp}}\n",
     "apt_snapshot_urls: key 'ubuntu'", "TORCHDEV_APT_AUTH_CONF"),
    (f"flavours:\n  devel:\n    cuda_toolchain: https://alice:{CANARY}@mirror.corp/redist\n",
     "flavour 'devel': key 'cuda_toolchain'", "~/.netrc or the file $NETRC names"),
])
def test_a_url_with_a_login_is_refused_at_load_with_its_line_and_route_and_never_shows_it(tmp_path, overlay, key,
                                                                                           route):
    path = tmp_path / "site.yaml"
    path.write_text(overlay)
    result = run_cli("build", "--variant", "cu118", "--dry-run", "--overlay", str(path),
                     env={"DOCKER_HOST": "unix:///nonexistent"})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"torchdev: {path}:") and key in result.stderr
    assert "is written with a login (USER:PASSWORD@)" in result.stderr and route in result.stderr
    assert CANARY not in result.stdout + result.stderr and "alice" not in result.stderr


def test_the_dry_run_shows_where_logins_come_from_never_the_password(tmp_path):
    (tmp_path / ".netrc").write_text(NETRC)
    overlay = tmp_path / "site.yaml"
    overlay.write_text("pip_index: https://pypi.corp/simple\n")
    ctx = make_context(environ={"HOME": str(tmp_path)})
    assert execute(ctx, commands.build, variant="cu118", every=False, dry_run=True, overlay=str(overlay),
                   unlocked=True) == 0
    shown = output(ctx)[0]
    assert "netrc <- the login for pypi.corp from ~/.netrc" in shown and "--secret 'id=netrc,src=" in shown
    assert CANARY not in shown and "not-for-the-build" not in shown


# --- when an index wants a login ----------------------------------------------------------------------------------

SPEC = LockSpec(variant="cu117", python="3.11", platform="x86_64-manylinux_2_28", torch="2.0.1",
                torchvision="0.15.2", torchaudio="2.0.2", index="default", pip_index="http://172.17.0.1:8080/simple",
                packages=())
UV_401 = ("error: Failed to fetch: `http://172.17.0.1:8080/simple/torch/`\n"
          "  Caused by: HTTP status client error (401 Unauthorized) for url (http://172.17.0.1:8080/simple/torch/)\n")


def test_uv_told_401_by_an_index_is_one_line_naming_the_route_and_whether_a_login_was_given():
    none = resolution_error(spec=SPEC, stderr=UV_401)
    assert none == ("variant 'cu117': pip_index http://172.17.0.1:8080/simple asks for a login and none was given: "
                    "give it through ~/.netrc or the file $NETRC names (`machine HOST login USER password TOKEN`), "
                    "or TORCHDEV_PIP_INDEX_URL (the index URL with USER:TOKEN@ in it; docs/security.md, Credentials)")
    refused = resolution_error(spec=SPEC, stderr=UV_401, logins=(Login("172.17.0.1", "a", CANARY),))
    assert "asks for a login and refused the one given" in refused and CANARY not in refused


def test_a_uv_error_that_carries_a_login_in_a_url_is_shown_without_it():
    stderr = f"error: Failed to fetch: `https://alice:{CANARY}@pypi.corp/simple/torch/`\n  Caused by: refused\n"
    assert CANARY not in resolution_error(spec=replace(SPEC, pip_index="https://pypi.corp/simple"), stderr=stderr)


def test_lock_runs_uv_with_a_netrc_of_the_index_logins_alone(tmp_path, monkeypatch):
    """uv finds a netrc through NETRC (else ~/.netrc, which may hold anything): it gets the staged one, or none."""
    from torchdev import lock

    seen = {}

    def fake_run(command, *, cwd, env, **kwargs):
        seen["netrc"] = Path(env["NETRC"]).read_text() if env["NETRC"] != os.devnull else None
        raise KeyboardInterrupt  # stop here: what uv was given is what this test is about
    monkeypatch.setattr(lock.subprocess, "run", fake_run)
    monkeypatch.setattr(lock, "_uv_binary", lambda: "uv")
    logins = (Login("172.17.0.1", "alice", CANARY, "~/.netrc"), Login("github.com", "bob", "x", "~/.netrc"))
    with pytest.raises(KeyboardInterrupt):
        lock.resolve(SPEC, logins=logins, environ={"NETRC": "/home/me/.netrc"})
    assert seen["netrc"] == f"machine 172.17.0.1 login alice password {CANARY}\n"
    with pytest.raises(KeyboardInterrupt):
        lock.resolve(replace(SPEC, pip_index="default"), logins=logins, environ={})
    assert seen["netrc"] is None


# --- the search the integration test plants a password for can find one -------------------------------------------

def test_the_saved_image_search_finds_a_needle_in_a_zstd_layer_a_file_name_or_across_chunks():
    import tarfile

    from tests.helpers.oci_archive import lone_manifest_archive
    from tests.helpers.saved_image import blobs_holding

    def layer(name: str, content: bytes) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        return buffer.getvalue()

    needle = CANARY.encode()
    for files in (layer("etc/x", b"." * 3_000_000 + needle), layer(f"etc/{CANARY}", b"nothing")):
        saved, _ = lone_manifest_archive(files)
        chunks = [saved[start:start + 4096] for start in range(0, len(saved), 4096)]
        layers, hits = blobs_holding(iter(chunks), needle)
        assert layers == 1 and len(hits) == 1 and hits[0].startswith("blobs/sha256/")
    clean, _ = lone_manifest_archive(layer("etc/x", b"nothing to see"))
    assert blobs_holding(iter([clean]), needle) == (1, [])
