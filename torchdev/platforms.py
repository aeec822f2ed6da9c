"""Image platforms (os/arch, as Docker writes them): which ones torch 2.0 publishes wheels for, and what each is called
by the engine, by uname, by wheel tags and by file names."""
from __future__ import annotations

from dataclasses import dataclass

from torchdev.errors import USAGE, Problem, UsageError
from torchdev.options import names

UNKNOWN_PLATFORM = Problem("unknown platform '{text}'", "torch 2.0 has wheels for {known}", UsageError, USAGE)

MACHINES = {"amd64": "x86_64", "arm64": "aarch64"}
"""The architectures torch 2.0 has Linux wheels for, with what `uname -m` and wheel tags call them."""

ALIASES = {machine: arch for arch, machine in MACHINES.items()}
"""What an engine may report as its architecture (`docker info`: x86_64, aarch64) -> Docker's name."""


@dataclass(frozen=True, order=True)
class Platform:
    """One image platform: linux/amd64 or linux/arm64."""

    os: str
    arch: str

    @classmethod
    def parse(cls, text: str) -> Platform:
        """`linux/arm64` (or an engine's `linux/aarch64`); anything else is a usage error listing the known ones."""
        os_name, _, arch = text.strip().partition("/")
        platform = cls(os_name, ALIASES.get(arch, arch))
        if platform not in KNOWN:
            raise UNKNOWN_PLATFORM(text=text, known=", ".join(map(str, KNOWN)))
        return platform

    def __str__(self) -> str:
        return f"{self.os}/{self.arch}"

    @property
    def machine(self) -> str:
        """What `uname -m` says inside a container of this platform."""
        return MACHINES[self.arch]

    @property
    def wheel_platform(self) -> str:
        """The platform uv resolves locks for: glibc 2.28 or newer (Ubuntu 22.04 has 2.35, Debian 12 2.36)."""
        return f"{self.machine}-manylinux_2_28"

    @property
    def slug(self) -> str:
        """The platform in file names: linux-arm64."""
        return f"{self.os}-{self.arch}"


AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64")
KNOWN = (AMD64, ARM64)


def parse_list(text: str) -> tuple[Platform, ...]:
    """`linux/amd64,linux/arm64` as buildx takes it, in the order given, each once."""
    return tuple(dict.fromkeys(Platform.parse(word) for word in names("--platform", text)))
