"""Flavours in images.yaml: validated like the variants, each variant built in each, tags that say which."""
from pathlib import Path

import pytest

from tests.helpers.variants import make_plans, make_variant
from tests.helpers.matrix_files import FLAVOURS, VALID, error_for, write
from torchdev.errors import UsageError
from torchdev.matrix import CudaRelease, Flavour, load_matrix
from torchdev.project import select_flavours

ROOT = Path(__file__).resolve().parents[2]
DEVEL = Flavour("devel", apt_packages=("g++",), cuda_toolchain="https://nvidia.example/redist",
                cuda_components=("cuda_nvcc", "cuda_cudart"))
RELEASE = CudaRelease("11.8", "11.8.0", "cuda>=11.8 brand=tesla,driver>=470,driver<471")


def test_flavours_parse_with_runtime_first_and_the_release_table(tmp_path):
    matrix = load_matrix(write(tmp_path, VALID + FLAVOURS))
    assert [flavour.name for flavour in matrix.flavours] == ["runtime", "devel"]
    devel = matrix.flavour("devel")
    assert devel.apt_packages == ("g++", "python3-dev") and devel.pip_packages == ("ninja==1.11.1.1",)
    assert devel.lock_packages == ("triton", "cmake") and matrix.flavour("runtime").lock_packages == ()
    assert matrix.cuda_release("11.8").release == "11.8.0" and matrix.cuda_release(None) is None


def test_a_matrix_without_flavours_has_runtime_only(tmp_path):
    assert [flavour.name for flavour in load_matrix(write(tmp_path, VALID)).flavours] == ["runtime"]


@pytest.mark.parametrize("change, expected", [
    (("  runtime: {}\n", ""), "key 'flavours': expected a mapping of flavours that includes 'runtime'"),
    (("  devel:\n", "  Devel:\n"), "flavour 'Devel': key 'Devel': 'Devel' is not a flavour name: flavour names are lowercase "
                                     "letters and digits"),
    (("[g++, python3-dev]", "[g++, Python3-Dev]"), "flavour 'devel': key 'apt_packages': 'Python3-Dev' is not a "
                                                   "Debian package name"),
    (("[ninja==1.11.1.1]", "[ninja]"), "flavour 'devel': key 'pip_packages': 'ninja' is not pinned as name==version"),
    (("[cuda_nvcc, cuda_cudart]", "[cuda_cudart]"), "flavour 'devel': key 'cuda_toolchain': needs cuda_components "
                                                    "that include cuda_nvcc"),
    (("  runtime: {}\n", "  runtime:\n    apt_packages: [gcc]\n"),
     "flavour 'runtime': key 'apt_packages': unknown key"),
    (("release: 11.8.0", "release: 11.7.1"), "cuda_releases: '11.8': key 'release': '11.7.1' is not a release of "
                                             "CUDA 11.8"),
    (("nvidia_require_cuda: cuda>=11.8", "nvidia_require_cuda: cuda>=11.7"),
     "key 'nvidia_require_cuda': 'cuda>=11.7 brand=tesla,driver>=470,driver<471' is not a constraint that starts "
     "with cuda>=11.8"),
    ((FLAVOURS[FLAVOURS.index("cuda_releases"):], ""),
     "variant 'cu118': key 'cuda': CUDA 11.8 has no entry in cuda_releases, which flavour 'devel' needs for its nvcc"),
    (("  devel:\n", "  devel:\n    bases: {cu999: ubuntu:22.04}\n"), "flavour 'devel': bases: key 'cu999': is not a "
                                                                       "variant (known: cu118)"),
    (("[triton, cmake]", "[triton==2.0.0]"), "flavour 'devel': key 'lock_packages': 'triton==2.0.0' is not a Python "
                                             "package name"),
    (("  runtime: {}\n", "  runtime:\n    lock_packages: [triton]\n"),
     "flavour 'runtime': key 'lock_packages': unknown key"),
])
def test_each_bad_flavour_or_release_is_one_line_naming_it(change, expected, tmp_path):
    old, new = change
    assert old in VALID + FLAVOURS
    message = error_for(tmp_path, VALID + FLAVOURS.replace(old, new, 1))
    assert expected in message, message
    assert len(message.splitlines()) == 1, message


