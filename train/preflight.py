"""Checks before a node's torchrun joins a multi-node job; then that torchrun, unchanged.

    python3 train/preflight.py [--peers NAME,NAME,...] torchrun TORCHRUN_FLAGS... train/train.py [FLAGS...]

torchdev has no launcher of its own: the scheduler (Slurm, Kubernetes, compose) starts one torchrun per node, and
this script goes in front of it. It reads the torchrun command line it is given the way torch 2.0.1's torchrun
does, checks what otherwise fails late and obscurely (a rendezvous host that is not up yet, a peer that never
starts, a 64 MB /dev/shm, NCCL talking over a docker bridge), prints one line per problem with its cause and fix
and exits 1, or else replaces itself with torchrun (os.execvp): signals, exit status and the process tree are
torchrun's own, as if the preflight had not been there.

Checks, all sharing one deadline (the rendezvous timeout):
- the rendezvous host resolves, retried until the deadline (peers' containers start at different times);
- a node that does not host the rendezvous waits until HOST:PORT accepts a TCP connection (torchrun's own store
  client gives up after 60 s); the host itself does not wait;
- every peer in --peers / TORCHDEV_PEERS resolves: a container's or pod's name exists in DNS only while it runs,
  so a peer that never arrives is named here;
- /dev/shm holds at least 1 GiB when this node runs more than one process;
- NCCL, when it will carry traffic between nodes, would not pick a loopback or docker bridge interface.
Then, said as warnings and never stopping the node, what every torchdev container is checked for when it starts
(smoke/startup_checks.py, beside train/): /dev/shm for the DataLoader workers too, locked memory for NCCL, torch's
kernels for these GPUs, the driver.

The timeout is --rdzv-conf join_timeout (c10d) or timeout (static), else 600 s, c10d's own default;
TORCHDEV_RDZV_TIMEOUT overrides it. TORCHDEV_PREFLIGHT=0 skips every check. Only the standard library is used, so
the checks run in a second, before torch is imported anywhere, and are unit-tested without torch.

The torchrun command line is read with a model of torch 2.0.1's, not with torch's own parser
(torch.distributed.run), although every container it runs in has torch: importing torch.distributed.run imports
torch, seconds on every node before checks that take milliseconds, and where the preflight runs outside a container
(Slurm's `host` runtime) torch may not be importable by this Python at all; and the host's tests, which follow
rendered Kubernetes manifests, compose's and Slurm's command lines to what torchrun reads, have no torch. So one
parser, this one, serves the preflight and those tests (tests/helpers/k8s.py). It is transcribed from torch 2.0.1:
torch/distributed/run.py (get_args_parser, config_from_args, determine_local_world_size, run's --standalone),
torch/distributed/argparse_util.py (the PET_* defaults) and torch/distributed/elastic/rendezvous/utils.py (the
rendezvous configuration and endpoint); tests/integration/test_torchrun_model.py holds it to torch's own functions
inside the test image, command line by command line, refusals included.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import glob
import ipaddress
import os
import re
import socket
import sys
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence, TypeVar

T = TypeVar("T")

GIB = 2**30
DEFAULT_TIMEOUT_S = 600.0  # c10d's default join_timeout (torchrun's static backend waits 900 s unless told)
DEFAULT_PORTS = {"c10d": 29400, "etcd": 2379, "etcd-v2": 2379}  # parse_rendezvous_endpoint's default_port per backend
RETRY_INTERVAL_S = 1.0
SHM = "/dev/shm"

class PreflightUsage(ValueError):
    """A command line that torchrun (or the preflight) would refuse."""


# --- torchrun's command line (a model of torch 2.0.1's: see the module docstring) -------------------------------

@dataclass(frozen=True)
class Launch:
    """What one torchrun agent will do, as torch.distributed.run.run and config_from_args (torch 2.0.1) read its
    flags, and the rendezvous handler its endpoint."""

    standalone: bool
    min_nodes: int
    max_nodes: int
    node_rank: int  # used by the static backend only; c10d numbers the nodes itself
    nproc_per_node: str  # an integer, or auto / cpu / gpu
    rdzv_backend: str
    host: str
    port: int
    rdzv_conf: Mapping[str, str]
    script: str
    script_args: tuple[str, ...]

    @property
    def multi_node(self) -> bool:
        return not self.standalone and self.max_nodes > 1

    @property
    def timeout_s(self) -> float:
        """The rendezvous' own wait for all nodes: c10d's join_timeout, the static backend's timeout."""
        value = self.rdzv_conf.get("join_timeout", self.rdzv_conf.get("timeout"))
        return float(value) if value else DEFAULT_TIMEOUT_S

    @property
    def is_host_conf(self) -> bool | None:
        """--rdzv-conf is_host=..., read as RendezvousParameters.get_as_bool reads it."""
        value = self.rdzv_conf.get("is_host", "").lower()
        return {"1": True, "true": True, "t": True, "yes": True, "y": True,
                "0": False, "false": False, "f": False, "no": False, "n": False}.get(value)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # torchrun prints usage and exits 2; here the caller decides
        raise PreflightUsage(message)


