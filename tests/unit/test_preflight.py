"""train/preflight.py without torch: the torchrun parser, each check with fakes for DNS, sockets, /dev/shm and
interfaces, the waits on real loopback sockets, and the exec into torchrun with a stand-in torchrun on PATH."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import pytest

from tests.helpers.cli import ROOT
from tests.helpers.fake_commands import ahead_of_path, command_folder
from tests.helpers.torchrun_cases import ACCEPTED, REFUSED
from train import preflight as pf

IfAddr = pf.IfAddr
MIB = 2**20


def launch(*args: str, env: dict | None = None):
    return pf.parse_torchrun([*args, "train/train.py", "--task", "mlp"], env or {})


class FakeClock:
    """Time that moves only when slept through, so waits of minutes take no time."""

    def __init__(self):
        self.t = 1000.0
        self.slept = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds
        self.slept += seconds


@pytest.fixture()
def clock():
    fake = FakeClock()
    return fake, pf.Clock(now=fake.now, sleep=fake.sleep)


@pytest.fixture()
def machine(monkeypatch):
    """This node: eth0 at 10.0.0.5, docker0 and a compose bridge, no GPU; DNS from a dict."""
    dns: dict[str, tuple[str, ...]] = {"node0": ("10.0.0.1",), "node1": ("10.0.0.5",)}
    interfaces = (IfAddr("lo", "127.0.0.1"), IfAddr("eth0", "10.0.0.5"), IfAddr("docker0", "172.17.0.1"),
                  IfAddr("br-1a2b3c", "172.18.0.1"), IfAddr("lo", "::1"))
    monkeypatch.setattr(pf, "interface_addresses", lambda: interfaces)
    monkeypatch.setattr(pf, "own_names", lambda: {"node1"})
    monkeypatch.setattr(pf, "resolve", lambda host: dns.get(host, (host,) if host[0].isdigit() else ()))
    monkeypatch.setattr(pf, "answers", lambda host, port, timeout: True)
    monkeypatch.setattr(pf, "nvidia_device_files", lambda: [])
    monkeypatch.setattr(pf, "shm_bytes", lambda path=pf.SHM: 2 * pf.GIB)
    monkeypatch.setattr(pf, "route_source", lambda address: "10.0.0.5")
    monkeypatch.setattr(pf, "advice", lambda launch, env, processes: [])
    return dns


# --- parsing torchrun's command line -----------------------------------------------------------------------------

def test_dash_and_underscore_spellings_read_the_same():
    dashed = launch("--nnodes=2", "--node-rank=1", "--nproc-per-node=4", "--rdzv-backend=c10d",
                    "--rdzv-endpoint=node0:29400", "--rdzv-conf=join_timeout=30")
    underscored = launch("--nnodes", "2", "--node_rank", "1", "--nproc_per_node", "4", "--rdzv_backend", "c10d",
                         "--rdzv_endpoint", "node0:29400", "--rdzv_conf", "join_timeout=30")
    assert dashed == underscored
    assert (dashed.min_nodes, dashed.max_nodes, dashed.node_rank, dashed.nproc_per_node) == (2, 2, 1, "4")
    assert (dashed.host, dashed.port, dashed.timeout_s, dashed.script_args) == ("node0", 29400, 30.0,
                                                                               ("--task", "mlp"))


@pytest.mark.parametrize("args, expected", [
    (["--nnodes", "1:4", "--rdzv-backend", "c10d", "--rdzv-endpoint", "head"], (1, 4, "c10d", "head", 29400)),
    (["--nnodes", "2", "--master-addr", "m", "--master-port", "1234"], (2, 2, "static", "m", 1234)),
    (["--nnodes", "2"], (2, 2, "static", "127.0.0.1", 29500)),
    (["--nnodes", "2", "--rdzv-endpoint", "x:5", "--master-addr", "m"], (2, 2, "static", "x", 5)),
    (["--rdzv-backend", "c10d", "--rdzv-endpoint", "[fd00::1]:7"], (1, 1, "c10d", "fd00::1", 7)),
    (["--standalone", "--nnodes", "1", "--rdzv-endpoint", "elsewhere:1"], (1, 1, "c10d", "localhost", 29400)),
])
def test_nodes_backend_and_endpoint_as_torchrun_reads_them(args, expected):
    found = launch(*args)
    assert (found.min_nodes, found.max_nodes, found.rdzv_backend, found.host, found.port) == expected


def test_standalone_and_single_node_jobs_are_not_multi_node():
    assert not launch("--standalone", "--nproc-per-node", "2").multi_node
    assert not launch("--nnodes", "1").multi_node
    assert launch("--nnodes", "1:2", "--rdzv-backend", "c10d", "--rdzv-endpoint", "h").multi_node


def test_flags_left_out_come_from_pet_variables_as_in_torchrun():
    found = launch("--node-rank", "1", env={"PET_NNODES": "3", "PET_NODE_RANK": "2", "PET_STANDALONE": "0"})
    assert (found.max_nodes, found.node_rank, found.standalone) == (3, 1, False)
    assert launch(env={"PET_STANDALONE": "1"}).standalone


@pytest.mark.parametrize("argv, env", REFUSED)
def test_what_torchrun_refuses_is_refused(argv, env):
    """tests/integration/test_torchrun_model.py checks that torch 2.0.1 refuses each of these too."""
    with pytest.raises(pf.PreflightUsage):
        pf.parse_torchrun(argv, env)


@pytest.mark.parametrize("argv, env", ACCEPTED)
def test_what_torchrun_accepts_is_read_up_to_the_script_and_the_rest_is_the_scripts(argv, env):
    """And that torch reads each of these as the model does."""
    launch = pf.parse_torchrun(argv, env)
    assert [launch.script, *launch.script_args] == argv[argv.index(launch.script):]


def test_the_timeout_is_the_rendezvous_timeout_unless_overridden():
    assert launch("--rdzv-conf", "join_timeout=30,read_timeout=5").timeout_s == 30
    assert launch("--rdzv-backend", "static", "--rdzv-conf", "timeout=45").timeout_s == 45
    assert launch().timeout_s == pf.DEFAULT_TIMEOUT_S == 600
    assert pf.timeout_s(launch("--rdzv-conf", "join_timeout=30"), {"TORCHDEV_RDZV_TIMEOUT": "7"}) == 7
    with pytest.raises(pf.PreflightUsage, match="TORCHDEV_RDZV_TIMEOUT=soon"):
        pf.timeout_s(launch(), {"TORCHDEV_RDZV_TIMEOUT": "soon"})


def test_the_preflights_own_arguments_come_before_torchrun():
    assert pf.split_command(["--peers", "a, b,", "torchrun", "--nnodes", "2", "x.py"], {}) == (
        ["a", "b"], ["torchrun", "--nnodes", "2", "x.py"])
    assert pf.split_command(["/opt/venv/bin/torchrun", "x.py", "--peers", "z"], {"TORCHDEV_PEERS": "n0,n1"}) == (
        ["n0", "n1"], ["/opt/venv/bin/torchrun", "x.py", "--peers", "z"])
    with pytest.raises(pf.PreflightUsage, match="usage"):
        pf.split_command(["python", "train/train.py"], {})


# --- the checks, one at a time -----------------------------------------------------------------------------------

def test_shm_below_1_gib_with_several_processes_says_how_to_grow_it():
    problem = pf.shm_problem(64 * MIB, 2)
    assert problem.startswith("/dev/shm is 64 MiB, below 1 GiB, and this container runs 2 processes")
    assert "--shm-size=8g" in problem and "TORCHDEV_SHM_SIZE=8g" in problem and "medium: Memory" in problem
    assert "ipc" not in problem, "no advice to share the host's IPC namespace"
    assert "\n" not in problem
    assert pf.shm_problem(pf.GIB, 8) == ""
    assert pf.shm_problem(64 * MIB, 1) == ""
    assert "does not exist" in pf.shm_problem(None, 2)


@pytest.mark.parametrize("nproc, gpus, cpus, expected", [
    ("4", 0, 2, 4), ("cpu", 8, 16, 16), ("gpu", 8, 16, 8), ("auto", 8, 16, 8), ("auto", 0, 16, 16)])
def test_local_processes_as_torchrun_counts_them(nproc, gpus, cpus, expected):
    assert pf.local_processes(nproc, gpus, cpus) == expected


@pytest.mark.parametrize("env, expected", [
    ({}, 2), ({"CUDA_VISIBLE_DEVICES": "0"}, 1), ({"CUDA_VISIBLE_DEVICES": ""}, 0),
    ({"CUDA_VISIBLE_DEVICES": "-1"}, 0), ({"CUDA_VISIBLE_DEVICES": "0,-1,1"}, 1),
    ({"CUDA_VISIBLE_DEVICES": "GPU-3b1d,GPU-77aa"}, 2),
])
def test_gpus_are_the_visible_devices_else_the_device_files(env, expected):
    files = ["/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-caps"]
    assert pf.gpu_count(env, files) == expected


@pytest.mark.parametrize("args, host_addresses, hosting", [
    (["--rdzv-backend", "static", "--node-rank", "0"], (), True),
    (["--rdzv-backend", "static", "--node-rank", "1", "--master-addr", "node1"], ("10.0.0.5",), False),
    (["--rdzv-backend", "c10d", "--rdzv-endpoint", "localhost:1"], (), True),
    (["--rdzv-backend", "c10d", "--rdzv-endpoint", "127.0.0.2:1"], (), True),
    (["--rdzv-backend", "c10d", "--rdzv-endpoint", "node1:1"], (), True),
    (["--rdzv-backend", "c10d", "--rdzv-endpoint", "head:1"], ("10.0.0.5",), True),
    (["--rdzv-backend", "c10d", "--rdzv-endpoint", "head:1"], ("10.0.0.1",), False),
    (["--rdzv-backend", "c10d", "--rdzv-endpoint", "head:1", "--rdzv-conf", "is_host=yes"], ("10.0.0.1",), True),
    (["--rdzv-backend", "c10d", "--rdzv-endpoint", "127.0.0.1:1", "--rdzv-conf", "is_host=0"], (), False),
])
def test_who_hosts_the_rendezvous(args, host_addresses, hosting):
    assert pf.is_rendezvous_host(launch(*args), host_addresses, {"node1"}, {"10.0.0.5"}) is hosting


@pytest.mark.parametrize("names, family, expected", [
    (["lo", "eth0", "docker0", "br-1a2b"], None, "eth0"),
    (["lo", "br-1a2b", "eth0"], None, "br-1a2b"),  # NCCL leaves out docker* and lo, not br-*
    (["lo", "eth0", "ib0"], None, "ib0"),
    (["lo", "docker0"], None, "docker0"),
    (["lo"], None, "lo"),
    ([], None, None),
])
def test_ncclss_own_choice_of_interface(names, family, expected):
    interfaces = [IfAddr(name, f"10.0.{i}.1") for i, name in enumerate(names)]
    assert pf.nccl_default_interface(interfaces, family) == expected


def test_nccl_skips_ipv6_loopback_and_honours_the_socket_family():
    interfaces = [IfAddr("lo", "::1"), IfAddr("eth0", "10.0.0.5"), IfAddr("eth1", "fd00::5")]
    assert pf.nccl_default_interface(interfaces) == "eth0"
    assert pf.nccl_default_interface(interfaces, "AF_INET6") == "eth1"
    assert pf.nccl_default_interface([IfAddr("lo", "::1")], "AF_INET6") is None


INTERFACES = [IfAddr("lo", "127.0.0.1"), IfAddr("eth0", "10.0.0.5"), IfAddr("br-1a2b", "172.18.0.1")]


@pytest.mark.parametrize("route, pick, says", [
    ("lo", "eth0", "node0 is reached through lo (loopback), which does not reach other machines, so NCCL traffic "
                   "between nodes would fail: set NCCL_SOCKET_IFNAME=eth0"),
    ("br-1a2b", "eth0", "node0 is reached through br-1a2b (a docker bridge)"),
    ("eth0", "br-1a2b", "NCCL would pick br-1a2b (a docker bridge) for traffic between nodes, but node0 is reached "
                        "through eth0: set NCCL_SOCKET_IFNAME=eth0"),
    (None, "br-1a2b", "NCCL would pick br-1a2b (a docker bridge) for traffic between nodes: "
                      "set NCCL_SOCKET_IFNAME=eth0"),
    ("eth0", "eth0", ""), ("eth0", "ens5", ""), (None, "eth0", ""),
])
def test_nccl_on_loopback_or_a_docker_bridge_names_the_interface_to_set(route, pick, says):
    problem = pf.nccl_interface_problem("node0", route, pick, INTERFACES)
    assert problem.startswith(says) if says else problem == ""


@pytest.mark.parametrize("args, env, gpus, expected", [
    (["--nnodes", "2"], {}, 8, True),
    (["--nnodes", "2"], {}, 0, False),
    (["--nnodes", "1"], {}, 8, False),
    (["--standalone"], {}, 8, False),
    (["--nnodes", "2"], {"NCCL_SOCKET_IFNAME": "eth0"}, 8, False),
])
def test_the_nccl_check_runs_only_for_gpus_across_nodes(args, env, gpus, expected):
    assert pf.uses_nccl_across_nodes(launch(*args), env, gpus) is expected
    cpu = pf.parse_torchrun([*args, "train/train.py", "--device", "cpu"], env)
    assert pf.uses_nccl_across_nodes(cpu, env, gpus) is False
    assert pf.uses_nccl_across_nodes(pf.parse_torchrun([*args, "t.py", "--device=cpu"], env), env, gpus) is False


# --- the waits ---------------------------------------------------------------------------------------------------

C10D_WORKER = ["--nnodes", "2", "--nproc-per-node", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", "node0:29400"]


def test_a_host_that_resolves_late_is_waited_for(machine, clock, monkeypatch):
    fake, real = clock
    lookups = []

    def resolve(host):
        lookups.append(host)
        return ("10.0.0.1",) if lookups.count("node0") > 3 else ()
    monkeypatch.setattr(pf, "resolve", resolve)
    assert pf.network_problem(launch(*C10D_WORKER), [], 60, {}, real) == ""
    assert fake.slept == pytest.approx(3)


def test_a_host_that_never_resolves_fails_at_the_timeout(machine, clock):
    fake, real = clock
    problem = pf.network_problem(launch(*C10D_WORKER[:-1], "nowhere:29400"), [], 90, {}, real)
    assert problem.startswith("the rendezvous host nowhere does not resolve (tried for 90 s)")
    assert fake.slept == pytest.approx(90)


def test_peers_that_never_resolve_are_named_and_this_node_is_left_out(machine, clock, capsys):
    fake, real = clock
    del machine["node1"]  # this node's own name need not resolve (a container's hostname often does not)
    problem = pf.network_problem(launch(*C10D_WORKER), ["node0", "node1", "node2", "node3"], 30, {}, real)
    assert problem.startswith("peer nodes node2, node3 did not resolve within 30 s: not started, or stopped")
    assert fake.slept == pytest.approx(30)
    assert "waiting up to 30 s for peers node2, node3 to resolve" in capsys.readouterr().err


def test_a_peer_that_arrives_before_the_deadline_passes(machine, clock):
    fake, real = clock
    original = pf.resolve

    def later(host):
        if host == "node2" and fake.t < 1010:
            return ()
        return original(host) if host != "node2" else ("10.0.0.2",)
    pf.resolve = later
    try:
        assert pf.network_problem(launch(*C10D_WORKER), ["node2"], 30, {}, real) == ""
    finally:
        pf.resolve = original
    assert 10 <= fake.slept < 12


@pytest.fixture()
def listening():
    """A real listening TCP socket on loopback, and its port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server.getsockname()[1]
    server.close()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_answers_on_real_loopback_sockets(listening):
    assert pf.answers("127.0.0.1", listening, 1)
    assert not pf.answers("127.0.0.1", closed_port(), 1)


