"""images.yaml validation: every kind of bad input gives one line naming file, line, variant and key."""
from dataclasses import replace
from pathlib import Path

import pytest

from tests.helpers.matrix_files import FLAVOURS, VALID, committed_matrix, error_for, write
from tests.helpers.variants import make_variant
from torchdev.checkout import read_plans
from torchdev.errors import ConfigError, UsageError
from torchdev.matrix import load_matrix
from torchdev.platforms import AMD64, ARM64
from torchdev.project import Paths

ROOT = Path(__file__).resolve().parents[2]
CPU = make_variant("cpu", cuda=None, platforms=(AMD64, ARM64))
CPU_YAML = """\
  cpu:
    base: ubuntu:22.04
    python: "3.10"
    torch: 2.0.1
    torchvision: 0.15.2
    torchaudio: 2.0.2
    index: https://download.pytorch.org/whl/cpu
    cuda: null
    cudnn: null
    platforms: [linux/amd64, linux/arm64]
"""
PIN = "a" * 64


def test_the_committed_matrix_declares_the_three_pytorch_2_0_variants():
    matrix = load_matrix(ROOT / "images.yaml", overlay=None) if not (ROOT / "images.local.yaml").exists() else None
    if matrix is None:
        pytest.skip("images.local.yaml is present and would be merged in")
    assert [v.name for v in matrix.variants] == ["cpu", "cu117", "cu118"]
    assert {(v.torch, v.torchvision, v.torchaudio) for v in matrix.variants} == {("2.0.1", "0.15.2", "2.0.2")}
    assert [v.cuda for v in matrix.variants] == [None, "11.7", "11.8"]
    assert matrix.variant("cu118").index.endswith("/whl/cu118")


def test_a_valid_file_parses_into_typed_variants(tmp_path):
    variant = load_matrix(write(tmp_path, VALID)).variant("cu118")
    assert (variant.python, variant.cuda, variant.cudnn, variant.torch_minor) == ("3.10", "11.8", 8, "2.0")


@pytest.mark.parametrize("change, expected", [
    (("torch: 2.0.1", "torch: 2.1.0"), "images.yaml:8: variant 'cu118': key 'torch': '2.1.0' is not a PyTorch 2.0"),
    (('python: "3.10"', "python: 3.10"), "images.yaml:7: variant 'cu118': key 'python': expected a string, got a number (3.1): "
                                           'write it quoted: python: "3.10"'),
    (("cudnn: 8", "cudnn: eight"), "images.yaml:13: variant 'cu118': key 'cudnn': expected the cuDNN major version"),
    (("    cudnn: 8\n", "    cudnn: 8\n    colour: blue\n"), "images.yaml:14: variant 'cu118': key 'colour': unknown key"),
    (("    cudnn: 8\n", ""), "images.yaml:5: variant 'cu118': missing key 'cudnn'"),
    (("base: nvidia/cuda:11.8.0", "base: NVIDIA/Cuda:11.8.0"), "key 'base': 'NVIDIA/Cuda:11.8.0-cudnn8-runtime-ubuntu22.04' is not an image repository name: lower-case"),
    (("index: https://", "index: ftp://"), "key 'index': 'ftp://download.pytorch.org/whl/cu118' is not a URL"),
    (("torchvision: 0.15.2", "torchvision: 0.15.1"), "key 'torchvision': 0.15.1 is not built for torch 2.0.1: use 0.15.2"),
    (('cuda: "11.8"', "cuda: null"), "key 'cudnn': must be null when cuda is null"),
    (("{variant}\"]", "{flavour}\"]"), "images.yaml:3: image: key 'tags': '{flavour}' has the unknown placeholder {flavour}: use the placeholders "
                                         "variant, torch,"),
    (("repository: torchdev", "repository: Torch Dev"), "image: key 'repository': 'Torch Dev' is not an image repository name"),
])
def test_each_bad_field_is_named_with_its_file_line_variant_and_key(tmp_path, change, expected):
    old, new = change
    assert old in VALID
    assert expected in error_for(tmp_path, VALID.replace(old, new))


def test_every_problem_is_reported_at_once_one_per_line(tmp_path):
    message = error_for(tmp_path, VALID.replace("torch: 2.0.1", "torch: 1.13.1").replace("cudnn: 8", "cudnn: x"))
    assert len(message.splitlines()) == 2


def test_a_duplicate_variant_is_an_error_not_a_silent_override(tmp_path):
    duplicated = VALID + VALID[VALID.index("  cu118:"):]
    assert "duplicate key 'cu118' (first at line 5)" in error_for(tmp_path, duplicated)


