"""torchdev/gpuprobe.py: what the engine and this host say about GPUs (the CDI spec files an engine on this host
reads, the probe container docker info leaves open), read into a GpuAccess."""
import json

import yaml

from tests.helpers.fake_engine import FakeEngine
from torchdev.engine import GpuDevices
from torchdev.gpuprobe import find_access, read_spec_devices
from torchdev.gpus import Route

RUNC = {"Runtimes": {"io.containerd.runc.v2": {}, "runc": {}}}


def write_spec(folder, name: str, kind: str, *devices: str) -> None:
    folder.mkdir(exist_ok=True)
    spec = {"cdiVersion": "0.5.0", "kind": kind, "devices": [{"name": device} for device in devices]}
    (folder / name).write_text(json.dumps(spec) if name.endswith(".json") else yaml.safe_dump(spec))


def test_cdi_spec_files_on_this_host_name_the_devices_of_one_kind(tmp_path):
    write_spec(tmp_path / "etc", "nvidia.yaml", "nvidia.com/gpu", "0", "all")
    write_spec(tmp_path / "run", "a.json", "nvidia.com/gpu", "1")
    write_spec(tmp_path / "run", "fpga.yaml", "vendor.example/fpga", "0")
    (tmp_path / "run" / "broken.yaml").write_text("kind: [unclosed")
    (tmp_path / "run" / "notes.txt").write_text("kind: nvidia.com/gpu")
    found = read_spec_devices("nvidia.com/gpu", folders=[str(tmp_path / "etc"), str(tmp_path / "run"),
                                                         str(tmp_path / "missing")])
    assert found == ("nvidia.com/gpu=0", "nvidia.com/gpu=all", "nvidia.com/gpu=1")


def test_the_spec_folders_an_engine_names_are_read_only_when_it_runs_on_this_host(tmp_path):
    write_spec(tmp_path, "nvidia.yaml", "nvidia.com/gpu", "0", "all")
    engine = FakeEngine(info={**RUNC, "CDISpecDirs": [str(tmp_path)]})
    access = find_access(engine, probe_image=None)
    assert (access.route, access.cdi_devices) == (Route.CDI, ("nvidia.com/gpu=0", "nvidia.com/gpu=all"))
    engine.local = False
    assert find_access(engine, probe_image=None).route is Route.NONE, "a remote engine's /etc/cdi is not this one"


def test_the_probe_runs_only_when_docker_info_leaves_the_question_open():
    engine = FakeEngine(info={"Runtimes": {"nvidia": {}}})
    find_access(engine, probe_image="torchdev:cu118")
    assert engine.ran == []
    engine = FakeEngine(info=RUNC)
    assert find_access(engine, probe_image="torchdev:cu118").route is Route.DRIVER
    [probe] = engine.ran
    assert probe.gpus == GpuDevices(count=-1) and probe.command == ("true",)
