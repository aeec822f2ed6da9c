"""Finding out how this engine gives containers GPUs: its `docker info`, the host's CDI spec files, and, when those
leave it open, a container started with --gpus all. torchdev.gpus judges the answers (pure); this module asks."""
from __future__ import annotations

from pathlib import Path

import yaml

from torchdev.engine import ContainerEngine, ContainerSpec, GpuDevices
from torchdev.gpus import CDI_KIND, GpuAccess, detect, needs_probe


def read_spec_devices(kind: str, *, folders: list[str]) -> tuple[str, ...]:
    """Devices of `kind` (`kind=name`) in the CDI spec files (YAML or JSON) of `folders`, read from this host:
    Engine 26 resolves CDI devices without listing them. Unreadable files and other kinds are passed over."""
    found = []
    for folder in folders:
        for spec_file in sorted(Path(folder).glob("*.yaml")) + sorted(Path(folder).glob("*.json")):
            try:
                spec = yaml.safe_load(spec_file.read_text())
            except (OSError, yaml.YAMLError):
                continue
            if isinstance(spec, dict) and spec.get("kind") == kind:
                found += [f"{kind}={device.get('name')}" for device in spec.get("devices") or []]
    return tuple(found)


def find_access(engine: ContainerEngine, *, probe_image: str | None) -> GpuAccess:
    """Ask the engine, and when its answers leave it open, start `probe_image` with --gpus all (`true`, at once). The
    CDI spec folders the engine names are read only when the engine runs on this host: else they are its host's."""
    info = engine.info()
    folders = (info.get("CDISpecDirs") or []) if engine.is_local() else []
    spec_devices = read_spec_devices(CDI_KIND, folders=folders)
    probe = None
    if probe_image and needs_probe(info, spec_devices=spec_devices):
        probe = engine.run(ContainerSpec(probe_image, ("true",), gpus=GpuDevices(count=-1), entrypoint=()),
                           timeout=120)
    return detect(info, spec_devices=spec_devices, probe=probe)