def worker_of(port: int) -> list[str]:
    """A node that is not the rendezvous host although the host is this machine's loopback (is_host=0)."""
    return ["--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
            "--rdzv-conf", "is_host=0"]


def test_a_worker_node_passes_once_the_rendezvous_port_answers(listening):
    assert pf.network_problem(launch(*worker_of(listening)), [], 5, {}, pf.Clock()) == ""


def test_a_worker_node_fails_when_the_rendezvous_port_never_answers(capsys):
    port = closed_port()
    started = time.monotonic()
    problem = pf.network_problem(launch(*worker_of(port)), [], 1.5, {}, pf.Clock())
    took = time.monotonic() - started
    assert problem == (f"the rendezvous host 127.0.0.1:{port} did not answer within 2 s: is the node at 127.0.0.1 "
                       f"started and its torchrun running, and is port {port} open between the nodes? (wait longer "
                       "with TORCHDEV_RDZV_TIMEOUT=SECONDS)")
    assert 1.4 <= took < 5
    waiting = rf"waiting up to [12] s for the rendezvous host 127.0.0.1:{port} to answer"
    assert re.search(waiting, capsys.readouterr().err)


def test_the_rendezvous_host_itself_does_not_wait(monkeypatch):
    monkeypatch.setattr(pf, "answers", lambda *args: pytest.fail("the host node probed its own port"))
    assert pf.network_problem(launch("--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint",
                                     f"127.0.0.1:{closed_port()}"), [], 5, {}, pf.Clock()) == ""


