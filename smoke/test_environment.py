"""Environment check: the image carries the promised stack, and the seed article's examples run.

The seed article's examples are what every image must run, in their corrected form: its printed MSE
(0.0367) is wrong, the right value is 0.02; and its autograd example calls requires_grad_ on an
integer tensor, which raises, so autograd is shown on a float tensor.
"""
import importlib
import importlib.metadata
import platform
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F


def public_version(version):
    """Drop the local label: torch reports '2.0.1+cu117' for the public release '2.0.1'."""
    return str(version).split("+", 1)[0]


def version_matches(actual, expected):
    """True when every dot-separated part of `expected` equals the leading parts of `actual`.

    So '2.0.1' matches '2.0.1+cu117', and '3.11' matches '3.11.7' but not '3.1.2' or '3.110'.
    """
    expected_parts = public_version(expected).split(".")
    return public_version(actual).split(".")[:len(expected_parts)] == expected_parts


def cudnn_major(version_int):
    """cuDNN's packed version: 8500 is 8.5.0 (major*1000 up to cuDNN 8), 90100 is 9.1.0 (major*10000)."""
    return version_int // 10000 if version_int >= 10000 else version_int // 1000


@pytest.mark.parametrize("package", ["torch", "torchvision", "torchaudio"])
def test_package_version_matches_expectation(package, expected):
    """The package imports and its public version is the one the variant promises."""
    want = expected(package)
    actual = importlib.import_module(package).__version__
    assert version_matches(actual, want), f"{package} {actual} does not match expected {want}"


def test_python_version_matches_expectation(expected):
    """The interpreter is the one the base image was chosen for (3.10 on Ubuntu, 3.11 on Debian)."""
    want = expected("python")
    actual = platform.python_version()
    assert version_matches(actual, want), f"python {actual} does not match expected {want}"


def test_machine_matches_platform(expected):
    """The container runs the declared platform's binaries (aarch64 in a linux/arm64 image, emulated or not): a
    Mac that silently ran the amd64 image under emulation would pass every other check, ten times slower."""
    want = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}[expected("platform")]
    assert platform.machine() == want, f"uname -m is {platform.machine()}, the image declares {expected('platform')}"


def test_cuda_build_matches_expectation(expected):
    """torch was built for the expected CUDA ('none' means a CPU build, torch.version.cuda None)."""
    want = expected("cuda")
    actual = torch.version.cuda
    if want.lower() == "none":
        assert actual is None, f"expected a CPU build but torch.version.cuda is {actual}"
    else:
        assert actual is not None, f"expected CUDA {want} but torch {torch.__version__} is a CPU build"
        assert version_matches(actual, want), f"torch.version.cuda {actual} does not match expected {want}"


def test_cudnn_major_matches_expectation(expected):
    """cuDNN loads (no GPU needed to query it) and its major version is the expected one."""
    want = int(expected("cudnn-major"))
    assert torch.version.cuda is not None, f"expected cuDNN {want} but torch {torch.__version__} is a CPU build"
    assert torch.backends.cudnn.is_available(), "torch was built without cuDNN"
    version = torch.backends.cudnn.version()
    assert version is not None, "cuDNN did not load"
    assert cudnn_major(version) == want, f"cuDNN {version} has major {cudnn_major(version)}, expected {want}"


def test_nccl_is_reported_on_cuda_builds():
    """A CUDA build must ship NCCL for multi-GPU training; querying its version needs no GPU."""
    if torch.version.cuda is None:
        pytest.skip("CPU build (torch.version.cuda is None): no NCCL expected")
    assert torch.distributed.is_available() and torch.distributed.is_nccl_available(), \
        "torch.distributed has no NCCL backend"
    version = torch.cuda.nccl.version()
    assert version, f"torch.cuda.nccl.version() reported {version!r}"


