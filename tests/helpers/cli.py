"""Running torchdev as a user does, and the rule for integration tests that cannot run here."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> None:
    """Skip locally, fail in CI: a CI run that skipped integration tests would prove nothing."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: integration tests must run, not skip)", pytrace=False)
    pytest.skip(reason)


def run_cli(*args: str, timeout: float = 1800, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a torchdev task exactly as a user would (`./dev ...`: torchdev.cli, from the repository root)."""
    return subprocess.run([sys.executable, "-m", "torchdev.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, check=False)