def test_the_nccl_check_inside_the_network_checks(machine, clock, monkeypatch):
    _, real = clock
    monkeypatch.setattr(pf, "nvidia_device_files", lambda: ["/dev/nvidia0"])
    monkeypatch.setattr(pf, "route_source", lambda address: "172.18.0.1")
    problem = pf.network_problem(launch(*C10D_WORKER), [], 5, {}, real)
    assert problem.startswith("node0 is reached through br-1a2b3c (a docker bridge)")
    assert "set NCCL_SOCKET_IFNAME=eth0" in problem
    assert pf.network_problem(launch(*C10D_WORKER), [], 5, {"NCCL_SOCKET_IFNAME": "eth0"}, real) == ""
    monkeypatch.setattr(pf, "route_source", lambda address: "10.0.0.5")
    assert pf.network_problem(launch(*C10D_WORKER), [], 5, {}, real) == ""


# --- the whole preflight and the exec ----------------------------------------------------------------------------

def test_a_small_shm_fails_before_anything_else(machine, clock, monkeypatch, capsys):
    _, real = clock
    monkeypatch.setattr(pf, "shm_bytes", lambda path=pf.SHM: 64 * MIB)
    monkeypatch.setattr(pf, "resolve", lambda host: pytest.fail("network checked after a local failure"))
    assert pf.preflight(["torchrun", *C10D_WORKER, "train/train.py"], {}, real) == (1, [])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("preflight: /dev/shm is 64 MiB, below 1 GiB")


