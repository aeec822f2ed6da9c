"""GPU visibility check: the GPUs the run asked for reach the driver and torch, and compute correctly.

Every check here is skipped on runs that request no GPU (--gpus 0, or 'auto' without CUDA), and
fails with a diagnostic when GPUs were requested but are not there.
"""
import re
import shutil
import subprocess

import pytest
import torch
import torch.nn.functional as F


def test_nvidia_smi_lists_requested_gpus(gpus_requested, gpu_diagnostic):
    """The driver (injected by the container toolkit) sees at least the requested GPUs."""
    if shutil.which("nvidia-smi") is None:
        pytest.fail(f"cannot run nvidia-smi -L: {gpu_diagnostic()}", pytrace=False)
    result = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"nvidia-smi -L failed: {result.stdout}{result.stderr}"
    # Whole GPUs start with "GPU "; MIG instances are listed below them, indented.
    listed = [line for line in result.stdout.splitlines() if line.startswith("GPU ")]
    assert len(listed) >= gpus_requested, \
        f"nvidia-smi lists {len(listed)} GPU(s), {gpus_requested} requested: {gpu_diagnostic()}"


@pytest.mark.usefixtures("gpus_requested")
def test_cuda_is_available(gpu_diagnostic):
    """torch can initialise CUDA: driver, device nodes and torch's CUDA build all line up."""
    assert torch.cuda.is_available(), f"torch.cuda.is_available() is False: {gpu_diagnostic()}"


def test_device_count_equals_requested(gpus_requested, gpu_diagnostic):
    """Exactly the requested GPUs are visible: more means the container leaks devices it was not given."""
    visible = torch.cuda.device_count()
    assert visible == gpus_requested, \
        f"torch sees {visible} GPU(s), {gpus_requested} requested: {gpu_diagnostic()}"


def build_runs_on(capability, arch_list):
    """Whether kernels compiled for `arch_list` (e.g. ['sm_80', 'sm_86', 'compute_86']) run on `capability`.

    Machine code (sm_XY) runs on the same major with an equal or higher minor; PTX (compute_XY) is
    compiled on the fly for any device of capability XY or higher.
    """
    for arch in arch_list:
        match = re.fullmatch(r"(sm|compute)_(\d+)(\d)[a-z]?", arch)
        if match is None:
            continue
        kind, arch_capability = match.group(1), (int(match.group(2)), int(match.group(3)))
        if kind == "sm" and arch_capability[0] == capability[0] and arch_capability[1] <= capability[1]:
            return True
        if kind == "compute" and arch_capability <= capability:
            return True
    return False


def test_every_device_is_supported_by_this_build(cuda_devices):
    """torch carries kernels for each GPU's architecture; otherwise every kernel launch fails later.

    For example, the cu117 wheels stop at sm_86, so they cannot run on Hopper (sm_90).
    """
    arch_list = torch.cuda.get_arch_list()
    for device in cuda_devices:
        capability = torch.cuda.get_device_capability(device)
        assert build_runs_on(capability, arch_list), (
            f"{device} ({torch.cuda.get_device_name(device)}) is sm_{capability[0]}{capability[1]}, but torch "
            f"{torch.__version__} only has kernels for {' '.join(arch_list)}: use a build for this GPU")


def test_matmul_on_every_device_matches_cpu(cuda_devices):
    """Each GPU computes a float32 matmul within rounding of a float64 CPU reference.

    TF32 is off for matmul by default, so float32 accuracy is expected (errors around 1e-5 here).
    """
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(512, 512, generator=generator)
    b = torch.randn(512, 512, generator=generator)
    reference = (a.double() @ b.double()).float()
    for device in cuda_devices:
        product = (a.to(device) @ b.to(device)).cpu()
        torch.testing.assert_close(product, reference, rtol=1e-4, atol=1e-3,
                                   msg=lambda text, device=device: f"matmul on {device}: {text}")


def test_autocast_float16_forward_and_backward(cuda_devices):
    """Under CUDA autocast a linear layer runs in float16 close to float64, and float32 weights get finite grads."""
    device = cuda_devices[0]
    generator = torch.Generator().manual_seed(0)
    layer = torch.nn.Linear(64, 8).to(device)
    inputs = torch.randn(32, 64, generator=generator).to(device)
    with torch.autocast("cuda", dtype=torch.float16):
        output = layer(inputs)
        loss = output.float().pow(2).mean()
    assert output.dtype == torch.float16
    reference = F.linear(inputs.double(), layer.weight.double(), layer.bias.double())
    torch.testing.assert_close(output.double(), reference, rtol=1e-2, atol=1e-2)
    loss.backward()
    assert layer.weight.grad.dtype == torch.float32
    assert torch.isfinite(layer.weight.grad).all()
