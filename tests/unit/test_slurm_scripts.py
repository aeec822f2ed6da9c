"""scripts/slurm.sh and deploy/slurm/train.sbatch parse, pass shellcheck where it is installed, and refuse to run
where they cannot (the cluster itself is tests/integration/test_slurm.py's)."""
import os
import shutil
import subprocess

import pytest

from tests.helpers.cli import ROOT
from tests.helpers.fake_commands import command_folder

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


FAKES = {
    # Installed, and quick: the daemons exit at once, munged's socket is made by the fake setpriv that "runs" it.
    "slurmctld": "exit 0", "slurmd": "exit 0", "munged": "exit 0", "chown": "exit 0",
    "setpriv": 'for arg; do case $arg in --socket=*) socket=${arg#*=};; esac; done\n'
               'exec python3 -c "import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])" "$socket"',
    "sinfo": "printf 'n1=idle\\nn2=idle\\n'", "squeue": "exit 0", "scancel": "exit 0",
}


@pytest.fixture()
def cluster_host(tmp_path):
    """Fake Slurm and munge binaries ahead of the real PATH, and a state, log and system-config path of a test's own."""
    bin_dir = command_folder(tmp_path / "bin", {name: f"#!/bin/bash\n{body}\n" for name, body in FAKES.items()})
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "TORCHDEV_SLURM_STATE": str(tmp_path / "state"),
           "TORCHDEV_SLURM_LOGS": str(tmp_path / "logs"),
           "TORCHDEV_SLURM_SYSTEM_CONF": str(tmp_path / "etc" / "slurm.conf"), "TORCHDEV_SLURM_PORT": "29817"}
    return tmp_path, env


def slurm(env, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPTS[0]), command], env=env, capture_output=True, text=True, timeout=60,
                          check=False)


@pytest.mark.parametrize("command", ["stop", "start"])
def test_a_state_folder_the_script_did_not_make_is_refused_and_left_intact(cluster_host, command):
    tmp_path, env = cluster_host
    state = tmp_path / "state"
    (state / "keep").mkdir(parents=True)
    bystander = subprocess.Popen(["sleep", "60"])  # named by a pid file in that folder: it must not be stopped
    (state / "slurmctld.pid").write_text(f"{bystander.pid}\n")
    try:
        result = slurm(env, command)
        assert bystander.poll() is None, "a process named by the foreign folder's pid file was stopped"
    finally:
        bystander.kill()
        bystander.wait()
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"slurm: {state} was not made by this script (no made-by-torchdev-slurm in it): left as it is; set "
        "TORCHDEV_SLURM_STATE to a folder that does not exist yet (start makes it), or remove this one yourself"]
    assert sorted(path.name for path in state.iterdir()) == ["keep", "slurmctld.pid"]
    assert not (tmp_path / "logs").exists() and not (tmp_path / "etc").exists()


@pytest.mark.skipif(os.getuid() != 0, reason="start checks for root first")
def test_stop_removes_the_state_folder_start_made_and_leaves_the_logs(cluster_host):
    tmp_path, env = cluster_host
    started = slurm(env, "start")
    assert started.returncode == 0 and started.stdout.strip() == "started", started.stderr
    state = tmp_path / "state"
    assert (state / "made-by-torchdev-slurm").is_file() and (state / "slurm.conf").is_file()
    assert (tmp_path / "etc" / "slurm.conf").resolve() == state / "slurm.conf"
    stopped = slurm(env, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not state.exists() and not (tmp_path / "etc" / "slurm.conf").is_symlink()
    assert (tmp_path / "logs").is_dir()
    assert stopped.stderr.strip().endswith(f"stopped; state {state} removed (logs stay in {tmp_path / 'logs'})")


BATCH_FAKES = {
    # The batch script's view of a job on nodes n1 and n2, this machine being n1: scontrol's node list and NodeAddr,
    # getent's addresses (FAKE_HOSTS: name=address,...), this machine's own (FAKE_OWN), and an srun that runs nothing.
    "scontrol": 'case "$1 $2" in "show hostnames") printf "n1\\nn2\\n" ;; '
                '"show node") echo "NodeName=$3 Arch=x86_64 NodeAddr=$FAKE_NODEADDR NodeHostName=$3" ;; esac',
    "getent": 'IFS=, read -ra pairs <<<"$FAKE_HOSTS"; for pair in "${pairs[@]}"; do '
              '[ "${pair%%=*}" = "$2" ] && echo "${pair#*=}      STREAM $2"; done; exit 0',
    "hostname": 'case "${1:-}" in -I) echo "$FAKE_OWN" ;; *) echo n1 ;; esac',
    "srun": "exit 0",
}


def batch(tmp_path, **variables: str) -> subprocess.CompletedProcess:
    """The sbatch script's batch part as Slurm runs it on the job's first node, in a dry run."""
    bin_dir = command_folder(tmp_path / "bin", {name: f"#!/bin/bash\n{body}\n" for name, body in BATCH_FAKES.items()})
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SLURM_", "TORCHDEV_"))}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", SLURM_JOB_ID="4321", SLURM_JOB_NODELIST="n[1-2]", SLURM_NNODES="2",
               TORCHDEV_WORKDIR=str(ROOT), TORCHDEV_DRY_RUN="1", FAKE_NODEADDR="n1",
               FAKE_HOSTS="n1=10.1.0.1", FAKE_OWN="10.1.0.1 172.17.0.1")
    env.update(variables)
    return subprocess.run(["bash", str(SCRIPTS[1])], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
                          check=False)


def test_a_rendezvous_on_the_first_nodes_private_address_goes_ahead_without_a_word(tmp_path):
    result = batch(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "rendezvous c10d at n1:29721" in result.stdout and result.stderr == ""


def test_a_rendezvous_host_that_is_not_the_jobs_first_node_is_refused_naming_it(tmp_path):
    """Every node would be a client of a store someone else runs, and the store hands out pickled state."""
    result = batch(tmp_path, TORCHDEV_RDZV_HOST="store.example.org",
                   FAKE_HOSTS="n1=10.1.0.1,store.example.org=203.0.113.9")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == ("torchdev-slurm: TORCHDEV_RDZV_HOST=store.example.org (203.0.113.9) is not this job's "
                             "first node (n1), where the rendezvous store must run: unset it, or name an address of "
                             "n1\n")


def test_another_address_of_the_first_node_is_allowed(tmp_path):
    """E.g. its InfiniBand interface's, to keep the rendezvous off the management network."""
    result = batch(tmp_path, TORCHDEV_RDZV_HOST="172.17.0.1", FAKE_HOSTS="n1=10.1.0.1,172.17.0.1=172.17.0.1")
    assert result.returncode == 0 and result.stderr == "", result.stderr


@pytest.mark.parametrize("address, public", [("198.51.100.4", True), ("100.64.0.7", False), ("172.32.0.1", True),
                                             ("172.31.255.1", False), ("192.168.3.4", False), ("2001:db8::5", True),
                                             ("fd00::5", False), ("fe80::1", False)])
def test_a_public_rendezvous_address_is_warned_about_in_one_line(tmp_path, address, public):
    result = batch(tmp_path, FAKE_HOSTS=f"n1={address}", FAKE_OWN=address)
    assert result.returncode == 0
    expected = (f"torchdev-slurm: warning: the rendezvous host n1 is {address}, a public address: its store (port "
                "29721) and torch's other ports trust whoever connects; let only the job's nodes reach them "
                '(deploy/slurm/README.md, "What the ports expose")\n')
    assert result.stderr == (expected if public else "")
