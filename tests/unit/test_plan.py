"""Build plans are pure functions of the matrix, the commit, the day and the build's inputs: build args, labels,
secrets, the request the engine runs and the dry run that shows it, for each platform and each flavour."""
import hashlib
import io
import shlex
import subprocess
from dataclasses import replace
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from tests.helpers.matrix_files import FLAVOURS, VALID, committed_matrix, error_for, write
from tests.helpers.variants import TEST_SETTINGS, make_plans, make_variant, plan_of
from torchdev.checkout import read_plans
from torchdev.engine import Engine, buildx_command
from torchdev.errors import ConfigError
from torchdev.matrix import CudaRelease, Flavour, ImageSettings, Matrix, load_matrix
from torchdev.plan import (ENGINE_OUTPUT, LockInput, Provenance, base_archives, ca_bundle_secret, describe_plan,
                           dry_run_request, make_plan)
from torchdev.platforms import AMD64, ARM64
from torchdev.project import Paths
from torchdev.tags import BuildStamp

SETTINGS = ImageSettings(repository="torchdev", pip_index="default", packages=("numpy==1.26.4",),
                         tag_templates=("{torch}-{variant}-py{python}", "{torch_minor}-{variant}", "{variant}",
                                        "{torch}-{variant}-py{python}-{date}-{git_sha}-{inputs}"))
CU118 = make_variant("cu118", index="https://download.pytorch.org/whl/cu118")
CPU = make_variant("cpu", cuda=None, platforms=(AMD64, ARM64))
PROVENANCE = Provenance(stamp=BuildStamp(day=date(2026, 11, 29), git_sha="abc1234"), revision="abc1234" + "0" * 33,
                        created=datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc), source="https://example.org/t.git")
ROOT = Path(__file__).resolve().parents[2]
OVERLAY = ROOT / "overlays" / "local-debian.yaml"
SNAPSHOT = "20261101T000000Z"
DEVEL = Flavour("devel", apt_packages=("g++",), cuda_toolchain="https://nvidia.example/redist",
                cuda_components=("cuda_nvcc", "cuda_cudart"))
RELEASE = CudaRelease("11.8", "11.8.0", "cuda>=11.8 brand=tesla,driver>=470,driver<471")
PIN = "a" * 64


def test_references_carry_the_repository_including_a_registry_port():
    settings = ImageSettings("registry.local:5000/ml/torchdev", ("{variant}",), "default", ())
    plan = make_plan(matrix=Matrix(image=settings, variants=(CU118,), sources=()), variant=CU118,
                     provenance=PROVENANCE, docker_dir=Path("/repo/docker"), environ={})
    assert plan.references == ("registry.local:5000/ml/torchdev:cu118",)
    assert plan.immutable_references == (), "no template has {inputs}: nothing is immutable"


def plan_for(variant, environ=None, lock=None, matrix_image=SETTINGS, context_digest=""):
    matrix = Matrix(image=matrix_image, variants=(variant,), sources=())
    return make_plan(matrix=matrix, variant=variant, provenance=PROVENANCE, docker_dir=Path("/repo/docker"),
                     environ=environ or {}, locks=(lock,) if lock else (), context_digest=context_digest)


def test_the_immutable_tag_names_the_inputs_so_two_overlays_never_share_it():
    """Same commit, same day: an untracked overlay that changes what goes into the image changes the tag."""
    plain = plan_for(CU118)
    assert plain.immutable_references == (plain.references[-1],)
    assert plain.references[-1].startswith("torchdev:2.0.1-cu118-py3.10-20261129-abc1234-")
    others = [plan_for(replace(CU118, base="registry.corp/cuda:11.8.0")),
              plan_for(CU118, lock=LockInput(path=Path("/l"), sha256="c" * 64)),
              plan_for(CU118, matrix_image=replace(SETTINGS, pip_index="https://pypi.corp/simple")),
              plan_for(CU118, context_digest="d" * 64)]
    assert len({plan.references[-1] for plan in [plain, *others]}) == 5
    assert plan_for(CU118).references == plain.references, "the same inputs give the same tag"
    assert [plan.references[:3] for plan in others] == [plain.references[:3]] * 4, "moving tags stay as they are"
    assert f"{plain.references[-1]} (immutable)" in describe_plan(plain)


def test_the_plan_maps_the_variant_onto_build_args_and_labels():
    plan = plan_for(CU118)
    assert plan.build_args["BASE_IMAGE"] == CU118.base
    assert plan.build_args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cu118"
    assert plan.build_args["CUDA_VERSION"] == "11.8"
    assert plan.labels["org.opencontainers.image.version"] == "2.0.1-cu118-py3.10"
    assert plan.labels["org.opencontainers.image.created"] == "2026-11-28T12:00:00Z"
    assert plan.labels["io.torchdev.cuda"] == "11.8"


