"""The runtime and devel flavours of the test variant on the real engine: devel is built on runtime and shares
its layers (torch's included), tags say the flavour, and the sizes torchdev prints are the engine's own.

The C++ extension check of the devel flavour runs in test_devcontainer (the smoke suite in the devel image); the
CUDA kernel check needs nvcc, which the test overlay leaves out: NVIDIA's redistributables are out of reach here and
PyPI's nvidia-cuda-nvcc-cu11 holds ptxas but no nvcc. So what is not proven here: nvcc from NVIDIA's archives."""
from __future__ import annotations

import re

from tests.helpers.cli import run_cli
from tests.helpers.variants import TEST_VARIANT


def layers(docker_client, image_id: str) -> list[str]:
    return docker_client.images.get(image_id).attrs["RootFS"]["Layers"]


def test_devel_is_the_runtime_image_plus_its_toolchain_layers(docker_client, built_image, built_devel_image):
    runtime, devel = layers(docker_client, built_image.image_id), layers(docker_client, built_devel_image.image_id)
    # Both images are their base stage plus one last layer (docker/user-layer.sh: added packages, constraints), so
    # devel holds every layer of runtime-base, which is runtime without that last one: torch's among them.
    assert devel[:len(runtime) - 1] == runtime[:-1], "devel must reuse every runtime-base layer, torch's included"
    assert len(devel) > len(runtime)
    torch_steps = re.findall(r"^#(\d+) \[runtime-base \d+/\d+\] RUN --mount=type=cache,target=/root/.cache/pip",
                             built_devel_image.output, flags=re.M)
    assert torch_steps, "the devel build must go through runtime-base's torch install step"
    assert all(re.search(rf"^#{step} CACHED$", built_devel_image.output, flags=re.M) for step in torch_steps), \
        "the torch install step must come from the runtime build's cache"


def test_devel_tags_carry_the_flavour_and_the_runtime_tags_stay_on_runtime(docker_client, built_image,
                                                                           built_devel_image):
    assert all(reference.endswith("-devel") for reference in built_devel_image.references)
    for reference in built_image.references:
        assert docker_client.images.get(reference).id == built_image.image_id, reference
    labels = docker_client.images.get(built_devel_image.image_id).labels
    assert (labels["io.torchdev.flavour"], labels["io.torchdev.variant"]) == ("devel", TEST_VARIANT)


def test_the_devel_image_has_the_toolchain_and_the_runtime_image_none(containers, built_image, built_devel_image):
    probe = ["bash", "-c", "command -v g++ ninja || true; ls /usr/include/python3*/Python.h 2>/dev/null || true; "
             "cat /usr/share/torchdev/manifest.json"]
    runtime = containers.run(built_image.image_id, probe).output
    devel = containers.run(built_devel_image.image_id, probe).output
    assert "/usr/bin/g++" not in runtime and "Python.h" not in runtime
    assert "/usr/bin/g++" in devel and "/usr/bin/ninja" in devel and "Python.h" in devel
    assert '"flavour": "devel"' in devel and '"cuda-toolchain": "none"' in devel and '"flavour": "runtime"' in runtime


def test_images_shows_both_flavours_with_on_disk_and_download_sizes_that_match_the_files(
        containers, built_image, built_devel_image, test_overlay):
    shown = run_cli("images", "--overlay", str(test_overlay))
    assert shown.returncode == 0, shown.stderr
    assert "on disk (unpacked)" in shown.stdout and "download (compressed)" in shown.stdout
    rows = {line.split()[1]: line for line in shown.stdout.splitlines() if line.startswith(f"{TEST_VARIANT} ")}
    assert set(rows) >= {"runtime", "devel"}, shown.stdout
    sizes = re.findall(r"(\d+\.\d\d) GiB", rows["runtime"])
    on_disk, download = (float(size) * 2 ** 30 for size in sizes[:2])
    files = int(containers.run(built_image.image_id, ["du", "-sxb", "/"], user="0").output.split()[0])
    assert abs(on_disk - files) / files < 0.03, f"on disk {on_disk:.0f} B, files in the image {files} B"
    assert download < on_disk / 1.5, "the compressed layers must be well below the unpacked files"
