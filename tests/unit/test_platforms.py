"""torchdev/platforms.py: the Platform value, from Docker's and uname's names, and lists of them. How each part of
torchdev treats linux/arm64 beside linux/amd64 is tested with that part (test_matrix, test_project, test_plan,
test_lock, test_build, test_smoke, test_doctor)."""
from __future__ import annotations

import pytest

from torchdev.errors import UsageError
from torchdev.platforms import AMD64, ARM64, Platform, parse_list


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
