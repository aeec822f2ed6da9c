"""Smoke summaries as the suite writes them (smoke/smoke_contract.py), for the tests of what reads them back."""
from __future__ import annotations

from pathlib import Path

from smoke.smoke_contract import FAILED, PASSED, CheckResult, SmokeSummary, write_summary


def check(check: str, outcome: str, reason: str = "", *, index: int = 0) -> CheckResult:
    """One row of test_<check>.py (test t<index>)."""
    return CheckResult(check, f"test_{check}.py::t{index}", outcome, reason, 0.5)


def summary(*rows: CheckResult, image_id: str | None = None, variant: str = "cu118") -> SmokeSummary:
    return SmokeSummary(variant=variant, torch="2.0.1+cu118", python="3.10.13", checks=rows, image_id=image_id)


def write_counts(path: Path, *, passed: int, failed: int = 0, image_id: str | None = None) -> Path:
    """A summary file with `passed` and `failed` environment checks, as `./dev smoke` leaves it for the image."""
    rows = [check("environment", PASSED, index=i) for i in range(passed)]
    rows += [check("environment", FAILED, "expected CUDA 11.8, got 11.7", index=passed + i) for i in range(failed)]
    write_summary(path, summary(*rows, image_id=image_id))
    return path
