"""Flavours in images.yaml: validated like the variants, each variant built in each, tags that say which."""
from pathlib import Path

from tests.helpers.variants import make_plans, make_variant
from tests.helpers.matrix_files import FLAVOURS, VALID, error_for, write
from torchdev.matrix import CudaRelease, Flavour, load_matrix

DEVEL = Flavour("devel", apt_packages=("g++",), cuda_toolchain="https://nvidia.example/redist",
                cuda_components=("cuda_nvcc", "cuda_cudart"))
RELEASE = CudaRelease("11.8", "11.8.0", "cuda>=11.8 brand=tesla,driver>=470,driver<471")


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


PIN = "a" * 64


def test_a_pinned_manifest_hash_reaches_the_devel_build_and_a_bad_one_is_refused(tmp_path):
    text = VALID + FLAVOURS + f"    redistrib_sha256: {PIN}\n"
    matrix = load_matrix(write(tmp_path, text))
    [plan] = make_plans(matrix.variant("cu118"), flavours=(matrix.flavour("devel"),),
                        releases=matrix.cuda_releases)
    assert plan.build_args["CUDA_REDISTRIB_SHA256"] == PIN
    message = error_for(tmp_path, text.replace(PIN, "A" * 64))
    assert "key 'redistrib_sha256': '" + "A" * 64 + "' is not a sha256 (64 lower-case hex digits)" in message
