"""A stand-in NVIDIA Container Toolkit (tests/nvidia_standin/) installed into the engine for a test module, and the
engine put back as it was afterwards.

dockerd learns of the toolkit only when it starts: it registers the `--gpus` driver when the hook is on its PATH, reads
runtimes and the CDI feature from its configuration. So each mode restarts the dockerd that scripts/engine.sh started
(its pid file), with the same data root: images and build cache stay. What the stand-in proves and does not: Docker
really calls the hook, resolves CDI devices and runs the runtime wrapper; the GPUs, libcuda and /dev/nvidia* are
not there, so torch in the container sees none.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.helpers.cli import ROOT, unavailable

SOURCE = ROOT / "tests" / "nvidia_standin"
PIDFILE = Path("/run/torchdev-dockerd.pid")
DAEMON_JSON = Path("/etc/docker/daemon.json")
GPUS = [{"name": "NVIDIA Stand-in H200", "uuid": f"GPU-5ta9d1n0-0000-4000-8000-00000000000{index}",
         "compute_cap": "9.0"} for index in range(2)]
DRIVER = {"version": "550.54.15", "cuda": "12.4", "brand": "nvidia", "arch": "9.0"}


@dataclass(frozen=True)
class Mode:
    """How the toolkit is installed: the hook on dockerd's PATH, nvidia as the default runtime, CDI specs."""

    name: str
    hook_on_path: bool = False
    default_runtime: bool = False
    cdi: bool = False


HOOK_ONLY = Mode("hook", hook_on_path=True)
DEFAULT_RUNTIME = Mode("runtime", hook_on_path=True, default_runtime=True)
CDI_ONLY = Mode("cdi", cdi=True)
PLAIN = Mode("plain")


class NvidiaStandIn:
    """The stand-in's files in `folder` (bin/, cdi/, state/), its log, and the engine's current mode."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.bin = folder / "bin"
        self.bin.mkdir(parents=True)
        for name in ("nvidia-container-runtime-hook", "nvidia-container-runtime", "nvidia-smi"):
            shutil.copy(SOURCE / name, self.bin / name)
        self.log = folder / "hook.log"
        self.log.touch()
        self.host_view = folder / "host-view"  # what the host's fake nvidia-smi reads, for ./dev doctor
        self.mode = PLAIN
        self.configure(driver=DRIVER)
        self._write_cdi_spec()

    def configure(self, *, driver: dict) -> None:
        """The fake driver the hook checks NVIDIA_REQUIRE_CUDA against (no restart needed)."""
        (self.bin / "standin.json").write_text(json.dumps({"gpus": GPUS, "driver": driver, "log": str(self.log)}))
        self._write_gpu_files(self.host_view, driver)

    def _write_gpu_files(self, folder: Path, driver: dict) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "driver").write_text(f"{driver['version']} {driver['cuda']}\n")
        for index, gpu in enumerate(GPUS):
            (folder / f"gpu-{index}").write_text(f"{gpu['name']}|{gpu['uuid']}|{gpu['compute_cap']}\n")

    def _write_cdi_spec(self) -> None:
        """What `nvidia-ctk cdi generate` writes, reduced to the stand-in: a device per GPU and `all`; the common
        edits bring nvidia-smi and the driver, and NVIDIA_VISIBLE_DEVICES=void keeps a legacy hook out."""
        files = self.folder / "cdi-files"
        self._write_gpu_files(files, DRIVER)

        def mount(name: str, target: str) -> dict:
            return {"hostPath": str(files / name if name != "nvidia-smi" else self.bin / name), "containerPath": target,
                    "options": ["ro", "nosuid", "nodev", "bind"]}

        gpu_mounts = [mount(f"gpu-{i}", f"/etc/nvidia-standin/gpu-{i}") for i in range(len(GPUS))]
        spec = {"cdiVersion": "0.5.0", "kind": "nvidia.com/gpu",
                "devices": [*({"name": str(i), "containerEdits": {"mounts": [m]}} for i, m in enumerate(gpu_mounts)),
                            {"name": "all", "containerEdits": {"mounts": gpu_mounts}}],
                "containerEdits": {"env": ["NVIDIA_VISIBLE_DEVICES=void"],
                                   "mounts": [mount("nvidia-smi", "/usr/bin/nvidia-smi"),
                                              mount("driver", "/etc/nvidia-standin/driver")]}}
        (self.folder / "cdi").mkdir()
        (self.folder / "cdi" / "nvidia-standin.yaml").write_text(yaml.safe_dump(spec))

    def hook_calls(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def host_environment(self) -> dict[str, str]:
        """For host-side commands (./dev doctor): the fake nvidia-smi on PATH, reading the stand-in's GPUs."""
        return {"PATH": f"{self.bin}:{os.environ['PATH']}", "NVIDIA_STANDIN_DIR": str(self.host_view)}

    def switch(self, mode: Mode) -> None:
        """Restart dockerd in `mode` (nothing to do when it is in it already)."""
        if mode == self.mode:
            return
        config = json.loads(DAEMON_JSON.read_text()) if DAEMON_JSON.is_file() else {}
        if mode.default_runtime:
            config["runtimes"] = {"nvidia": {"path": str(self.bin / "nvidia-container-runtime")}}
            config["default-runtime"] = "nvidia"
        if mode.cdi:
            config["features"] = {**config.get("features", {}), "cdi": True}
            config["cdi-spec-dirs"] = [str(self.folder / "cdi")]
        config_file = self.folder / f"daemon-{mode.name}.json"
        config_file.write_text(json.dumps(config))
        if mode == PLAIN and DAEMON_JSON.is_file():
            config_file = DAEMON_JSON  # as scripts/engine.sh started it
        path = os.environ["PATH"] if not mode.hook_on_path else f"{self.bin}:{os.environ['PATH']}"
        restart_dockerd(config_file, path=path, log=self.folder / f"dockerd-{mode.name}.log")
        self.mode = mode


def require_restartable_engine() -> None:
    """The stand-in restarts dockerd: only the one scripts/engine.sh started (CI's) may be restarted."""
    if not PIDFILE.is_file() or os.getuid() != 0:
        unavailable("the NVIDIA stand-in restarts dockerd, so it needs the engine scripts/engine.sh started "
                    f"({PIDFILE}) and root")


def _running(pid: int) -> bool:
    """Whether `pid` still runs; a dockerd this process started earlier is its child, and is reaped here."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # not our child: the dockerd scripts/engine.sh started
    return Path(f"/proc/{pid}").exists()


def restart_dockerd(config_file: Path, *, path: str, log: Path) -> None:
    """Stop the dockerd in the pid file, start one with this configuration and PATH, and wait until it answers."""
    pid = int(PIDFILE.read_text())
    os.kill(pid, signal.SIGTERM)
    for _ in range(120):
        if not _running(pid):
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"dockerd {pid} did not stop within 60 s")
    with log.open("w") as output:
        process = subprocess.Popen(["dockerd", "--config-file", str(config_file)], stdout=output,
                                   stderr=subprocess.STDOUT, env={**os.environ, "PATH": path},
                                   start_new_session=True)
    PIDFILE.write_text(str(process.pid))
    for _ in range(120):
        if subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False).returncode == 0:
            return
        if process.poll() is not None:
            break
        time.sleep(0.5)
    raise AssertionError(f"dockerd did not answer with {config_file}:\n{log.read_text()[-3000:]}")