@pytest.mark.parametrize("text, expected", [
    ("", "the file is empty"),
    ("# only a comment\n", "the file is empty"),
    ("- a\n- b\n", "the top level must be a mapping"),
    ("image: [unclosed\n", "invalid YAML"),
    ("image:\n  repository: torchdev\n  tags: [\"{variant}\"]\nvariants: {}\n", "expected a non-empty mapping of variants"),
    ("imagez: {}\nvariants: {}\n", "key 'imagez': unknown key"),
])
def test_unusable_files_are_rejected_with_the_reason(tmp_path, text, expected):
    assert expected in error_for(tmp_path, text)


def test_invalid_yaml_names_the_line(tmp_path):
    assert error_for(tmp_path, VALID + "  broken: [\n").startswith(f"{tmp_path / 'images.yaml'}:")


def test_an_overlay_redirects_base_and_index_and_keeps_the_rest(tmp_path):
    overlay = write(tmp_path, "variants:\n  cu118:\n    base: mirror.local:5000/cuda:11.8\n    index: default\n",
                    "mirror.yaml")
    matrix = load_matrix(write(tmp_path, VALID), overlay=str(overlay))
    variant = matrix.variant("cu118")
    assert (variant.base, variant.index, variant.cuda) == ("mirror.local:5000/cuda:11.8", "default", "11.8")
    assert matrix.sources[-1] == matrix.overlay == overlay


def test_the_parsed_matrix_knows_where_each_key_was_written_and_which_file_is_the_overlay(tmp_path):
    overlay = write(tmp_path, "variants:\n  cu118:\n    base: mirror.local:5000/cuda:11.8\n", "mirror.yaml")
    matrix = load_matrix(write(tmp_path, VALID), overlay=str(overlay))
    assert str(matrix.origin("variants", "cu118", "base")) == f"{overlay}:3"
    assert str(matrix.origin("variants", "cu118", "python")) == f"{tmp_path / 'images.yaml'}:7"
    assert matrix.origin("variants", "cu118", "lock") is None, "declared nowhere"
    assert matrix.declared_by_overlay("variants", "cu118", "base")
    assert not matrix.declared_by_overlay("variants", "cu118", "python")
    alone = load_matrix(write(tmp_path, VALID), environ={})
    assert alone.overlay is None and not alone.declared_by_overlay("variants", "cu118", "base")


def test_an_overlay_can_add_a_variant_and_is_validated_naming_its_own_file(tmp_path):
    overlay = write(tmp_path, "variants:\n  tiny:\n    base: debian:12\n    torch: 2.0.1\n", "extra.yaml")
    message = error_for(tmp_path, VALID, overlay=str(overlay))
    assert f"{overlay}:2: variant 'tiny': missing key 'python'" in message


def test_images_local_yaml_beside_the_matrix_is_applied_automatically(tmp_path):
    write(tmp_path, "image:\n  repository: registry.example:5000/team/torchdev\n", "images.local.yaml")
    assert load_matrix(write(tmp_path, VALID), environ={}).image.repository == "registry.example:5000/team/torchdev"


def test_the_overlay_variable_names_a_missing_file(tmp_path):
    assert "overlay file not found" in error_for(tmp_path, VALID, environ={"TORCHDEV_OVERLAY": str(tmp_path / "no")})


def test_an_unknown_variant_lists_the_known_ones_and_where_they_are_declared(tmp_path):
    with pytest.raises(UsageError, match="unknown variant 'cu121': images.yaml declares cu118$"):
        load_matrix(write(tmp_path, VALID)).variant("cu121")
    overlay = write(tmp_path, "variants:\n  cu118:\n    python: \"3.11\"\n", name="local.yaml")
    with pytest.raises(UsageError) as caught:
        load_matrix(write(tmp_path, VALID), overlay=str(overlay)).variant("cu121")
    assert str(caught.value) == f"unknown variant 'cu121': images.yaml with the overlay {overlay} declares cu118"


def test_the_matrix_table_shows_which_variants_are_locked_and_snapshotted():
    from tests.helpers.context import make_context, output
    from torchdev.commands import show_matrix
    from torchdev.runner import execute

    if (ROOT / "images.local.yaml").exists():
        pytest.skip("images.local.yaml is present and would be merged in")
    ctx = make_context()
    assert execute(ctx, show_matrix, overlay=None) == 0
    rows = {line.split()[0]: line for line in output(ctx)[0].splitlines()[2:5]}
    assert "locks/cu117.txt" in rows["cu117"] and " none " in rows["cpu"]
    matrix = load_matrix(ROOT / "images.yaml")
    assert all(f" {matrix.variant(name).apt_snapshot} " in row for name, row in rows.items())


