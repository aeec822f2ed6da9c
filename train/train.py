"""Train a small model on synthetic data, alone or as one worker of torchrun.

    python train/train.py --task linreg|mlp|cnn [flags]      # single process
    torchrun --nproc-per-node 2 train/train.py --task mlp    # DDP, gloo on CPU / nccl on CUDA
    python train/train.py --task cnn --benchmark             # throughput only

See train/README.md for flags, output files, resume and signal behaviour.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Sequence

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from config import TrainConfig, parse_config
from distributed import DistContext, init_distributed, launched_by_torchrun
from peer_failure import peer_failure
from run_files import (
    append_metrics,
    checkpoint_path,
    keep_metrics_up_to,
    load_checkpoint,
    metrics_path,
    remove_run_files,
    remove_stale_temporaries,
    save_atomically,
)
from stop_signal import StopRequest
from training_tasks import TASKS, Task, make_datasets

SGD_MOMENTUM = 0.9
# metrics.jsonl fields that describe the epoch itself rather than the model.
EPOCH_BOOKKEEPING = ("epoch", "loss", "samples_per_s", "world_size", "wall_time_s", "time")


@dataclass(frozen=True)
class Setup:
    """The objects one run trains with, built identically on every rank."""

    config: TrainConfig
    ctx: DistContext
    task: Task
    model: nn.Module  # the plain module: evaluated and checkpointed
    train_model: nn.Module  # what the training step calls: DDP wrapper under torchrun, else `model`
    optimizer: torch.optim.Optimizer
    sampler: DistributedSampler
    loader: DataLoader
    held_out: TensorDataset


@dataclass(frozen=True)
class EpochResult:
    """What one pass over (this rank's share of) the training data produced."""

    loss: float  # mean per-sample loss over all ranks
    samples: int  # samples trained on, all ranks together
    seconds: float
    completed: bool  # every batch of the epoch was trained on
    stopped: bool  # a stop signal ended the loop


def log(ctx: DistContext, message: str) -> None:
    """Human-readable progress, from rank 0 only, flushed for `docker logs`."""
    if ctx.is_main:
        print(message, flush=True)


def emit_event(ctx: DistContext, record: dict[str, Any]) -> None:
    """One machine-readable JSON line on stdout (rank 0), for tests and scripts."""
    if ctx.is_main:
        print(json.dumps(record), flush=True)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so wall-clock timings mean something."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def capture_rng_state(device: torch.device) -> dict[str, torch.Tensor | None]:
    """Generator states worth restoring on resume (only this process's GPU, not every GPU)."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }


def restore_rng_state(rng: dict[str, torch.Tensor | None], device: torch.device) -> None:
    """Continue the random streams where the checkpointed run left them."""
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"], device)


def read_checkpoint_to_resume(config: TrainConfig) -> dict[str, Any] | None:
    """The checkpoint this run continues from, or None when starting over."""
    path = checkpoint_path(config.run_dir)
    if not config.resume or not path.exists():
        return None
    checkpoint = load_checkpoint(path)
    saved_task = checkpoint["args"]["task"]
    if saved_task != config.task:
        raise SystemExit(
            f"error: {path} belongs to task {saved_task!r}, not {config.task!r}; "
            "pass --no-resume or choose another --run-name"
        )
    return checkpoint


def build_setup(config: TrainConfig, ctx: DistContext, checkpoint: dict[str, Any] | None) -> Setup:
    """Data, model, optimizer and loader; checkpoint state is loaded before DDP wrapping."""
    task = TASKS[config.task]
    train_set, held_out = make_datasets(task, config.samples, config.seed)
    torch.manual_seed(config.seed)  # identical initial weights on every rank
    model = task.make_model().to(ctx.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=SGD_MOMENTUM)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        restore_rng_state(checkpoint["rng"], ctx.device)
    train_model: nn.Module = model
    if ctx.is_distributed:
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        train_model = DistributedDataParallel(model, device_ids=device_ids)
    # DistributedSampler also in single-process runs (one replica): the same
    # seed+epoch shuffle either way, so a resumed epoch sees the same order.
    sampler = DistributedSampler(
        train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=config.seed
    )
    loader = DataLoader(
        train_set, batch_size=config.batch_size, sampler=sampler, pin_memory=ctx.device.type == "cuda"
    )
    return Setup(config, ctx, task, model, train_model, optimizer, sampler, loader, held_out)


def train_step(setup: Setup, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """One optimisation step; returns the batch loss without forcing a GPU sync."""
    features = features.to(setup.ctx.device, non_blocking=True)
    targets = targets.to(setup.ctx.device, non_blocking=True)
    loss = setup.task.loss_fn(setup.train_model(features), targets)
    setup.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    setup.optimizer.step()
    return loss.detach()


def stop_requested_on_any_rank(ctx: DistContext, stop: StopRequest) -> bool:
    """Check for a stop signal on any rank, adopting it locally so all ranks stop alike.

    Called after every step; in a distributed run that is one tiny all-reduce.
    """
    signum = ctx.max_over_ranks(stop.signum or 0)
    if signum:
        stop.record(signum)
    return bool(signum)


def mean_over_ranks(ctx: DistContext, loss_sum: torch.Tensor, samples: int) -> tuple[float, int]:
    """Per-sample mean loss over every rank's samples, and the total sample count."""
    totals = torch.stack([loss_sum, torch.tensor(float(samples), dtype=torch.float64, device=ctx.device)])
    global_loss_sum, global_samples = ctx.sum_over_ranks(totals).tolist()
    return global_loss_sum / global_samples, int(global_samples)


def run_epoch(setup: Setup, epoch: int, stop: StopRequest) -> EpochResult:
    """Train over one epoch, stopping early (on every rank at once) if a signal arrived."""
    ctx, config = setup.ctx, setup.config
    setup.sampler.set_epoch(epoch)
    setup.train_model.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=ctx.device)  # stays on device: no per-step sync
    samples = 0
    steps_in_epoch = len(setup.loader)
    steps_done = 0
    stopped = False
    synchronize(ctx.device)
    started = time.perf_counter()
    for features, targets in setup.loader:
        loss = train_step(setup, features, targets)
        steps_done += 1
        loss_sum += loss.double() * len(targets)
        samples += len(targets)
        if config.log_every and steps_done % config.log_every == 0:
            running_loss, _ = mean_over_ranks(ctx, loss_sum, samples)
            log(ctx, f"epoch {epoch} step {steps_done}/{steps_in_epoch} loss {running_loss:.4f}")
        if stop_requested_on_any_rank(ctx, stop):
            stopped = True
            break
    synchronize(ctx.device)
    seconds = time.perf_counter() - started
    mean_loss, total_samples = mean_over_ranks(ctx, loss_sum, samples)
    return EpochResult(
        loss=mean_loss,
        samples=total_samples,
        seconds=seconds,
        completed=steps_done == steps_in_epoch,
        stopped=stopped,
    )