def test_a_standalone_job_checks_no_network(machine, clock, monkeypatch):
    _, real = clock
    monkeypatch.setattr(pf, "resolve", lambda host: pytest.fail("standalone looked up a host"))
    command = ["torchrun", "--standalone", "--nproc-per-node", "2", "train/train.py"]
    assert pf.preflight(command, {}, real) == (0, command)


def test_an_unreadable_command_line_is_left_to_torchrun(clock, capsys):
    _, real = clock
    command = ["torchrun", "--no-such-flag", "train/train.py"]
    assert pf.preflight(command, {}, real) == (0, command)
    assert "cannot read this torchrun command line" in capsys.readouterr().err


def test_preflight_off_and_usage(clock, capsys):
    _, real = clock
    command = ["torchrun", "--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", "nowhere.invalid", "x.py"]
    assert pf.preflight(command, {"TORCHDEV_PREFLIGHT": "0"}, real) == (0, command)
    assert pf.preflight(["train/train.py"], {}, real) == (2, [])
    assert pf.preflight(["torchrun", "x.py"], {"TORCHDEV_RDZV_TIMEOUT": "x"}, real) == (2, [])


@pytest.fixture()
def fake_torchrun(tmp_path):
    """A `torchrun` on PATH that prints its pid and arguments, one per line, and exits 7."""
    torchrun = '#!/bin/sh\necho "pid $$"\nfor arg in "$@"; do echo "$arg"; done\nexit 7\n'
    return {**os.environ, "PATH": ahead_of_path(command_folder(tmp_path / "bin", {"torchrun": torchrun}))}


