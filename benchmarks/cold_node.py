"""Cold node: what a cluster node that has never seen the image pays before training starts; one table.

    .venv/bin/python benchmarks/cold_node.py --variant cu117 --overlay overlays/local-debian.yaml \
        [--rounds 2] [--downloads 3,10]

The built runtime image goes to a loopback registry (Debian's docker-registry, as the tests start it) with `./dev push
--force`, once with gzip layers and once with zstd. Each measurement then starts a second dockerd of its own on an
empty store, the node (containerd snapshotter on, its own data root, exec root, pidfile, socket, config and
containerd; a bridge of its own and no iptables rules, so it cannot meet the shared engine's networks), and times
there:

- the pull of the pushed digest (download, verify, unpack into the empty store);
- the first `docker run` after it, until the trainer's first logged step (train/train.py --log-every 1) and exit;
- the same run with the image present (warm: its files still in the page cache);
- the same run once the store's files are dropped from the page cache (the image on disk, as after a reboot).

The run is compose's `train` service as `docker run` gives it (torchdev.profile.COMPOSE: root dropped to the owner
of /workspace by run-as-owner.sh, init, /dev/shm, ulimits, no capabilities beyond the four), with compose.yaml's own
entrypoint, one process, the checkout mounted read-only and the run's files in the container's /tmp; no network but
loopback (torchrun --standalone needs no more). `--downloads` sets the node's max-concurrent-downloads (dockerd's
default is 3); several values give a row each, the runs timed with the first value only (they download nothing).
Rounds alternate gzip and zstd (A, B, A, B) so that load from others on the machine falls on both; cells show the
median and, with more than one round, the spread. The shared engine is only read and pushed from; everything made
here (the node, its folders, the registry and what it stored) is removed.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import stat
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import yaml

ROOT = Path(__file__).resolve().parent.parent
# the checkout first, and not benchmarks/ (the script's own folder), whose smoke.py would hide the smoke package
sys.path[:] = [str(ROOT), *(entry for entry in sys.path if Path(entry or ".").resolve() != ROOT / "benchmarks")]

from benchmarks.shared import push_runtime, timed  # noqa: E402
from tests.helpers.registry import serve_registry  # noqa: E402
from torchdev.checkout import read_plans  # noqa: E402
from torchdev.matrix import load_matrix  # noqa: E402
from torchdev.profile import COMPOSE, docker_run_arguments, docker_run_entry  # noqa: E402
from torchdev.project import Paths, select_variants  # noqa: E402
from torchdev.table import human_size, render_table  # noqa: E402

COMPRESSIONS = ("gzip", "zstd")
DEFAULT_DOWNLOADS = 3
"""dockerd's own default of max-concurrent-downloads."""
SYSTEM_CONTAINERD = Path("/run/containerd/containerd.sock")
"""Where dockerd looks for a system containerd before starting one of its own: with one there, a second dockerd
would share its image store, and the node would not be cold."""
FIRST_STEP = re.compile(r"^epoch \d+ step 1/\d+ loss ")
"""train/train.py's line after its first training step (with --log-every 1)."""
TRAINER_FLAGS = ("--epochs", "1", "--log-every", "1", "--runs-dir", "/tmp/torchdev-runs")
RUN_TIMEOUT_S = 600


@dataclass(frozen=True)
class Run:
    """One `docker run` of the trainer: seconds from the command to the first logged step, and to its exit."""

    first_step: float
    exit: float


@dataclass(frozen=True)
class Sample:
    """One node from empty: the pull, then three runs (right after the pull, warm, out of the page cache); runs None
    where only the pull was timed (the other --downloads values: the runs do not download)."""

    pull: float
    runs: tuple[Run, Run, Run] | None = None


@dataclass(frozen=True)
class Pushed:
    compression: str
    reference: str
    seconds: float
    size: int


# --- pure parts ---------------------------------------------------------------------------------------------------

