"""The engine boundary itself: the real engine and the fake have the same methods, a build request becomes the one
buildx command line the engine runs, the docker CLI's plugins answer through one function, and image references
split as the engine splits them."""
import dataclasses
import inspect
from pathlib import Path

import pytest

from tests.helpers.fake_engine import FakeEngine
from torchdev import engine as engine_module
from torchdev.engine import BuildOutput, BuildRequest, Engine, ImageRef, buildx_command, cli_plugin, require_buildx
from torchdev.errors import TorchdevError


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


def test_the_docker_clis_plugins_answer_through_one_function_that_needs_no_engine(monkeypatch):
    asked = []
    monkeypatch.setattr(engine_module.shutil, "which", lambda name: "/usr/bin/docker")
    monkeypatch.setattr(engine_module, "probe", lambda command, **options: asked.append(command) or
                        engine_module.CommandResult(0 if command[1] == "compose" else 1, "not a docker command"))
    assert cli_plugin("compose").status == 0 and cli_plugin("buildx").status == 1
    assert asked == [["docker", "compose", "version"], ["docker", "buildx", "version"]]
    with pytest.raises(TorchdevError, match="docker buildx is missing: install the buildx plugin"):
        require_buildx()
    monkeypatch.setattr(engine_module.shutil, "which", lambda name: None)
    assert cli_plugin("buildx") is None
    with pytest.raises(TorchdevError, match="the docker command is not on PATH: install the Docker CLI"):
        require_buildx()