def test_an_overlay_can_switch_the_cuda_toolchain_off_and_move_a_flavours_base(tmp_path):
    overlay = write(tmp_path, "flavours:\n  devel:\n    cuda_toolchain: null\n"
                              "    bases: {cu118: mirror/ubuntu:22.04}\n", name="overlay.yaml")
    matrix = load_matrix(write(tmp_path, VALID + FLAVOURS), overlay=str(overlay))
    devel = matrix.flavour("devel")
    assert devel.cuda_toolchain == "" and devel.base_for(matrix.variant("cu118")) == "mirror/ubuntu:22.04"
    assert matrix.flavour("runtime").base_for(matrix.variant("cu118")) == matrix.variant("cu118").base


def test_an_unknown_flavour_names_the_known_ones(tmp_path):
    matrix = load_matrix(write(tmp_path, VALID + FLAVOURS))
    with pytest.raises(UsageError, match="unknown flavour 'dev': the matrix declares runtime, devel"):
        select_flavours(matrix, flavour="dev", every=False)


def test_variant_alone_means_runtime_all_means_every_flavour_and_flavour_picks(tmp_path):
    matrix = load_matrix(write(tmp_path, VALID + FLAVOURS))
    assert [f.name for f in select_flavours(matrix, flavour=None, every=False)] == ["runtime"]
    assert [f.name for f in select_flavours(matrix, flavour=None, every=True)] == ["runtime", "devel"]
    assert [f.name for f in select_flavours(matrix, flavour="devel", every=True)] == ["devel"]


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


def test_the_committed_matrix_builds_cuda_variants_on_a_plain_os_and_declares_every_cuda_release():
    if (ROOT / "images.local.yaml").exists():
        pytest.skip("images.local.yaml is present and would be merged in")
    matrix = load_matrix(ROOT / "images.yaml")
    assert [flavour.name for flavour in matrix.flavours] == ["runtime", "devel"]
    for variant in matrix.variants:
        assert variant.base == "ubuntu:22.04", "torch brings its CUDA libraries: a CUDA base would hold them twice"
        if variant.cuda:
            release = matrix.cuda_release(variant.cuda)
            assert release and release.nvidia_require_cuda.startswith(f"cuda>={variant.cuda} brand=")
    assert "cuda_nvcc" in matrix.flavour("devel").cuda_components
    assert matrix.flavour("devel").lock_packages == ("triton", "cmake", "lit")


PIN = "a" * 64


@pytest.mark.parametrize("url, pinned, refused", [
    ("https://nvidia.example/redist", False, False),  # the server proves who it is; the manifest's hashes hold
    ("http://mirror.example/redist", False, True),  # a hash from the same plain-http server proves nothing
    ("file:///mirror/redist", False, True),
    ("http://mirror.example/redist", True, False),  # images.yaml's pin holds over any URL
])
def test_a_cuda_toolchain_is_https_or_its_releases_manifest_is_pinned(tmp_path, url, pinned, refused):
    text = VALID + FLAVOURS.replace("https://nvidia.example/redist", url) + (
        f"    redistrib_sha256: {PIN}\n" if pinned else "")
    if not refused:
        matrix = load_matrix(write(tmp_path, text))
        assert matrix.cuda_release("11.8").redistrib_sha256 == (PIN if pinned else "")
        return
    message = error_for(tmp_path, text)
    assert len(message.splitlines()) == 1, message
    assert (f"images.yaml:19: flavour 'devel': key 'cuda_toolchain': '{url}' is not https and cuda_releases pins no "
            "sha256 for redistrib_11.8.0.json, so nothing would prove that the archives it lists are NVIDIA's: use an "
            "https:// URL, or add `redistrib_sha256: <sha256 of redistrib_11.8.0.json>` under cuda_releases "
            "\"11.8\"") in message


def test_a_pinned_manifest_hash_reaches_the_devel_build_and_a_bad_one_is_refused(tmp_path):
    text = VALID + FLAVOURS + f"    redistrib_sha256: {PIN}\n"
    matrix = load_matrix(write(tmp_path, text))
    [plan] = make_plans(matrix.variant("cu118"), flavours=(matrix.flavour("devel"),),
                        releases=matrix.cuda_releases)
    assert plan.build_args["CUDA_REDISTRIB_SHA256"] == PIN
    message = error_for(tmp_path, text.replace(PIN, "A" * 64))
    assert "key 'redistrib_sha256': '" + "A" * 64 + "' is not a sha256 (64 lower-case hex digits)" in message