def torchrun_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    """torch 2.0.1's torchrun flags (get_args_parser): dash and underscore spellings, types, choices and defaults;
    a flag left out takes PET_<DEST> from `env` (torch's `env` action), and a switch is on when PET_<DEST> is a
    non-zero integer (`check_env`). -h/--help is torchrun's to answer. PreflightUsage for what torchrun refuses."""

    class FromEnv(argparse.Action):  # torch.distributed.argparse_util.env
        def __init__(self, dest, default=None, required=False, **kwargs):
            default = env.get(f"PET_{dest.upper()}", default)
            super().__init__(dest=dest, default=default, required=required and not default, **kwargs)

        def __call__(self, parser, namespace, values, option_string=None):
            setattr(namespace, self.dest, values)

    class SwitchFromEnv(argparse.Action):  # torch.distributed.argparse_util.check_env
        def __init__(self, dest, default=False, **kwargs):
            value = env.get(f"PET_{dest.upper()}", "1" if default else "0")
            try:
                default = bool(int(value))
            except ValueError:
                raise PreflightUsage(f"PET_{dest.upper()}={value}: torchrun reads it as an integer") from None
            super().__init__(dest=dest, const=True, default=default, nargs=0, **kwargs)

        def __call__(self, parser, namespace, values, option_string=None):
            setattr(namespace, self.dest, self.const)

    parser = _Parser(prog="torchrun", add_help=False)
    for names, kind, default in [
            (["--nnodes"], str, "1:1"), (["--nproc-per-node", "--nproc_per_node"], str, "1"),
            (["--rdzv-backend", "--rdzv_backend"], str, "static"), (["--rdzv-endpoint", "--rdzv_endpoint"], str, ""),
            (["--rdzv-id", "--rdzv_id"], str, "none"), (["--rdzv-conf", "--rdzv_conf"], str, ""),
            (["--max-restarts", "--max_restarts"], int, 0), (["--monitor-interval", "--monitor_interval"], float, 5),
            (["--role"], str, "default"), (["--log-dir", "--log_dir"], str, None), (["-r", "--redirects"], str, "0"),
            (["-t", "--tee"], str, "0"), (["--node-rank", "--node_rank"], int, 0),
            (["--master-addr", "--master_addr"], str, "127.0.0.1"), (["--master-port", "--master_port"], int, 29500),
            (["--local-addr", "--local_addr"], str, None)]:
        parser.add_argument(*names, action=FromEnv, type=kind, default=default)
    parser.add_argument("--start-method", "--start_method", action=FromEnv, type=str, default="spawn",
                        choices=["spawn", "fork", "forkserver"])
    for names in (["--standalone"], ["-m", "--module"], ["--no-python", "--no_python"], ["--run-path", "--run_path"]):
        parser.add_argument(*names, action=SwitchFromEnv)
    parser.add_argument("training_script", type=str)
    parser.add_argument("training_script_args", nargs=argparse.REMAINDER)
    return parser


def parse_nnodes(nnodes: str) -> tuple[int, int]:
    """N or MIN:MAX (parse_min_max_nnodes), then config_from_args' 0 < MIN <= MAX."""
    parts = nnodes.split(":")
    if len(parts) not in (1, 2):
        raise PreflightUsage(f'nnodes={nnodes} is not in "MIN:MAX" format')
    try:
        low, high = int(parts[0]), int(parts[-1])
    except ValueError:
        raise PreflightUsage(f"nnodes={nnodes}: not a number") from None
    if not 0 < low <= high:
        raise PreflightUsage(f"nnodes={nnodes}: need 0 < MIN <= MAX")
    return low, high