def test_a_cpu_variant_on_the_default_index_passes_empty_index_and_cuda():
    plan = plan_for(CPU)
    assert (plan.build_args["TORCH_INDEX_URL"], plan.build_args["CUDA_VERSION"]) == ("", "")
    assert plan.labels["io.torchdev.cuda"] == "none"


def request_for(plan, **options):
    return plan.build_request(metadata_file=Path("/tmp/meta.json"), lock_context=Path("/tmp/lock"), added_context=Path("/tmp/added"),
                              **options)


def test_the_buildx_command_never_tags_so_a_failed_build_moves_no_tag():
    command = buildx_command(request_for(plan_for(CU118)))
    assert command[:3] == ["docker", "buildx", "build"]
    assert "-t" not in command and "--tag" not in command
    assert command[-1] == "/repo/docker"


def test_the_ca_bundle_travels_as_a_secret_named_in_the_dry_run(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    plan = plan_for(CU118, environ={"SSL_CERT_FILE": str(bundle)})
    assert request_for(plan).secrets == {"ca_bundle": bundle}
    assert f"id=ca_bundle,src={bundle}" in buildx_command(request_for(plan))
    text = describe_plan(plan)
    assert f"ca_bundle <- {bundle} (from $SSL_CERT_FILE" in text
    assert "BEGIN CERTIFICATE" not in text


def test_pip_cert_wins_over_the_other_bundle_variables(tmp_path):
    first, second = tmp_path / "a.pem", tmp_path / "b.pem"
    first.touch(), second.touch()
    secrets = ca_bundle_secret({"REQUESTS_CA_BUNDLE": str(second), "PIP_CERT": str(first)})
    assert [(s.variable, s.source) for s in secrets] == [("PIP_CERT", first)]


def test_a_bundle_variable_naming_no_file_is_an_error_with_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="PIP_CERT=.*names no file: fix the path or unset PIP_CERT"):
        ca_bundle_secret({"PIP_CERT": str(tmp_path / "missing.pem")})


def test_no_bundle_means_no_secret():
    assert ca_bundle_secret({}) == ()
    assert "secrets (mounted during the RUN steps that need them only, never stored):\n    none" in \
        describe_plan(plan_for(CPU))


def test_builds_carry_source_date_epoch_so_timestamps_follow_the_inputs_not_the_clock():
    plan = plan_for(CU118)
    assert plan.build_args["SOURCE_DATE_EPOCH"] == str(int(PROVENANCE.created.timestamp())) == "1795867200"


def test_every_build_exports_into_the_engine_gzip_with_oci_media_types_and_no_provenance():
    """One output for every build: the engine's own exporter (reproducible through the Dockerfile's clamp, not an
    export-time rewrite), so no OCI archive travels through the client."""
    request = request_for(plan_for(CU118), no_cache=True)
    assert request.output == ENGINE_OUTPUT and request.output.dest is None
    command = buildx_command(request)
    outputs = [word for word in command if word.startswith("--output")]
    assert outputs == ["--output=type=docker,compression=gzip,compression-level=1,force-compression=true,"
                       "oci-mediatypes=true"]
    assert "--provenance=false" in command and "--no-cache" in command and "--build-context" in command


def test_the_lock_and_a_pinned_base_reach_the_build_and_the_dry_run():
    pinned = replace(CU118, base="nvidia/cuda:11.8.0@sha256:" + "b" * 64)
    plan = plan_for(pinned, lock=LockInput(path=Path("/repo/locks/cu118.txt"), sha256="c" * 64))
    assert plan.build_args["BASE_DIGEST"] == "sha256:" + "b" * 64
    assert plan.build_args["LOCK_SHA256"] == "linux-amd64=" + "c" * 64
    assert ("lock for linux/amd64: /repo/locks/cu118.txt (sha256 cccccccccccc), installed with --require-hashes"
            in describe_plan(plan))
    assert "lock for linux/amd64: none" in describe_plan(plan_for(CU118))


def test_an_apt_snapshot_reaches_the_build_and_the_labels():
    settings = replace(SETTINGS, apt_snapshot_urls=(("ubuntu", "http://s.example/ubuntu/{timestamp}"),))
    dated = replace(CU118, apt_snapshot="20261101T000000Z")
    plan = make_plan(matrix=Matrix(image=settings, variants=(dated,), sources=()), variant=dated,
                     provenance=PROVENANCE, docker_dir=Path("/repo/docker"), environ={})
    assert plan.build_args["APT_SNAPSHOT"] == "ubuntu=http://s.example/ubuntu/20261101T000000Z"
    assert plan.labels["io.torchdev.apt-snapshot"] == "20261101T000000Z"
    assert plan_for(CU118).build_args["APT_SNAPSHOT"] == ""
    assert plan_for(CU118).labels["io.torchdev.apt-snapshot"] == "none"


