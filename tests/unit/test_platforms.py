"""linux/arm64 beside linux/amd64: the Platform value, the matrix's platforms, per-platform locks, plans, builds,
smoke runs and the doctor's platform check; then the committed images.yaml and CI overlay as they declare them."""
from __future__ import annotations

import pytest

from tests.helpers.variants import make_variant
from torchdev.doctor import OK, WARN, platform_check
from torchdev.errors import UsageError
from torchdev.platforms import AMD64, ARM64, Platform, parse_list

CPU = make_variant("cpu", cuda=None, platforms=(AMD64, ARM64))
CU118 = make_variant("cu118")


# The Platform value


@pytest.mark.parametrize("text, expected", [("linux/arm64", ARM64), ("linux/amd64", AMD64),
                                            ("linux/aarch64", ARM64), (" linux/x86_64 ", AMD64)])
def test_docker_names_and_the_engines_uname_names_parse_to_the_same_platform(text, expected):
    assert Platform.parse(text) == expected


@pytest.mark.parametrize("text", ["linux/s390x", "arm64", "windows/amd64", "linux/arm64/v8", ""])
def test_anything_else_is_a_usage_error_listing_the_platforms_torch_has_wheels_for(text):
    with pytest.raises(UsageError) as caught:
        Platform.parse(text)
    assert str(caught.value) == (f"unknown platform '{text}': torch 2.0 has wheels for linux/amd64, linux/arm64")


def test_each_platform_names_itself_for_uname_wheels_and_file_names():
    assert (str(ARM64), ARM64.machine, ARM64.wheel_platform, ARM64.slug) == (
        "linux/arm64", "aarch64", "aarch64-manylinux_2_28", "linux-arm64")
    assert (str(AMD64), AMD64.machine, AMD64.wheel_platform, AMD64.slug) == (
        "linux/amd64", "x86_64", "x86_64-manylinux_2_28", "linux-amd64")


def test_a_list_keeps_its_order_and_names_each_platform_once():
    assert parse_list("linux/arm64, linux/amd64,linux/aarch64") == (ARM64, AMD64)
    with pytest.raises(UsageError, match="^--platform linux/arm64,,linux/amd64: an empty name between commas: write "
                                         "--platform linux/arm64,linux/amd64$"):
        parse_list("linux/arm64,,linux/amd64")
    with pytest.raises(UsageError, match="unknown platform 'linux/riscv64'"):
        parse_list("linux/amd64,linux/riscv64")


# The doctor


def test_an_engine_of_the_hosts_platform_where_every_variant_is_native_is_ok():
    result = platform_check(engine_platform="linux/x86_64", host=AMD64, variants=(CPU, CU118))
    assert (result.status, result.detail) == (OK, "the engine runs linux/amd64: natively cpu, cu118")


def test_an_arm64_engine_warns_that_the_cuda_variants_are_amd64_only():
    result = platform_check(engine_platform="linux/aarch64", host=ARM64,
                            variants=(CPU, CU118, make_variant("cu117", cuda="11.7")))
    assert result.status == WARN
    assert result.detail == ("the engine runs linux/arm64: natively cpu; emulated only: cu118 (linux/amd64 only), "
                             "cu117 (linux/amd64 only)")
    assert result.fix.startswith("use cpu here; build and run the others on a host of their platform")


def test_an_engine_of_another_platform_than_the_host_is_told_to_pass_platform():
    result = platform_check(engine_platform="linux/arm64", host=AMD64, variants=(CPU, CU118))
    assert result.status == WARN and "but this host is linux/amd64, which builds default to" in result.detail
    assert result.fix == "pass --platform linux/arm64 to build and smoke for the engine's own platform"


def test_an_engine_torch_has_no_wheels_for_is_a_warning():
    result = platform_check(engine_platform="linux/s390x", host=AMD64, variants=(CPU,))
    assert result.status == WARN and "which torch 2.0 has no wheels for" in result.detail