def check_nproc(nproc_per_node: str) -> str:
    """determine_local_world_size's refusal: an integer, or cpu, gpu or auto."""
    try:
        int(nproc_per_node)
    except ValueError:
        if nproc_per_node not in ("cpu", "gpu", "auto"):
            raise PreflightUsage(f"Unsupported nproc_per_node value: {nproc_per_node}") from None
    return nproc_per_node


def parse_rdzv_conf(text: str) -> dict[str, str]:
    """key=value,key=value, every key with a value (_parse_rendezvous_config)."""
    conf: dict[str, str] = {}
    if not text.strip():
        return conf
    for item in text.strip().split(","):
        key, *values = item.split("=", 1)
        key, value = key.strip(), values[0].strip() if values else ""
        if not key or not value:
            raise PreflightUsage(f"--rdzv-conf {text!r}: expected key=value pairs separated by commas")
        conf[key] = value
    return conf


def parse_endpoint(endpoint: str, default_port: int) -> tuple[str, int]:
    """HOST[:PORT] or [IPV6][:PORT] (parse_rendezvous_endpoint); an empty endpoint is localhost."""
    endpoint = endpoint.strip()
    if not endpoint:
        return "localhost", default_port
    if endpoint[0] == "[" and endpoint[-1] == "]":
        host, rest = endpoint, []
    else:
        host, *rest = endpoint.rsplit(":", 1)
    if len(host) > 1 and host[0] == "[" and host[-1] == "]":
        host = host[1:-1]
    port = default_port
    if rest:
        if not re.match(r"^[0-9]{1,5}$", rest[0]) or int(rest[0]) >= 2**16:
            raise PreflightUsage(f"the port of the rendezvous endpoint {endpoint!r} must be a number below 65536")
        port = int(rest[0])
    if not re.match(r"^[\w\.:-]+$", host):
        raise PreflightUsage(f"the host of the rendezvous endpoint {endpoint!r} is no host name or address")
    if port < 0:
        raise PreflightUsage(f"the rendezvous endpoint {endpoint!r} needs a port (HOST:PORT)")
    return host, port


def parse_torchrun(args: Sequence[str], env: Mapping[str, str]) -> Launch:
    """The Launch for torchrun's arguments (without the word torchrun), or PreflightUsage for what torchrun refuses
    (the parser, config_from_args or the rendezvous handler)."""
    parsed = torchrun_parser(env).parse_args(list(args))
    min_nodes, max_nodes = parse_nnodes(parsed.nnodes)
    if parsed.max_restarts < 0:
        raise PreflightUsage(f"--max-restarts {parsed.max_restarts}: 0 or more")
    conf = parse_rdzv_conf(parsed.rdzv_conf)
    backend, endpoint = parsed.rdzv_backend, parsed.rdzv_endpoint
    if parsed.standalone:  # torchrun: c10d on localhost:29400, whatever else was given
        backend, endpoint = "c10d", "localhost:29400"
    if backend == "static" and not endpoint:
        endpoint = f"{parsed.master_addr}:{parsed.master_port}"
    host, port = parse_endpoint(endpoint, DEFAULT_PORTS.get(backend, -1))
    return Launch(standalone=bool(parsed.standalone), min_nodes=min_nodes, max_nodes=max_nodes,
                  node_rank=parsed.node_rank, nproc_per_node=check_nproc(parsed.nproc_per_node), rdzv_backend=backend,
                  host=host, port=port, rdzv_conf=conf, script=parsed.training_script,
                  script_args=tuple(parsed.training_script_args))


def timeout_s(launch: Launch, env: Mapping[str, str]) -> float:
    """How long to wait for hosts and peers: TORCHDEV_RDZV_TIMEOUT, else the rendezvous' own timeout."""
    override = env.get("TORCHDEV_RDZV_TIMEOUT", "").strip()
    if override:
        try:
            return max(float(override), 0.0)
        except ValueError:
            raise PreflightUsage(f"TORCHDEV_RDZV_TIMEOUT={override}: a number of seconds") from None
    return launch.timeout_s


# --- this machine ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class IfAddr:
    """One address of one network interface, as getifaddrs(3) lists it."""

    name: str
    address: str

    @property
    def ipv6(self) -> bool:
        return ":" in self.address


