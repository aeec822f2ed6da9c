"""images.yaml files for unit tests: a valid one-variant matrix, written to a test's folder, the one configuration
line a bad one gives, and the committed matrix itself."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.cli import ROOT
from torchdev.errors import ConfigError
from torchdev.matrix import Matrix, load_matrix

VALID = """\
image:
  repository: torchdev
  tags: ["{torch}-{variant}-py{python}", "{variant}"]
variants:
  cu118:
    base: nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04
    python: "3.10"
    torch: 2.0.1
    torchvision: 0.15.2
    torchaudio: 2.0.2
    index: https://download.pytorch.org/whl/cu118
    cuda: "11.8"
    cudnn: 8
"""
FLAVOURS = """\
flavours:
  runtime: {}
  devel:
    apt_packages: [g++, python3-dev]
    pip_packages: [ninja==1.11.1.1]
    cuda_toolchain: https://nvidia.example/redist
    cuda_components: [cuda_nvcc, cuda_cudart]
    lock_packages: [triton, cmake]
cuda_releases:
  "11.8":
    release: 11.8.0
    nvidia_require_cuda: cuda>=11.8 brand=tesla,driver>=470,driver<471
"""
"""images.yaml's flavours (runtime, and devel with a CUDA toolchain) and the CUDA release devel needs, to add to
VALID."""


def write(tmp_path: Path, text: str, name: str = "images.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_for(tmp_path: Path, text: str, **kwargs) -> str:
    with pytest.raises(ConfigError) as caught:
        load_matrix(write(tmp_path, text), **kwargs)
    assert caught.value.exit_status == 2
    return str(caught.value)


def committed_matrix(overlay: Path | None = None) -> Matrix:
    """images.yaml as committed (with `overlay`); skips where an images.local.yaml would be merged in."""
    if (ROOT / "images.local.yaml").exists():
        pytest.skip("images.local.yaml is present and would be merged in")
    return load_matrix(ROOT / "images.yaml", overlay=str(overlay) if overlay else None)
