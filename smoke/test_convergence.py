"""Convergence check: training on this stack learns, reproducibly, on CPU and on the GPU when requested.

Every run seeds its data and its weights, so a result here is a property of the stack, not of luck.
"""
import contextlib
import os
import shutil
import subprocess
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

CLASS_CENTERS = torch.tensor([[0.0, 4.0], [4.0, -2.0], [-4.0, -2.0]])


@dataclass(frozen=True)
class Target:
    """Where a training run happens: a device, and whether it runs under float16 autocast."""

    device: torch.device
    use_autocast: bool

    def autocast(self):
        """A context running eligible ops in float16 when enabled, a no-op otherwise.

        A disabled torch.autocast is no substitute: on CPU, torch 2.0 rejects float16 even then.
        """
        if not self.use_autocast:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.float16)

    def grad_scaler(self):
        """Loss scaling keeps float16 gradients from underflowing; disabled it passes losses through.

        torch.amp.GradScaler is the spelling from torch 2.3 on; torch 2.0 only has the CUDA one.
        """
        if hasattr(torch.amp, "GradScaler"):
            return torch.amp.GradScaler("cuda", enabled=self.use_autocast)
        return torch.cuda.amp.GradScaler(enabled=self.use_autocast)


@pytest.fixture(params=["cpu", "cuda", "cuda-autocast"])
def target(request):
    """Always train on CPU; on the first requested GPU as well, in float32 and under autocast."""
    if request.param == "cpu":
        return Target(torch.device("cpu"), use_autocast=False)
    device = request.getfixturevalue("cuda_devices")[0]
    return Target(device, use_autocast=request.param == "cuda-autocast")


def train_step(model, optimizer, scaler, target, inputs, labels, loss_function):
    """One optimisation step in the standard AMP pattern (plain SGD/Adam when autocast is off)."""
    with target.autocast():
        loss = loss_function(model(inputs), labels)
    optimizer.zero_grad()
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