def node_config(folder: Path, downloads: int, bridge: str) -> dict:
    """The node's daemon.json: every path under `folder`, the containerd image store, and a bridge of its own
    (`bridge`, made by cold_node) with no iptables rules, so it cannot touch the shared engine's docker0 or chains.
    Never "bridge": "none": dockerd then deletes docker0 at start (it takes the default bridge as its own), which
    cuts every container of the shared engine off its network."""
    return {"data-root": str(folder / "data"), "exec-root": str(folder / "exec"),
            "pidfile": str(folder / "dockerd.pid"), "hosts": [f"unix://{folder / 'docker.sock'}"],
            "features": {"containerd-snapshotter": True}, "bridge": bridge, "iptables": False, "ip6tables": False,
            "max-concurrent-downloads": downloads}


def mounts_under(mountinfo: str, folder: Path) -> list[str]:
    """Mount points in /proc/self/mountinfo text that lie under `folder`, deepest first (the order to unmount)."""
    points = [line.split()[4] for line in mountinfo.splitlines() if len(line.split()) > 4]
    inside = [point for point in points if point == str(folder) or point.startswith(f"{folder}/")]
    return sorted(set(inside), key=lambda point: point.count("/"), reverse=True)


def train_service_command(compose: Mapping) -> list[str]:
    """compose.yaml's `train` command after the profile's entrypoint (sh run-as-owner.sh), with one process."""
    entrypoint = [str(word).replace("${NPROC:-1}", "1") for word in compose["services"]["train"]["entrypoint"]]
    prefix = list(COMPOSE.user.entrypoint)
    if entrypoint[:len(prefix)] != prefix:
        raise SystemExit(f"compose.yaml's train entrypoint no longer starts with {prefix}: {entrypoint}")
    return entrypoint[len(prefix):]


def trainer_command(docker: Sequence[str], image: str, environ: Mapping[str, str], *, name: str,
                    program: Sequence[str]) -> list[str]:
    """`docker run` of the trainer as compose's train service starts it, on the node's loopback only: the hostname
    is `localhost`, which resolves there (torchrun's rendezvous looks its host up, and retries without end when it
    cannot)."""
    return [*docker, "run", "--rm", "--name", name, "--network", "none", "--hostname", "localhost",
            *docker_run_arguments(COMPOSE, environ),
            "--volume", f"{ROOT}:/workspace:ro", "--workdir", "/workspace", image, *docker_run_entry(COMPOSE),
            *program, *TRAINER_FLAGS]


def first_step_seconds(lines: Sequence[tuple[float, str]]) -> float | None:
    """Seconds (as stamped) of the first line that reports the trainer's first step; None when none does."""
    return next((stamp for stamp, line in lines if FIRST_STEP.match(line.strip())), None)


def cell(values: Sequence[float]) -> str:
    """The median in seconds, and the spread when there is more than one value: '41 s (39-44)'."""
    middle = f"{statistics.median(values):.1f} s"
    return middle if len(values) == 1 else f"{middle} ({min(values):.1f}-{max(values):.1f})"


def run_cells(measured: Sequence[Sample]) -> list[str]:
    """First run, pull + first run, warm run, run out of the page cache: each to the first step; '-' untimed."""
    timed = [s for s in measured if s.runs]
    if not timed:
        return ["-"] * 4
    return [cell([s.runs[0].first_step for s in timed]), cell([s.pull + s.runs[0].first_step for s in timed]),
            cell([s.runs[1].first_step for s in timed]), cell([s.runs[2].first_step for s in timed])]


def table(pushed: Mapping[str, Pushed], samples: Mapping[tuple[str, int], list[Sample]]) -> str:
    rows = []
    for (compression, downloads), measured in samples.items():
        push = pushed[compression]
        rows.append((compression, str(downloads), human_size(push.size), f"{push.seconds:.0f} s",
                     cell([s.pull for s in measured]), *run_cells(measured)))
    return render_table(["layers", "max downloads", "pushed", "push", "pull (empty store)",
                         "first run: to step 1", "cold node: pull + first run", "run, image present (warm)",
                         "run, image not in page cache"], rows)


# --- the node -----------------------------------------------------------------------------------------------------