# --- every YAML construct: read as meant, or refused in one line with file:line and what to write -----------------

def test_merge_keys_and_aliases_mean_what_yaml_says_and_keep_each_keys_own_line(tmp_path):
    """`<<: *anchor` brings the anchored mapping's keys in; the mapping's own keys win; each key keeps its line."""
    text = VALID.replace("  cu118:\n", "  cu118: &cuda\n") + "  second:\n    <<: *cuda\n    python: \"3.11\"\n"
    matrix = load_matrix(write(tmp_path, text))
    second = matrix.variant("second")
    assert (second.python, second.cuda, second.base) == ("3.11", "11.8", matrix.variant("cu118").base)
    assert matrix.origin("variants", "second", "python").line == 16
    assert matrix.origin("variants", "second", "cuda").line == 12, "a merged key keeps the line it was written at"


@pytest.mark.parametrize("text, expected", [
    (VALID.replace("  cu118:", "  11.10:"), "images.yaml:5: the key 11.10 is read by YAML as a number (11.1), not as "
                                            "text: quote it to mean the text: '11.10':"),
    (VALID.replace("  cu118:", "  on:"), "the key on is read by YAML as a boolean (true), not as text: quote it"),
    (VALID.replace("  cu118:", "  null:"), "the key null is read by YAML as null"),
    (VALID + "packages:\n  - numpy: 1.26\n", "images.yaml:15: key 'packages': item 1 (numpy: 1.26) is read by YAML "
                                             "as a mapping, not as text: the ': ' makes it one: write - numpy==1.26"),
    (VALID.replace("cudnn: 8", "cudnn: 9"), "key 'cudnn': expected the cuDNN major version torch 2.0's CUDA wheels "
                                            "bring, got 9: write cudnn: 8"),
    (VALID.replace('python: "3.10"', 'python: "3.12"'), "'3.12' is not a Python that torch 2.0 publishes wheels for"),
    (VALID.replace('cuda: "11.8"', 'cuda: "12.1"'), "'12.1' is not a CUDA version that torch 2.0 is built for"),
    (VALID.replace("https://download", "https://user:secret@download"), "images.yaml:11: variant 'cu118': key "
     "'index': 'https://download.pytorch.org/whl/cu118' is written with a login (USER:PASSWORD@), which would reach "
     "build arguments"),
    (VALID.replace("  cu118:", "  " + "c" * 32 + ":"), "is not a variant name: use at most 31 lower-case letters"),
    (VALID.replace("  cu118:", "  cu_118:"), "'cu_118' is not a variant name"),
    ("a: &a\n  b: *a\n", "images.yaml:1: an alias refers to a mapping or list it is itself inside of"),
    ("a: " + "[" * 30 + "]" * 30 + "\n", "nested more than 16 levels deep"),
    ("a: !!python/name:os.system x\n", "the tag 'tag:yaml.org,2002:python/name:os.system' is not one torchdev "
                                               "reads"),
    ("variants:\n  <<: [1]\n", "images.yaml:2: '<<' merges the scalar '1'"),
])
def test_each_yaml_construct_that_would_mislead_is_one_line_with_what_to_write(tmp_path, text, expected):
    message = error_for(tmp_path, text)
    assert expected in message, message


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-be", "utf-32"])
def test_a_matrix_in_any_unicode_encoding_with_a_byte_order_mark_and_crlf_reads_the_same(tmp_path, encoding):
    bom = {"utf-16-be": "\ufeff"}.get(encoding, "")
    (tmp_path / "images.yaml").write_bytes((bom + VALID.replace("\n", "\r\n")).encode(encoding))
    assert load_matrix(tmp_path / "images.yaml").variant("cu118").python == "3.10"


@pytest.mark.parametrize("data, expected", [
    (VALID.replace("cu118:", "cu118: # café").encode("latin-1"), "images.yaml:5: not UTF-8 text (byte 0xe9"),
    (VALID.encode("utf-16-le"), "images.yaml:1: the file holds NUL bytes (UTF-16 or UTF-32 without a byte-order mark"),
])
def test_a_matrix_in_another_encoding_is_one_line_saying_to_save_it_as_utf8(tmp_path, data, expected):
    (tmp_path / "images.yaml").write_bytes(data)
    with pytest.raises(ConfigError) as caught:
        load_matrix(tmp_path / "images.yaml")
    assert expected in str(caught.value) and str(caught.value).endswith("save the file as UTF-8 (UTF-16 or UTF-32 "
                                                                        "with a byte-order mark is read too)")