class _Sockaddr(ctypes.Structure):
    _fields_ = [("sa_family", ctypes.c_ushort)]


class _Ifaddrs(ctypes.Structure):
    pass


_Ifaddrs._fields_ = [("ifa_next", ctypes.POINTER(_Ifaddrs)), ("ifa_name", ctypes.c_char_p),
                     ("ifa_flags", ctypes.c_uint), ("ifa_addr", ctypes.POINTER(_Sockaddr)),
                     ("ifa_netmask", ctypes.POINTER(_Sockaddr)), ("ifa_ifu", ctypes.POINTER(_Sockaddr)),
                     ("ifa_data", ctypes.c_void_p)]


def interface_addresses() -> tuple[IfAddr, ...]:
    """IPv4 and IPv6 addresses of every interface, in getifaddrs(3)'s order, the call and order NCCL chooses
    from (Linux lists all IPv4 addresses, by interface index, before the IPv6 ones). Empty where libc has no
    getifaddrs, which turns the interface check off rather than guessing."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        head = ctypes.POINTER(_Ifaddrs)()
        if libc.getifaddrs(ctypes.byref(head)) != 0:
            return ()
    except (OSError, AttributeError):
        return ()
    found = []
    try:
        node = head
        while node:
            entry = node.contents
            if entry.ifa_addr:
                family = entry.ifa_addr.contents.sa_family
                raw = ctypes.addressof(entry.ifa_addr.contents)
                if family == socket.AF_INET:
                    found.append(IfAddr(entry.ifa_name.decode(), socket.inet_ntop(
                        socket.AF_INET, ctypes.string_at(raw + 4, 4))))
                elif family == socket.AF_INET6:
                    found.append(IfAddr(entry.ifa_name.decode(), socket.inet_ntop(
                        socket.AF_INET6, ctypes.string_at(raw + 8, 16))))
            node = entry.ifa_next
    finally:
        libc.freeifaddrs(head)
    return tuple(found)


def resolve(host: str) -> tuple[str, ...]:
    """The addresses `host` resolves to now (IP literals included), or () when it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return ()
    return tuple(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))


def answers(host: str, port: int, timeout: float) -> bool:
    """True when HOST:PORT accepts a TCP connection within `timeout` seconds (closed again at once)."""
    try:
        with socket.create_connection((host, port), timeout=max(timeout, 0.1)):
            return True
    except OSError:
        return False


def route_source(address: str) -> str | None:
    """The local address the kernel would send from to reach `address` (a UDP connect sends nothing)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((address, 9))
            return str(probe.getsockname()[0]).split("%")[0]
    except OSError:
        return None


def shm_bytes(path: str = SHM) -> int | None:
    """Size of /dev/shm, or None when there is none, read as every container's startup check reads it."""
    checks = startup_checks()
    return checks.shm_size(path) if checks else None


def gpu_count(env: Mapping[str, str], device_files: Iterable[str]) -> int:
    """GPUs torch will see: CUDA_VISIBLE_DEVICES when set (empty or -1 hides them all), else /dev/nvidiaN."""
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = []
        for item in visible.split(","):
            if not item.strip() or item.strip().startswith("-"):
                break  # CUDA stops at the first invalid entry
            ids.append(item)
        return len(ids)
    return sum(1 for path in device_files if os.path.basename(path)[len("nvidia"):].isdigit())


def nvidia_device_files() -> list[str]:
    return glob.glob("/dev/nvidia[0-9]*")


def own_names() -> set[str]:
    return {socket.gethostname(), socket.getfqdn()}


# --- the checks: each returns one line describing the problem, or "" ---------------------------------------------

def local_processes(nproc_per_node: str, gpus: int, cpus: int) -> int:
    """Workers torchrun starts here (determine_local_world_size): a number, or cpu / gpu / auto."""
    try:
        return int(nproc_per_node)
    except ValueError:
        return {"cpu": cpus, "gpu": gpus, "auto": gpus or cpus}.get(nproc_per_node, 1)


def startup_checks():
    """smoke/startup_checks.py, the rules every torchdev container is checked by when it starts, beside train/ (this
    checkout's, or the job image's /workspace/smoke): as `smoke.startup_checks` where the checkout's root is on
    sys.path (the host's tests), else from its folder. Imported when first needed, so reading a command line (all
    tests/integration/test_torchrun_model.py mounts) needs only this file."""
    try:
        from smoke import startup_checks as checks
    except ImportError:
        folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "smoke")
        if not os.path.isfile(os.path.join(folder, "startup_checks.py")):
            return None  # a workdir with train/ alone: the checks are said to be skipped (advice), never a traceback
        if folder not in sys.path:
            sys.path.append(folder)
        import startup_checks as checks
    return checks