class RecordedBuild:
    """subprocess.Popen as the engine's build uses it, recording the command instead of running it."""

    commands: list[list[str]] = []

    def __init__(self, command: list[str], **options) -> None:
        self.commands.append(command)
        self.stdout = iter(["#1 DONE 0.0s\n"])

    def __enter__(self) -> "RecordedBuild":
        return self

    def __exit__(self, *exception) -> None:
        pass

    def wait(self) -> int:
        return 0


def test_the_dry_run_prints_the_very_command_the_engine_runs(tmp_path, monkeypatch):
    bundle = tmp_path / "ca.pem"
    bundle.touch()
    plan = plan_for(CU118, environ={"PIP_CERT": str(bundle)}, lock=LockInput(path=Path("/l"), sha256="c" * 64))
    monkeypatch.setattr(RecordedBuild, "commands", [])
    monkeypatch.setattr(subprocess, "Popen", RecordedBuild)
    status, lines = Engine(client=None).build(dry_run_request(plan), log_path=tmp_path / "build.log", out=io.StringIO())
    printed = describe_plan(plan).split("  command:\n    ", 1)[1]
    assert (status, lines) == (0, ["#1 DONE 0.0s"])
    assert RecordedBuild.commands == [shlex.split(printed)]
    assert f"id=ca_bundle,src={bundle}" in printed and "lock=<folder with the lock>" in printed


@pytest.mark.parametrize("base, platform, expected", [
    ("ubuntu:22.04", AMD64, ("ubuntu",)),
    ("ubuntu:22.04", ARM64, ("ubuntu-ports",)),
    ("docker.io/library/ubuntu:22.04@sha256:" + "a" * 64, ARM64, ("ubuntu-ports",)),
    ("debian:bookworm", AMD64, ("debian", "debian-security")),
    ("debian:bookworm", ARM64, ("debian", "debian-security")),
    ("nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04", AMD64, ()),
    ("localhost:5000/ubuntu", ARM64, ()),
    ("torchdev-base:bookworm", ARM64, ()),
])
def test_the_apt_archives_an_official_base_reads_depend_on_its_platform(base, platform, expected):
    assert base_archives(base, platform) == expected


def snapshot_matrix(variant, *archives: str) -> Matrix:
    settings = replace(TEST_SETTINGS, apt_snapshot_urls=tuple(
        (archive, f"http://snapshot.example/{archive}/{{timestamp}}") for archive in archives))
    return Matrix(image=settings, variants=(variant,), sources=())


def test_an_apt_snapshot_without_ubuntu_ports_stops_an_arm64_plan_and_leaves_amd64_alone():
    variant = replace(CPU, apt_snapshot=SNAPSHOT)
    matrix = snapshot_matrix(variant, "ubuntu")
    assert plan_of(variant, matrix=matrix).platforms == (AMD64,)
    with pytest.raises(ConfigError) as caught:
        plan_of(variant, matrix=matrix, platforms=(AMD64, ARM64))
    assert str(caught.value) == (
        "variant 'cpu' on linux/arm64: its base ubuntu:22.04 reads the apt archive 'ubuntu-ports', which "
        "apt_snapshot_urls does not cover: add `ubuntu-ports: <snapshot URL with {timestamp}>` to apt_snapshot_urls "
        "in images.yaml, or set the variant's apt_snapshot: null")
    assert plan_of(variant, matrix=snapshot_matrix(variant, "ubuntu", "ubuntu-ports"), platforms=(ARM64,))
    assert plan_of(replace(CPU, apt_snapshot=""), matrix=matrix, platforms=(ARM64,)), "no snapshot: live archives"


def test_buildx_builds_every_chosen_platform_and_lock_sha256_names_each_platforms_lock():
    locks = (LockInput(Path("/repo/locks/cpu.txt"), "a" * 64, AMD64),
             LockInput(Path("/repo/locks/cpu.linux-arm64.txt"), "b" * 64, ARM64))
    both = plan_of(CPU, platforms=(AMD64, ARM64), locks=locks)
    request = both.build_request(metadata_file=Path("/m"), lock_context=Path("/l"), added_context=Path("/a"))
    assert request.platforms == ("linux/amd64", "linux/arm64")
    assert buildx_command(request)[buildx_command(request).index("--platform") + 1] == "linux/amd64,linux/arm64"
    assert both.build_args["LOCK_SHA256"] == f"linux-amd64={'a' * 64} linux-arm64={'b' * 64}"
    arm = plan_of(CPU, platforms=(ARM64,), locks=locks)
    assert arm.locks == locks[1:] and arm.build_args["LOCK_SHA256"] == f"linux-arm64={'b' * 64}"
    assert arm.build_request(metadata_file=Path("/m"), lock_context=Path("/l"), added_context=Path("/a")).platforms == ("linux/arm64",)
    assert arm.references != both.references, "another set of platforms is another image: another inputs digest"