def test_a_declared_lock_that_is_a_folder_is_refused_not_skipped(tmp_path):
    (tmp_path / "locks" / "cu118.txt").mkdir(parents=True)
    message = error_for(tmp_path, VALID)
    assert f"{tmp_path / 'locks' / 'cu118.txt'} (its lock) is a folder, not a regular file" in message


def test_added_packages_are_pinned_requirements_with_a_lock_of_their_own_beside_the_variants(tmp_path):
    text = VALID + "    added_packages:\n      - einops==0.8.1\n"
    variant = load_matrix(write(tmp_path, text)).variant("cu118")
    assert variant.added_packages == ("einops==0.8.1",)
    from torchdev.platforms import ARM64
    assert variant.added_lock_path_for(variant.platforms[0]) == "locks/cu118.added.txt"
    arm = variant.__class__(**{**variant.__dict__, "lock": "overlays/x/cpu.lock.txt"})
    assert arm.added_lock_path_for(ARM64) == "overlays/x/cpu.lock.linux-arm64.added.txt"
    assert ("images.yaml:14: variant 'cu118': key 'added_packages': 'einops' is not pinned as name==version"
            in error_for(tmp_path, VALID + "    added_packages: [einops]\n"))


def test_a_variant_without_platforms_is_amd64_and_a_cpu_variant_may_list_both(tmp_path):
    matrix = load_matrix(write(tmp_path, VALID + CPU_YAML))
    assert matrix.variant("cu118").platforms == (AMD64,)
    assert matrix.variant("cpu").platforms == (AMD64, ARM64)
    arm_only = load_matrix(write(tmp_path, VALID + CPU_YAML.replace("[linux/amd64, linux/arm64]", "[linux/aarch64]")))
    assert arm_only.variant("cpu").platforms == (ARM64,)


def test_an_unknown_platform_is_named_with_its_file_line_variant_and_key(tmp_path):
    message = error_for(tmp_path, VALID + CPU_YAML.replace("linux/arm64]", "linux/s390x]"))
    assert message == (f"{tmp_path / 'images.yaml'}:23: variant 'cpu': key 'platforms': "
                       "'linux/s390x' is not a platform torch 2.0 has wheels for: list linux/amd64 and/or linux/arm64")


@pytest.mark.parametrize("value, expected", [("[]", "expected a non-empty list of strings, got an empty list"),
                                             ("linux/arm64", "expected a non-empty list of strings, got text")])
def test_platforms_must_be_a_non_empty_list(tmp_path, value, expected):
    message = error_for(tmp_path, VALID + CPU_YAML.replace("[linux/amd64, linux/arm64]", value))
    assert f"variant 'cpu': key 'platforms': {expected}" in message


def test_a_cuda_variant_for_arm64_is_refused_in_one_line_with_the_reason(tmp_path):
    message = error_for(tmp_path, VALID + "    platforms: [linux/amd64, linux/arm64]\n")
    assert message == (f"{tmp_path / 'images.yaml'}:14: variant 'cu118': key 'platforms': linux/arm64 cannot "
                       "have CUDA: torch 2.0 publishes CUDA wheels for linux/amd64 only: keep CUDA variants on "
                       "linux/amd64 and build cpu for linux/arm64")


@pytest.mark.parametrize("lock, expected", [
    ("", "locks/cpu.linux-arm64.txt"),
    ("overlays/local-debian/cpu.lock.txt", "overlays/local-debian/cpu.lock.linux-arm64.txt"),
    ("my.locks/cpu", "my.locks/cpu.linux-arm64"),
    ("locks/cpu", "locks/cpu.linux-arm64"),
])
def test_another_platforms_lock_adds_the_platform_before_the_suffix_and_amd64_keeps_the_plain_name(lock, expected):
    variant = replace(CPU, lock=lock)
    assert variant.lock_path_for(ARM64) == expected
    assert variant.lock_path_for(AMD64) == (lock or "locks/cpu.txt")


def test_the_committed_cpu_variant_is_built_for_both_platforms_and_the_cuda_ones_for_amd64_only():
    matrix = committed_matrix()
    assert {v.name: v.platforms for v in matrix.variants} == {"cpu": (AMD64, ARM64), "cu117": (AMD64,),
                                                              "cu118": (AMD64,)}
    assert "ubuntu-ports" in dict(matrix.image.apt_snapshot_urls)
    plan, = read_plans(Paths.at(ROOT), matrix, [matrix.variant("cpu")], platform="all")
    assert plan.platforms == (AMD64, ARM64)
    assert "ubuntu-ports=http://snapshot.ubuntu.com/ubuntu-ports/" in plan.build_args["APT_SNAPSHOT"]


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
