"""Command-line flags and the typed configuration they resolve to."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from training_tasks import TASKS


@dataclass(frozen=True)
class TrainConfig:
    """One run's settings after per-task defaults have been filled in.

    Stored in every checkpoint (as a plain dict) so a run can be traced back
    to the flags that produced it.
    """

    task: str
    epochs: int
    batch_size: int
    lr: float
    samples: int
    seed: int
    runs_dir: str
    run_name: str
    device: str
    resume: bool
    log_every: int
    threads: int
    dist_timeout_s: int
    benchmark: bool
    bench_steps: int
    warmup_steps: int

    @property
    def run_dir(self) -> Path:
        """Where metrics.jsonl and checkpoint.pt of this run live."""
        return Path(self.runs_dir) / self.run_name


def task_defaults_help() -> str:
    """Epilog listing each task's defaults, so --help answers "what will this do"."""
    lines = ["per-task defaults (used when a flag is not given):"]
    for task in TASKS.values():
        d = task.defaults
        lines.append(
            f"  {task.name:7s} epochs={d.epochs} batch-size={d.batch_size} lr={d.lr} "
            f"samples={d.samples}  - {task.description}"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """All flags; those whose default depends on the task default to None."""
    parser = argparse.ArgumentParser(
        prog="train/train.py",
        description="Train a small model on synthetic data; single process or under torchrun.",
        epilog=task_defaults_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--task", choices=sorted(TASKS), default="linreg", help="what to train (default: linreg)")
    parser.add_argument("--epochs", type=int, help="total epochs to reach, counting resumed ones")
    parser.add_argument("--batch-size", type=int, help="samples per step on each process")
    parser.add_argument("--lr", type=float, help="SGD learning rate (momentum 0.9)")
    parser.add_argument("--samples", type=int,
                        help="training-set size; a held-out set a quarter as large (64 to 4096) is drawn too")
    parser.add_argument("--seed", type=int, default=0, help="seed for data, model init and shuffling (default: 0)")
    parser.add_argument("--runs-dir", default="runs", help="parent directory of run directories (default: runs)")
    parser.add_argument("--run-name", help="run directory name under --runs-dir (default: the task name)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto picks cuda when available (default: auto)")
    parser.add_argument("--no-resume", dest="resume", action="store_false",
                        help="ignore and delete an existing checkpoint and metrics, start from epoch 1")
    parser.add_argument("--log-every", type=int, default=0,
                        help="also log the running loss every N steps; 0 logs once per epoch (default: 0)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads per process; 0 keeps torch's default, i.e. OMP_NUM_THREADS "
                             "or one per core (default: 1, fastest and steadiest for models this small)")
    parser.add_argument("--dist-timeout-s", type=int, default=300,
                        help="timeout for process-group setup and collectives under torchrun (default: 300)")
    parser.add_argument("--benchmark", action="store_true",
                        help="time --bench-steps training steps, print one JSON line, write no files")
    parser.add_argument("--bench-steps", type=int, default=500, help="timed steps in --benchmark (default: 500)")
    parser.add_argument("--warmup-steps", type=int, default=20,
                        help="untimed steps before timing in --benchmark (default: 20)")
    return parser


def parse_config(argv: Sequence[str] | None = None) -> TrainConfig:
    """Parse flags, fill task defaults and reject values that cannot work."""
    parser = build_parser()
    args = parser.parse_args(argv)
    defaults = TASKS[args.task].defaults
    config = TrainConfig(
        task=args.task,
        epochs=defaults.epochs if args.epochs is None else args.epochs,
        batch_size=defaults.batch_size if args.batch_size is None else args.batch_size,
        lr=defaults.lr if args.lr is None else args.lr,
        samples=defaults.samples if args.samples is None else args.samples,
        seed=args.seed,
        runs_dir=args.runs_dir,
        run_name=args.run_name or args.task,
        device=args.device,
        resume=args.resume,
        log_every=args.log_every,
        threads=args.threads,
        dist_timeout_s=args.dist_timeout_s,
        benchmark=args.benchmark,
        bench_steps=args.bench_steps,
        warmup_steps=args.warmup_steps,
    )
    for name in ("epochs", "batch_size", "samples", "bench_steps"):
        if getattr(config, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("log_every", "threads", "warmup_steps"):
        if getattr(config, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must not be negative")
    if config.lr <= 0:
        parser.error("--lr must be positive")
    if config.dist_timeout_s < 1:
        parser.error("--dist-timeout-s must be at least 1")
    if Path(config.run_name).name != config.run_name or config.run_name in (".", ".."):
        parser.error("--run-name must be a plain directory name, not a path")
    return config
