"""torchdev/engine.py, the engine boundary itself: the real engine and the fake satisfy ContainerEngine (checked by
mypy), a build request becomes the one buildx command line the engine runs, the docker CLI's plugins answer through
one function, and image references split as the engine splits them."""
import dataclasses
import inspect
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.fake_engine import FakeEngine
from torchdev import engine as engine_module
from torchdev.engine import (BuildOutput, BuildRequest, ContainerSpec, Engine, GpuDevices, ImageRef, Limit, Mount,
                             _create_options, buildx_command, cli_plugin, require_buildx)
from torchdev.errors import TorchdevError

ROOT = Path(__file__).resolve().parents[2]


def public_methods(cls) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(getattr(cls, name)) for name in vars(cls)
            if not name.startswith("_") and callable(getattr(cls, name))}


def test_the_fake_engine_has_every_method_of_the_real_one_with_the_same_signature():
    real, fake = public_methods(Engine), public_methods(FakeEngine)
    assert set(real) <= set(fake), f"the fake lacks {sorted(set(real) - set(fake))}"
    for name, signature in real.items():
        assert [(p.name, p.kind, p.default) for p in signature.parameters.values()] == \
            [(p.name, p.kind, p.default) for p in fake[name].parameters.values()], name


@pytest.mark.parametrize("text, repository, tag, digest, path", [
    ("torchdev", "torchdev", None, None, "torchdev"),
    ("torchdev:cu118", "torchdev", "cu118", None, "torchdev"),
    ("registry:5000/ml/torchdev", "registry:5000/ml/torchdev", None, None, "ml/torchdev"),
    ("registry:5000/ml/torchdev:2.0.1-cu118", "registry:5000/ml/torchdev", "2.0.1-cu118", None, "ml/torchdev"),
    ("nvidia/cuda:11.8.0@sha256:" + "b" * 64, "nvidia/cuda", "11.8.0", "sha256:" + "b" * 64, "nvidia/cuda"),
    ("localhost/base@sha256:" + "c" * 64, "localhost/base", None, "sha256:" + "c" * 64, "base"),
])
def test_references_split_where_the_engine_splits_them(text, repository, tag, digest, path):
    ref = ImageRef.parse(text)
    assert (ref.repository, ref.tag, ref.digest, ref.path) == (repository, tag, digest, path)
    assert str(ref) == text


SATISFIED = """
from tests.helpers.fake_engine import FakeEngine
from torchdev.engine import ContainerEngine, Engine


def engines(real: Engine, fake: FakeEngine) -> list[ContainerEngine]:
    return [real, fake]
"""

STALE = """
import sys
from pathlib import Path
from typing import TextIO

from tests.helpers.fake_engine import FakeEngine
from torchdev.engine import ContainerEngine


class CommandLineBuilds(FakeEngine):
    def build(self, command: list[str], *, log_path: Path,  # type: ignore[override]
              out: TextIO = sys.stdout) -> tuple[int, list[str]]:
        return 0, []


stale: ContainerEngine = CommandLineBuilds()
"""