@torch.no_grad()
def evaluate(setup: Setup) -> dict[str, float]:
    """Task metrics on the held-out set (computed on every rank; the weights are identical)."""
    setup.model.eval()
    features, targets = (tensor.to(setup.ctx.device) for tensor in setup.held_out.tensors)
    return setup.task.summarize(setup.model, features, targets)


def save_checkpoint(setup: Setup, completed_epochs: int, last_metrics: dict[str, Any] | None) -> None:
    """Atomically write the resumable state (rank 0 only; DDP keeps all ranks' weights equal)."""
    if not setup.ctx.is_main:
        return
    state = {
        "epoch": completed_epochs,
        "model": setup.model.state_dict(),
        "optimizer": setup.optimizer.state_dict(),
        "rng": capture_rng_state(setup.ctx.device),
        "args": asdict(setup.config),
        "metrics": last_metrics,
        "torch_version": str(torch.__version__),
    }
    save_atomically(state, checkpoint_path(setup.config.run_dir))


def format_metrics(metrics: dict[str, Any]) -> str:
    """Task metrics for a log line, e.g. "slope 2.9987 bias 2.0011"."""
    shown = ("slope", "bias", "accuracy", "val_loss")
    return " ".join(f"{name} {metrics[name]:.4f}" for name in shown if name in metrics)


def finish_epoch(setup: Setup, epoch: int, result: EpochResult) -> dict[str, Any]:
    """Evaluate, then record the epoch: metrics line first, checkpoint second."""
    config, ctx = setup.config, setup.ctx
    metrics = {
        "epoch": epoch,
        "loss": result.loss,
        "samples_per_s": result.samples / result.seconds,
        "world_size": ctx.world_size,
        "wall_time_s": result.seconds,
        "time": time.time(),
        **evaluate(setup),
    }
    if ctx.is_main:
        append_metrics(metrics_path(config.run_dir), metrics)
    save_checkpoint(setup, epoch, metrics)
    log(
        ctx,
        f"epoch {epoch}/{config.epochs} loss {result.loss:.4f} {format_metrics(metrics)} "
        f"samples/s {metrics['samples_per_s']:,.0f} ({result.seconds:.2f}s)",
    )
    return metrics


