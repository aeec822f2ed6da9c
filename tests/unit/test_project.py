"""torchdev/project.py: which flavours and platforms of a variant a command builds, from --flavour, --all, the native
platform and --platform."""
from dataclasses import replace

import pytest

from tests.helpers.matrix_files import FLAVOURS, VALID, write
from tests.helpers.variants import make_variant
from torchdev.errors import UsageError
from torchdev.matrix import load_matrix
from torchdev.platforms import AMD64, ARM64
from torchdev.project import select_flavours, select_platforms

CPU = make_variant("cpu", cuda=None, platforms=(AMD64, ARM64))
CU118 = make_variant("cu118")


def test_by_default_the_native_platform_when_the_variant_has_it_else_its_first():
    assert select_platforms(CPU, platform=None, native=ARM64) == (ARM64,)
    assert select_platforms(CPU, platform=None, native=AMD64) == (AMD64,)
    assert select_platforms(CU118, platform=None, native=ARM64) == (AMD64,), "emulated: the only one it has"
    arm_only = replace(CPU, platforms=(ARM64,))
    assert select_platforms(arm_only, platform=None, native=AMD64) == (ARM64,)


def test_all_gives_every_declared_platform_and_a_list_the_ones_named_in_order():
    assert select_platforms(CPU, platform="all", native=AMD64) == (AMD64, ARM64)
    assert select_platforms(CU118, platform="all", native=ARM64) == (AMD64,)
    assert select_platforms(CPU, platform="linux/arm64,linux/amd64", native=AMD64) == (ARM64, AMD64)
    assert select_platforms(CPU, platform="linux/aarch64", native=AMD64) == (ARM64,)


def test_a_platform_the_variant_lacks_is_one_line_naming_both_fixes_and_for_cuda_the_reason():
    with pytest.raises(UsageError) as caught:
        select_platforms(CU118, platform="linux/arm64", native=AMD64)
    assert str(caught.value) == ("variant 'cu118' is built for linux/amd64 only (torch 2.0 has CUDA wheels for "
                                 "linux/amd64 only), not linux/arm64: drop --platform linux/arm64, or add it to the "
                                 "variant's platforms")
    with pytest.raises(UsageError) as caught:
        select_platforms(replace(CPU, platforms=(ARM64,)), platform="linux/amd64,linux/arm64", native=ARM64)
    assert str(caught.value) == ("variant 'cpu' is built for linux/arm64 only, not linux/amd64: drop --platform "
                                 "linux/amd64, or add it to the variant's platforms")


def test_an_unknown_flavour_names_the_known_ones(tmp_path):
    matrix = load_matrix(write(tmp_path, VALID + FLAVOURS))
    with pytest.raises(UsageError, match="unknown flavour 'dev': the matrix declares runtime, devel"):
        select_flavours(matrix, flavour="dev", every=False)


def test_variant_alone_means_runtime_all_means_every_flavour_and_flavour_picks(tmp_path):
    matrix = load_matrix(write(tmp_path, VALID + FLAVOURS))
    assert [f.name for f in select_flavours(matrix, flavour=None, every=False)] == ["runtime"]
    assert [f.name for f in select_flavours(matrix, flavour=None, every=True)] == ["runtime", "devel"]
    assert [f.name for f in select_flavours(matrix, flavour="devel", every=True)] == ["devel"]
