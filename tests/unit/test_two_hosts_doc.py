"""The recipe of docs/scaling-out.md for two Docker hosts without a scheduler, held to what the tested launchers do:
its `docker run` is the container profile Slurm's Docker runtime renders (torchdev/profile.py, SLURM_DOCKER), on the
host's network, with the image by digest; its torchrun flags, read by the preflight's model of torch 2.0.1's torchrun
(train/preflight.py, held to torch's own parser in tests/integration/test_torchrun_model.py), make one two-node c10d
job whose store host A serves and host B waits for. Not run: it needs two machines."""
from __future__ import annotations

from tests.helpers.cli import ROOT
from tests.helpers.doc_commands import marked_commands
from torchdev.profile import SLURM_DOCKER, UNLIMITED, docker_run_arguments, docker_run_entry, gpu_run_arguments
from train import preflight as pf

PAGE = (ROOT / "docs" / "scaling-out.md").read_text(encoding="utf-8")
COMMANDS = marked_commands(PAGE, "two-hosts")
SETTINGS = dict(command[0].split("=", 1) for command in COMMANDS if len(command) == 1 and "=" in command[0])
RUN = next(command for command in COMMANDS if command[:2] == ("docker", "run"))


def on_host(is_host: str) -> list[str]:
    """The docker run words as the shell of a host with IS_HOST=is_host would pass them (IMAGE kept as a name)."""
    return [word.replace("$IS_HOST", is_host) for word in RUN]


def contains(words: list[str], part: list[str]) -> bool:
    return any(words[i:i + len(part)] == part for i in range(len(words) - len(part) + 1))


def test_the_same_image_by_digest_is_pulled_and_run_on_each_host():
    assert "@sha256:" in SETTINGS["IMAGE"] and ("docker", "pull", "$IMAGE") in COMMANDS
    assert SETTINGS["IS_HOST"] == "1"
    assert RUN.count("$IMAGE") == 1


def test_the_container_is_the_one_slurms_docker_runtime_starts_on_the_hosts_network():
    words = on_host("1")
    image = words.index("$IMAGE")
    options, after = words[2:image], words[image + 1:]
    assert contains(options, docker_run_arguments(SLURM_DOCKER)), "the profile drifted: copy docker_run_arguments"
    assert contains(options, ["--network", "host"]) and contains(options, ["-v", "$PWD:/workspace"])
    assert contains(options, ["-w", "/workspace"]) and "-p" not in options and "--publish" not in options
    entry = docker_run_entry(SLURM_DOCKER)
    assert after[:len(entry) + 3] == [*entry, "python3", "train/preflight.py", "torchrun"]
    assert f"--gpus all {' '.join(gpu_run_arguments(UNLIMITED))}" in PAGE


def launch_on(is_host: str) -> pf.Launch:
    words = on_host(is_host)
    peers, command = pf.split_command(words[words.index("train/preflight.py") + 1:], {})
    assert peers == []
    return pf.parse_torchrun(command[1:], {})


def test_both_hosts_join_one_two_node_c10d_job_that_host_a_serves():
    a, b = launch_on("1"), launch_on("0")
    assert a.multi_node and (a.min_nodes, a.max_nodes) == (2, 2) and a.rdzv_backend == "c10d"
    assert (a.host, a.port) == (b.host, b.port) == ("10.0.0.1", 29400)
    assert a.script == "train/train.py" and a.script_args == b.script_args == ("--task", "mlp")
    assert a.is_host_conf is True and b.is_host_conf is False
    # Said outright, is_host wins over matching names and addresses: host A serves even where its name resolves
    # only to 127.0.1.1 (Debian's /etc/hosts), and host B waits for A's store even if it could match.
    assert pf.is_rendezvous_host(a, ("10.0.0.1",), {"host-a"}, {"127.0.1.1"}) is True
    assert pf.is_rendezvous_host(b, ("10.0.0.1",), {"host-b"}, {"10.0.0.1"}) is False
    assert a.timeout_s == pf.DEFAULT_TIMEOUT_S


def test_the_hosts_differ_only_in_is_host():
    differing = [(x, y) for x, y in zip(on_host("1"), on_host("0")) if x != y]
    assert differing == [("is_host=1", "is_host=0")]
