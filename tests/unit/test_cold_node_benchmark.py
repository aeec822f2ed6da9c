"""benchmarks/cold_node.py's pure parts: the node it starts keeps every path of its own and no network that could
meet the shared engine's, it unmounts only what lies under its folder, and the trainer it times starts as compose's
train service does and is timed to the line train.py logs after its first step."""
from __future__ import annotations

from pathlib import Path

import yaml

from tests.helpers.benchmarks import load_benchmark
from tests.helpers.cli import ROOT
from torchdev.profile import COMPOSE, docker_run_arguments


cold_node = load_benchmark("cold_node")


def test_the_node_keeps_every_path_under_its_folder_on_a_bridge_of_its_own_without_firewall_rules():
    folder = Path("/tmp/tdcold-x")
    config = cold_node.node_config(folder, 8, "tdcold1")
    paths = [config["data-root"], config["exec-root"], config["pidfile"], config["hosts"][0].removeprefix("unix://")]
    assert all(path.startswith(f"{folder}/") for path in paths), paths
    assert (config["bridge"], config["iptables"], config["ip6tables"]) == ("tdcold1", False, False), \
        "never \"none\": dockerd then deletes the shared engine's docker0"
    assert config["features"] == {"containerd-snapshotter": True}
    assert config["max-concurrent-downloads"] == 8


def test_only_mounts_under_the_folder_are_unmounted_deepest_first():
    mountinfo = "\n".join([
        "22 1 0:20 / / rw - ext4 /dev/vda rw",
        "30 22 0:30 / /tmp/tdcold-x/exec/netns/a rw - nsfs nsfs rw",
        "31 22 0:31 / /tmp/tdcold-x rw - tmpfs tmpfs rw",
        "32 22 0:32 / /tmp/tdcold-xy/data rw - overlay overlay rw",
        "33 22 0:33 / /var/lib/docker/overlay rw - overlay overlay rw",
    ])
    assert cold_node.mounts_under(mountinfo, Path("/tmp/tdcold-x")) == ["/tmp/tdcold-x/exec/netns/a", "/tmp/tdcold-x"]


def test_the_trainer_starts_as_compose_train_service_with_one_process():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    program = cold_node.train_service_command(compose)
    assert program[:4] == ["torchrun", "--standalone", "--nproc-per-node", "1"]
    assert "train/train.py" in program
    command = cold_node.trainer_command(["docker", "--host", "unix:///n.sock"], "reg/img@sha256:ab", {}, name="n",
                                        program=program)
    profile = docker_run_arguments(COMPOSE, {})
    start = command.index("reg/img@sha256:ab")
    assert all(argument in command[:start] for argument in profile)
    assert command[start + 1:start + 2] == ["/workspace/docker/run-as-owner.sh"]
    assert command[command.index("--network") + 1] == "none"
    assert f"{ROOT}:/workspace:ro" in command
    assert command[-len(cold_node.TRAINER_FLAGS):] == list(cold_node.TRAINER_FLAGS)


def test_a_changed_train_entrypoint_is_refused_not_timed():
    compose = {"services": {"train": {"entrypoint": ["python", "train/train.py"]}}}
    try:
        cold_node.train_service_command(compose)
    except SystemExit as refused:
        assert "no longer starts with" in str(refused)
    else:
        raise AssertionError("an entrypoint without run-as-owner.sh was accepted")


def test_the_first_step_is_the_line_train_py_logs_after_step_one():
    lines = [(0.5, "run-as-owner: /workspace belongs to root, so this runs as torchdev\n"),
             (3.0, "task mlp: MLP classifier; device cpu, world size 1\n"),
             (4.25, "epoch 1 step 1/58 loss 1.3863\n"),
             (4.30, "epoch 1 step 2/58 loss 1.3001\n")]
    assert cold_node.first_step_seconds(lines) == 4.25
    assert cold_node.first_step_seconds(lines[:2]) is None
    source = (ROOT / "train" / "train.py").read_text()
    assert 'f"epoch {epoch} step {steps_done}/{steps_in_epoch} loss' in source, \
        "train.py's step line changed: update FIRST_STEP in benchmarks/cold_node.py"


def test_cells_show_the_median_and_the_spread_of_several_rounds():
    assert cold_node.cell([41.04]) == "41.0 s"
    assert cold_node.cell([44.0, 39.0, 41.0]) == "41.0 s (39.0-44.0)"


def test_rows_timed_for_the_pull_alone_show_no_run_figures():
    run = cold_node.Run(first_step=4.0, exit=6.0)
    pushed = {"gzip": cold_node.Pushed("gzip", "r/g@sha256:a", 100.0, 2 * 10**9)}
    samples = {("gzip", 3): [cold_node.Sample(40.0, (run, run, run)), cold_node.Sample(44.0, (run, run, run))],
               ("gzip", 10): [cold_node.Sample(38.0), cold_node.Sample(39.0)]}
    first, second = cold_node.table(pushed, samples).splitlines()[2:]
    assert "42.0 s (40.0-44.0)" in first and "46.0 s (44.0-48.0)" in first  # the pull, and pull + first run
    assert second.split()[-4:] == ["-", "-", "-", "-"]