def fit_line(target, seed=0):
    """The seed article's linear regression (y = 3x + noise, x ~ 10 N(0,1)); returns the learned slope.

    The article's lr=0.01 sits at SGD's stability limit for this data (curvature 2 E[x^2] = 200, so
    lr < 2/200 is required) and leaves the slope oscillating by about 0.1; lr=0.001 converges.
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(100, 1, generator=generator) * 10
    y = 3 * x + torch.randn(100, 1, generator=generator)
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=generator)
    model = nn.Linear(1, 1).to(target.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001)
    scaler = target.grad_scaler()
    for _ in range(100):
        for inputs, labels in loader:
            train_step(model, optimizer, scaler, target, inputs.to(target.device),
                       labels.to(target.device), nn.MSELoss())
    return model.weight.item()


def three_blobs(samples_per_class, generator):
    """Three unit-variance Gaussian blobs at least 7 standard deviations apart: separable data."""
    points = [center + torch.randn(samples_per_class, 2, generator=generator) for center in CLASS_CENTERS]
    labels = [torch.full((samples_per_class,), label) for label in range(len(CLASS_CENTERS))]
    return torch.cat(points), torch.cat(labels)


def make_classifier():
    """A small MLP: 2 inputs, one hidden layer, 3 classes."""
    return nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 3))


def train_classifier(target, seed=0, epochs=3):
    """Train the MLP on three_blobs with Adam; returns the model and the loss of every step."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    inputs, labels = three_blobs(200, generator)
    loader = DataLoader(TensorDataset(inputs, labels), batch_size=32, shuffle=True, generator=generator)
    model = make_classifier().to(target.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    scaler = target.grad_scaler()
    losses = []
    for _ in range(epochs):
        for batch_inputs, batch_labels in loader:
            losses.append(train_step(model, optimizer, scaler, target, batch_inputs.to(target.device),
                                     batch_labels.to(target.device), nn.CrossEntropyLoss()))
    return model, torch.stack(losses).cpu()


def held_out_blobs(target):
    """Fresh samples from the same blobs (another seed), to measure accuracy on unseen data."""
    inputs, labels = three_blobs(100, torch.Generator().manual_seed(12345))
    return inputs.to(target.device), labels.to(target.device)


def predict(model, target, inputs):
    """Logits in eval mode, under the same autocast setting the model was trained with."""
    model.eval()
    with torch.no_grad(), target.autocast():
        return model(inputs)


def test_linear_regression_recovers_slope(target):
    """SGD on y = 3x + noise finds the slope within 0.05."""
    slope = fit_line(target)
    assert abs(slope - 3.0) <= 0.05, f"learned slope {slope:.4f}, expected 3 +- 0.05"


def test_mlp_classifier_reaches_95_percent_accuracy(target):
    """The MLP separates three well-separated blobs on held-out data."""
    model, _ = train_classifier(target)
    inputs, labels = held_out_blobs(target)
    accuracy = (predict(model, target, inputs).argmax(dim=1) == labels).float().mean().item()
    assert accuracy >= 0.95, f"held-out accuracy {accuracy:.3f} < 0.95"


def test_cpu_training_is_bitwise_reproducible():
    """Two CPU runs with the same seed produce the very same loss at every step."""
    cpu = Target(torch.device("cpu"), use_autocast=False)
    _, first = train_classifier(cpu, seed=7, epochs=2)
    _, second = train_classifier(cpu, seed=7, epochs=2)
    assert torch.equal(first, second), f"losses diverge first at step {(first != second).nonzero()[0].item()}"


def test_checkpoint_round_trip_gives_identical_predictions(target, tmp_path):
    """A state_dict saved with torch.save and loaded into a fresh model predicts bit-identically."""
    model, _ = train_classifier(target, epochs=1)
    checkpoint = tmp_path / "classifier.pt"
    torch.save(model.state_dict(), checkpoint)
    restored = make_classifier().to(target.device)
    restored.load_state_dict(torch.load(checkpoint, map_location=target.device))
    inputs, _ = held_out_blobs(target)
    assert torch.equal(predict(restored, target, inputs), predict(model, target, inputs))


def compiler_missing_reason(device):
    """Why torch.compile cannot build kernels for `device` here, or None when it can.

    Inductor compiles CPU kernels with a C++ compiler ($CXX or g++); Triton builds its CUDA
    launcher, a Python extension, with a C compiler ($CC, gcc or clang) and Python.h, and links it
    with the driver's libcuda.so. Runtime images usually ship none of these.
    """
    if device.type == "cpu":
        found = os.environ.get("CXX") or shutil.which("g++")
        return None if found else "no C++ compiler ($CXX or g++) for torch.compile's CPU kernels"
    if not (os.environ.get("CC") or shutil.which("gcc") or shutil.which("clang")):
        return "no C compiler ($CC, gcc or clang) for Triton's CUDA kernels"
    if not Path(sysconfig.get_paths()["include"], "Python.h").is_file():
        return "no Python.h (Python development headers) for Triton's CUDA kernel launcher"
    if not libcuda_for_linking():
        return ("no libcuda.so for Triton to link its launcher against: the NVIDIA toolkit injects only "
                "libcuda.so.1 (a devel image, or a libcuda.so link to it, provides one)")
    return None


def libcuda_for_linking():
    """The unversioned libcuda.so Triton links with `-lcuda`, where `ldconfig -p` or TRITON_LIBCUDA_PATH find one."""
    extra = os.environ.get("TRITON_LIBCUDA_PATH")
    if extra and Path(extra, "libcuda.so").exists():
        return True
    try:
        listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return any(line.split()[0] == "libcuda.so" for line in listing.splitlines() if line.strip())


@pytest.fixture(scope="session")
def compile_cache(tmp_path_factory):
    """Point Inductor's and Triton's caches into tmp: their defaults need a user name and a writable HOME,
    which an arbitrary container uid may lack."""
    base = tmp_path_factory.mktemp("compile-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCHINDUCTOR_CACHE_DIR", str(base / "inductor"))
        patch.setenv("TRITON_CACHE_DIR", str(base / "triton"))
        yield


@pytest.mark.usefixtures("compile_cache")
@pytest.mark.parametrize("device_type", ["cpu", "cuda"])
def test_torch_compile_matches_eager(device_type, request, flavour):
    """A compiled MLP gives the eager output, where this interpreter and a compiler allow torch.compile: the devel
    flavour must have the compiler (a missing one fails there); the runtime flavour has none and says so."""
    device = torch.device("cpu") if device_type == "cpu" else request.getfixturevalue("cuda_devices")[0]
    torch.manual_seed(0)
    model = make_classifier().to(device).eval()
    try:
        compiled = torch.compile(model)  # compiles lazily, on the first call
    except RuntimeError as error:  # raised up front where dynamo does not support this Python
        pytest.skip(f"torch.compile is not supported here: {error}")
    reason = compiler_missing_reason(device)
    if reason and flavour == "devel" and device.type == "cpu":
        pytest.fail(f"the {flavour} flavour must compile torch.compile's kernels, but: {reason}")
    if reason:
        pytest.skip(f"{reason} (torch.compile needs the devel flavour)" if flavour == "runtime" else reason)
    inputs = torch.randn(64, 2, generator=torch.Generator().manual_seed(1)).to(device)
    with torch.no_grad():
        torch.testing.assert_close(compiled(inputs), model(inputs), rtol=1e-4, atol=1e-5)
