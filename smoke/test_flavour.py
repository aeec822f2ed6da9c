"""What each flavour promises. runtime: torch's own CUDA libraries only once, the driver constraint the toolkit
checks, and no compiler (nothing it claims needs one). devel: a C++ extension and, on CUDA variants, a CUDA kernel
built with the image's own toolchain, found through CUDA_HOME as torch.utils.cpp_extension looks for it."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SHARED_LIBS_CHECK = Path("/usr/share/torchdev/shared_libs.py")

CPP_SOURCE = """
torch::Tensor scaled_sum(torch::Tensor a, torch::Tensor b, double scale) { return (a + b) * scale; }
"""
CUDA_SOURCE = """
__global__ void scaled_sum_kernel(const float* a, const float* b, float* out, float scale, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = (a[i] + b[i]) * scale;
}
torch::Tensor scaled_sum_cuda(torch::Tensor a, torch::Tensor b, double scale) {
  auto out = torch::empty_like(a);
  int n = a.numel();
  scaled_sum_kernel<<<(n + 255) / 256, 256>>>(a.data_ptr<float>(), b.data_ptr<float>(), out.data_ptr<float>(),
                                              static_cast<float>(scale), n);
  return out;
}
"""


def test_no_shared_library_is_held_twice():
    """A second copy of a library torch loads from its wheels (cuDNN under /usr from a CUDA base) is dead weight."""
    if not SHARED_LIBS_CHECK.is_file():
        pytest.skip(f"not a torchdev image: no {SHARED_LIBS_CHECK}")
    result = subprocess.run([sys.executable, str(SHARED_LIBS_CHECK), "/"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr


def test_the_driver_constraint_is_the_one_declared_for_this_cuda(expected):
    """The NVIDIA toolkit refuses a too-old driver at container start by NVIDIA_REQUIRE_CUDA; a plain OS base
    carries none, so the image must, word for word as the matching nvidia/cuda image."""
    declared = expected("require-cuda")
    found = os.environ.get("NVIDIA_REQUIRE_CUDA", "")
    assert found == ("" if declared == "none" else declared), (
        f"NVIDIA_REQUIRE_CUDA is {found!r}, images.yaml declares {declared!r}")


VSCODE_TOOLS = ("git", "ssh")
"""What VS Code runs inside a dev container (Source Control, pushing over ssh): devel's, not runtime's."""


def test_runtime_carries_no_compiler_and_no_dev_tools(flavour):
    """Nothing the runtime flavour claims needs a compiler, git or ssh; one found here came with the base and only
    adds size."""
    if flavour != "runtime":
        pytest.skip(f"the {flavour or 'unknown'} flavour may carry compilers")
    found = [tool for tool in ("gcc", "g++", "cc", "nvcc", *VSCODE_TOOLS) if shutil.which(tool)]
    assert not found, f"the runtime image holds {', '.join(found)}: build on a base without a toolchain"


def test_devel_has_git_and_ssh_and_git_trusts_the_workspace_whoever_owns_it(flavour, tmp_path):
    """VS Code's Source Control runs git inside the container on /workspace, which belongs to the host user: a UID
    the container user may not have (Docker Desktop), which git refuses as 'dubious ownership' unless told."""
    devel_only(flavour)
    missing = [tool for tool in VSCODE_TOOLS if not shutil.which(tool)]
    assert not missing, f"the devel image has no {', '.join(missing)}: images.yaml's devel apt_packages"
    trusted = subprocess.run(["git", "config", "--system", "--get-all", "safe.directory"], capture_output=True,
                             text=True, timeout=60).stdout.split()
    assert "/workspace" in trusted, f"git's system configuration trusts {trusted or 'nothing'}, not /workspace"
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, timeout=60)
    status = subprocess.run(["git", "-C", str(tmp_path), "status", "--short"], capture_output=True, text=True,
                            timeout=60)
    assert status.returncode == 0, status.stderr


def devel_only(flavour):
    if flavour is None:
        pytest.skip("no flavour given (--expect-flavour) and no torchdev manifest declaring one")
    if flavour == "runtime":
        pytest.skip("the runtime flavour has no compiler: extensions need the devel flavour "
                    "(./dev build --variant NAME --flavour devel)")


def build_extension(name, tmp_path, **sources):
    from torch.utils.cpp_extension import load_inline

    os.environ["MAX_JOBS"] = str(os.cpu_count() or 2)
    return load_inline(name=name, build_directory=str(tmp_path), verbose=False, **sources)


def test_a_cpp_extension_builds_and_gives_the_right_answer(flavour, tmp_path):
    """g++, Python.h and ninja, as torch.utils.cpp_extension uses them for every C++ extension."""
    devel_only(flavour)
    module = build_extension("torchdev_cpp_check", tmp_path, cpp_sources=CPP_SOURCE, functions=["scaled_sum"])
    a, b = torch.arange(6.0), torch.full((6,), 0.5)
    assert torch.equal(module.scaled_sum(a, b, 2.0), (a + b) * 2.0)


def test_cuda_home_holds_the_declared_nvcc(flavour, expected):
    """cpp_extension finds nvcc through CUDA_HOME; it must be the CUDA release the variant declares."""
    devel_only(flavour)
    release = expected("cuda-toolchain")
    if release == "none":
        pytest.skip("this image was built without a CUDA toolchain (images.yaml: flavours.<flavour>.cuda_toolchain "
                    "is null, or the variant has no CUDA)")
    from torch.utils.cpp_extension import CUDA_HOME

    assert CUDA_HOME and Path(CUDA_HOME, "bin", "nvcc").is_file(), f"no nvcc under CUDA_HOME={CUDA_HOME}"
    version = subprocess.run([str(Path(CUDA_HOME, "bin", "nvcc")), "--version"], capture_output=True, text=True,
                             timeout=60).stdout
    found = re.search(r"release (\d+\.\d+)", version)
    assert found and release.startswith(found.group(1) + "."), f"nvcc says {version.strip()!r}, declared {release}"


def test_a_cuda_kernel_compiles_and_matches_the_cpu_where_a_gpu_is_visible(flavour, expected, tmp_path):
    """Compiling needs no GPU; running the kernel does, and then it must give the CPU's answer."""
    devel_only(flavour)
    if expected("cuda-toolchain") == "none":
        pytest.skip("this image was built without a CUDA toolchain: no nvcc to compile with")
    module = build_extension("torchdev_cuda_check", tmp_path, cpp_sources=(
        "torch::Tensor scaled_sum_cuda(torch::Tensor a, torch::Tensor b, double scale);"),
        cuda_sources=CUDA_SOURCE, functions=["scaled_sum_cuda"])
    if not torch.cuda.is_available():
        pytest.skip("compiled; no GPU visible to run the kernel on")
    a, b = torch.arange(1024.0), torch.full((1024,), 0.25)
    got = module.scaled_sum_cuda(a.cuda(), b.cuda(), 3.0).cpu()
    assert torch.equal(got, (a + b) * 3.0)