MISSING_CHECKS = ("smoke/startup_checks.py is not beside train/, so /dev/shm, locked memory, the GPUs' kernels and "
                  "the driver were not checked: mount the whole checkout at /workspace")


def shm_problem(size: int | None, processes: int) -> str:
    """Several processes on one node pass tensors through /dev/shm (NCCL's shared-memory transport, DataLoader
    workers); Docker's 64 MB default fails them midway with a bus error or 'unhandled system error'. The containers'
    rule (smoke/startup_checks.py) for the processes alone: the preflight stops the node on it."""
    checks = startup_checks()
    return checks.shm_problem(size, processes=processes, workers=0) if checks else ""


def advice(launch: Launch, env: Mapping[str, str], processes: int) -> list[str]:
    """What every container is checked for when it starts (smoke/startup_checks.py): /dev/shm for the DataLoader
    workers too, locked memory for NCCL, torch's kernels for these GPUs, the driver. Said, never blocking."""
    checks = startup_checks()
    if checks is None:
        return [MISSING_CHECKS]
    architectures, cuda = checks.image_declares()
    facts = checks.Facts(shm=shm_bytes(), memlock=checks.memlock_limit(),
                         gpus=tuple(checks.query_gpus()), architectures=architectures, cuda=cuda,
                         constraint=env.get("NVIDIA_REQUIRE_CUDA", ""), processes=processes,
                         workers=checks.default_workers(dict(env), os.cpu_count() or 1),
                         nodes=launch.max_nodes if launch.multi_node else 1)
    return checks.problems(facts)


def is_rendezvous_host(launch: Launch, host_addresses: Iterable[str], names: Iterable[str],
                       addresses: Iterable[str]) -> bool:
    """Whether this node's torchrun serves the rendezvous store, so has nothing to wait for. Static: node rank 0.
    c10d: is_host in --rdzv-conf, else torch's _matches_machine_hostname: localhost, a loopback address, this
    machine's name, or an address of the host that is one of this machine's."""
    if launch.rdzv_backend == "static":
        return launch.node_rank == 0
    if launch.is_host_conf is not None:
        return launch.is_host_conf
    host = launch.host
    if host == "localhost" or host in set(names):
        return True
    try:
        if ipaddress.ip_address(host).is_loopback:
            return True
    except ValueError:
        pass
    return bool(set(host_addresses) & set(addresses))


def unresolved_host_problem(host: str, waited_s: float) -> str:
    return (f"the rendezvous host {host} does not resolve (tried for {waited_s:.0f} s): check the host in "
            "--rdzv-endpoint/--master-addr; a container's or pod's name resolves only while it runs, so is node "
            f"{host} started?")


def no_answer_problem(host: str, port: int, waited_s: float) -> str:
    return (f"the rendezvous host {host}:{port} did not answer within {waited_s:.0f} s: is the node at {host} "
            f"started and its torchrun running, and is port {port} open between the nodes? (wait longer with "
            "TORCHDEV_RDZV_TIMEOUT=SECONDS)")


def missing_peers_problem(missing: Sequence[str], waited_s: float) -> str:
    if not missing:
        return ""
    nodes = ", ".join(missing)
    return (f"peer node{'s' if len(missing) > 1 else ''} {nodes} did not resolve within {waited_s:.0f} s: "
            "not started, or stopped (a container's or pod's name resolves only while it runs); see that node's "
            "log, or check the names in --peers/TORCHDEV_PEERS")


def bridge_kind(name: str) -> str:
    """'loopback' or 'a docker bridge' for interfaces that carry no traffic to other machines, else ''."""
    if name.startswith("lo"):
        return "loopback"
    if name.startswith(("docker", "br-")):
        return "a docker bridge"
    return ""