def prepare_run_dir(config: TrainConfig, ctx: DistContext, checkpoint: dict[str, Any] | None) -> None:
    """Create the run directory and make its files agree with where training starts."""
    if not ctx.is_main:
        return
    config.run_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(config.run_dir)
    if not config.resume:
        remove_run_files(config.run_dir)
    elif checkpoint is not None:
        keep_metrics_up_to(metrics_path(config.run_dir), checkpoint["epoch"])


def parameter_digest(model: nn.Module) -> str:
    """SHA-256 of the model's parameters, bit for bit (name, dtype, shape and bytes, in order)."""
    digest = hashlib.sha256()
    for name, parameter in model.state_dict().items():
        tensor = parameter.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def require_identical_parameters(ctx: DistContext, digests: list[str]) -> None:
    """DDP keeps every replica's weights equal bit for bit; ranks that ended apart trained different models."""
    if len(set(digests)) > 1:
        raise SystemExit(f"error: the ranks ended with different parameters ({len(set(digests))} distinct digests "
                         "over ranks): DDP's gradients were not the same everywhere" if ctx.is_main else 1)


def done_event(
    setup: Setup, completed: int, last_metrics: dict[str, Any], rates: list[float], started: float,
    digests: list[str] | None = None,
) -> dict[str, Any]:
    """The final JSON line: the last epoch's metrics plus how this invocation went (with every rank's parameter
    digest, which tests and users can compare)."""
    task_metrics = {k: v for k, v in last_metrics.items() if k not in EPOCH_BOOKKEEPING}
    return {
        "event": "done",
        "task": setup.config.task,
        "final_loss": last_metrics["loss"],
        "epochs": completed,
        "epochs_this_run": len(rates),
        "samples_per_s": sum(rates) / len(rates) if rates else None,
        **task_metrics,
        "world_size": setup.ctx.world_size,
        "device": str(setup.ctx.device),
        "total_time_s": time.perf_counter() - started,
        "run_dir": str(setup.config.run_dir),
        "parameter_digests": digests or [],
    }


def require_same_start(ctx: DistContext, config: TrainConfig, completed: int) -> None:
    """Every rank must resume from the same epoch, i.e. read the same checkpoint: on several nodes that needs a
    run directory they all share (compose and Slurm mount one /workspace). Otherwise ranks would train different
    epochs and hang in DDP; here they stop at once, saying why."""
    latest = ctx.max_over_ranks(completed)
    earliest = -ctx.max_over_ranks(-completed)
    if latest != earliest:
        raise SystemExit(
            f"error: the ranks see different checkpoints in {config.run_dir} (epochs {earliest} to {latest}): "
            "every node must see the same run directory (a shared --runs-dir), or pass --no-resume"
            if ctx.is_main else 1
        )


def run_training(config: TrainConfig, ctx: DistContext, stop: StopRequest) -> int:
    """Train from scratch or from the checkpoint up to --epochs; returns the exit status."""
    started = time.perf_counter()
    checkpoint = read_checkpoint_to_resume(config)
    prepare_run_dir(config, ctx, checkpoint)
    setup = build_setup(config, ctx, checkpoint)
    completed = checkpoint["epoch"] if checkpoint else 0
    require_same_start(ctx, config, completed)
    last_metrics = checkpoint["metrics"] if checkpoint else None
    log(ctx, f"task {config.task}: {setup.task.description}; device {ctx.device}, world size {ctx.world_size}, "
             f"torch {torch.__version__}, run dir {config.run_dir}")
    if completed >= config.epochs:
        log(ctx, f"checkpoint is already at epoch {completed} (--epochs {config.epochs}); nothing to do")
        emit_event(ctx, done_event(setup, completed, last_metrics, [], started))
        return 0
    if checkpoint:
        log(ctx, f"resuming from epoch {completed + 1} (checkpoint at epoch {completed})")
    rates: list[float] = []
    for epoch in range(completed + 1, config.epochs + 1):
        result = run_epoch(setup, epoch, stop)
        if result.completed:
            last_metrics = finish_epoch(setup, epoch, result)
            rates.append(last_metrics["samples_per_s"])
            completed = epoch
        if result.stopped and completed < config.epochs:
            return stop_training(setup, stop, epoch, completed, last_metrics)
    digests = ctx.gather(parameter_digest(setup.model))
    require_identical_parameters(ctx, digests)
    emit_event(ctx, done_event(setup, completed, last_metrics, rates, started, digests))
    return 0


