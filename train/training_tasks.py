"""The three training tasks: synthetic data, model, loss and evaluation for each.

Every dataset is generated from a seed with its own torch.Generator, so each
rank of a distributed run (and each resumed run) sees exactly the same data
without downloading anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

TRUE_SLOPE = 3.0
TRUE_BIAS = 2.0
LINREG_NOISE_STD = 0.1

MLP_FEATURES = 16
MLP_CLASSES = 4

IMAGE_SIZE = 16
CNN_CLASSES = 4
STRIPE_PERIOD = 4
IMAGE_NOISE_STD = 1.2

HELD_OUT_MIN = 64
HELD_OUT_MAX = 4096

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TaskDefaults:
    """Hyperparameters that make a task converge quickly on two CPU cores."""

    epochs: int
    batch_size: int
    lr: float
    samples: int


@dataclass(frozen=True)
class Task:
    """Everything the generic training loop needs to know about one task."""

    name: str
    description: str
    defaults: TaskDefaults
    make_data: Callable[[int, torch.Generator], TensorDataset]
    make_model: Callable[[], nn.Module]
    loss_fn: LossFn
    summarize: Callable[[nn.Module, torch.Tensor, torch.Tensor], dict[str, float]]


def make_linreg_data(samples: int, generator: torch.Generator) -> TensorDataset:
    """The seed's regression problem, y = 3x + 2 + noise.

    The seed draws x = 10 * randn with unit noise, which makes plain SGD at its
    lr=0.01 oscillate instead of converge (the step times 2*E[x^2] is 2). Here
    x is unit-scale and the noise a tenth, the same signal-to-noise ratio.
    """
    x = torch.randn(samples, 1, generator=generator)
    noise = LINREG_NOISE_STD * torch.randn(samples, 1, generator=generator)
    return TensorDataset(x, TRUE_SLOPE * x + TRUE_BIAS + noise)


def make_blob_data(samples: int, generator: torch.Generator) -> TensorDataset:
    """Gaussian blobs around fixed random class centres: separable, so ≥95% is reachable."""
    centres = 1.5 * torch.randn(MLP_CLASSES, MLP_FEATURES, generator=generator)
    labels = torch.randint(0, MLP_CLASSES, (samples,), generator=generator)
    features = centres[labels] + torch.randn(samples, MLP_FEATURES, generator=generator)
    return TensorDataset(features, labels)


def make_pattern_images(samples: int, generator: torch.Generator) -> TensorDataset:
    """1x16x16 noisy images whose class is the pattern, not the pixel positions.

    Classes: horizontal stripes, vertical stripes, diagonal stripes and a
    checkerboard, each at a random phase, so a model has to learn local
    shapes (what convolutions are for) rather than memorise pixels.
    """
    labels = torch.randint(0, CNN_CLASSES, (samples,), generator=generator)
    row_phase = torch.randint(0, STRIPE_PERIOD, (samples, 1, 1), generator=generator)
    col_phase = torch.randint(0, STRIPE_PERIOD, (samples, 1, 1), generator=generator)
    axis = torch.arange(IMAGE_SIZE)
    rows = (axis.view(1, -1, 1) + row_phase) // (STRIPE_PERIOD // 2)
    cols = (axis.view(1, 1, -1) + col_phase) // (STRIPE_PERIOD // 2)
    patterns = torch.stack(
        [
            rows.expand(-1, -1, IMAGE_SIZE),
            cols.expand(-1, IMAGE_SIZE, -1),
            (axis.view(1, -1, 1) + axis.view(1, 1, -1) + row_phase) // (STRIPE_PERIOD // 2),
            rows + cols,
        ],
        dim=1,
    )
    chosen = patterns[torch.arange(samples), labels] % 2
    images = (2.0 * chosen - 1.0) + IMAGE_NOISE_STD * torch.randn(
        samples, IMAGE_SIZE, IMAGE_SIZE, generator=generator
    )
    return TensorDataset(images.unsqueeze(1).float(), labels)


def make_linreg_model() -> nn.Module:
    """The seed's model: a single Linear(1, 1)."""
    return nn.Linear(1, 1)


def make_mlp_model() -> nn.Module:
    """Two hidden layers: small enough to train in seconds, big enough to be an MLP."""
    return nn.Sequential(
        nn.Linear(MLP_FEATURES, 64),
        nn.ReLU(),
        nn.Linear(64, 64),
        nn.ReLU(),
        nn.Linear(64, MLP_CLASSES),
    )


def make_cnn_model() -> nn.Module:
    """Two conv blocks and a linear head for 16x16 single-channel images."""
    return nn.Sequential(
        nn.Conv2d(1, 8, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * (IMAGE_SIZE // 4) ** 2, CNN_CLASSES),
    )


def summarize_linreg(model: nn.Module, features: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Report what the seed cares about: the learned slope and bias, plus held-out loss."""
    return {
        "slope": model.weight.item(),
        "bias": model.bias.item(),
        "val_loss": F.mse_loss(model(features), targets).item(),
    }


def summarize_classifier(model: nn.Module, features: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Held-out accuracy: training loss alone does not show that a classifier works."""
    logits = model(features)
    return {
        "accuracy": (logits.argmax(dim=1) == labels).float().mean().item(),
        "val_loss": F.cross_entropy(logits, labels).item(),
    }


TASKS: dict[str, Task] = {
    "linreg": Task(
        name="linreg",
        description="linear regression y = 3x + 2 + noise (the seed's example)",
        defaults=TaskDefaults(epochs=10, batch_size=32, lr=0.01, samples=2048),
        make_data=make_linreg_data,
        make_model=make_linreg_model,
        loss_fn=F.mse_loss,
        summarize=summarize_linreg,
    ),
    "mlp": Task(
        name="mlp",
        description=f"MLP classifier, {MLP_CLASSES} Gaussian blobs in {MLP_FEATURES} dimensions",
        defaults=TaskDefaults(epochs=8, batch_size=64, lr=0.05, samples=4096),
        make_data=make_blob_data,
        make_model=make_mlp_model,
        loss_fn=F.cross_entropy,
        summarize=summarize_classifier,
    ),
    "cnn": Task(
        name="cnn",
        description=f"CNN classifier, {CNN_CLASSES} stripe/checker patterns on 1x{IMAGE_SIZE}x{IMAGE_SIZE} images",
        defaults=TaskDefaults(epochs=6, batch_size=64, lr=0.01, samples=4096),
        make_data=make_pattern_images,
        make_model=make_cnn_model,
        loss_fn=F.cross_entropy,
        summarize=summarize_classifier,
    ),
}


def make_datasets(task: Task, samples: int, seed: int) -> tuple[TensorDataset, TensorDataset]:
    """Train and held-out sets, identical on every rank.

    Both come from one draw so they share the same underlying problem (for
    example the same blob centres). The held-out part is a quarter as large,
    capped so that evaluating it in one forward pass stays cheap.
    """
    held_out_samples = min(max(samples // 4, HELD_OUT_MIN), HELD_OUT_MAX)
    everything = task.make_data(samples + held_out_samples, torch.Generator().manual_seed(seed))
    train = TensorDataset(*(tensor[:samples] for tensor in everything.tensors))
    held_out = TensorDataset(*(tensor[samples:] for tensor in everything.tensors))
    return train, held_out