def nccl_default_interface(interfaces: Sequence[IfAddr], family: str | None = None) -> str | None:
    """The interface NCCL's bootstrap uses without NCCL_SOCKET_IFNAME (ncclFindInterfaces): the first, in
    getifaddrs order, whose name starts with ib; else the first not starting with docker or lo (so br-* bridges
    count); else docker*, else lo. IPv6 loopback is skipped; NCCL_SOCKET_FAMILY=AF_INET/AF_INET6 narrows."""
    usable = [entry for entry in interfaces
              if entry.address != "::1"
              and (family is None or (family == "AF_INET6") == entry.ipv6)]
    for accept in (lambda name: name.startswith("ib"),
                   lambda name: not name.startswith(("docker", "lo")),
                   lambda name: name.startswith("docker"),
                   lambda name: name.startswith("lo")):
        for entry in usable:
            if accept(entry.name):
                return entry.name
    return None


def interface_with(address: str, interfaces: Sequence[IfAddr]) -> str | None:
    return next((entry.name for entry in interfaces if entry.address == address), None)


def nccl_interface_problem(target: str, route: str | None, nccl_pick: str | None,
                           interfaces: Sequence[IfAddr]) -> str:
    """NCCL traffic between nodes needs an interface that reaches the other nodes. Fails when the kernel reaches
    `target` (the rendezvous host or a peer) only through loopback or a docker bridge, or when NCCL's own choice
    would be one while `target` is reached through another interface."""
    good = route if route and not bridge_kind(route) else next(
        (entry.name for entry in interfaces if not bridge_kind(entry.name) and not entry.ipv6), None)
    fix = f"set NCCL_SOCKET_IFNAME={good}" if good else "set NCCL_SOCKET_IFNAME to the interface on the nodes' network"
    if route and bridge_kind(route):
        return (f"{target} is reached through {route} ({bridge_kind(route)}), which does not reach other machines, "
                f"so NCCL traffic between nodes would fail: {fix} and use an address on the nodes' network")
    if nccl_pick and bridge_kind(nccl_pick) and nccl_pick != route:
        via = f", but {target} is reached through {route}" if route else ""
        return (f"NCCL would pick {nccl_pick} ({bridge_kind(nccl_pick)}) for traffic between nodes{via}: {fix}")
    return ""


def uses_nccl_across_nodes(launch: Launch, env: Mapping[str, str], gpus: int) -> bool:
    """NCCL carries traffic between nodes when GPUs are used, the job spans nodes, the trainer is not told
    --device cpu, and nobody chose the interface already (NCCL_SOCKET_IFNAME)."""
    args = launch.script_args
    cpu_only = any(a == "--device=cpu" or (a == "--device" and args[i + 1:i + 2] == ("cpu",))
                   for i, a in enumerate(args))
    return gpus > 0 and launch.multi_node and not cpu_only and not env.get("NCCL_SOCKET_IFNAME")


# --- waiting -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Clock:
    """Time as the waits see it; tests pass a fake one."""

    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


def retry(attempt: Callable[[], T], done: Callable[[T], bool], deadline: float, clock: Clock,
          interval: float = RETRY_INTERVAL_S) -> T:
    """attempt() until done(result) or the deadline passes; the last result."""
    while True:
        result = attempt()
        if done(result) or clock.now() >= deadline:
            return result
        clock.sleep(max(min(interval, deadline - clock.now()), 0.0))


def say(message: str) -> None:
    print(f"preflight: {message}", file=sys.stderr, flush=True)