def stop_training(
    setup: Setup, stop: StopRequest, epoch: int, completed: int, last_metrics: dict[str, Any] | None
) -> int:
    """Checkpoint after a stop signal and report it; the interrupted epoch is redone on resume."""
    ctx = setup.ctx
    if completed < epoch:
        save_checkpoint(setup, completed, last_metrics)
    ctx.barrier()  # peers must not exit (and make torchrun kill rank 0) before the save is done
    log(ctx, f"interrupted at epoch {epoch} by {stop.signal_name}, checkpoint saved "
             f"(last completed epoch: {completed}; a resumed run starts at epoch {completed + 1})")
    emit_event(ctx, {
        "event": "interrupted",
        "signal": stop.signal_name,
        "epoch": epoch,
        "completed_epochs": completed,
        "checkpoint": str(checkpoint_path(setup.config.run_dir)),
        "exit_status": stop.exit_status,
    })
    return stop.exit_status


def endless_batches(setup: Setup) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches across epoch boundaries, so --bench-steps is independent of --samples."""
    epoch = 0
    while True:
        setup.sampler.set_epoch(epoch)
        yield from setup.loader
        epoch += 1


def run_benchmark(config: TrainConfig, ctx: DistContext, stop: StopRequest) -> int:
    """Time a fixed number of ordinary training steps; writes no files."""
    setup = build_setup(config, ctx, checkpoint=None)
    setup.train_model.train()
    batches = endless_batches(setup)
    for _ in range(config.warmup_steps):
        train_step(setup, *next(batches))
    synchronize(ctx.device)
    started = time.perf_counter()
    samples = 0
    for _ in range(config.bench_steps):
        features, targets = next(batches)
        train_step(setup, features, targets)
        samples += len(targets)
        if stop_requested_on_any_rank(ctx, stop):
            log(ctx, f"benchmark interrupted by {stop.signal_name}")
            return stop.exit_status
    synchronize(ctx.device)
    seconds = time.perf_counter() - started
    total_samples = int(ctx.sum_over_ranks(torch.tensor([float(samples)], device=ctx.device)).item())
    emit_event(ctx, {
        "event": "benchmark",
        "task": config.task,
        "samples_per_s": total_samples / seconds,
        "steps": config.bench_steps,
        "warmup_steps": config.warmup_steps,
        "batch_size": config.batch_size,
        "samples": total_samples,
        "seconds": seconds,
        "world_size": ctx.world_size,
        "device": str(ctx.device),
        "threads": torch.get_num_threads(),
        "torch": str(torch.__version__),
    })
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, join torchrun's process group if any, run; leave at once after a clean run on several processes
    (DistContext.leave), else tear down."""
    config = parse_config(argv)
    stop = StopRequest().install()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        ctx = init_distributed(config.device, config.dist_timeout_s)
    except RuntimeError as error:
        exit_if_peer_failed(error)
        raise
    try:
        status = run_benchmark(config, ctx, stop) if config.benchmark else run_training(config, ctx, stop)
        ctx.leave(status)
        return status
    except RuntimeError as error:
        exit_if_peer_failed(error)
        raise
    finally:
        ctx.close()


def exit_if_peer_failed(error: RuntimeError) -> None:
    """When a collective failed because a peer went away, print one line naming it and exit 1 at once: the
    process group is broken, and tearing it down (`finally`) could wait on the dead peer."""
    line = peer_failure(str(error)) if launched_by_torchrun() else ""
    if line:
        print(line, file=sys.stderr, flush=True)
        sys.stdout.flush()
        # torchrun 2.0.1's agent, its workers failed and no restarts left, still waits in its exit barrier for every
        # node, the dead one included (300 s): stopping it ends this node's part of the job now.
        os.kill(os.getppid(), signal.SIGTERM)
        os._exit(1)


if __name__ == "__main__":
    sys.exit(main())