@contextmanager
def cold_node(downloads: int) -> Iterator[tuple[list[str], Path]]:
    """A dockerd of our own on an empty store; yields the `docker` command that talks to it and its folder. Stopped,
    unmounted and deleted afterwards, whatever happened."""
    if SYSTEM_CONTAINERD.exists():
        raise SystemExit(f"a system containerd answers at {SYSTEM_CONTAINERD}: a second dockerd would share its image "
                         "store, so no node here can start cold; run this where dockerd runs its own containerd")
    folder = Path(tempfile.mkdtemp(prefix="tdcold-", dir="/tmp"))  # short: unix socket paths hold 108 bytes
    bridge = f"tdcold{os.getpid() % 100000}"  # at most 15 characters, an interface name's limit
    links = host_links()
    for command in (["ip", "link", "add", bridge, "type", "bridge"],
                    ["ip", "addr", "add", "10.254.254.1/24", "dev", bridge], ["ip", "link", "set", bridge, "up"]):
        subprocess.run(command, check=True, capture_output=True)
    (folder / "daemon.json").write_text(json.dumps(node_config(folder, downloads, bridge), indent=1))
    log = (folder / "dockerd.log").open("wb")
    daemon = subprocess.Popen(["dockerd", "--config-file", str(folder / "daemon.json")], stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    docker = ["docker", "--host", f"unix://{folder / 'docker.sock'}"]
    try:
        wait_for(docker, daemon, folder / "dockerd.log")
        check_host_links(links)
        yield docker, folder
    finally:
        stop(daemon)
        log.close()
        for point in mounts_under(Path("/proc/self/mountinfo").read_text(), folder):
            subprocess.run(["umount", "--lazy", point], check=False, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run(["ip", "link", "del", bridge], check=False, capture_output=True)


def host_links() -> set[str]:
    """The host's network interfaces but those that come and go with others' containers and networks (veth ends,
    user networks' br-* bridges)."""
    return {name for name in os.listdir("/sys/class/net") if not name.startswith(("veth", "br-"))}


def check_host_links(before: set[str]) -> None:
    """Stop at once if the node took any of the host's network interfaces (the shared engine's docker0 above all)."""
    gone = sorted(before - host_links())
    if gone:
        raise SystemExit(f"the node's dockerd removed the host's network interfaces {', '.join(gone)}: the shared "
                         "engine's containers have lost their network until its dockerd recreates them (a restart)")


def wait_for(docker: list[str], daemon: subprocess.Popen, log: Path) -> None:
    for _ in range(600):
        if daemon.poll() is not None:
            break
        if subprocess.run([*docker, "version"], capture_output=True, check=False).returncode == 0:
            return
        time.sleep(0.1)
    raise SystemExit(f"the node's dockerd did not answer; the end of its log:\n{log.read_text()[-3000:]}")


def stop(daemon: subprocess.Popen) -> None:
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=90)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


def evict_page_cache(folder: Path) -> None:
    """Drop the node's own files from the page cache (written back first), as after a reboot: the shared engine's
    and everyone else's stay cached."""
    for directory, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(directory, name)
            try:
                if not stat.S_ISREG(os.lstat(path).st_mode):
                    continue  # links, sockets, whiteouts (device nodes): nothing cached, and not to be opened
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                continue  # what the node removed meanwhile
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            except OSError:
                pass
            finally:
                os.close(fd)


def run_trainer(command: list[str]) -> Run:
    """Run the trainer, stamping its output lines; SystemExit with its last lines when it fails or never steps."""
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(RUN_TIMEOUT_S, process.kill)
    watchdog.start()
    try:
        lines = [(time.monotonic() - started, line) for line in process.stdout]
        status = process.wait()
    finally:
        watchdog.cancel()
    ended = time.monotonic() - started
    step = first_step_seconds(lines)
    if status or step is None:
        tail = "".join(line for _, line in lines[-30:])
        raise SystemExit(f"the trainer {'failed' if status else 'logged no first step'} ({' '.join(command)}):\n{tail}")
    return Run(step, ended)


def measure(reference: str, downloads: int, program: list[str] | None) -> Sample:
    """A node from empty: the pull, and with a `program` the trainer's three runs."""
    with cold_node(downloads) as (docker, folder):
        pull = timed([*docker, "pull", "-q", reference])
        if program is None:
            return Sample(pull)

        def trainer(index: int) -> Run:
            return run_trainer(trainer_command(docker, reference, os.environ, name=f"torchdev-cold-node-{index}",
                                               program=program))
        first, warm = trainer(0), trainer(1)
        evict_page_cache(folder)
        return Sample(pull, (first, warm, trainer(2)))


def push(variant: str, registry: str, compression: str, overlay: list[str]) -> Pushed:
    repository = f"{registry}/cold-node/{compression}"
    seconds, record = push_runtime(variant, repository, compression, overlay)
    return Pushed(compression, f"{repository}@{record.digest}", seconds, record.size)


MANIFEST_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.list.v2+json",
                  "application/vnd.docker.distribution.manifest.v2+json")