def network_problem(launch: Launch, peers: Sequence[str], limit: float, env: Mapping[str, str],
                    clock: Clock) -> str:
    """Rendezvous host resolves, peers resolve, the host answers (non-host nodes), NCCL's interface: the first
    problem found, all within one deadline `limit` seconds away."""
    deadline = clock.now() + limit
    interfaces = interface_addresses()
    names = own_names()
    addresses = {entry.address for entry in interfaces} | {a for name in names for a in resolve(name)}

    host_addresses = retry(lambda: resolve(launch.host), bool, deadline, clock)
    if not host_addresses:
        return unresolved_host_problem(launch.host, limit)
    hosting = is_rendezvous_host(launch, host_addresses, names, addresses)

    others = [peer for peer in peers if peer not in names]  # the same list can be given to every node
    resolved: dict[str, tuple[str, ...]] = {}

    def missing_peers() -> list[str]:
        for peer in others:
            found = () if peer in resolved else resolve(peer)
            if found:
                resolved[peer] = found
        return [peer for peer in others if peer not in resolved]

    missing = missing_peers()
    if missing:
        say(f"waiting up to {limit:.0f} s for peer{'s' if len(missing) > 1 else ''} {', '.join(missing)} to resolve")
        problem = missing_peers_problem(retry(missing_peers, lambda left: not left, deadline, clock), limit)
        if problem:
            return problem

    if not hosting:
        def attempt() -> bool:
            return answers(launch.host, launch.port, min(5.0, max(deadline - clock.now(), 0.1)))
        if not attempt():
            say(f"waiting up to {max(deadline - clock.now(), 0):.0f} s for the rendezvous host "
                f"{launch.host}:{launch.port} to answer")
            if not retry(attempt, bool, deadline, clock):
                return no_answer_problem(launch.host, launch.port, limit)

    if uses_nccl_across_nodes(launch, env, gpu_count(env, nvidia_device_files())):
        remote = [(peer, a) for peer, found in resolved.items() for a in found if a not in addresses]
        if not hosting:
            remote = [(launch.host, a) for a in host_addresses if a not in addresses] + remote
        target, route = ("the other nodes", None)
        if remote:
            target, route = remote[0][0], interface_with(route_source(remote[0][1]) or "", interfaces)
        pick = None if env.get("NCCL_COMM_ID") else nccl_default_interface(interfaces, env.get("NCCL_SOCKET_FAMILY"))
        problem = nccl_interface_problem(target, route, pick, interfaces)
        if problem:
            return problem
    served = "served by this node" if hosting else "answering"
    say(f"ok: rendezvous {launch.rdzv_backend} at {launch.host}:{launch.port} {served}"
        + (f", peers {', '.join(peers)} resolve" if peers else ""))
    return ""


def node_processes(launch: Launch, env: Mapping[str, str]) -> int:
    return local_processes(launch.nproc_per_node, gpu_count(env, nvidia_device_files()), os.cpu_count() or 1)


def local_problems(launch: Launch, env: Mapping[str, str]) -> list[str]:
    """What this node alone can tell: /dev/shm for the processes it will run."""
    return [problem for problem in [shm_problem(shm_bytes(), node_processes(launch, env))] if problem]


# --- the command -------------------------------------------------------------------------------------------------

def split_command(argv: Sequence[str], env: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """(peers, the torchrun command) from the preflight's own arguments."""
    parser = _Parser(prog="train/preflight.py", add_help=False)
    parser.add_argument("--peers", default=env.get("TORCHDEV_PEERS", ""))
    parser.add_argument("command", nargs=argparse.REMAINDER)
    options = parser.parse_args(list(argv))
    command = options.command
    if not command or os.path.basename(command[0]) != "torchrun":
        raise PreflightUsage("usage: python3 train/preflight.py [--peers NAME,...] torchrun [TORCHRUN ARGS...]")
    peers = [peer.strip() for peer in options.peers.split(",") if peer.strip()]
    return peers, command


def preflight(argv: Sequence[str], env: Mapping[str, str], clock: Clock = Clock()) -> tuple[int, list[str]]:
    """(exit status, command to exec): status 0 means exec the command."""
    try:
        peers, command = split_command(argv, env)
    except PreflightUsage as error:
        say(str(error))
        return 2, []
    if env.get("TORCHDEV_PREFLIGHT", "1") == "0" or {"-h", "--help"} & set(command[1:2]):
        return 0, command
    try:
        launch = parse_torchrun(command[1:], env)
    except PreflightUsage as error:
        say(f"cannot read this torchrun command line ({error}); no checks, torchrun says what is wrong")
        return 0, command
    try:
        limit = timeout_s(launch, env)
    except PreflightUsage as error:
        say(str(error))
        return 2, []
    problems = local_problems(launch, env)
    if not problems:
        for line in advice(launch, env, node_processes(launch, env)):
            say(f"warning: {line}")
    if not problems and (launch.multi_node or peers):
        problems = [problem for problem in [network_problem(launch, peers, limit, env, clock)] if problem]
    for problem in problems:
        say(problem)
    return (1, []) if problems else (0, command)


def main(argv: Sequence[str] | None = None) -> int:
    status, command = preflight(sys.argv[1:] if argv is None else argv, os.environ)
    if status:
        return status
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(command[0], command)
    except OSError as error:
        say(f"cannot start {command[0]}: {error.strerror} (is torch installed and {command[0]} on PATH?)")
        return 127
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
