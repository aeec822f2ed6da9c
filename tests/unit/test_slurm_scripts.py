"""scripts/slurm.sh and deploy/slurm/train.sbatch parse, pass shellcheck where it is installed, and refuse to run
where they cannot (the cluster itself is tests/integration/test_slurm.py's)."""
import os
import shutil
import subprocess

import pytest

from tests.helpers.cli import ROOT

SCRIPTS = [ROOT / "scripts" / "slurm.sh", ROOT / "deploy" / "slurm" / "train.sbatch"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_parses(script):
    subprocess.run(["bash", "-n", str(script)], check=True)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_is_clean():
    result = subprocess.run(["shellcheck", *map(str, SCRIPTS)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def test_the_sbatch_script_outside_a_job_says_how_to_submit():
    env = {key: value for key, value in os.environ.items() if not key.startswith("SLURM_")}
    result = subprocess.run(["bash", str(SCRIPTS[1])], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert "not in a Slurm job: submit with sbatch" in result.stderr


def test_slurm_sh_usage():
    result = subprocess.run(["bash", str(SCRIPTS[0]), "restart"], capture_output=True, text=True, check=False)
    assert (result.returncode, result.stderr.strip()) == (2, f"usage: {SCRIPTS[0]} start | stop | status")