def layer_sizes(registry: str, reference: str) -> list[int]:
    """The pushed image's compressed layer sizes, from the registry's manifest (this platform's, under an index)."""
    name, digest = reference.split("/", 1)[1].split("@")
    request = urllib.request.Request(f"http://{registry}/v2/{name}/manifests/{digest}",
                                     headers={"Accept": ", ".join(MANIFEST_TYPES)})
    with urllib.request.urlopen(request, timeout=30) as answer:
        document = json.load(answer)
    if "manifests" in document:
        image = next(entry for entry in document["manifests"]
                     if entry.get("platform", {}).get("architecture") not in (None, "unknown"))
        return layer_sizes(registry, f"{reference.split('@')[0]}@{image['digest']}")
    return [layer["size"] for layer in document["layers"]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="cu117")
    parser.add_argument("--overlay", default=None)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--downloads", default=str(DEFAULT_DOWNLOADS),
                        help="the node's max-concurrent-downloads; several, comma-separated, give a row each")
    args = parser.parse_args()
    downloads = [int(value) for value in args.downloads.split(",")]
    matrix = load_matrix(ROOT / "images.yaml", overlay=args.overlay)
    plan = read_plans(Paths.at(ROOT), matrix, select_variants(matrix, variant=args.variant, every=False),
                      [matrix.flavour("runtime")])[0]
    if subprocess.run(["docker", "image", "inspect", plan.primary_reference], capture_output=True).returncode:
        overlay_hint = f" --overlay {args.overlay}" if args.overlay else ""
        print(f"cold_node: {plan.primary_reference} is not built: ./dev build --variant {args.variant}{overlay_hint}",
              file=sys.stderr)
        return 2
    program = train_service_command(yaml.safe_load((ROOT / "compose.yaml").read_text()))
    overlay = ["--overlay", args.overlay] if args.overlay else []
    samples: dict[tuple[str, int], list[Sample]] = {(c, d): [] for d in downloads for c in COMPRESSIONS}
    with tempfile.TemporaryDirectory(prefix="torchdev-cold-node-registry-") as folder, \
            serve_registry(Path(folder)) as registry:
        pushed = {}
        for compression in COMPRESSIONS:
            pushed[compression] = push(args.variant, registry, compression, overlay)
            print(f"pushed: {pushed[compression]}", file=sys.stderr, flush=True)
        layers = layer_sizes(registry, pushed["zstd"].reference)
        for _ in range(args.rounds):
            for key in samples:
                timed_runs = program if key[1] == downloads[0] else None  # runs download nothing: timed once
                samples[key].append(measure(pushed[key[0]].reference, key[1], timed_runs))
                print(f"{key[0]}, max downloads {key[1]}: {samples[key][-1]}", file=sys.stderr, flush=True)
    print(table(pushed, samples))
    print(f"\n{plan.primary_reference}: {len(layers)} layers, the largest {human_size(max(layers))} of "
          f"{human_size(sum(layers))} (zstd); {args.rounds} round(s), {os.cpu_count()} CPU cores; "
          f"trainer: {' '.join([*program, *TRAINER_FLAGS])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