def test_the_ci_overlays_cpu_plan_carries_the_arm64_locks_hash():
    matrix = committed_matrix(OVERLAY)
    plan, = read_plans(Paths.at(ROOT), matrix, [matrix.variant("cpu")])
    digest = hashlib.sha256((ROOT / "overlays" / "local-debian" / "cpu.lock.linux-arm64.txt").read_bytes())
    assert plan.platforms == (ARM64,)
    assert plan.build_args["LOCK_SHA256"] == f"linux-arm64={digest.hexdigest()}"


def test_devel_tags_end_in_the_flavour_and_runtime_tags_are_unchanged():
    runtime, devel = make_plans(make_variant("cu118"), flavours=(Flavour("runtime"), DEVEL), releases=(RELEASE,))
    assert [r.split(":", 1)[1] for r in runtime.references][:2] == ["2.0.1-cu118-py3.10", "cu118"]
    assert [r.split(":", 1)[1] for r in devel.references][:2] == ["2.0.1-cu118-py3.10-devel", "cu118-devel"]
    assert devel.immutable_references[0].endswith("-devel")
    assert devel.immutable_references != runtime.immutable_references
    assert (runtime.name, devel.name) == ("cu118", "cu118-devel")


def test_devel_builds_the_devel_stage_with_its_packages_and_nvcc_release_runtime_the_runtime_stage():
    runtime, devel = make_plans(make_variant("cu118"), flavours=(Flavour("runtime"), DEVEL), releases=(RELEASE,))
    for plan, stage in ((runtime, "runtime"), (devel, "devel")):
        assert plan.build_request(metadata_file=Path("m"), lock_context=Path("l"), added_context=Path("a")).target == stage
    assert "TOOLCHAIN_APT" not in runtime.build_args
    assert devel.build_args["TOOLCHAIN_APT"] == "g++" and devel.build_args["CUDA_RELEASE"] == "11.8.0"
    assert devel.build_args["CUDA_HOME"] == "/usr/local/cuda-11.8"
    assert runtime.build_args["REQUIRE_CUDA"] == devel.build_args["REQUIRE_CUDA"] == RELEASE.nvidia_require_cuda
    assert devel.labels["io.torchdev.flavour"] == "devel"


def test_runtime_leaves_out_the_lock_packages_devel_installs_and_both_builds_agree_on_it():
    """devel is built on the very runtime stage, so the runtime stage's args must be the same in both builds."""
    devel_flavour = Flavour("devel", lock_packages=("triton", "cmake", "lit"))
    runtime, devel = make_plans(make_variant("cu118"), flavours=(Flavour("runtime"), devel_flavour))
    assert runtime.build_args["RUNTIME_LEAVES_OUT"] == devel.build_args["RUNTIME_LEAVES_OUT"] == "triton cmake lit"
    assert devel.build_args["LOCK_PACKAGES"] == "triton cmake lit" and "LOCK_PACKAGES" not in runtime.build_args
    plain, = make_plans(make_variant("cu118"))
    assert plain.build_args["RUNTIME_LEAVES_OUT"] == ""


def test_a_cpu_variant_gets_no_nvcc_and_no_driver_constraint():
    _, devel = make_plans(make_variant("cpu", cuda=None), flavours=(Flavour("runtime"), DEVEL), releases=(RELEASE,))
    args = devel.build_args
    assert (args["CUDA_HOME"], args["CUDA_RELEASE"], args["REQUIRE_CUDA"]) == ("", "", "")


def test_a_pinned_manifest_hash_reaches_the_devel_build_and_a_bad_one_is_refused(tmp_path):
    text = VALID + FLAVOURS + f"    redistrib_sha256: {PIN}\n"
    matrix = load_matrix(write(tmp_path, text))
    [plan] = make_plans(matrix.variant("cu118"), flavours=(matrix.flavour("devel"),),
                        releases=matrix.cuda_releases)
    assert plan.build_args["CUDA_REDISTRIB_SHA256"] == PIN
    message = error_for(tmp_path, text.replace(PIN, "A" * 64))
    assert "key 'redistrib_sha256': '" + "A" * 64 + "' is not a sha256 (64 lower-case hex digits)" in message
