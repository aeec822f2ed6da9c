"""GPU visibility check: the GPUs the run asked for reach the driver and torch, and compute correctly.

Every check here but one is skipped on runs that request no GPU (--gpus 0, or 'auto' without CUDA), and
fails with a diagnostic when GPUs were requested but are not there. The one: a run that asked for none sees none.
"""
import os
import shutil
import subprocess

import pytest
import torch
import torch.nn.functional as F

from smoke_contract import GPUS_OPTION, KernelSupport, kernel_support, option_dest, parse_gpus


def test_nvidia_smi_lists_requested_gpus(gpus_requested, gpu_diagnostic, listed_gpus):
    """The driver (injected by the container toolkit) sees at least the requested GPUs."""
    if shutil.which("nvidia-smi") is None:
        pytest.fail(f"cannot run nvidia-smi -L: {gpu_diagnostic()}", pytrace=False)
    result = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"nvidia-smi -L failed: {result.stdout}{result.stderr}"
    listed = listed_gpus()
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


def test_every_device_is_supported_by_this_build(cuda_devices):
    """torch carries kernels for each GPU's architecture; otherwise every kernel launch fails later.

    For example, the cu117 wheels stop at sm_86, so they cannot run on Hopper (sm_90).
    """
    arch_list = torch.cuda.get_arch_list()
    for device in cuda_devices:
        capability = torch.cuda.get_device_capability(device)
        assert kernel_support(capability, arch_list) is not KernelSupport.NONE, (
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


def test_a_run_that_asked_for_no_gpu_sees_none(pytestconfig, gpu_diagnostic, listed_gpus):
    """--gpus 0 (or none) means none, also on hosts whose default runtime is nvidia, where a CUDA image's
    NVIDIA_VISIBLE_DEVICES=all would hand over every GPU unless the runner says void."""
    if parse_gpus(pytestconfig.getoption(option_dest(GPUS_OPTION))) != 0:
        pytest.skip("GPUs were requested (or left to --gpus auto)")
    listed = listed_gpus()
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert (listed, visible) == ([], 0), (f"asked for no GPU, yet nvidia-smi lists {len(listed)} and torch sees "
                                          f"{visible} (NVIDIA_VISIBLE_DEVICES="
                                          f"{os.environ.get('NVIDIA_VISIBLE_DEVICES', '<unset>')}): {gpu_diagnostic()}")


@pytest.fixture()
def exact_float32():
    """TF32 off for convolutions, so the GPU's float32 result compares tightly with a float64 reference."""
    previous = torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = previous


def conv_case(device):
    """One conv2d forward and backward: (output, input grad, weight grad), inputs from a fixed seed."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(4, 3, 32, 32, generator=generator)
    weight = torch.randn(8, 3, 3, 3, generator=generator)
    inputs, weight = (t.to(device).requires_grad_() for t in (inputs, weight))
    output = F.conv2d(inputs, weight, padding=1)
    output.pow(2).sum().backward()
    return output.detach().cpu(), inputs.grad.cpu(), weight.grad.cpu()


@pytest.mark.usefixtures("exact_float32")
@pytest.mark.parametrize("benchmark", [False, True], ids=["cudnn-default", "cudnn-benchmark"])
def test_cudnn_conv2d_forward_and_backward_match_cpu(cuda_devices, benchmark):
    """cuDNN runs a convolution on the GPU, with its default algorithm and with the one benchmark mode picks, and
    the output and both gradients equal a float64 CPU reference within float32 rounding."""
    assert torch.backends.cudnn.is_available() and torch.backends.cudnn.enabled, "cuDNN is not usable"
    torch.backends.cudnn.benchmark = benchmark
    reference = conv_case(torch.device("cpu"))
    with torch.no_grad():
        expected = [t.double() for t in reference]
    for got, want, name in zip(conv_case(cuda_devices[0]), expected, ("output", "input grad", "weight grad")):
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-3,
                                   msg=lambda text, name=name: f"{name}: {text}")


def test_cudnn_conv2d_under_autocast_runs_in_float16_close_to_float32(cuda_devices):
    """Under CUDA autocast the convolution runs in float16 and stays within half precision of float32."""
    device = cuda_devices[0]
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(4, 3, 32, 32, generator=generator).to(device)
    weight = torch.randn(8, 3, 3, 3, generator=generator).to(device)
    with torch.autocast("cuda", dtype=torch.float16):
        output = F.conv2d(inputs, weight, padding=1)
    assert output.dtype == torch.float16
    torch.testing.assert_close(output.float(), F.conv2d(inputs, weight, padding=1), rtol=1e-2, atol=2e-2)