def test_the_preflight_becomes_torchrun_with_its_arguments_unchanged(fake_torchrun):
    args = ["--standalone", "--nproc_per_node=1", "train/train.py", "--task", "mlp", "--run-name", "a b"]
    process = subprocess.Popen([sys.executable, str(ROOT / "train" / "preflight.py"), "torchrun", *args],
                               env=fake_torchrun, stdout=subprocess.PIPE, text=True)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 7  # torchrun's status, not the preflight's
    lines = out.splitlines()
    assert lines[0] == f"pid {process.pid}"  # the same process: exec, not a child
    assert lines[1:] == args


def test_a_failed_check_never_starts_torchrun(fake_torchrun):
    env = {**fake_torchrun, "TORCHDEV_RDZV_TIMEOUT": "1"}
    result = subprocess.run([sys.executable, str(ROOT / "train" / "preflight.py"), "--peers", "node7.invalid",
                             "torchrun", "--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint",
                             "localhost:29400", "train/train.py"], env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.strip().splitlines()[-1].startswith(
        "preflight: peer node node7.invalid did not resolve within 1 s")


def test_torchrun_missing_from_path_is_one_line(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}
    result = subprocess.run([sys.executable, str(ROOT / "train" / "preflight.py"), "torchrun", "--standalone",
                             "train/train.py"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 127
    assert result.stderr.strip() == ("preflight: cannot start torchrun: No such file or directory (is torch "
                                     "installed and torchrun on PATH?)")


def test_a_workdir_with_train_alone_says_the_checks_were_skipped_in_one_line_and_still_starts(tmp_path,
                                                                                            fake_torchrun):
    """The job's /workspace should be the checkout; one that holds train/ without smoke/ loses the startup checks
    (smoke/startup_checks.py), which the preflight says as a warning, never a traceback, and torchrun still starts."""
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "preflight.py").write_text((ROOT / "train" / "preflight.py").read_text())
    result = subprocess.run([sys.executable, str(tmp_path / "train" / "preflight.py"), "torchrun", "--standalone",
                             "train/train.py"], env=fake_torchrun, cwd=tmp_path, capture_output=True, text=True,
                            timeout=60, check=False)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 7 and result.stdout.splitlines()[1:] == ["--standalone", "train/train.py"], \
        "the fake torchrun ran (it exits 7)"
    assert f"preflight: warning: {pf.MISSING_CHECKS}" in result.stderr.splitlines()
