"""smoke/startup_checks.py in real containers of the test image, with GPUs as nvidia-smi reports them: the stand-in
NVIDIA toolkit's nvidia-smi (tests/nvidia_standin/) mounted in, listing made-up GPUs and driver. The container's
own /dev/shm, locked-memory limit and the image's manifest (torch's architectures, its CUDA) are real.

What this does not prove: real GPUs (none here), or the NVIDIA runtime injecting nvidia-smi (tests/integration/
test_gpu_standin.py does that, restarting dockerd, which only a run that has the engine to itself may). Compose's
start path is tests/integration/test_compose.py's, the dev containers' test_devcontainer.py's."""
from __future__ import annotations

import pytest

from tests.helpers.cli import ROOT
from tests.helpers.tracked_container import engine_memlock

CHECKS = ["python", "-B", "/workspace/smoke/startup_checks.py"]


def standin(folder, *, driver: str, gpus: list[tuple[str, str]]) -> dict:
    """Mounts for a container whose nvidia-smi lists `gpus` (name, compute capability) on `driver`."""
    (folder / "driver").write_text(f"{driver} 12.4\n")
    for index, (name, capability) in enumerate(gpus):
        (folder / f"gpu-{index}").write_text(f"{name}|GPU-00000000-0000-4000-8000-00000000000{index}|{capability}\n")
    return {str(ROOT / "tests" / "nvidia_standin" / "nvidia-smi"): {"bind": "/usr/local/bin/nvidia-smi", "mode": "ro"},
            str(folder): {"bind": "/etc/nvidia-standin", "mode": "ro"},
            str(ROOT / "smoke"): {"bind": "/workspace/smoke", "mode": "ro"}}


def lines_of(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("torchdev check: ")]


@pytest.fixture()
def folder(tmp_path):
    tmp_path.chmod(0o755)
    return tmp_path


def test_two_hopper_gpus_on_docker_defaults_give_one_line_per_problem_and_exit_0(built_image, containers, folder):
    """Two H200s (sm_90, which torch 2.0's cu117 build has no kernel for), Docker's 64 MB /dev/shm, its default
    locked-memory limit: three lines, each with its fix."""
    volumes = standin(folder, driver="550.54.15", gpus=[("NVIDIA H200", "9.0"), ("NVIDIA H200", "9.0")])
    done = containers.run(built_image.image_id, CHECKS, volumes=volumes, environment={"TORCHDEV_WORKERS": "2"})
    assert done.exit_code == 0, done.output
    said = lines_of(done.output)
    assert len(said) == 3, done.output
    assert said[0].startswith("torchdev check: /dev/shm is 64 MiB, below ") and \
        "this container runs 2 processes with 2 DataLoader workers each" in said[0], said[0]
    assert said[1].startswith("torchdev check: locked memory is limited to ") and "memlock=-1" in said[1]
    assert said[2].startswith("torchdev check: GPUs of compute capability 9.0: torch here has kernels for sm_37")
    assert "cu118" in said[2]


def test_a_container_started_as_torchdev_starts_it_and_all_is_well_says_nothing(built_image, containers, folder,
                                                                               docker_client):
    """An Ampere GPU on a new driver, /dev/shm and locked memory as torchdev's profiles give them: silence."""
    volumes = standin(folder, driver="550.54.15", gpus=[("NVIDIA A10", "8.6")])
    memlock = int(engine_memlock(docker_client, built_image.image_id))
    from docker.types import Ulimit
    done = containers.run(built_image.image_id, CHECKS, volumes=volumes, shm_size="8g",
                          ulimits=[Ulimit(name="memlock", soft=memlock, hard=memlock)])
    assert done.exit_code == 0 and lines_of(done.output) == [], done.output


def test_a_driver_too_old_for_the_images_cuda_is_said_with_the_minimum(built_image, containers, folder):
    """The NVIDIA toolkit refuses such a driver at start through NVIDIA_REQUIRE_CUDA, but not where it does not read
    it (CDI devices): then the container says it itself. 495 is in none of the driver branches the image's constraint
    admits under forward compatibility (470, 510: those are no problem)."""
    volumes = standin(folder, driver="495.29.05", gpus=[("NVIDIA A10", "8.6")])
    done = containers.run(built_image.image_id, CHECKS, volumes=volumes, shm_size="8g")
    assert done.exit_code == 0
    assert lines_of(done.output) == [
        "torchdev check: the NVIDIA driver is too old for this image (CUDA 11.7 needs >= 515.43.04, driver 495.29.05): "
        "CUDA calls fail; upgrade the host's driver to >= 515.43.04, or use a variant built for an older CUDA"]


def test_a_broken_nvidia_smi_or_none_is_no_gpu_and_no_line(built_image, containers, folder):
    volumes = standin(folder, driver="550.54.15", gpus=[])
    (folder / "driver").unlink()  # the stand-in then fails as nvidia-smi does without a driver
    done = containers.run(built_image.image_id, CHECKS, volumes=volumes, shm_size="8g")
    assert done.exit_code == 0 and lines_of(done.output) == [], done.output
