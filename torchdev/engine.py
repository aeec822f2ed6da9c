"""The Docker engine at the edge: one place that connects, and says how to fix it when it cannot."""
from __future__ import annotations

import shutil
import subprocess

import docker
from docker.errors import DockerException

from torchdev.errors import TorchdevError

ENGINE_FIX = ("start Docker (Linux: `sudo systemctl start docker`, or `sudo scripts/engine.sh start` on Debian; "
              "macOS/Windows: start Docker Desktop) or point DOCKER_HOST at a running engine")


def connect() -> docker.DockerClient:
    """A Docker SDK client for an engine that answers, or a TorchdevError naming the fix."""
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except DockerException as error:
        cause = str(error).split(":")[0]
        raise TorchdevError(f"no Docker engine answers ({cause}): {ENGINE_FIX}") from None
    return client


def require_buildx() -> None:
    """Builds need BuildKit through the buildx plugin (the SDK cannot drive BuildKit, docker/docker-py#2230)."""
    if shutil.which("docker") is None:
        raise TorchdevError("the docker command is not on PATH: install the Docker CLI (docs.docker.com/engine/install)")
    probe = subprocess.run(["docker", "buildx", "version"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        raise TorchdevError("docker buildx is missing: install the buildx plugin "
                            "(Debian/Ubuntu: apt-get install docker-buildx-plugin, or docker-buildx from Debian)")


def has_nvidia_runtime(client: docker.DockerClient) -> bool:
    """Whether the engine can give containers GPUs (NVIDIA runtime registered, or CDI devices)."""
    info = client.info()
    return "nvidia" in (info.get("Runtimes") or {}) or any("nvidia.com/gpu" in device
                                                           for device in info.get("DiscoveredDevices") or [])