def normalized(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def installed(name):
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def test_the_images_packages_come_before_the_users_and_are_pip_constraints():
    """A user's `pip install` lands in their site-packages (~/.local), which Python reads after the image's own, and
    every locked version is a pip constraint (PIP_CONSTRAINT): the image's torch is the one imported, and stays. The
    system's site-packages, after both, hold no distribution."""
    import os
    import site
    import sysconfig

    constraints = os.environ.get("PIP_CONSTRAINT")
    if not constraints:
        pytest.skip("no PIP_CONSTRAINT: not a torchdev image (or one built before it had one)")
    image_site = sysconfig.get_paths()["purelib"]
    assert torch.__file__.startswith(image_site + os.sep), f"torch comes from {torch.__file__}, not {image_site}"
    user_site = site.getusersitepackages()
    if user_site in sys.path:
        assert sys.path.index(image_site) < sys.path.index(user_site), sys.path
    pins = dict(line.strip().split("==", 1) for line in open(constraints, encoding="utf-8")
                if "==" in line and not line.startswith("#"))
    installed = importlib.metadata.version("torch")  # what pip pins: PyPI's 2.0.1 says torch.__version__ 2.0.1+cu117
    assert pins.get("torch") == installed, f"the constraints pin torch {pins.get('torch')}, the image has {installed}"
    others = [path for path in site.getsitepackages() if path != image_site]
    held = {path: [dist.metadata["Name"] for dist in importlib.metadata.distributions(path=[path])] for path in others}
    assert not any(held.values()), f"the system's site-packages hold distributions: {held}"


def test_pip_check_is_clean(left_out):
    """No installed package has a missing or conflicting requirement, but for a package the flavour leaves out by
    design: "torch requires triton, which is not installed" is expected in runtime, and such a package must indeed
    be absent (a declaration that no longer holds fails too)."""
    allowed = {normalized(name) for name in left_out}
    result = subprocess.run([sys.executable, "-m", "pip", "check"],
                            capture_output=True, text=True, timeout=120)
    missing = re.compile(r"^\S+ \S+ requires (\S+), which is not installed\.$")
    problems = [line for line in result.stdout.splitlines() if line.strip() and not (
        missing.match(line) and normalized(missing.match(line).group(1)) in allowed)]
    assert result.returncode == 0 or (result.stdout.strip() and problems == []), \
        f"pip check failed:\n{result.stdout}{result.stderr}"
    present = sorted(name for name in allowed if installed(name))
    assert present == [], f"declared left out of this flavour but installed: {', '.join(present)}"


@pytest.mark.parametrize("iou_threshold, kept", [(0.5, [2, 1]), (0.7, [2, 0, 1])])
def test_torchvision_nms_keeps_expected_boxes(iou_threshold, kept):
    """torchvision's compiled ops load against this torch and give exact results.

    Boxes 0 and 2 overlap with IoU 81/119 = 0.68: at threshold 0.5 the lower-scored box 0 is
    suppressed, at 0.7 it is kept. Box 1 overlaps nothing. Kept indices come in descending score order.
    """
    from torchvision.ops import nms
    boxes = torch.tensor([[1.0, 1.0, 11.0, 11.0], [20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 10.0, 10.0]])
    scores = torch.tensor([0.8, 0.7, 0.9])
    assert nms(boxes, scores, iou_threshold).tolist() == kept


def test_torchaudio_lfilter_impulse_response():
    """torchaudio imports and filters: y[n] = x[n] + 0.5 y[n-1] answers an impulse with 0.5**n."""
    import torchaudio.functional
    impulse = torch.tensor([1.0, 0.0, 0.0, 0.0])
    response = torchaudio.functional.lfilter(impulse, a_coeffs=torch.tensor([1.0, -0.5]),
                                             b_coeffs=torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(response, torch.tensor([1.0, 0.5, 0.25, 0.125]))


def test_numpy_round_trip_shares_memory():
    """from_numpy and .numpy() share memory both ways (NumPy 2 against torch 2.0 breaks this)."""
    import numpy as np
    array = np.arange(6, dtype=np.float32)
    tensor = torch.from_numpy(array)
    tensor[0] = 42.0
    assert array[0] == 42.0
    back = tensor.numpy()
    assert np.shares_memory(back, array)
    np.testing.assert_array_equal(back, [42, 1, 2, 3, 4, 5])


def conv2d_case(dtype):
    """A 3x3 input, a 2x2 kernel and bias 1, with the output worked out by hand.

    out[i][j] = sum of x[i+a][j+b] * k[a][b] + 1, e.g. out[0][0] = 1*1 + 2*2 + 4*3 + 5*4 + 1 = 38.
    """
    image = torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9]], dtype=dtype).view(1, 1, 3, 3)
    kernel = torch.tensor([[1, 2], [3, 4]], dtype=dtype).view(1, 1, 2, 2)
    bias = torch.tensor([1], dtype=dtype)
    expected = torch.tensor([[38, 48], [68, 78]], dtype=dtype).view(1, 1, 2, 2)
    return image, kernel, bias, expected


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conv2d_matches_hand_computed_result(dtype):
    """Small integers are exact in both float types, so the result must match exactly."""
    image, kernel, bias, expected = conv2d_case(dtype)
    assert torch.equal(F.conv2d(image, kernel, bias), expected)


def test_conv2d_under_cpu_bfloat16_autocast():
    """CPU autocast runs conv2d in bfloat16 (8 significant bits), so compare with a tolerance. On aarch64, torch
    2.0.1's oneDNN has no bfloat16 convolution for every CPU (none under qemu, measured): that skips, saying so."""
    image, kernel, bias, expected = conv2d_case(torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        try:
            output = F.conv2d(image, kernel, bias)
        except RuntimeError as error:
            if platform.machine() != "aarch64" or "could not create a primitive descriptor" not in str(error):
                raise
            pytest.skip(f"torch {torch.__version__}'s oneDNN has no bfloat16 conv2d on this aarch64 CPU ({error})")
    assert output.dtype == torch.bfloat16
    torch.testing.assert_close(output.float(), expected, rtol=1e-2, atol=0.5)


def test_seed_tensor_addition():
    """Seed: torch.tensor([1, 2, 3]) + 2 is [3, 4, 5] and stays an integer tensor."""
    y = torch.tensor([1, 2, 3]) + 2
    assert y.dtype == torch.int64
    assert y.tolist() == [3, 4, 5]


def test_seed_autograd_on_float_tensor():
    """Seed, corrected: for z = mean(x**2) over 3 elements, dz/dx = 2x/3 = [2/3, 4/3, 2]."""
    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    z = (x ** 2).mean()
    z.backward()
    torch.testing.assert_close(x.grad, torch.tensor([2 / 3, 4 / 3, 2.0]))


def test_seed_requires_grad_on_integer_tensor_raises():
    """The seed's own autograd example is a bug: only floating-point tensors can require gradients."""
    with pytest.raises(RuntimeError, match="floating point"):
        torch.tensor([1, 2, 3]).requires_grad_(True)


@pytest.mark.parametrize("target_dtype", [torch.float32, torch.int64], ids=["float-target", "seed-int-target"])
def test_seed_mse_loss_is_0_02(target_dtype):
    """Seed: MSE of [1.1, 1.9, 2.8] against [1, 2, 3] is (0.01 + 0.01 + 0.04) / 3 = 0.02, not 0.0367.

    The seed passes an integer target; torch promotes it, so that call gives 0.02 as well.
    """
    y = torch.tensor([1, 2, 3], dtype=target_dtype)
    y_hat = torch.tensor([1.1, 1.9, 2.8])
    loss = F.mse_loss(y_hat, y)
    torch.testing.assert_close(loss, torch.tensor(0.02))