def mypy(*paths: Path, cache: Path) -> tuple[int, list[str]]:
    """mypy on `paths` (what they import is followed but not reported): its exit status and lines (errors and the
    notes that say which protocol member does not fit). The
    project's docker/ folder is no package (--no-namespace-packages), so `import docker` is the SDK, untyped."""
    done = subprocess.run([sys.executable, "-m", "mypy", "--no-namespace-packages", "--follow-imports=silent",
                           "--ignore-missing-imports", "--show-error-codes", "--no-error-summary",
                           f"--cache-dir={cache}", *map(str, paths)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    return done.returncode, done.stdout.splitlines()


def test_the_real_and_the_fake_engine_satisfy_the_protocol_by_the_type_checker(tmp_path, request):
    """mypy checks the engine module, the fake, and a file that uses both as a ContainerEngine; a fake that kept
    the old build(command) is refused, so the check can fail. Its cache sits in pytest's cache folder: about 2 s
    cold, well under 1 s after."""
    (tmp_path / "satisfied.py").write_text(SATISFIED)
    (tmp_path / "stale.py").write_text(STALE)
    started = time.monotonic()
    status, said = mypy(ROOT / "torchdev/engine.py", ROOT / "tests/helpers/fake_engine.py",
                        tmp_path / "satisfied.py", tmp_path / "stale.py", cache=request.config.cache.mkdir("mypy"))
    print(f"mypy took {time.monotonic() - started:.1f} s")
    errors = [line for line in said if ": error:" in line]
    expected = [line for line in errors if Path(line.split(":")[0]).name == "stale.py"]  # cached: an older tmp_path
    assert [line for line in errors if line not in expected] == [], "\n".join(said)
    assert status == 1 and len(expected) == 1 and '"CommandLineBuilds"' in expected[0] \
        and '"ContainerEngine"' in expected[0], "\n".join(said) or "mypy let a stale fake through"


REQUEST = BuildRequest(context=Path("/src/docker"), dockerfile=Path("/src/docker/Dockerfile"), target="devel",
                       platforms=("linux/amd64", "linux/arm64"),
                       output=BuildOutput("oci", (("compression", "uncompressed"),), dest=Path("/out/a.tar")),
                       metadata_file=Path("/scratch/metadata.json"), build_args={"A": "1", "B": "two words"},
                       labels={"io.torchdev.variant": "cu118"}, secrets={"ca_bundle": Path("/etc/ca.pem")},
                       contexts={"lock": Path("/scratch/lock"), "extra": Path("/scratch/x")}, no_cache=True,
                       provenance=True)


def test_a_build_request_renders_every_field_into_one_buildx_command_line():
    assert buildx_command(REQUEST) == [
        "docker", "buildx", "build", "--output=type=oci,dest=/out/a.tar,compression=uncompressed",
        "--provenance=true", "--progress=plain", "--platform", "linux/amd64,linux/arm64",
        "--file", "/src/docker/Dockerfile", "--target", "devel", "--metadata-file", "/scratch/metadata.json",
        "--build-context", "lock=/scratch/lock", "--build-context", "extra=/scratch/x", "--no-cache",
        "--build-arg", "A=1", "--build-arg", "B=two words", "--label", "io.torchdev.variant=cu118",
        "--secret", "id=ca_bundle,src=/etc/ca.pem", "/src/docker"]


def test_a_bare_request_asks_for_no_cache_bypass_no_attestation_and_no_extras():
    bare = BuildRequest(context=Path("/c"), dockerfile=Path("/c/Dockerfile"), target="runtime",
                        platforms=("linux/amd64",), output=BuildOutput("docker"), metadata_file=Path("/m.json"))
    assert buildx_command(bare) == ["docker", "buildx", "build", "--output=type=docker", "--provenance=false",
                                    "--progress=plain", "--platform", "linux/amd64", "--file", "/c/Dockerfile",
                                    "--target", "runtime", "--metadata-file", "/m.json", "/c"]


OTHER_VALUES = {"context": Path("/elsewhere"), "dockerfile": Path("/c/Other.Dockerfile"), "target": "runtime",
                "platforms": ("linux/arm64",), "output": BuildOutput("docker"), "metadata_file": Path("/m2.json"),
                "build_args": {"A": "2"}, "labels": {}, "secrets": {}, "contexts": {"lock": Path("/l2")},
                "no_cache": False, "provenance": False}


@pytest.mark.parametrize("name", sorted(OTHER_VALUES))
def test_each_field_of_a_request_reaches_the_command_line(name):
    assert sorted(OTHER_VALUES) == sorted(f.name for f in dataclasses.fields(BuildRequest)), \
        "a new BuildRequest field: give it another value here, and render it in buildx_command"
    assert buildx_command(dataclasses.replace(REQUEST, **{name: OTHER_VALUES[name]})) != buildx_command(REQUEST)


def test_an_output_written_to_a_file_names_it_after_its_type():
    output = BuildOutput("oci", (("rewrite-timestamp", "true"),))
    assert str(output) == "type=oci,rewrite-timestamp=true"
    assert str(output.to(Path("/a.tar"))) == "type=oci,dest=/a.tar,rewrite-timestamp=true"
    assert output.dest is None, "frozen: to() makes another output"


STAND_IN_DOCKER = """#!/bin/sh
echo "$*" >> "${0%/*}/asked"
[ "$1" = compose ] && exit 0
echo "docker: '$1' is not a docker command."
exit 1
"""
"""A docker CLI that has the compose plugin and not buildx, and notes what it was asked."""


def test_the_docker_clis_plugins_answer_through_one_function_that_needs_no_engine(tmp_path, monkeypatch):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "docker").write_text(STAND_IN_DOCKER)
    (tmp_path / "bin" / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert cli_plugin("compose").status == 0 and cli_plugin("buildx").status == 1
    assert cli_plugin("buildx").output == "docker: 'buildx' is not a docker command."
    assert (tmp_path / "bin" / "asked").read_text().splitlines() == ["compose version", "buildx version",
                                                                     "buildx version"]
    with pytest.raises(TorchdevError, match="docker buildx is missing: install the buildx plugin"):
        require_buildx()
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert cli_plugin("buildx") is None
    with pytest.raises(TorchdevError, match="the docker command is not on PATH: install the Docker CLI"):
        require_buildx()


PLAIN_SPEC = ContainerSpec("torchdev:cu118", ("true",))
SPEC_VALUES = {"mounts": (Mount("/src", "/dst"),), "environment": {"A": "1"}, "gpus": GpuDevices(count=-1),
               "limits": (Limit("stack", 1, 1),), "shm_size": "1g", "init": True, "user": "root",
               "entrypoint": ("sh",), "platform": "linux/arm64", "security_options": ("no-new-privileges:true",),
               "cap_drop": ("ALL",), "cap_add": ("SETUID",), "volumes_from": ("a-dev-container",),
               "network_disabled": True}


@pytest.mark.parametrize("name", sorted(SPEC_VALUES))
def test_each_field_of_a_container_spec_reaches_the_sdks_create_call(name):
    assert sorted(SPEC_VALUES) == sorted(f.name for f in dataclasses.fields(ContainerSpec) if f.name not in
                                         ("image", "command")), \
        "a new ContainerSpec field: give it a value here, and map it in _create_options"
    assert _create_options(dataclasses.replace(PLAIN_SPEC, **{name: SPEC_VALUES[name]})) != \
        _create_options(PLAIN_SPEC)


def test_privileges_reach_the_sdk_as_docker_run_spells_them_and_a_plain_spec_asks_for_none():
    options = _create_options(dataclasses.replace(PLAIN_SPEC, security_options=("no-new-privileges:true",),
                                                  cap_drop=("ALL",), cap_add=("SETUID", "SETGID")))
    assert (options["security_opt"], options["cap_drop"], options["cap_add"]) == (
        ["no-new-privileges:true"], ["ALL"], ["SETUID", "SETGID"])
    assert not {"security_opt", "cap_drop", "cap_add"} & set(_create_options(PLAIN_SPEC)), "the engine's defaults"
